// Plain C++ userfaultfd operations shared by the JS bindings (uffd.cc) and the fault thread
// (fault_thread.cc). No N-API here: these run on any thread. Each returns 0 or -errno.
#pragma once
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <linux/userfaultfd.h>
#include <sys/ioctl.h>

#include "uffd_compat.h"

namespace farmem {

// UFFDIO_COPY of `len` bytes (a whole number of pages). *copied gets the bytes installed, also on
// a partial copy. -EEXIST: already present (success; the caller wakes the range). -EAGAIN: retry.
inline int UffdCopy(int fd, uint64_t dst, const void* src, uint64_t len, bool wp, bool dontWake, int64_t* copied) {
  struct uffdio_copy c = {};
  c.dst = dst;
  c.src = reinterpret_cast<uint64_t>(src);
  c.len = len;
  c.mode = (wp ? UFFDIO_COPY_MODE_WP : 0) | (dontWake ? UFFDIO_COPY_MODE_DONTWAKE : 0);
  int r = ioctl(fd, UFFDIO_COPY, &c);
  int err = r < 0 ? errno : 0;
  if (copied) *copied = c.copy > 0 ? c.copy : 0;
  return r == 0 ? 0 : -err;
}

inline int UffdZeropage(int fd, uint64_t dst, uint64_t len, bool dontWake, int64_t* zeroed) {
  struct uffdio_zeropage z = {};
  z.range.start = dst;
  z.range.len = len;
  z.mode = dontWake ? UFFDIO_ZEROPAGE_MODE_DONTWAKE : 0;
  int r = ioctl(fd, UFFDIO_ZEROPAGE, &z);
  int err = r < 0 ? errno : 0;
  if (zeroed) *zeroed = z.zeropage > 0 ? z.zeropage : 0;
  return r == 0 ? 0 : -err;
}

inline int UffdWake(int fd, uint64_t start, uint64_t len) {
  struct uffdio_range r = {start, len};
  return ioctl(fd, UFFDIO_WAKE, &r) == 0 ? 0 : -errno;
}

inline int UffdWriteProtect(int fd, uint64_t start, uint64_t len, bool protect, bool dontWake) {
  struct uffdio_writeprotect w = {};
  w.range.start = start;
  w.range.len = len;
  w.mode = (protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0) | (dontWake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0);
  return ioctl(fd, UFFDIO_WRITEPROTECT, &w) == 0 ? 0 : -errno;
}

}  // namespace farmem
