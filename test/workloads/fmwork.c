/* fmwork: the test workload. Maps memory (anonymous, or a memfd it receives), registers it with its
 * own userfaultfd, hands that uffd to the test over a SOCK_SEQPACKET socket, waits for "go", then
 * touches every page in a pattern and prints one JSON line with a checksum.
 *
 * fmwork --socket PATH [--memfd] --pages N [--page-size 4096] [--pattern seq|reverse|stride:K|random:SEED|zipf:SEED]
 *        [--op read|write|verify] [--seed S] [--wp] [--cpu C] [--timing] [--repeat R]
 *
 * Protocol on PATH: [--memfd: receive one message carrying the memfd] -> send
 * {u64 addr, u64 len, u32 page_size, u32 pid} (24 bytes, little endian) with the uffd attached ->
 * receive a 1-byte "go". It keeps its own uffd open: closing it would drop the registration
 * (KERNEL.md), and a later access to a hole would silently read zeros.
 *
 * Exit: 0 ok, 1 verify mismatches, 2 usage or system error (message on stderr). */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "fmwork_pattern.h"
#define FM_PROG "fmwork"
#include "fmwork_util.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif

struct hello {
  uint64_t addr;
  uint64_t len;
  uint32_t page_size;
  uint32_t pid;
};

static int open_uffd(void) {
  int flags = O_CLOEXEC | O_NONBLOCK;
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev >= 0) {
    int fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
    close(dev);
    if (fd >= 0) return fd;
  }
  int fd = (int)syscall(SYS_userfaultfd, flags);
  if (fd < 0) die("userfaultfd: %s", strerror(errno));
  return fd;
}

/* Receives one message; returns the first fd attached (or -1). */
static int recv_msg(int sock, void *buf, size_t len, ssize_t *got) {
  char cbuf[CMSG_SPACE(sizeof(int) * 4)];
  struct iovec iov = {buf, len};
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof cbuf;
  ssize_t n;
  do n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) die("recvmsg: %s", strerror(errno));
  *got = n;
  int fd = -1;
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    int *fds = (int *)CMSG_DATA(c);
    for (int i = 0; i < nfds; i++) {
      if (fd < 0) fd = fds[i];
      else close(fds[i]);
    }
  }
  return fd;
}

