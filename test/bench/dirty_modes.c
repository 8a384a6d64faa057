// Cost of the two dirty-tracking modes, two processes like farmem: the *app* maps a memfd MAP_SHARED,
// registers it with its own uffd and sends the uffd to the *handler* over SCM_RIGHTS.
//   sync:  pages installed with UFFDIO_COPY_MODE_WP; each first write raises a WP fault that the
//          handler's thread resolves with UFFDIO_WRITEPROTECT mode 0 (marking the page dirty).
//   async: the uffd has UFFD_FEATURE_WP_ASYNC; first writes only clear the PTE's uffd-wp bit in
//          the kernel; the handler finds them with PAGEMAP_SCAN (PAGE_IS_WRITTEN, PM_SCAN_WP_MATCHING),
//          which re-protects them in the same walk.
// For 1%, 10%, 100% of a 64 MiB region written (random page order) it prints one JSON line per
// run: write cost per page, the same writes again to now-writable pages (the baseline), the
// re-arm cost (sync: UFFDIO_WRITEPROTECT of the range; async: the scan), the scan cost on a clean
// range, and whether the tracked set is exactly the written set (a missed page would be lost data).
// Usage: dirty_modes [--mib N] [--reps N]   (root: uffd with kernel faults, pagemap of another process)
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef PAGEMAP_SCAN
#define PAGE_IS_WRITTEN (1 << 1)
struct page_region { uint64_t start, end, categories; };
#define PM_SCAN_WP_MATCHING (1 << 0)
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
struct pm_scan_arg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages, category_inverted, category_mask,
      category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

#define PAGE 4096UL
#define DIE(...) do { fprintf(stderr, "dirty_modes: " __VA_ARGS__); fprintf(stderr, ": %s\n", strerror(errno)); exit(2); } while (0)

static size_t npages;

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static void pin(int cpu) {
  cpu_set_t s;
  CPU_ZERO(&s);
  CPU_SET(cpu, &s);
  if (sched_setaffinity(0, sizeof s, &s) != 0) DIE("sched_setaffinity %d", cpu);
}

// The same pseudo-random page order in both processes (xorshift-driven Fisher-Yates).
static void permutation(uint32_t* p, size_t n, uint64_t seed) {
  for (size_t i = 0; i < n; i++) p[i] = (uint32_t)i;
  uint64_t x = seed | 1;
  for (size_t i = n - 1; i > 0; i--) {
    x ^= x << 13; x ^= x >> 7; x ^= x << 17;
    size_t j = x % (i + 1);
    uint32_t t = p[i]; p[i] = p[j]; p[j] = t;
  }
}

static void send_fd(int sock, int fd, const void* buf, size_t len) {
  char c[CMSG_SPACE(sizeof(int))] = {0};
  struct iovec iov = {(void*)buf, len};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c, .msg_controllen = sizeof c};
  struct cmsghdr* h = CMSG_FIRSTHDR(&m);
  h->cmsg_level = SOL_SOCKET; h->cmsg_type = SCM_RIGHTS; h->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(h), &fd, sizeof fd);
  if (sendmsg(sock, &m, 0) != (ssize_t)len) DIE("sendmsg");
}

static int recv_fd(int sock, void* buf, size_t len) {
  char c[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {buf, len};
  struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = c, .msg_controllen = sizeof c};
  if (recvmsg(sock, &m, 0) != (ssize_t)len) DIE("recvmsg");
  struct cmsghdr* h = CMSG_FIRSTHDR(&m);
  if (!h || h->cmsg_type != SCM_RIGHTS) { errno = EPROTO; DIE("no fd received"); }
  int fd;
  memcpy(&fd, CMSG_DATA(h), sizeof fd);
  return fd;
}

static void xwrite(int fd, const void* b, size_t n) { if (write(fd, b, n) != (ssize_t)n) DIE("write"); }
static void xread(int fd, void* b, size_t n) { if (read(fd, b, n) != (ssize_t)n) DIE("read"); }

struct hello { uint64_t addr; int32_t pid; };
struct go { uint64_t count; uint64_t seed; };
struct done { uint64_t write_ns, rewrite_ns; };

