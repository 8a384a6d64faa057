/* libfarmem: the application side of the attach protocol (proto/farmem/v1/attach.proto). */
#define _GNU_SOURCE
#include "farmem.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "codec.h"

#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
#define UFFD_FEATURE_WP_HUGETLBFS_SHMEM (1 << 12)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC /* Linux 6.7; the build headers may be older */
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

#define DEFAULT_SOCKET "/run/farmem/attach.sock"
#define REPLY_TIMEOUT_MS 10000
#define BACKOFF_MIN_MS 50
#define BACKOFF_MAX_MS 2000
#define ERRLEN 1024

struct att {
  struct att *next;
  char name[FM_NAME_MAX + 1];
  char sock_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  char *base;
  size_t len;
  /* The app keeps its memfd and uffd for as long as the region is mapped: a new daemon after a
   * crash gets both again, and closing the uffd would drop the registration (KERNEL.md). */
  int memfd, uffd;
  int sock;   /* owned by the watcher thread while it runs */
  int stopfd; /* eventfd: detach asks the watcher to stop */
  pthread_t thread;
  char region_id[FM_NAME_MAX + 1];
  uint8_t token[FM_TOKEN_MAX];
  size_t token_len;
  uint64_t attachment_id, features;
  uint32_t page_size;
  int wp, user_mode_only;
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static struct att *g_atts;
static __thread char g_err[ERRLEN];

/* ---- errors ---- */

static const char *errname(int e) {
  const char *n = strerrorname_np(e);
  return n ? n : "EUNKNOWN";
}

/* Formats into buf; returns -e so callers can `return fmt_err(...)`. */
static int fmt_err(char *buf, int e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, ERRLEN, fmt, ap);
  va_end(ap);
  return -e;
}

static void *fail(int e, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_err, sizeof g_err, fmt, ap);
  va_end(ap);
  errno = e;
  return NULL;
}

const char *farmem_strerror(void) { return g_err; }

static int code_errno(uint32_t code) {
  switch (code) {
  case FM_INVALID_ARGUMENT: return EINVAL;
  case FM_NOT_FOUND: return ENOENT;
  case FM_PERMISSION_DENIED: return EACCES;
  case FM_RESOURCE_EXHAUSTED: return ENOSPC;
  case FM_FAILED_PRECONDITION: return ESTALE;
  case FM_UNAVAILABLE: return EAGAIN;
  default: return EPROTO;
  }
}

/* ---- the socket ---- */

static int do_connect(const char *path, char *err) {
  struct sockaddr_un sa = {.sun_family = AF_UNIX};
  strcpy(sa.sun_path, path);
  int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (s < 0) return fmt_err(err, errno, "socket: %s", errname(errno));
  if (connect(s, (struct sockaddr *)&sa, sizeof sa) < 0) {
    int e = errno;
    close(s);
    return fmt_err(err, e, "connect %s: %s", path, errname(e));
  }
  return s;
}

static int send_msg(int s, const struct fm_client_msg *m, int fd, char *err) {
  uint8_t buf[FM_MAX_PACKET];
  long n = fm_encode_client(m, buf, sizeof buf);
  if (n < 0) return fmt_err(err, EINVAL, "message too large");
  char cbuf[CMSG_SPACE(sizeof(int))];
  memset(cbuf, 0, sizeof cbuf);
  struct iovec iov = {buf, (size_t)n};
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
  ssize_t r;
  do r = sendmsg(s, &msg, MSG_NOSIGNAL);
  while (r < 0 && errno == EINTR);
  if (r < 0) return fmt_err(err, errno, "send to farmemd: %s", errname(errno));
  return 0;
}

