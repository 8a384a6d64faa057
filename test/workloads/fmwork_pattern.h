/* What fmwork writes and checks, and the order it touches pages in. test/helpers/pattern.ts computes
 * the same values in TypeScript, so tests and benchmarks can predict fmwork's bytes and checksum. */
#ifndef FMWORK_PATTERN_H
#define FMWORK_PATTERN_H
#include <stddef.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
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

enum fm_pattern_kind { FM_SEQ, FM_REVERSE, FM_STRIDE, FM_RANDOM };

/* Fills order[0..n) with the page indexes in touch order.
 * stride:K visits 0, K, 2K, ... then 1, 1+K, ...; random:S is a Fisher-Yates shuffle of 0..n-1
 * driven by fm_next from state S, swapping i with fm_next() % (i + 1) for i from n-1 down to 1. */
static inline void fm_order(enum fm_pattern_kind kind, uint64_t arg, uint64_t n, uint64_t *order) {
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
  case FM_RANDOM: {
    uint64_t state = arg;
    for (uint64_t i = 0; i < n; i++) order[i] = i;
    for (uint64_t i = n; i-- > 1;) {
      uint64_t j = fm_next(&state) % (i + 1);
      uint64_t t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    break;
  }
  }
}

/* Parses seq|reverse|stride:K|random:SEED; returns 0, or -1 when it is none of them. */
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
  } else return -1;
  return 0;
}

#endif
