// Uffd: opening a userfaultfd, the UFFDIO_API handshake, registration and the resolving ioctls, as
// synchronous JS functions. All are called from the main thread and never block: ioctls on a uffd
// return at once, and uffdReadEvents only reads a uffd opened with O_NONBLOCK.
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string>
#include <vector>

#include "errors.h"
#include "modules.h"
#include "uffd_ops.h"

namespace farmem {
namespace {

struct Named {
  const char* name;
  uint64_t bit;
};

// Feature names as in daemon/native.ts (UffdFeature), in bit order.
const Named kFeatures[] = {
    {"PAGEFAULT_FLAG_WP", UFFD_FEATURE_PAGEFAULT_FLAG_WP},
    {"EVENT_FORK", UFFD_FEATURE_EVENT_FORK},
    {"EVENT_REMAP", UFFD_FEATURE_EVENT_REMAP},
    {"EVENT_REMOVE", UFFD_FEATURE_EVENT_REMOVE},
    {"MISSING_HUGETLBFS", UFFD_FEATURE_MISSING_HUGETLBFS},
    {"MISSING_SHMEM", UFFD_FEATURE_MISSING_SHMEM},
    {"EVENT_UNMAP", UFFD_FEATURE_EVENT_UNMAP},
    {"SIGBUS", UFFD_FEATURE_SIGBUS},
    {"THREAD_ID", UFFD_FEATURE_THREAD_ID},
    {"MINOR_HUGETLBFS", UFFD_FEATURE_MINOR_HUGETLBFS},
    {"MINOR_SHMEM", UFFD_FEATURE_MINOR_SHMEM},
    {"EXACT_ADDRESS", UFFD_FEATURE_EXACT_ADDRESS},
    {"WP_HUGETLBFS_SHMEM", UFFD_FEATURE_WP_HUGETLBFS_SHMEM},
    {"WP_UNPOPULATED", UFFD_FEATURE_WP_UNPOPULATED},
    {"POISON", UFFD_FEATURE_POISON},
    {"WP_ASYNC", UFFD_FEATURE_WP_ASYNC},
    {"MOVE", UFFD_FEATURE_MOVE},
};

// ioctl numbers (the _UFFDIO_* bit positions) by name.
const Named kIoctls[] = {
    {"REGISTER", _UFFDIO_REGISTER}, {"UNREGISTER", _UFFDIO_UNREGISTER}, {"WAKE", _UFFDIO_WAKE},
    {"COPY", _UFFDIO_COPY},         {"ZEROPAGE", _UFFDIO_ZEROPAGE},     {"MOVE", _UFFDIO_MOVE},
    {"WRITEPROTECT", _UFFDIO_WRITEPROTECT}, {"CONTINUE", _UFFDIO_CONTINUE}, {"POISON", _UFFDIO_POISON},
    {"API", _UFFDIO_API},
};

Napi::Array IoctlNames(Napi::Env env, uint64_t bits) {
  Napi::Array out = Napi::Array::New(env);
  uint32_t n = 0;
  for (const Named& i : kIoctls)
    if (bits & (1ULL << i.bit)) out.Set(n++, Napi::String::New(env, i.name));
  return out;
}

// Reads an array of names (validated in TS) into a bit mask.
uint64_t NameBits(const Napi::CallbackInfo& info, size_t i, const char* name, const Named* table, size_t count,
                  const char* what) {
  Napi::Value v = info[i];
  if (!v.IsArray()) throw ArgError(info.Env(), what, name, v);
  Napi::Array a = v.As<Napi::Array>();
  uint64_t bits = 0;
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value e = a.Get(k);
    bool found = false;
    if (e.IsString()) {
      std::string s = e.As<Napi::String>().Utf8Value();
      for (size_t t = 0; t < count; t++)
        if (s == table[t].name) {
          bits |= table[t].bit;
          found = true;
        }
    }
    if (!found) throw ArgError(info.Env(), what, name, v);
  }
  return bits;
}

int ArgFd(const Napi::CallbackInfo& info, size_t i) { return ArgInt32(info, i, "fd"); }

Napi::Value Outcome(Napi::Env env, int r, const char* syscall) {
  if (r == 0) return Napi::String::New(env, "done");
  if (r == -EEXIST) return Napi::String::New(env, "exists");
  if (r == -EAGAIN) return Napi::String::New(env, "again");
  throw ErrnoError(env, syscall, -r);
}

Napi::Object CopyResult(Napi::Env env, int r, int64_t bytes, const char* syscall) {
  Napi::Value outcome = Outcome(env, r, syscall);
  Napi::Object o = Napi::Object::New(env);
  o.Set("outcome", outcome);
  o.Set("bytes", Napi::Number::New(env, static_cast<double>(bytes)));
  return o;
}

Napi::Value Open(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  bool nonBlocking = ArgBool(info, 0, "nonBlocking");
  bool allowUserModeOnly = ArgBool(info, 1, "allowUserModeOnly");
  int flags = O_CLOEXEC | (nonBlocking ? O_NONBLOCK : 0);
  int fd = -1, err = 0;
  const char* method = nullptr;
  const char* syscallName = "open /dev/userfaultfd";
  int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev >= 0) {
    fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
    err = errno;
    close(dev);
    method = "dev-userfaultfd";
    syscallName = "USERFAULTFD_IOC_NEW";
  } else {
    err = errno;
  }
  if (fd < 0) {
    fd = static_cast<int>(syscall(SYS_userfaultfd, flags));
    if (fd < 0) err = errno;
    method = "syscall";
    syscallName = "userfaultfd";
  }
  bool userModeOnly = false;
  if (fd < 0 && allowUserModeOnly) {
    fd = static_cast<int>(syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY));
    if (fd < 0) err = errno;
    method = "syscall-user-mode-only";
    userModeOnly = true;
  }
  if (fd < 0) throw ErrnoError(env, syscallName, err);
  Napi::Object o = Napi::Object::New(env);
  o.Set("fd", Napi::Number::New(env, fd));
  o.Set("method", Napi::String::New(env, method));
  o.Set("userModeOnly", Napi::Boolean::New(env, userModeOnly));
  if (userModeOnly)
    o.Set("warning", Napi::String::New(env,
                                       "userfaultfd is limited to user-mode faults (no access to /dev/userfaultfd "
                                       "and vm.unprivileged_userfaultfd is 0): kernel-mode accesses to the region, "
                                       "such as read(2) into it, will fail with EFAULT"));
  else
    o.Set("warning", env.Null());
  return o;
}

