// An application for the dirty-tracking tests (test/native/pagemap.test.ts): maps a memfd MAP_SHARED,
// registers it with its own uffd, and does what the test says on stdin, one command a line:
//   copywp P C    install page P filled with byte C write-protected (UFFDIO_COPY_MODE_WP)
//   copy P C      install page P filled with byte C (UFFDIO_COPY), waking the faulting writer
//   write P C     a writer thread fills page P with byte C; prints "wrote P" when the stores are done
//   writen P N S C  the writer fills pages P, P+S, ... (N pages) with C; prints "wrote P"
//   read P        prints "read P <first byte> <last byte>"
//   resolve P     UFFDIO_WRITEPROTECT mode 0 on page P (wakes a writer blocked in a WP fault)
//   wake P        UFFDIO_WAKE page P
//   punch P       fallocate(PUNCH_HOLE) page P of the memfd (what the evictor does)
// Modes: "async" API's the uffd with WP_ASYNC (+WP_HUGETLBFS_SHMEM, WP_UNPOPULATED) and registers WP
// only; "sync" registers MISSING|WP and a thread reports each fault as "wp-fault P" / "missing-fault P".
// Prints "ready <hex address> <memfd fd> <pages>" first. Bytes are decimal numbers.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

#define PAGE 4096UL

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;
static int uffd, mfd;
static char* region;
static size_t npages;

static void say(const char* fmt, ...) {
  pthread_mutex_lock(&out_lock);
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  putchar('\n');
  fflush(stdout);
  pthread_mutex_unlock(&out_lock);
}

static void die(const char* what) {
  say("error %s %s", what, strerror(errno));
  exit(2);
}

static void* fault_loop(void* arg) {
  (void)arg;
  struct uffd_msg m;
  for (;;) {
    ssize_t n = read(uffd, &m, sizeof m);
    if (n != sizeof m) { if (errno == EINTR) continue; die("read-uffd"); }
    if (m.event != UFFD_EVENT_PAGEFAULT) { say("event %u", m.event); continue; }
    size_t p = (m.arg.pagefault.address - (uint64_t)region) / PAGE;
    say("%s-fault %zu", (m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP) ? "wp" : "missing", p);
  }
  return NULL;
}

struct job { size_t first, n, step; int byte; };

static void* writer(void* arg) {
  struct job* j = arg;
  for (size_t i = 0; i < j->n; i++) memset(region + (j->first + i * j->step) * PAGE, j->byte, PAGE);
  say("wrote %zu", j->first);
  free(j);
  return NULL;
}

static void start_writer(size_t first, size_t n, size_t step, int byte) {
  struct job* j = malloc(sizeof *j);
  *j = (struct job){first, n, step, byte};
  pthread_t t;
  if (pthread_create(&t, NULL, writer, j) != 0) die("pthread_create");
  pthread_detach(t);
}

static void copy_page(size_t p, int byte, int wp) {
  static char buf[PAGE] __attribute__((aligned(4096)));
  memset(buf, byte, PAGE);
  struct uffdio_copy c = {.dst = (uint64_t)region + p * PAGE, .src = (uint64_t)buf, .len = PAGE, .mode = wp ? UFFDIO_COPY_MODE_WP : 0};
  if (ioctl(uffd, UFFDIO_COPY, &c) != 0) die("UFFDIO_COPY");
}

int main(int argc, char** argv) {
  if (argc != 3 || (strcmp(argv[1], "sync") && strcmp(argv[1], "async"))) {
    fprintf(stderr, "usage: dirty_child sync|async PAGES\n");
    return 2;
  }
  int async = !strcmp(argv[1], "async");
  npages = strtoul(argv[2], NULL, 10);
  mfd = memfd_create("dirty_child", 0);
  if (mfd < 0 || ftruncate(mfd, npages * PAGE) != 0) die("memfd");
  region = mmap(NULL, npages * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  if (region == MAP_FAILED) die("mmap");
  uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
  if (uffd < 0) die("userfaultfd");
  struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM};
  if (async) api.features |= UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED;
  if (ioctl(uffd, UFFDIO_API, &api) != 0) die("UFFDIO_API");
  struct uffdio_register reg = {.range = {(uint64_t)region, npages * PAGE},
                                .mode = UFFDIO_REGISTER_MODE_WP | (async ? 0 : UFFDIO_REGISTER_MODE_MISSING)};
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) die("UFFDIO_REGISTER");
  if (!async) {
    pthread_t t;
    if (pthread_create(&t, NULL, fault_loop, NULL) != 0) die("pthread_create");
    pthread_detach(t);
  }
  say("ready %llx %d %zu", (unsigned long long)(uintptr_t)region, mfd, npages);

  char line[256], cmd[32];
  while (fgets(line, sizeof line, stdin)) {
    size_t p = 0, n = 0, s = 0;
    int c = 0;
    if (sscanf(line, "%31s %zu", cmd, &p) < 2 || p >= npages) { say("bad %s", line); continue; }
    if (!strcmp(cmd, "copywp") && sscanf(line, "%*s %*u %d", &c) == 1) { copy_page(p, c, 1); say("copied %zu", p); }
    else if (!strcmp(cmd, "copy") && sscanf(line, "%*s %*u %d", &c) == 1) { copy_page(p, c, 0); say("copied %zu", p); }
    else if (!strcmp(cmd, "write") && sscanf(line, "%*s %*u %d", &c) == 1) start_writer(p, 1, 1, c);
    else if (!strcmp(cmd, "writen") && sscanf(line, "%*s %*u %zu %zu %d", &n, &s, &c) == 3 && s > 0 && p + (n - 1) * s < npages) start_writer(p, n, s, c);
    else if (!strcmp(cmd, "read")) say("read %zu %d %d", p, (unsigned char)region[p * PAGE], (unsigned char)region[p * PAGE + PAGE - 1]);
    else if (!strcmp(cmd, "resolve") || !strcmp(cmd, "wake")) {
      struct uffdio_writeprotect w = {.range = {(uint64_t)region + p * PAGE, PAGE}, .mode = 0};
      if (!strcmp(cmd, "resolve") ? ioctl(uffd, UFFDIO_WRITEPROTECT, &w) : ioctl(uffd, UFFDIO_WAKE, &w.range)) die(cmd);
      say("%s %zu", strcmp(cmd, "wake") ? "resolved" : "woken", p);
    } else if (!strcmp(cmd, "punch")) {
      if (fallocate(mfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, p * PAGE, PAGE) != 0) die("punch");
      say("punched %zu", p);
    } else say("bad %s", line);
  }
  return 0;
}
