/* Prints fmwork_pattern.h's values so test/helpers/pattern.ts can be checked against the C code.
 *   fmpattern words SEED PAGE COUNT        first COUNT words of the page, hex, one a line
 *   fmpattern order PATTERN N              touch order, one index a line
 *   fmpattern checksum SEED PATTERN N PAGE_SIZE REPEAT
 *                                          fmwork --op write's checksum, hex */
#include <inttypes.h>
#include <stdio.h>

#include "fmwork_pattern.h"

static uint64_t num(const char *s) { return strtoull(s, NULL, 0); }

int main(int argc, char **argv) {
  if (argc == 5 && !strcmp(argv[1], "words")) {
    for (uint64_t i = 0; i < num(argv[4]); i++) printf("%016" PRIx64 "\n", fm_word(num(argv[2]), num(argv[3]), i));
    return 0;
  }
  enum fm_pattern_kind kind;
  uint64_t arg;
  if (argc == 4 && !strcmp(argv[1], "order")) {
    if (fm_parse_pattern(argv[2], &kind, &arg) < 0) return 2;
    uint64_t n = num(argv[3]), *order = malloc(n * sizeof *order);
    fm_order(kind, arg, n, order);
    for (uint64_t i = 0; i < n; i++) printf("%" PRIu64 "\n", order[i]);
    return 0;
  }
  if (argc == 7 && !strcmp(argv[1], "checksum")) {
    uint64_t seed = num(argv[2]), n = num(argv[4]), ps = num(argv[5]), repeat = num(argv[6]);
    if (fm_parse_pattern(argv[3], &kind, &arg) < 0) return 2;
    uint64_t *order = malloc(n * sizeof *order), *page = malloc(ps), h = FM_FNV_OFFSET;
    fm_order(kind, arg, n, order);
    for (uint64_t r = 0; r < repeat; r++)
      for (uint64_t k = 0; k < n; k++) {
        for (uint64_t i = 0; i < ps / 8; i++) page[i] = fm_word(seed, order[k], i);
        h = fm_fnv1a(h, page, ps);
      }
    printf("%016" PRIx64 "\n", h);
    return 0;
  }
  fprintf(stderr, "usage: fmpattern words SEED PAGE COUNT | order PATTERN N | checksum SEED PATTERN N PAGE_SIZE REPEAT\n");
  return 2;
}