/* Waits for one daemon message. *fd gets the one fd it carried (or -1); any extra fd is closed. */
static int recv_msg(int s, struct fm_daemon_msg *m, int *fd, char *err) {
  *fd = -1;
  struct pollfd p = {s, POLLIN, 0};
  int r;
  do r = poll(&p, 1, REPLY_TIMEOUT_MS);
  while (r < 0 && errno == EINTR);
  if (r < 0) return fmt_err(err, errno, "poll: %s", errname(errno));
  if (r == 0) return fmt_err(err, ETIMEDOUT, "no reply from farmemd within %d ms", REPLY_TIMEOUT_MS);
  uint8_t buf[FM_MAX_PACKET];
  char cbuf[CMSG_SPACE(sizeof(int) * 4)];
  struct iovec iov = {buf, sizeof buf};
  struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
  ssize_t n;
  do n = recvmsg(s, &msg, MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return fmt_err(err, errno, "receive from farmemd: %s", errname(errno));
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    int nfds = (int)((c->cmsg_len - CMSG_LEN(0)) / sizeof(int));
    for (int i = 0; i < nfds; i++) {
      int got;
      memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof got);
      if (*fd < 0) *fd = got;
      else close(got);
    }
  }
  const char *why = NULL;
  if (n == 0) why = "farmemd closed the connection";
  else if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) why = "farmemd sent an oversized message";
  else if (fm_decode_daemon(buf, (size_t)n, m, &why) == 0) return 0;
  if (*fd >= 0) close(*fd);
  *fd = -1;
  if (n == 0) return fmt_err(err, ECONNRESET, "%s", why);
  return fmt_err(err, EPROTO, "farmemd sent a malformed message: %s", why);
}

/* AttachRequest -> AttachReply. A fresh attach gets the memfd in *memfd; a reattach sends ours. */
static int request_attach(struct att *a, int s, int reattach, struct fm_attach_reply *reply, int *memfd, char *err) {
  struct fm_client_msg m = {.kind = FM_MSG_ATTACH};
  m.attach.protocol_version = FM_PROTOCOL_VERSION;
  snprintf(m.attach.region, sizeof m.attach.region, "%s", a->name);
  m.attach.want_write_protect = 1;
  if (reattach) {
    m.attach.has_reattach = 1;
    snprintf(m.attach.region_id, sizeof m.attach.region_id, "%s", a->region_id);
    memcpy(m.attach.token, a->token, a->token_len);
    m.attach.token_len = a->token_len;
  }
  int r = send_msg(s, &m, reattach ? a->memfd : -1, err);
  if (r < 0) return r;
  struct fm_daemon_msg d;
  int fd;
  if ((r = recv_msg(s, &d, &fd, err)) < 0) return r;
  if (d.kind != FM_MSG_ATTACH_REPLY) {
    if (fd >= 0) close(fd);
    return fmt_err(err, EPROTO, "farmemd answered AttachRequest with another message");
  }
  *reply = d.attach_reply;
  if (reply->code != FM_OK) {
    if (fd >= 0) close(fd);
    return fmt_err(err, code_errno(reply->code), "%s", reply->message[0] ? reply->message : "refused by farmemd");
  }
  if (reattach) {
    if (fd >= 0) close(fd);
    if (strcmp(reply->region_id, a->region_id) || reply->size_bytes != a->len || reply->page_size != a->page_size)
      return fmt_err(err, ESTALE, "region is now %s (%" PRIu64 " bytes, pages of %u), not %s (%zu bytes, pages of %u)", reply->region_id,
                     reply->size_bytes, reply->page_size, a->region_id, a->len, a->page_size);
    return 0;
  }
  if (fd < 0) return fmt_err(err, EPROTO, "farmemd's AttachReply carried no memfd");
  *memfd = fd;
  return 0;
}