Napi::Value Api(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  uint64_t want = NameBits(info, 1, "features", kFeatures, sizeof kFeatures / sizeof *kFeatures, "an array of uffd feature names");
  struct uffdio_api api = {};
  api.api = UFFD_API;
  api.features = want;
  if (ioctl(fd, UFFDIO_API, &api) < 0) throw ErrnoError(env, "UFFDIO_API", errno);
  Napi::Array features = Napi::Array::New(env);
  uint32_t n = 0;
  for (const Named& f : kFeatures)
    if (api.features & f.bit) features.Set(n++, Napi::String::New(env, f.name));
  Napi::Object o = Napi::Object::New(env);
  o.Set("features", features);
  o.Set("ioctls", IoctlNames(env, api.ioctls));
  return o;
}

Napi::Value Register(const Napi::CallbackInfo& info) {
  static const Named kModes[] = {{"missing", UFFDIO_REGISTER_MODE_MISSING},
                                 {"wp", UFFDIO_REGISTER_MODE_WP},
                                 {"minor", UFFDIO_REGISTER_MODE_MINOR}};
  Napi::Env env = info.Env();
  struct uffdio_register r = {};
  int fd = ArgFd(info, 0);
  r.range.start = ArgU64(info, 1, "start");
  r.range.len = ArgU64(info, 2, "length");
  r.mode = NameBits(info, 3, "modes", kModes, 3, "an array of 'missing' | 'wp' | 'minor'");
  if (ioctl(fd, UFFDIO_REGISTER, &r) < 0) throw ErrnoError(env, "UFFDIO_REGISTER", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("ioctls", IoctlNames(env, r.ioctls));
  return o;
}

Napi::Value Unregister(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  struct uffdio_range r = {ArgU64(info, 1, "start"), ArgU64(info, 2, "length")};
  if (ioctl(fd, UFFDIO_UNREGISTER, &r) < 0) throw ErrnoError(info.Env(), "UFFDIO_UNREGISTER", errno);
  return info.Env().Undefined();
}

Napi::Value Copy(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  uint64_t dst = ArgU64(info, 1, "dst");
  Napi::Buffer<uint8_t> src = ArgBuffer(info, 2, "src");
  bool wp = ArgBool(info, 3, "wp");
  bool dontWake = ArgBool(info, 4, "dontWake");
  int64_t copied = 0;
  int r = UffdCopy(fd, dst, src.Data(), src.Length(), wp, dontWake, &copied);
  return CopyResult(info.Env(), r, copied, "UFFDIO_COPY");
}

// uffdCopyAsync(fd, dst, src, wp, dontWake, done(err, result)): the same UFFDIO_COPY on a libuv pool
// thread, so the JS thread receives and books pages while the kernel copies. The worker holds a dup
// of the uffd (closing the caller's fd meanwhile cannot make it copy into another file that got the
// same number) and a reference to src (kept alive, and not to be changed, until done is called).
class CopyWorker : public Napi::AsyncWorker {
 public:
  CopyWorker(Napi::Function& done, int fd, uint64_t dst, Napi::Buffer<uint8_t> src, bool wp, bool dontWake)
      : Napi::AsyncWorker(done, "farmem uffd copy"), fd_(fd), dst_(dst), data_(src.Data()), len_(src.Length()), wp_(wp), dontWake_(dontWake) {
    src_ = Napi::Persistent(src.As<Napi::Object>());
  }
  ~CopyWorker() override {
    if (fd_ >= 0) close(fd_);
  }
  void Execute() override { r_ = UffdCopy(fd_, dst_, data_, len_, wp_, dontWake_, &copied_); }
  void OnOK() override {
    Napi::Env env = Env();
    if (r_ != 0 && r_ != -EEXIST && r_ != -EAGAIN) {
      Callback().Call({ErrnoError(env, "UFFDIO_COPY", -r_).Value(), env.Undefined()});
      return;
    }
    Callback().Call({env.Null(), CopyResult(env, r_, copied_, "UFFDIO_COPY")});
  }

 private:
  int fd_;
  uint64_t dst_;
  const uint8_t* data_;
  size_t len_;
  bool wp_, dontWake_;
  Napi::ObjectReference src_;
  int r_ = 0;
  int64_t copied_ = 0;
};

Napi::Value CopyAsync(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  uint64_t dst = ArgU64(info, 1, "dst");
  Napi::Buffer<uint8_t> src = ArgBuffer(info, 2, "src");
  bool wp = ArgBool(info, 3, "wp");
  bool dontWake = ArgBool(info, 4, "dontWake");
  if (!info[5].IsFunction()) throw ArgError(env, "a function", "done", info[5]);
  Napi::Function done = info[5].As<Napi::Function>();
  int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) throw ErrnoError(env, "dup uffd", errno);
  (new CopyWorker(done, own, dst, src, wp, dontWake))->Queue();
  return env.Undefined();
}

