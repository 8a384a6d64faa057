// Memfd: the region's backing file. Create it, map it into the daemon, punch holes (eviction), read
// and write pages with pread/pwrite (never through the mapping: touching a hole there would
// allocate the page and the application would stop faulting on it, see KERNEL.md), and list which
// ranges hold data. Also the small fd utilities the daemon needs (close, pidfd). All called from the
// main thread; none blocks for long (memfd I/O is memory copies).
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "errors.h"
#include "modules.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

namespace farmem {
namespace {

// Offsets and lengths arrive as JS numbers (validated in TS as safe non-negative integers).
off_t ArgOff(const Napi::CallbackInfo& info, size_t i, const char* name) {
  uint64_t v = ArgU64(info, i, name);
  if (v > static_cast<uint64_t>(INT64_MAX)) throw ArgError(info.Env(), "a file offset", name, info[i]);
  return static_cast<off_t>(v);
}

Napi::Value MemfdCreate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string name = ArgString(info, 0, "name");
  off_t size = ArgOff(info, 1, "size");
  int fd = memfd_create(name.c_str(), MFD_CLOEXEC);
  if (fd < 0) throw ErrnoError(env, "memfd_create", errno);
  if (ftruncate(fd, size) < 0) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, "ftruncate", err);
  }
  return Napi::Number::New(env, fd);
}

Napi::Value MmapShared(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt32(info, 0, "fd");
  uint64_t len = ArgU64(info, 1, "length");
  bool writable = ArgBool(info, 2, "writable");
  void* p = mmap(nullptr, len, PROT_READ | (writable ? PROT_WRITE : 0), MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) throw ErrnoError(env, "mmap", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("address", Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p))));
  o.Set("length", Napi::Number::New(env, static_cast<double>(len)));
  // The mapping is released by munmap, explicitly: the finalizer must not unmap memory the
  // daemon may still reach through the address.
  o.Set("buffer", Napi::Buffer<uint8_t>::New(env, static_cast<uint8_t*>(p), len, [](Napi::Env, uint8_t*) {}));
  return o;
}

Napi::Value Munmap(const Napi::CallbackInfo& info) {
  uint64_t addr = ArgU64(info, 0, "address");
  uint64_t len = ArgU64(info, 1, "length");
  if (munmap(reinterpret_cast<void*>(static_cast<uintptr_t>(addr)), len) < 0) throw ErrnoError(info.Env(), "munmap", errno);
  return info.Env().Undefined();
}

Napi::Value PunchHole(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0, "fd");
  off_t off = ArgOff(info, 1, "offset");
  off_t len = ArgOff(info, 2, "length");
  if (fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, len) < 0) throw ErrnoError(info.Env(), "fallocate", errno);
  return info.Env().Undefined();
}

// Full-length pread: returns the bytes read, fewer only at end of file.
Napi::Value Pread(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0, "fd");
  Napi::Buffer<uint8_t> buf = ArgBuffer(info, 1, "buffer");
  off_t off = ArgOff(info, 2, "offset");
  size_t done = 0;
  while (done < buf.Length()) {
    ssize_t n = pread(fd, buf.Data() + done, buf.Length() - done, off + done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ErrnoError(info.Env(), "pread", errno);
    if (n == 0) break;
    done += n;
  }
  return Napi::Number::New(info.Env(), static_cast<double>(done));
}

Napi::Value Pwrite(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0, "fd");
  Napi::Buffer<uint8_t> buf = ArgBuffer(info, 1, "buffer");
  off_t off = ArgOff(info, 2, "offset");
  size_t done = 0;
  while (done < buf.Length()) {
    ssize_t n = pwrite(fd, buf.Data() + done, buf.Length() - done, off + done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw ErrnoError(info.Env(), "pwrite", errno);
    done += n;
  }
  return Napi::Number::New(info.Env(), static_cast<double>(done));
}