/* RegisterRequest + our uffd -> RegisterReply. */
static int request_register(struct att *a, int s, char *err) {
  struct fm_client_msg m = {.kind = FM_MSG_REGISTER};
  m.reg.address = (uint64_t)(uintptr_t)a->base;
  m.reg.length = a->len;
  m.reg.uffd_features = a->features;
  m.reg.write_protect = a->wp;
  m.reg.user_mode_only = a->user_mode_only;
  int r = send_msg(s, &m, a->uffd, err);
  if (r < 0) return r;
  struct fm_daemon_msg d;
  int fd;
  if ((r = recv_msg(s, &d, &fd, err)) < 0) return r;
  if (fd >= 0) close(fd);
  if (d.kind != FM_MSG_REGISTER_REPLY) return fmt_err(err, EPROTO, "farmemd answered RegisterRequest with another message");
  if (d.register_reply.code != FM_OK)
    return fmt_err(err, code_errno(d.register_reply.code), "%s", d.register_reply.message[0] ? d.register_reply.message : "refused by farmemd");
  a->attachment_id = d.register_reply.attachment_id;
  return 0;
}

/* ---- userfaultfd ---- */

static int open_uffd(int *user_mode_only, char *err) {
  int flags = O_CLOEXEC | O_NONBLOCK; /* the daemon epolls it: KERNEL.md */
  *user_mode_only = 0;
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev >= 0) {
    int fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
    close(dev);
    if (fd >= 0) return fd;
  }
  int fd = (int)syscall(SYS_userfaultfd, flags);
  if (fd >= 0) return fd;
  /* Unprivileged with vm.unprivileged_userfaultfd=0: only user-mode faults are delivered, so a
   * read(2) into a missing page fails with EFAULT; better than nothing, and the daemon is told. */
  fd = (int)syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY);
  if (fd >= 0) {
    *user_mode_only = 1;
    return fd;
  }
  return fmt_err(err, errno, "userfaultfd: %s (needs root, CAP_SYS_PTRACE or read/write access to /dev/userfaultfd)", errname(errno));
}

/* Opens the uffd, negotiates features and registers [base, base+len). Async write-protect (asked
 * by farmemd) is dropped when the kernel refuses it, then write-protect when the kernel cannot do
 * it on shmem: each step down is still correct (farmemd learns what is in effect). */
static int setup_uffd(struct att *a, int want_wp, int want_async, char *err) {
  /* level 2: wp + async, 1: wp, 0: missing only */
  for (int level = want_wp ? (want_async ? 2 : 1) : 0; level >= 0; level--) {
    int wp = level >= 1;
    int umo;
    int fd = open_uffd(&umo, err);
    if (fd < 0) return fd;
    uint64_t features = UFFD_FEATURE_MISSING_SHMEM | UFFD_FEATURE_THREAD_ID;
    if (wp) features |= UFFD_FEATURE_WP_HUGETLBFS_SHMEM | UFFD_FEATURE_PAGEFAULT_FLAG_WP;
    if (level == 2) features |= UFFD_FEATURE_WP_ASYNC;
    struct uffdio_api api = {.api = UFFD_API, .features = features};
    if (ioctl(fd, UFFDIO_API, &api) < 0) {
      int e = errno;
      close(fd);
      if (wp && e == EINVAL) continue;
      return fmt_err(err, e, "UFFDIO_API: %s", errname(e));
    }
    struct uffdio_register reg = {.range = {(uint64_t)(uintptr_t)a->base, a->len}, .mode = UFFDIO_REGISTER_MODE_MISSING};
    if (wp) reg.mode |= UFFDIO_REGISTER_MODE_WP;
    if (ioctl(fd, UFFDIO_REGISTER, &reg) < 0) {
      int e = errno;
      close(fd);
      if (wp && e == EINVAL) continue;
      return fmt_err(err, e, "UFFDIO_REGISTER: %s", errname(e));
    }
    a->uffd = fd;
    a->features = features;
    a->wp = wp;
    a->user_mode_only = umo;
    return 0;
  }
  return fmt_err(err, EINVAL, "UFFDIO_API: no usable feature set");
}

/* ---- the watcher thread: reconnects when farmemd goes away ---- */