Napi::Value Zeropage(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  uint64_t dst = ArgU64(info, 1, "dst");
  uint64_t len = ArgU64(info, 2, "length");
  bool dontWake = ArgBool(info, 3, "dontWake");
  int64_t zeroed = 0;
  int r = UffdZeropage(fd, dst, len, dontWake, &zeroed);
  return CopyResult(info.Env(), r, zeroed, "UFFDIO_ZEROPAGE");
}

Napi::Value Wake(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  int r = UffdWake(fd, ArgU64(info, 1, "start"), ArgU64(info, 2, "length"));
  if (r < 0) throw ErrnoError(info.Env(), "UFFDIO_WAKE", -r);
  return info.Env().Undefined();
}

Napi::Value WriteProtect(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  uint64_t start = ArgU64(info, 1, "start");
  uint64_t len = ArgU64(info, 2, "length");
  bool protect = ArgBool(info, 3, "protect");
  bool dontWake = ArgBool(info, 4, "dontWake");
  return Outcome(info.Env(), UffdWriteProtect(fd, start, len, protect, dontWake), "UFFDIO_WRITEPROTECT");
}

Napi::Value Continue(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  struct uffdio_continue c = {};
  c.range.start = ArgU64(info, 1, "start");
  c.range.len = ArgU64(info, 2, "length");
  c.mode = ArgBool(info, 3, "dontWake") ? UFFDIO_CONTINUE_MODE_DONTWAKE : 0;
  int r = ioctl(fd, UFFDIO_CONTINUE, &c) == 0 ? 0 : -errno;
  return CopyResult(info.Env(), r, c.mapped > 0 ? c.mapped : 0, "UFFDIO_CONTINUE");
}

// UFFDIO_POISON (6.6+): later accesses to the range raise SIGBUS until a copy overwrites it. The
// pager uses it to answer a fault in a region created with on_unavailable=sigbus.
Napi::Value Poison(const Napi::CallbackInfo& info) {
  int fd = ArgFd(info, 0);
  struct uffdio_poison p = {};
  p.range.start = ArgU64(info, 1, "start");
  p.range.len = ArgU64(info, 2, "length");
  p.mode = ArgBool(info, 3, "dontWake") ? UFFDIO_POISON_MODE_DONTWAKE : 0;
  int r = ioctl(fd, UFFDIO_POISON, &p) == 0 ? 0 : -errno;
  return CopyResult(info.Env(), r, p.updated > 0 ? p.updated : 0, "UFFDIO_POISON");
}

