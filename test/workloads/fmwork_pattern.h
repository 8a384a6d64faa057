/* What fmwork writes and checks, and the order it touches pages in. test/helpers/pattern.ts computes
 * the same values in TypeScript, so tests and benchmarks can predict fmwork's bytes and checksum. */
#ifndef FMWORK_PATTERN_H
#define FMWORK_PATTERN_H
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <math.h>
#include <string.h>

#define FM_GOLDEN 0x9E3779B97F4A7C15ULL
#define FM_WORD_STEP 0xD1B54A32D192ED03ULL
#define FM_FNV_OFFSET 0xcbf29ce484222325ULL
#define FM_FNV_PRIME 0x100000001b3ULL

/* splitmix64's finalizer. */
static inline uint64_t fm_mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xBF58476D1CE4E5B9ULL;
  x ^= x >> 27;
  x *= 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x;
}

/* Word `word` (u64 index within the page) of page `page` as written by --op write --seed `seed`. */
static inline uint64_t fm_word(uint64_t seed, uint64_t page, uint64_t word) {
  return fm_mix(seed + page * FM_GOLDEN) + word * FM_WORD_STEP;
}

/* 64-bit FNV-1a over bytes, continuing from h (start with FM_FNV_OFFSET). */
static inline uint64_t fm_fnv1a(uint64_t h, const void *data, size_t len) {
  const unsigned char *p = (const unsigned char *)data;
  for (size_t i = 0; i < len; i++) {
    h ^= p[i];
    h *= FM_FNV_PRIME;
  }
  return h;
}

/* splitmix64 generator, for the random pattern's shuffle. */
static inline uint64_t fm_next(uint64_t *state) {
  *state += FM_GOLDEN;
  return fm_mix(*state);
}

enum fm_pattern_kind { FM_SEQ, FM_REVERSE, FM_STRIDE, FM_RANDOM, FM_ZIPF };

/* The skew of zipf:SEED (YCSB's default). */
#define FM_ZIPF_THETA 0.99

/* Fills order[0..n) with the page indexes in touch order.
 * stride:K visits 0, K, 2K, ... then 1, 1+K, ...; random:S is a Fisher-Yates shuffle of 0..n-1
 * driven by fm_next from state S, swapping i with fm_next() % (i + 1) for i from n-1 down to 1.
 * zipf:S is n draws (with repeats) from a zipf(0.99) over n ranks, scattered: first random:S's
 * shuffle gives perm (rank -> page), then, continuing the same state, each draw takes
 * u = (fm_next() >> 11) * 2^-53 and the first rank k whose cumulative weight sum_{i<=k} (i+1)^-0.99
 * exceeds u * (total weight). Returns -1 (errno ENOMEM) when it cannot allocate, else 0. */
static inline int fm_order(enum fm_pattern_kind kind, uint64_t arg, uint64_t n, uint64_t *order) {
  uint64_t k = 0;
  switch (kind) {
  case FM_SEQ:
    for (uint64_t i = 0; i < n; i++) order[i] = i;
    break;
  case FM_REVERSE:
    for (uint64_t i = 0; i < n; i++) order[i] = n - 1 - i;
    break;
  case FM_STRIDE:
    for (uint64_t s = 0; s < arg && s < n; s++)
      for (uint64_t p = s; p < n; p += arg) order[k++] = p;
    break;
  case FM_RANDOM:
  case FM_ZIPF: {
    uint64_t state = arg;
    uint64_t *perm = order;
    double *cdf = NULL;
    if (kind == FM_ZIPF && n > 0) {
      perm = malloc(n * sizeof *perm);
      cdf = malloc(n * sizeof *cdf);
      if (!perm || !cdf) {
        free(perm);
        free(cdf);
        errno = ENOMEM;
        return -1;
      }
    }
    for (uint64_t i = 0; i < n; i++) perm[i] = i;
    for (uint64_t i = n; i-- > 1;) {
      uint64_t j = fm_next(&state) % (i + 1);
      uint64_t t = perm[i];
      perm[i] = perm[j];
      perm[j] = t;
    }
    if (kind == FM_ZIPF && n > 0) {
      double sum = 0;
      for (uint64_t i = 0; i < n; i++) cdf[i] = sum += pow((double)(i + 1), -FM_ZIPF_THETA);
      for (uint64_t d = 0; d < n; d++) {
        double target = (double)(fm_next(&state) >> 11) * 0x1p-53 * sum;
        uint64_t lo = 0, hi = n - 1; /* first k with cdf[k] > target; the last rank if none */
        while (lo < hi) {
          uint64_t mid = lo + (hi - lo) / 2;
          if (cdf[mid] > target) hi = mid;
          else lo = mid + 1;
        }
        order[d] = perm[lo];
      }
      free(perm);
      free(cdf);
    }
    break;
  }
  }
  return 0;
}

/* Parses seq|reverse|stride:K|random:SEED|zipf:SEED; returns 0, or -1 when it is none of them. */
static inline int fm_parse_pattern(const char *s, enum fm_pattern_kind *kind, uint64_t *arg) {
  char *end;
  *arg = 0;
  if (!strcmp(s, "seq")) *kind = FM_SEQ;
  else if (!strcmp(s, "reverse")) *kind = FM_REVERSE;
  else if (!strncmp(s, "stride:", 7) || !strncmp(s, "random:", 7)) {
    *kind = s[0] == 's' ? FM_STRIDE : FM_RANDOM;
    if (s[7] < '0' || s[7] > '9') return -1;
    errno = 0;
    *arg = strtoull(s + 7, &end, 10);
    if (errno || *end != '\0' || (*kind == FM_STRIDE && *arg == 0)) return -1;
  } else if (!strncmp(s, "zipf:", 5)) {
    *kind = FM_ZIPF;
    if (s[5] < '0' || s[5] > '9') return -1;
    errno = 0;
    *arg = strtoull(s + 5, &end, 10);
    if (errno || *end != '\0' || (*kind == FM_STRIDE && *arg == 0)) return -1;
  } else return -1;
  return 0;
}

#endif