// The file's data ranges, by SEEK_DATA / SEEK_HOLE (no page is touched).
Napi::Value DataRanges(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt32(info, 0, "fd");
  struct stat st;
  if (fstat(fd, &st) < 0) throw ErrnoError(env, "fstat", errno);
  Napi::Array out = Napi::Array::New(env);
  uint32_t k = 0;
  off_t pos = 0;
  while (pos < st.st_size) {
    off_t data = lseek(fd, pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO) break;  // no data after pos
      throw ErrnoError(env, "lseek SEEK_DATA", errno);
    }
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0) throw ErrnoError(env, "lseek SEEK_HOLE", errno);
    Napi::Object r = Napi::Object::New(env);
    r.Set("offset", Napi::Number::New(env, static_cast<double>(data)));
    r.Set("length", Napi::Number::New(env, static_cast<double>(hole - data)));
    out.Set(k++, r);
    pos = hole;
  }
  return out;
}

// Whether the page at offset holds data (SEEK_DATA lands on it), without touching it.
Napi::Value HasData(const Napi::CallbackInfo& info) {
  off_t off = static_cast<off_t>(ArgU64(info, 1, "offset"));
  off_t data = lseek(ArgInt32(info, 0, "fd"), off, SEEK_DATA);
  if (data < 0 && errno != ENXIO) throw ErrnoError(info.Env(), "lseek SEEK_DATA", errno);
  return Napi::Boolean::New(info.Env(), data == off);
}

Napi::Value FileSize(const Napi::CallbackInfo& info) {
  struct stat st;
  if (fstat(ArgInt32(info, 0, "fd"), &st) < 0) throw ErrnoError(info.Env(), "fstat", errno);
  return Napi::Number::New(info.Env(), static_cast<double>(st.st_size));
}

Napi::Value CloseFd(const Napi::CallbackInfo& info) {
  // No retry on EINTR: on Linux the fd is gone either way.
  if (close(ArgInt32(info, 0, "fd")) < 0 && errno != EINTR) throw ErrnoError(info.Env(), "close", errno);
  return info.Env().Undefined();
}

Napi::Value PidfdOpen(const Napi::CallbackInfo& info) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, ArgInt32(info, 0, "pid"), 0));
  if (fd < 0) throw ErrnoError(info.Env(), "pidfd_open", errno);
  // pidfd_open sets O_CLOEXEC itself.
  return Napi::Number::New(info.Env(), fd);
}

Napi::Value PidfdGetfd(const Napi::CallbackInfo& info) {
  int fd = static_cast<int>(syscall(SYS_pidfd_getfd, ArgInt32(info, 0, "pidfd"), ArgInt32(info, 1, "targetFd"), 0));
  if (fd < 0) throw ErrnoError(info.Env(), "pidfd_getfd", errno);
  return Napi::Number::New(info.Env(), fd);  // the kernel sets O_CLOEXEC on it
}

Napi::Value PageSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(sysconf(_SC_PAGESIZE)));
}

}  // namespace

void InitMemfd(Napi::Env env, Napi::Object exports) {
  exports.Set("memfdCreate", Napi::Function::New(env, MemfdCreate, "memfdCreate"));
  exports.Set("mmapShared", Napi::Function::New(env, MmapShared, "mmapShared"));
  exports.Set("munmap", Napi::Function::New(env, Munmap, "munmap"));
  exports.Set("punchHole", Napi::Function::New(env, PunchHole, "punchHole"));
  exports.Set("pread", Napi::Function::New(env, Pread, "pread"));
  exports.Set("pwrite", Napi::Function::New(env, Pwrite, "pwrite"));
  exports.Set("dataRanges", Napi::Function::New(env, DataRanges, "dataRanges"));
  exports.Set("hasData", Napi::Function::New(env, HasData, "hasData"));
  exports.Set("fileSize", Napi::Function::New(env, FileSize, "fileSize"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("pidfdOpen", Napi::Function::New(env, PidfdOpen, "pidfdOpen"));
  exports.Set("pidfdGetfd", Napi::Function::New(env, PidfdGetfd, "pidfdGetfd"));
  exports.Set("pageSize", Napi::Function::New(env, PageSize, "pageSize"));
}

}  // namespace farmem