Napi::Object Range(Napi::Env env, const char* kind, uint64_t start, uint64_t end) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("kind", Napi::String::New(env, kind));
  o.Set("start", Napi::BigInt::New(env, start));
  o.Set("end", Napi::BigInt::New(env, end));
  return o;
}

Napi::Value Decode(Napi::Env env, const struct uffd_msg& m) {
  Napi::Object o = Napi::Object::New(env);
  switch (m.event) {
    case UFFD_EVENT_PAGEFAULT:
      o.Set("kind", Napi::String::New(env, "pagefault"));
      o.Set("address", Napi::BigInt::New(env, static_cast<uint64_t>(m.arg.pagefault.address)));
      o.Set("write", Napi::Boolean::New(env, m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE));
      o.Set("wp", Napi::Boolean::New(env, m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP));
      o.Set("minor", Napi::Boolean::New(env, m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR));
      o.Set("tid", Napi::Number::New(env, m.arg.pagefault.feat.ptid));
      return o;
    case UFFD_EVENT_FORK:
      o.Set("kind", Napi::String::New(env, "fork"));
      o.Set("uffd", Napi::Number::New(env, m.arg.fork.ufd));
      return o;
    case UFFD_EVENT_REMAP:
      o.Set("kind", Napi::String::New(env, "remap"));
      o.Set("from", Napi::BigInt::New(env, static_cast<uint64_t>(m.arg.remap.from)));
      o.Set("to", Napi::BigInt::New(env, static_cast<uint64_t>(m.arg.remap.to)));
      o.Set("length", Napi::Number::New(env, static_cast<double>(m.arg.remap.len)));
      return o;
    case UFFD_EVENT_REMOVE:
      return Range(env, "remove", m.arg.remove.start, m.arg.remove.end);
    case UFFD_EVENT_UNMAP:
      return Range(env, "unmap", m.arg.remove.start, m.arg.remove.end);
    default:
      return env.Null();  // an event this build does not know: skipped
  }
}

Napi::Value ReadEvents(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgFd(info, 0);
  int max = ArgInt32(info, 1, "max");
  if (max < 1 || max > 1024) throw ArgError(env, "an integer from 1 to 1024", "max", info[1]);
  int fl = fcntl(fd, F_GETFL);
  if (fl < 0) throw ErrnoError(env, "fcntl", errno);
  // A blocking uffd would block the main thread (and poll reports only POLLERR on it).
  if (!(fl & O_NONBLOCK)) throw ErrnoError(env, "read uffd (opened without O_NONBLOCK)", EINVAL);
  std::vector<struct uffd_msg> msgs(max);
  ssize_t n;
  do n = read(fd, msgs.data(), sizeof(struct uffd_msg) * max);
  while (n < 0 && errno == EINTR);
  Napi::Array out = Napi::Array::New(env);
  if (n < 0) {
    if (errno == EAGAIN) return out;
    throw ErrnoError(env, "read", errno);
  }
  uint32_t k = 0;
  for (ssize_t i = 0; i < n / static_cast<ssize_t>(sizeof(struct uffd_msg)); i++) {
    Napi::Value e = Decode(env, msgs[i]);
    if (!e.IsNull()) out.Set(k++, e);
  }
  return out;
}

}  // namespace

void InitUffd(Napi::Env env, Napi::Object exports) {
  exports.Set("uffdOpen", Napi::Function::New(env, Open, "uffdOpen"));
  exports.Set("uffdApi", Napi::Function::New(env, Api, "uffdApi"));
  exports.Set("uffdRegister", Napi::Function::New(env, Register, "uffdRegister"));
  exports.Set("uffdUnregister", Napi::Function::New(env, Unregister, "uffdUnregister"));
  exports.Set("uffdCopy", Napi::Function::New(env, Copy, "uffdCopy"));
  exports.Set("uffdCopyAsync", Napi::Function::New(env, CopyAsync, "uffdCopyAsync"));
  exports.Set("uffdZeropage", Napi::Function::New(env, Zeropage, "uffdZeropage"));
  exports.Set("uffdWake", Napi::Function::New(env, Wake, "uffdWake"));
  exports.Set("uffdWriteProtect", Napi::Function::New(env, WriteProtect, "uffdWriteProtect"));
  exports.Set("uffdContinue", Napi::Function::New(env, Continue, "uffdContinue"));
  exports.Set("uffdPoison", Napi::Function::New(env, Poison, "uffdPoison"));
  exports.Set("uffdReadEvents", Napi::Function::New(env, ReadEvents, "uffdReadEvents"));
}

}  // namespace farmem