/* Sleeps ms unless asked to stop; returns 1 when asked to stop. */
static int wait_stop(struct att *a, int ms) {
  struct pollfd p = {a->stopfd, POLLIN, 0};
  int r;
  do r = poll(&p, 1, ms);
  while (r < 0 && errno == EINTR);
  return r > 0;
}

static int reattach(struct att *a, char *err) {
  int s = do_connect(a->sock_path, err);
  if (s < 0) return s;
  struct fm_attach_reply reply;
  int r = request_attach(a, s, 1, &reply, NULL, err);
  if (r == 0) r = request_register(a, s, err);
  if (r < 0) {
    close(s);
    return r;
  }
  if (reply.token_len) {
    memcpy(a->token, reply.token, reply.token_len);
    a->token_len = reply.token_len;
  }
  a->sock = s;
  return 0;
}

static void *watch(void *arg) {
  struct att *a = arg;
  for (;;) {
    struct pollfd p[2] = {{a->stopfd, POLLIN, 0}, {a->sock, POLLIN, 0}};
    if (poll(p, 2, -1) < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "libfarmem: region \"%s\": poll: %s\n", a->name, errname(errno));
      return NULL;
    }
    if (p[0].revents) return NULL;
    if (!p[1].revents) continue;
    /* farmemd sends nothing unasked today: anything readable is either a hang-up or a message
     * from a newer daemon, which we drop (with its fds). */
    uint8_t buf[FM_MAX_PACKET];
    char cbuf[CMSG_SPACE(sizeof(int) * 4)];
    struct iovec iov = {buf, sizeof buf};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof cbuf};
    ssize_t n = recvmsg(a->sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); n >= 0 && c; c = CMSG_NXTHDR(&msg, c))
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
        for (size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); i++) {
          int fd;
          memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
          close(fd);
        }
    if (n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR))) continue;

    close(a->sock);
    a->sock = -1;
    fprintf(stderr, "libfarmem: region \"%s\": lost farmemd; faults wait while reconnecting to %s\n", a->name, a->sock_path);
    char err[ERRLEN], last[ERRLEN] = "";
    for (int delay = BACKOFF_MIN_MS;; delay = delay * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : delay * 2) {
      if (wait_stop(a, delay)) return NULL;
      if (reattach(a, err) == 0) break;
      /* Say each distinct reason once: a daemon that stays down must not flood stderr. */
      if (strcmp(err, last)) {
        fprintf(stderr, "libfarmem: region \"%s\": reattach: %s (retrying)\n", a->name, err);
        snprintf(last, sizeof last, "%s", err);
      }
    }
    fprintf(stderr, "libfarmem: region \"%s\": reattached to farmemd (attachment %" PRIu64 ")\n", a->name, a->attachment_id);
  }
}

/* ---- the API ---- */

static void destroy(struct att *a) {
  if (a->base && a->base != MAP_FAILED) munmap(a->base, a->len);
  if (a->uffd >= 0) close(a->uffd);
  if (a->memfd >= 0) close(a->memfd);
  if (a->sock >= 0) close(a->sock);
  if (a->stopfd >= 0) close(a->stopfd);
  free(a);
}

