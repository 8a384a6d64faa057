/* fmattach: the test workload that attaches a region through libfarmem (the real application path)
 * and touches its pages with fmwork's per-page pattern (fmwork_pattern.h), one JSON line per op.
 *
 * fmattach --region NAME --pages N [--op write|verify|read[,OP...]] [--seed S]
 *          [--pattern seq|reverse|stride:K|random:SEED|zipf:SEED] [--first P] [--socket PATH] [--pause] [--no-detach]
 *          [--local] [--reshuffle] [--timing] [--no-checksum] [--pace-us U]
 *
 * --socket sets FARMEM_ATTACH_SOCKET. --pause: before each op print {"ready":"OP"} and wait for a
 * line on stdin (tests use it to kill or restart the daemon at a known point). Pages are
 * [P, P+N) of the region (--first, default 0: processes sharing a region touch disjoint sets);
 * the pattern orders them and the page index in the region seeds each page's bytes. --local: the same
 * run on plain anonymous memory, no farmemd and no uffd (the all-local baseline of benchmarks).
 * --reshuffle: op i (from 0) of random:S uses seed S+i, so passes do not repeat one order
 * (a repeated order is a cyclic scan: every access misses under LRU or CLOCK, whatever the budget).
 * zipf:S keeps its seed: a new seed would move the hot pages.
 * --pace-us U: sleep U µs after each page, a process that does work between pages (tests use it to
 * check what the daemon does when it is not outrun by a scan at memory speed; it yields the CPU,
 * which matters on a 2-core machine that also runs the daemon and the memory server).
 * Benchmark options: --timing times each page's first access (the fault) and adds
 * p50_ns/p99_ns/max_ns; --no-checksum skips the per-page FNV hash (~5 µs a page, which would hide
 * the fault path's cost; checksum is then 0).
 *
 * Exit: 0 ok, 1 verify mismatches, 2 usage or attach error (message on stderr). */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "farmem.h"
#include "fmwork_pattern.h"
#define FM_PROG "fmattach"
#include "fmwork_util.h"

