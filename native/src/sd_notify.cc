// sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET (a path, or "@name" for the abstract
// namespace), with fds attached for FDSTORE=1. Called from the main thread; MSG_DONTWAIT so a
// stalled service manager never blocks the daemon (the message is then an EAGAIN error).
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "errors.h"
#include "fd_passing.h"
#include "modules.h"

namespace farmem {
namespace {

Napi::Value SdNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string state = ArgString(info, 0, "state");
  if (!info[1].IsArray()) throw ArgError(env, "an array of fds", "fds", info[1]);
  Napi::Array a = info[1].As<Napi::Array>();
  std::vector<int> fds;
  for (uint32_t i = 0; i < a.Length(); i++) {
    Napi::Value v = a.Get(i);
    if (!v.IsNumber() || v.As<Napi::Number>().DoubleValue() != v.As<Napi::Number>().Int32Value())
      throw ArgError(env, "an array of fds", "fds", info[1]);
    fds.push_back(v.As<Napi::Number>().Int32Value());
  }
  if (fds.size() > 253) throw ArgError(env, "at most 253 fds", "fds", info[1]);  // SCM_MAX_FD

  const char* path = getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return Napi::Boolean::New(env, false);
  size_t plen = strlen(path);
  struct sockaddr_un sa = {};
  sa.sun_family = AF_UNIX;
  if (path[0] != '/' && path[0] != '@') throw ErrnoError(env, "sd_notify (NOTIFY_SOCKET is neither a path nor @abstract)", EAFNOSUPPORT);
  if (plen >= sizeof sa.sun_path) throw ErrnoError(env, "sd_notify (NOTIFY_SOCKET)", ENAMETOOLONG);
  memcpy(sa.sun_path, path, plen);
  if (path[0] == '@') sa.sun_path[0] = '\0';
  socklen_t alen = static_cast<socklen_t>(offsetof(struct sockaddr_un, sun_path) + plen + (path[0] == '@' ? 0 : 1));

  int sock = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) throw ErrnoError(env, "socket", errno);
  int r = SendWithFds(sock, reinterpret_cast<const uint8_t*>(state.data()), state.size(), fds, MSG_DONTWAIT,
                      reinterpret_cast<const struct sockaddr*>(&sa), alen);
  close(sock);
  if (r < 0) throw ErrnoError(env, "sendmsg", -r);
  return Napi::Boolean::New(env, true);
}

}  // namespace

void InitSdNotify(Napi::Env env, Napi::Object exports) {
  exports.Set("sdNotify", Napi::Function::New(env, SdNotify, "sdNotify"));
}

}  // namespace farmem
