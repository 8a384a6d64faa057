// sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET (a path, or '@' for the abstract
// namespace) carrying the state lines, and optionally fds (FDSTORE=1). Called from the main thread.
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "errors.h"
#include "modules.h"

namespace farmem {
namespace {

// sdNotify(state, fds) → false when NOTIFY_SOCKET is unset (not under systemd), true when sent.
Napi::Value SdNotify(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string state = ArgString(info, 0, "state");
  if (!info[1].IsArray()) throw ArgError(env, "an array of fds", "fds", info[1]);
  Napi::Array a = info[1].As<Napi::Array>();
  std::vector<int> fds;
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value f = a.Get(k);
    if (!f.IsNumber() || f.As<Napi::Number>().Int32Value() < 0) throw ArgError(env, "an array of fds", "fds", info[1]);
    fds.push_back(f.As<Napi::Number>().Int32Value());
  }
  const char* path = getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return Napi::Boolean::New(env, false);
  size_t plen = strlen(path);
  sockaddr_un addr = {};
  addr.sun_family = AF_UNIX;
  if ((path[0] != '/' && path[0] != '@') || plen >= sizeof addr.sun_path) {
    throw ArgError(env, "an absolute path or @abstract name", "NOTIFY_SOCKET", Napi::String::New(env, path));
  }
  memcpy(addr.sun_path, path, plen);
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t alen = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + plen + (path[0] == '@' ? 0 : 1));

  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ErrnoError(env, "socket", errno);
  struct iovec iov = {const_cast<char*>(state.data()), state.size()};
  struct msghdr msg = {};
  msg.msg_name = &addr;
  msg.msg_namelen = alen;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> control;
  if (!fds.empty()) {
    control.resize(CMSG_SPACE(sizeof(int) * fds.size()));
    msg.msg_control = control.data();
    msg.msg_controllen = control.size();
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do n = sendmsg(fd, &msg, MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  int err = errno;
  close(fd);
  if (n < 0) throw ErrnoError(env, std::string("sendmsg NOTIFY_SOCKET ") + path, err);
  return Napi::Boolean::New(env, true);
}

}  // namespace

void InitSdNotify(Napi::Env env, Napi::Object exports) {
  exports.Set("sdNotify", Napi::Function::New(env, SdNotify, "sdNotify"));
}

}  // namespace farmem