int main(int argc, char **argv) {
  const char *region = NULL, *ops = "read", *pattern = "seq";
  uint64_t pages = 0, seed = 0, first = 0, pace_us = 0;
  int pause_ = 0, detach = 1, local = 0, reshuffle = 0, timing = 0, checksum = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED() do { if (!v) die("missing value for %s", a); i++; } while (0)
    if (!strcmp(a, "--region")) { NEED(); region = v; }
    else if (!strcmp(a, "--pages")) { NEED(); pages = parse_u64("--pages", v); }
    else if (!strcmp(a, "--op")) { NEED(); ops = v; }
    else if (!strcmp(a, "--seed")) { NEED(); seed = parse_u64("--seed", v); }
    else if (!strcmp(a, "--pattern")) { NEED(); pattern = v; }
    else if (!strcmp(a, "--first")) { NEED(); first = parse_u64("--first", v); }
    else if (!strcmp(a, "--socket")) { NEED(); setenv("FARMEM_ATTACH_SOCKET", v, 1); }
    else if (!strcmp(a, "--pause")) pause_ = 1;
    else if (!strcmp(a, "--no-detach")) detach = 0;
    else if (!strcmp(a, "--local")) local = 1;
    else if (!strcmp(a, "--reshuffle")) reshuffle = 1;
    else if (!strcmp(a, "--timing")) timing = 1;
    else if (!strcmp(a, "--no-checksum")) checksum = 0;
    else if (!strcmp(a, "--pace-us")) { NEED(); pace_us = parse_u64("--pace-us", v); }
    else die("unknown argument \"%s\"", a);
#undef NEED
  }
  if (!region) die("--region NAME is required");
  if (pages == 0) die("--pages N (N > 0) is required");
  enum fm_pattern_kind kind;
  uint64_t parg;
  if (fm_parse_pattern(pattern, &kind, &parg) < 0) die("expected seq|reverse|stride:K|random:SEED|zipf:SEED for --pattern but received \"%s\"", pattern);
  char *oplist = strdup(ops);
  for (char *save = NULL, *op = strtok_r(oplist, ",", &save); op; op = strtok_r(NULL, ",", &save))
    if (strcmp(op, "read") && strcmp(op, "write") && strcmp(op, "verify")) die("expected read|write|verify for --op but received \"%s\"", op);

  size_t len = (size_t)(first + pages) * 4096;
  /* --local: pre-faulted memory, so the baseline is all-local memory, not first-touch faults. */
  char *mem = local ? mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0) : farmem_attach(region, &len);
  if (local && mem == MAP_FAILED) die("mmap %zu bytes: %s", len, strerror(errno));
  if (local) memset(mem, 1, len);
  if (!mem) {
    int e = errno;
    die("%s (errno %s)", farmem_strerror(), strerrorname_np(e) ? strerrorname_np(e) : "?");
  }
  /* The page size is not returned by farmem_attach: fmattach assumes the machine's, which is the
   * default region page size; a larger one only makes each "page" span several pages. */
  uint64_t page_size = 4096;
  if ((first + pages) * page_size > len) die("--first %" PRIu64 " --pages %" PRIu64 " exceeds the region (%zu bytes)", first, pages, len);
  uint64_t *order = malloc(pages * sizeof *order);
  uint64_t *lat = timing ? malloc(pages * sizeof *lat) : NULL;
  if (!order || (timing && !lat)) die("out of memory");
  if (fm_order(kind, parg, pages, order) < 0) die("out of memory");

  int worst = 0, opi = 0;
  strcpy(oplist, ops);
  for (char *save = NULL, *op = strtok_r(oplist, ",", &save); op; op = strtok_r(NULL, ",", &save)) {
    if (pause_) {
      printf("{\"ready\":\"%s\"}\n", op);
      fflush(stdout);
      char line[64];
      if (!fgets(line, sizeof line, stdin)) die("stdin closed while paused before %s", op);
    }
    if (reshuffle && opi > 0 && kind == FM_RANDOM && fm_order(kind, parg + opi, pages, order) < 0) die("out of memory");
    opi++;
    int opk = !strcmp(op, "read") ? 0 : !strcmp(op, "write") ? 1 : 2;
    uint64_t words = page_size / 8, hash = checksum ? FM_FNV_OFFSET : 0, mismatches = 0;
    volatile uint64_t sink = 0;
    uint64_t t0 = now_ns();
    for (uint64_t k = 0; k < pages; k++) {
      uint64_t p = first + order[k];
      volatile uint64_t *w = (volatile uint64_t *)(mem + p * page_size);
      /* The first access is the one that faults; --timing times only it. */
      uint64_t at = timing ? now_ns() : 0;
      uint64_t w0 = 0;
      if (opk == 1) w[0] = fm_word(seed, p, 0);
      else w0 = w[0];
      if (timing) lat[k] = now_ns() - at;
      if (opk == 0) {
        uint64_t sum = w0;
        for (uint64_t i = 1; i < words; i++) sum += w[i];
        sink += sum;
      } else if (opk == 1) {
        for (uint64_t i = 1; i < words; i++) w[i] = fm_word(seed, p, i);
      } else {
        int bad = w0 != fm_word(seed, p, 0);
        for (uint64_t i = 1; i < words && !bad; i++) bad = w[i] != fm_word(seed, p, i);
        mismatches += bad;
      }
      if (checksum) hash = fm_fnv1a(hash, (const void *)w, page_size);
      if (pace_us) {
        struct timespec ts = { (time_t)(pace_us / 1000000), (long)(pace_us % 1000000) * 1000 };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {}
      }
    }
    uint64_t elapsed = now_ns() - t0;
    (void)sink;
    printf("{\"pages\":%" PRIu64 ",\"op\":\"%s\",\"checksum\":\"%016" PRIx64 "\",\"mismatches\":%" PRIu64 ",\"ns\":%" PRIu64 ",\"region_bytes\":%zu",
           pages, op, hash, mismatches, elapsed, len);
    if (timing) {
      qsort(lat, pages, sizeof *lat, cmp_u64);
      printf(",\"p50_ns\":%" PRIu64 ",\"p99_ns\":%" PRIu64 ",\"max_ns\":%" PRIu64, lat[pages / 2], lat[(pages * 99) / 100], lat[pages - 1]);
    }
    printf("}\n");
    fflush(stdout);
    if (mismatches) worst = 1;
  }
  if (!local && detach && farmem_detach(mem) < 0) die("%s", farmem_strerror());
  return worst;
}