void *farmem_attach(const char *name, size_t *len_out) {
  if (!name || !*name || strlen(name) > FM_NAME_MAX)
    return fail(EINVAL, "attach: expected a region name of 1 to %d bytes but received %s", FM_NAME_MAX, name ? (*name ? "a longer one" : "\"\"") : "NULL");
  const char *path = getenv("FARMEM_ATTACH_SOCKET");
  if (!path || !*path) path = DEFAULT_SOCKET;
  struct att *a = calloc(1, sizeof *a);
  if (!a) return fail(ENOMEM, "attach \"%s\": out of memory", name);
  a->memfd = a->uffd = a->sock = a->stopfd = -1;
  snprintf(a->name, sizeof a->name, "%s", name);
  if (strlen(path) >= sizeof a->sock_path) {
    destroy(a);
    return fail(ENAMETOOLONG, "attach \"%s\": socket path too long: %s", name, path);
  }
  strcpy(a->sock_path, path);

  char err[ERRLEN];
  int r = do_connect(path, err);
  if (r < 0) goto out;
  a->sock = r;
  struct fm_attach_reply reply;
  if ((r = request_attach(a, a->sock, 0, &reply, &a->memfd, err)) < 0) goto out;
  long sys_page = sysconf(_SC_PAGESIZE);
  if (reply.size_bytes == 0 || reply.page_size < (uint64_t)sys_page || (reply.page_size & (reply.page_size - 1)) ||
      reply.size_bytes % reply.page_size || reply.size_bytes > SIZE_MAX / 2 || !reply.region_id[0]) {
    r = fmt_err(err, EPROTO, "farmemd sent an invalid region geometry (%" PRIu64 " bytes, pages of %u, id \"%s\")", reply.size_bytes,
                reply.page_size, reply.region_id);
    goto out;
  }
  a->len = (size_t)reply.size_bytes;
  a->page_size = reply.page_size;
  snprintf(a->region_id, sizeof a->region_id, "%s", reply.region_id);
  memcpy(a->token, reply.token, reply.token_len);
  a->token_len = reply.token_len;

  a->base = mmap(NULL, a->len, PROT_READ | PROT_WRITE, MAP_SHARED, a->memfd, 0);
  if (a->base == MAP_FAILED) {
    a->base = NULL;
    r = fmt_err(err, errno, "mmap %zu bytes: %s", a->len, errname(errno));
    goto out;
  }
  /* A forked child would inherit the mapping without the uffd registration: its accesses to holes
   * would allocate zero pages in the shared memfd, hiding the real data from everyone. */
  if (madvise(a->base, a->len, MADV_DONTFORK) < 0) {
    r = fmt_err(err, errno, "madvise MADV_DONTFORK: %s", errname(errno));
    goto out;
  }
  if ((r = setup_uffd(a, reply.write_protect, reply.write_protect && reply.wp_async, err)) < 0) goto out;
  if ((r = request_register(a, a->sock, err)) < 0) goto out;
  a->stopfd = eventfd(0, EFD_CLOEXEC);
  if (a->stopfd < 0) {
    r = fmt_err(err, errno, "eventfd: %s", errname(errno));
    goto out;
  }
  if ((r = pthread_create(&a->thread, NULL, watch, a)) != 0) {
    r = fmt_err(err, r, "pthread_create: %s", errname(r));
    goto out;
  }
  pthread_mutex_lock(&g_lock);
  a->next = g_atts;
  g_atts = a;
  pthread_mutex_unlock(&g_lock);
  if (len_out) *len_out = a->len;
  g_err[0] = 0;
  return a->base;

out:
  destroy(a);
  return fail(-r, "attach \"%s\": %s", name, err);
}

int farmem_detach(void *ptr) {
  pthread_mutex_lock(&g_lock);
  struct att **pp = &g_atts;
  while (*pp && (*pp)->base != ptr) pp = &(*pp)->next;
  struct att *a = *pp;
  if (a) *pp = a->next;
  pthread_mutex_unlock(&g_lock);
  if (!a) {
    fail(EINVAL, "detach: %p is not the address of an attached region", ptr);
    return -1;
  }
  uint64_t one = 1;
  if (write(a->stopfd, &one, sizeof one) < 0) { /* an eventfd write cannot fail here */ }
  pthread_join(a->thread, NULL);
  if (a->sock >= 0) {
    char err[ERRLEN];
    struct fm_client_msg m = {.kind = FM_MSG_DETACH};
    send_msg(a->sock, &m, -1, err); /* best effort: closing the connection detaches too */
  }
  destroy(a);
  g_err[0] = 0;
  return 0;
}