int main(int argc, char **argv) {
  const char *sock_path = NULL, *pattern = "seq", *op = "read";
  int use_memfd = 0, wp = 0, timing = 0, cpu = -1;
  uint64_t pages = 0, page_size = 4096, seed = 0, repeat = 1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED() do { if (!v) die("missing value for %s", a); i++; } while (0)
    if (!strcmp(a, "--socket")) { NEED(); sock_path = v; }
    else if (!strcmp(a, "--memfd")) use_memfd = 1;
    else if (!strcmp(a, "--pages")) { NEED(); pages = parse_u64("--pages", v); }
    else if (!strcmp(a, "--page-size")) { NEED(); page_size = parse_u64("--page-size", v); }
    else if (!strcmp(a, "--pattern")) { NEED(); pattern = v; }
    else if (!strcmp(a, "--op")) { NEED(); op = v; }
    else if (!strcmp(a, "--seed")) { NEED(); seed = parse_u64("--seed", v); }
    else if (!strcmp(a, "--wp")) wp = 1;
    else if (!strcmp(a, "--cpu")) { NEED(); cpu = (int)parse_u64("--cpu", v); }
    else if (!strcmp(a, "--timing")) timing = 1;
    else if (!strcmp(a, "--repeat")) { NEED(); repeat = parse_u64("--repeat", v); }
    else die("unknown argument \"%s\"", a);
#undef NEED
  }
  if (!sock_path) die("--socket PATH is required");
  if (pages == 0) die("--pages N (N > 0) is required");
  long sys_page = sysconf(_SC_PAGESIZE);
  if (page_size == 0 || page_size % (uint64_t)sys_page != 0) die("expected a multiple of %ld for --page-size but received %" PRIu64, sys_page, page_size);
  if (repeat == 0) die("expected a positive integer for --repeat but received 0");
  int opk;
  if (!strcmp(op, "read")) opk = 0;
  else if (!strcmp(op, "write")) opk = 1;
  else if (!strcmp(op, "verify")) opk = 2;
  else die("expected read|write|verify for --op but received \"%s\"", op);
  enum fm_pattern_kind kind;
  uint64_t parg;
  if (fm_parse_pattern(pattern, &kind, &parg) < 0) die("expected seq|reverse|stride:K|random:SEED|zipf:SEED for --pattern but received \"%s\"", pattern);

  uint64_t len = pages * page_size;
  uint64_t *order = malloc(pages * sizeof *order);
  uint64_t *lat = timing ? malloc(pages * repeat * sizeof *lat) : NULL;
  if (!order || (timing && !lat)) die("out of memory");
  fm_order(kind, parg, pages, order);

  int sock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (sock < 0) die("socket: %s", strerror(errno));
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  if (strlen(sock_path) >= sizeof sa.sun_path) die("socket path too long: %s", sock_path);
  strcpy(sa.sun_path, sock_path);
  if (connect(sock, (struct sockaddr *)&sa, sizeof sa) < 0) die("connect %s: %s", sock_path, strerror(errno));

  char *mem;
  if (use_memfd) {
    char b[64];
    ssize_t n;
    int memfd = recv_msg(sock, b, sizeof b, &n);
    if (n == 0) die("socket closed before the memfd arrived");
    if (memfd < 0) die("expected a memfd in the first message but it carried no fd");
    mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
    if (mem == MAP_FAILED) die("mmap memfd: %s", strerror(errno));
    close(memfd);
  } else {
    mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (mem == MAP_FAILED) die("mmap: %s", strerror(errno));
  }

  int uffd = open_uffd();
  struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_THREAD_ID};
  if (wp) api.features |= UFFD_FEATURE_PAGEFAULT_FLAG_WP;
  if (wp && use_memfd) api.features |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
  if (ioctl(uffd, UFFDIO_API, &api) < 0) die("UFFDIO_API: %s", strerror(errno));
  struct uffdio_register reg = {.range = {(uint64_t)(uintptr_t)mem, len}, .mode = UFFDIO_REGISTER_MODE_MISSING};
  if (wp) reg.mode |= UFFDIO_REGISTER_MODE_WP;
  if (ioctl(uffd, UFFDIO_REGISTER, &reg) < 0) die("UFFDIO_REGISTER: %s", strerror(errno));

  struct hello h = {(uint64_t)(uintptr_t)mem, len, (uint32_t)page_size, (uint32_t)getpid()};
  char cbuf[CMSG_SPACE(sizeof(int))];
  memset(cbuf, 0, sizeof cbuf);
  struct iovec iov = {&h, sizeof h};
  struct msghdr msg = {0};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = sizeof cbuf;
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  memcpy(CMSG_DATA(c), &uffd, sizeof(int));
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) die("sendmsg: %s", strerror(errno));

  char go[8];
  ssize_t n;
  int stray = recv_msg(sock, go, sizeof go, &n);
  if (stray >= 0) close(stray);
  if (n == 0) die("socket closed before \"go\"");

  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) die("sched_setaffinity cpu %d: %s", cpu, strerror(errno));
  }

  uint64_t words = page_size / 8, hash = FM_FNV_OFFSET, mismatches = 0, nlat = 0;
  volatile uint64_t sink = 0;
  uint64_t t0 = now_ns();
  for (uint64_t r = 0; r < repeat; r++) {
    for (uint64_t k = 0; k < pages; k++) {
      uint64_t p = order[k];
      volatile uint64_t *w = (volatile uint64_t *)(mem + p * page_size);
      /* The first access is the one that faults; time only it. */
      uint64_t a = timing ? now_ns() : 0;
      uint64_t first = 0;
      if (opk == 1) w[0] = fm_word(seed, p, 0);
      else first = w[0];
      if (timing) lat[nlat++] = now_ns() - a;
      if (opk == 0) {
        uint64_t sum = first;
        for (uint64_t i = 1; i < words; i++) sum += w[i];
        sink += sum;
      } else if (opk == 1) {
        for (uint64_t i = 1; i < words; i++) w[i] = fm_word(seed, p, i);
      } else {
        int bad = first != fm_word(seed, p, 0);
        for (uint64_t i = 1; i < words && !bad; i++) bad = w[i] != fm_word(seed, p, i);
        mismatches += bad;
      }
      hash = fm_fnv1a(hash, (const void *)w, page_size);
    }
  }
  uint64_t total = now_ns() - t0;
  (void)sink;

  printf("{\"pages\":%" PRIu64 ",\"op\":\"%s\",\"checksum\":\"%016" PRIx64 "\",\"mismatches\":%" PRIu64 ",\"ns\":%" PRIu64,
         pages, op, hash, mismatches, total);
  if (timing) {
    qsort(lat, nlat, sizeof *lat, cmp_u64);
    printf(",\"p50_ns\":%" PRIu64 ",\"p99_ns\":%" PRIu64 ",\"max_ns\":%" PRIu64, lat[nlat / 2], lat[(nlat * 99) / 100 < nlat ? (nlat * 99) / 100 : nlat - 1],
           lat[nlat - 1]);
  } else {
    printf(",\"p50_ns\":null,\"p99_ns\":null,\"max_ns\":null");
  }
  printf("}\n");
  fflush(stdout);
  close(uffd);
  close(sock);
  return mismatches ? 1 : 0;
}