// ---- the application: maps the region, registers it, writes `count` pages when told. ----
static void app(int sock, int async, int cpu) {
  pin(cpu);
  size_t len = npages * PAGE;
  int mfd = memfd_create("dirty_modes", MFD_CLOEXEC);
  if (mfd < 0 || ftruncate(mfd, len) != 0) DIE("memfd");
  volatile char* region = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
  if (region == MAP_FAILED) DIE("mmap");
  int uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
  if (uffd < 0) DIE("userfaultfd");
  struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_WP_HUGETLBFS_SHMEM | (async ? UFFD_FEATURE_WP_ASYNC : 0)};
  if (ioctl(uffd, UFFDIO_API, &api) != 0) DIE("UFFDIO_API");
  struct uffdio_register reg = {.range = {(uint64_t)region, len}, .mode = UFFDIO_REGISTER_MODE_MISSING | UFFDIO_REGISTER_MODE_WP};
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) != 0) DIE("UFFDIO_REGISTER");
  struct hello h = {(uint64_t)region, getpid()};
  send_fd(sock, uffd, &h, sizeof h);
  uint32_t* perm = malloc(npages * sizeof *perm);
  struct go g;
  while (read(sock, &g, sizeof g) == sizeof g) {
    permutation(perm, npages, g.seed);
    struct done d;
    uint64_t t0 = now_ns();
    for (size_t i = 0; i < g.count; i++) region[(size_t)perm[i] * PAGE] = (char)(g.seed + 1);
    uint64_t t1 = now_ns();
    // Baseline: the same stores again, to pages that are writable now (TLB and cache effects alike).
    for (size_t i = 0; i < g.count; i++) region[(size_t)perm[i] * PAGE] = (char)(g.seed + 2);
    uint64_t t2 = now_ns();
    d.write_ns = t1 - t0;
    d.rewrite_ns = t2 - t1;
    xwrite(sock, &d, sizeof d);
  }
  exit(0);
}

// ---- the handler (sync mode): resolves WP faults, remembers which pages were written. ----
struct wp_thread { int uffd; uint64_t base; uint8_t* dirty; int cpu; };

static void* wp_loop(void* arg) {
  struct wp_thread* t = arg;
  pin(t->cpu);
  struct uffd_msg msg;
  for (;;) {
    ssize_t n = read(t->uffd, &msg, sizeof msg);  // plain blocking read: the cheapest wake-up (KERNEL.md)
    if (n != sizeof msg) { if (errno == EINTR) continue; DIE("read uffd"); }
    if (msg.event != UFFD_EVENT_PAGEFAULT || !(msg.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)) {
      errno = EPROTO; DIE("unexpected uffd event %u flags %llx", msg.event, (unsigned long long)msg.arg.pagefault.flags);
    }
    uint64_t a = msg.arg.pagefault.address & ~(PAGE - 1);
    t->dirty[(a - t->base) / PAGE] = 1;
    struct uffdio_writeprotect w = {.range = {a, PAGE}, .mode = 0};
    if (ioctl(t->uffd, UFFDIO_WRITEPROTECT, &w) != 0) DIE("UFFDIO_WRITEPROTECT");
  }
  return NULL;
}

static void install_wp(int uffd, uint64_t base, const char* src) {
  const size_t batch = 512;
  for (size_t p = 0; p < npages; p += batch) {
    size_t n = npages - p < batch ? npages - p : batch;
    struct uffdio_copy c = {.dst = base + p * PAGE, .src = (uint64_t)src, .len = n * PAGE, .mode = UFFDIO_COPY_MODE_WP};
    if (ioctl(uffd, UFFDIO_COPY, &c) != 0) DIE("UFFDIO_COPY");
  }
}

// PAGEMAP_SCAN for WRITTEN pages over the region; marks them in `found`; returns the pages found.
static size_t scan_written(int pm, uint64_t base, int wp, uint8_t* found) {
  static struct page_region vec[512];
  size_t pages = 0;
  uint64_t pos = base, end = base + npages * PAGE;
  while (pos < end) {
    struct pm_scan_arg a = {.size = sizeof a, .flags = wp ? PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC : 0, .start = pos, .end = end,
                            .vec = (uint64_t)vec, .vec_len = 512, .category_mask = PAGE_IS_WRITTEN, .return_mask = PAGE_IS_WRITTEN};
    long n = ioctl(pm, PAGEMAP_SCAN, &a);
    if (n < 0) DIE("PAGEMAP_SCAN");
    for (long i = 0; i < n; i++)
      for (uint64_t x = vec[i].start; x < vec[i].end; x += PAGE) { if (found) found[(x - base) / PAGE] = 1; pages++; }
    if (a.walk_end <= pos) break;
    pos = a.walk_end;
  }
  return pages;
}

// Exactly the written pages tracked? Returns the number of pages where tracking and truth differ.
static size_t mismatches(const uint8_t* tracked, const uint32_t* perm, size_t count) {
  uint8_t* truth = calloc(npages, 1);
  for (size_t i = 0; i < count; i++) truth[perm[i]] = 1;
  size_t bad = 0;
  for (size_t i = 0; i < npages; i++) bad += truth[i] != tracked[i];
  free(truth);
  return bad;
}

static int cmp_u64(const void* a, const void* b) { uint64_t x = *(const uint64_t*)a, y = *(const uint64_t*)b; return x < y ? -1 : x > y; }
static uint64_t median(uint64_t* v, int n) { qsort(v, n, sizeof *v, cmp_u64); return v[n / 2]; }

