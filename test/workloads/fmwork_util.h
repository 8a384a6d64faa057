/* Small helpers shared by the workload programs (fmwork, fmattach). Define FM_PROG, the program name
 * that prefixes error messages, before including this header. */
#pragma once

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#ifndef FM_PROG
#error "define FM_PROG (the program name for error messages) before including fmwork_util.h"
#endif

/* Prints "FM_PROG: message" and exits 2 (a usage or setup error). */
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs(FM_PROG ": ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(2);
}

static uint64_t parse_u64(const char *what, const char *s) {
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 0);
  if (errno || *s == '\0' || *end != '\0' || *s == '-') die("expected an unsigned integer for %s but received \"%s\"", what, s);
  return v;
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

/* qsort comparator for uint64_t. */
static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}
