#include "errors.h"

#include <cerrno>
#include <cstring>

namespace farmem {

const char* ErrnoName(int err) {
  switch (err) {
#define E(x) case x: return #x;
    E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(EBADF) E(ECHILD) E(EAGAIN)
    E(ENOMEM) E(EACCES) E(EFAULT) E(EBUSY) E(EEXIST) E(ENODEV) E(ENOTDIR) E(EISDIR) E(EINVAL)
    E(ENFILE) E(EMFILE) E(ENOTTY) E(EFBIG) E(ENOSPC) E(ESPIPE) E(EROFS) E(EPIPE) E(ERANGE)
    E(ENAMETOOLONG) E(ENOSYS) E(ENOTSOCK) E(EMSGSIZE) E(EPROTOTYPE) E(ENOPROTOOPT)
    E(EOPNOTSUPP) E(EADDRINUSE) E(EADDRNOTAVAIL) E(ECONNRESET) E(ENOTCONN) E(ETIMEDOUT)
    E(ECONNREFUSED)
    E(EAFNOSUPPORT) E(ECONNABORTED) E(EHOSTUNREACH)
#undef E
    default: {
      thread_local char buf[16];
      snprintf(buf, sizeof buf, "E%d", err);
      return buf;
    }
  }
}

Napi::Error ErrnoError(Napi::Env env, const std::string& syscall, int err) {
  std::string msg = syscall + ": " + strerror(err) + " (" + ErrnoName(err) + ")";
  Napi::Error e = Napi::Error::New(env, msg);
  e.Set("code", Napi::String::New(env, ErrnoName(err)));
  e.Set("errno", Napi::Number::New(env, err));
  e.Set("syscall", Napi::String::New(env, syscall));
  return e;
}

static std::string Describe(const Napi::Value& v) {
  if (v.IsUndefined()) return "undefined";
  if (v.IsNull()) return "null";
  if (v.IsString()) return "\"" + v.As<Napi::String>().Utf8Value() + "\"";
  if (v.IsNumber() || v.IsBoolean() || v.IsBigInt()) return v.ToString().Utf8Value();
  if (v.IsBuffer()) return "a Buffer";
  if (v.IsArray()) return "an array";
  if (v.IsFunction()) return "a function";
  return "an object";
}

Napi::TypeError ArgError(Napi::Env env, const std::string& what, const std::string& name, const Napi::Value& got) {
  Napi::TypeError e = Napi::TypeError::New(env, "Expected " + what + " for " + name + " but received " + Describe(got));
  e.Set("code", Napi::String::New(env, "ERR_INVALID_ARG"));
  return e;
}

int32_t ArgInt32(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsNumber()) throw ArgError(info.Env(), "an integer", name, v);
  double d = v.As<Napi::Number>().DoubleValue();
  if (d != static_cast<int32_t>(d)) throw ArgError(info.Env(), "an integer", name, v);
  return static_cast<int32_t>(d);
}

uint64_t ArgU64(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (v.IsBigInt()) {
    bool lossless = true;
    uint64_t r = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (!lossless) throw ArgError(info.Env(), "an unsigned 64-bit integer", name, v);
    return r;
  }
  if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (d < 0 || d != static_cast<double>(static_cast<uint64_t>(d)))
      throw ArgError(info.Env(), "an unsigned 64-bit integer", name, v);
    return static_cast<uint64_t>(d);
  }
  throw ArgError(info.Env(), "an unsigned 64-bit integer", name, v);
}

bool ArgBool(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsBoolean()) throw ArgError(info.Env(), "a boolean", name, v);
  return v.As<Napi::Boolean>().Value();
}

Napi::Buffer<uint8_t> ArgBuffer(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsBuffer()) throw ArgError(info.Env(), "a Buffer", name, v);
  return v.As<Napi::Buffer<uint8_t>>();
}

std::string ArgString(const Napi::CallbackInfo& info, size_t i, const char* name) {
  Napi::Value v = info[i];
  if (!v.IsString()) throw ArgError(info.Env(), "a string", name, v);
  return v.As<Napi::String>().Utf8Value();
}

}  // namespace farmem