static void run(int async, int app_cpu, int handler_cpu, double fraction, int reps) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) DIE("socketpair");
  pid_t pid = fork();
  if (pid < 0) DIE("fork");
  if (pid == 0) { close(sv[0]); app(sv[1], async, app_cpu); }
  close(sv[1]);
  pin(handler_cpu);
  struct hello h;
  int uffd = recv_fd(sv[0], &h, sizeof h);
  char path[64];
  snprintf(path, sizeof path, "/proc/%d/pagemap", h.pid);
  int pm = async ? open(path, O_RDONLY | O_CLOEXEC) : -1;
  if (async && pm < 0) DIE("open %s", path);
  char* src = aligned_alloc(PAGE, 512 * PAGE);
  memset(src, 0x5a, 512 * PAGE);
  install_wp(uffd, h.addr, src);

  uint8_t* tracked = calloc(npages, 1);
  uint32_t* perm = malloc(npages * sizeof *perm);
  struct wp_thread t = {uffd, h.addr, tracked, handler_cpu};
  pthread_t th;
  if (!async && pthread_create(&th, NULL, wp_loop, &t) != 0) DIE("pthread_create");
  size_t count = (size_t)(fraction * npages + 0.5);
  uint64_t w[16], rw[16], rearm[16], clean[16];
  size_t bad = 0, extra_after = 0;
  for (int r = 0; r < reps; r++) {
    memset(tracked, 0, npages);
    struct go g = {count, 0x9e3779b97f4a7c15ull * (r + 1)};
    permutation(perm, npages, g.seed);
    xwrite(sv[0], &g, sizeof g);
    struct done d;
    xread(sv[0], &d, sizeof d);
    w[r] = d.write_ns;
    rw[r] = d.rewrite_ns;
    uint64_t t0 = now_ns();
    if (async) {
      scan_written(pm, h.addr, 1, tracked);  // find the written pages and re-protect them, one walk
    } else {
      struct uffdio_writeprotect wp = {.range = {h.addr, npages * PAGE}, .mode = UFFDIO_WRITEPROTECT_MODE_WP};
      if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) != 0) DIE("UFFDIO_WRITEPROTECT range");
    }
    uint64_t t1 = now_ns();
    rearm[r] = t1 - t0;
    bad += mismatches(tracked, perm, count);
    if (async) {
      uint64_t t2 = now_ns();
      extra_after += scan_written(pm, h.addr, 1, NULL);  // nothing written since: must find nothing
      clean[r] = now_ns() - t2;
    } else {
      clean[r] = 0;
    }
  }
  close(sv[0]);
  int st;
  waitpid(pid, &st, 0);
  if (!async) { pthread_cancel(th); pthread_join(th, NULL); }
  double per = count ? 1.0 / count : 0;
  printf("{\"mode\":\"%s\",\"placement\":\"%s\",\"mib\":%zu,\"fraction\":%g,\"pages\":%zu,\"reps\":%d,"
         "\"writeNsPerPage\":%.1f,\"baselineNsPerPage\":%.1f,\"rearmNs\":%llu,\"rearmNsPerPage\":%.1f,\"cleanScanNs\":%llu,"
         "\"totalNsPerPage\":%.1f,\"mismatches\":%zu,\"foundAfterRearm\":%zu}\n",
         async ? "async" : "sync", app_cpu == handler_cpu ? "same-cpu" : "other-cpu", npages * PAGE >> 20, fraction, count, reps,
         median(w, reps) * per, median(rw, reps) * per, (unsigned long long)median(rearm, reps), median(rearm, reps) * per,
         (unsigned long long)(async ? median(clean, reps) : 0), (median(w, reps) + median(rearm, reps)) * per, bad, extra_after);
  fflush(stdout);
  close(uffd);
  if (pm >= 0) close(pm);
  free(src); free(tracked); free(perm);
}

int main(int argc, char** argv) {
  size_t mib = 64;
  int reps = 3;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--mib") && i + 1 < argc) mib = strtoul(argv[++i], NULL, 10);
    else if (!strcmp(argv[i], "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
    else { fprintf(stderr, "usage: dirty_modes [--mib N] [--reps N]\n"); return 2; }
  }
  if (mib == 0 || reps < 1 || reps > 16) { fprintf(stderr, "dirty_modes: --mib > 0, 1 <= --reps <= 16\n"); return 2; }
  npages = mib * 1024 * 1024 / PAGE;
  long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  const double fractions[] = {0.01, 0.10, 1.0};
  for (int async = 0; async <= 1; async++)
    for (int placement = 0; placement < (ncpu > 1 ? 2 : 1); placement++)
      for (int f = 0; f < 3; f++) run(async, 0, placement, fractions[f], reps);
  return 0;
}
