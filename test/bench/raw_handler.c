/* raw_handler: the benchmark's baseline, the least a userfaultfd handler can do. It speaks fmwork's
 * protocol as the daemon would: listens on a SOCK_SEQPACKET socket, sends a memfd (--memfd), receives
 * fmwork's {addr,len,page_size,pid} + uffd, pins itself to --cpu, sends "go", then serves every
 * MISSING fault with one UFFDIO_COPY of a prepared page (poll on the uffd and the connection; exits
 * when fmwork closes it). Prints {"faults":N} on stdout.
 *
 * raw_handler --socket PATH --pages N [--page-size 4096] [--memfd] [--cpu C] */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

struct hello {
  uint64_t addr, len;
  uint32_t page_size, pid;
};

static void die(const char *what) {
  fprintf(stderr, "raw_handler: %s: %s\n", what, strerror(errno));
  exit(2);
}

static void send_fd(int sock, int fd, const void *buf, size_t len) {
  char cbuf[CMSG_SPACE(sizeof(int))];
  memset(cbuf, 0, sizeof cbuf);
  struct iovec iov = {(void *)buf, len};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1};
  if (fd >= 0) {
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof cbuf;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  if (sendmsg(sock, &msg, MSG_NOSIGNAL) < 0) die("sendmsg");
}

int main(int argc, char **argv) {
  const char *path = NULL;
  uint64_t pages = 0, page_size = 4096;
  int use_memfd = 0, cpu = -1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--socket") && i + 1 < argc) path = argv[++i];
    else if (!strcmp(argv[i], "--pages") && i + 1 < argc) pages = strtoull(argv[++i], NULL, 0);
    else if (!strcmp(argv[i], "--page-size") && i + 1 < argc) page_size = strtoull(argv[++i], NULL, 0);
    else if (!strcmp(argv[i], "--cpu") && i + 1 < argc) cpu = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--memfd")) use_memfd = 1;
    else {
      fprintf(stderr, "raw_handler: unknown argument \"%s\"\n", argv[i]);
      return 2;
    }
  }
  if (!path || pages == 0) {
    fprintf(stderr, "raw_handler: --socket PATH and --pages N are required\n");
    return 2;
  }
  int ls = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
  if (ls < 0 || bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 1) < 0) die("listen");
  printf("listening\n");
  fflush(stdout);
  int conn = accept4(ls, NULL, NULL, SOCK_CLOEXEC);
  if (conn < 0) die("accept");
  if (use_memfd) {
    int mfd = memfd_create("raw_handler", MFD_CLOEXEC);
    if (mfd < 0 || ftruncate(mfd, (off_t)(pages * page_size)) < 0) die("memfd");
    send_fd(conn, mfd, "m", 1);
    close(mfd);
  }
  struct hello h;
  char cbuf[CMSG_SPACE(sizeof(int))];
  struct iovec iov = {&h, sizeof h};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  if (recvmsg(conn, &msg, MSG_CMSG_CLOEXEC) != sizeof h) die("recvmsg hello");
  struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
  if (!c || c->cmsg_type != SCM_RIGHTS) die("hello without a uffd");
  int uffd;
  memcpy(&uffd, CMSG_DATA(c), sizeof uffd);
  if (cpu >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) < 0) die("sched_setaffinity");
  }
  char *page = aligned_alloc(4096, page_size);
  for (uint64_t i = 0; i < page_size; i++) page[i] = (char)(i * 7 + 1);
  send_fd(conn, -1, "g", 1);

  uint64_t faults = 0;
  struct pollfd pfd[2] = {{uffd, POLLIN, 0}, {conn, POLLIN, 0}};
  struct uffd_msg msgs[64];
  for (;;) {
    if (poll(pfd, 2, -1) < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    if (pfd[0].revents & POLLIN) {
      ssize_t n = read(uffd, msgs, sizeof msgs);
      if (n < 0 && errno != EAGAIN) die("read uffd");
      for (ssize_t i = 0; i < n / (ssize_t)sizeof msgs[0]; i++) {
        if (msgs[i].event != UFFD_EVENT_PAGEFAULT) continue;
        struct uffdio_copy cp = {.dst = msgs[i].arg.pagefault.address & ~(page_size - 1), .src = (uint64_t)(uintptr_t)page, .len = page_size};
        if (ioctl(uffd, UFFDIO_COPY, &cp) < 0 && errno != EEXIST) die("UFFDIO_COPY");
        faults++;
      }
    }
    if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) break; /* fmwork is done */
  }
  printf("{\"faults\":%" PRIu64 "}\n", faults);
  return 0;
}
