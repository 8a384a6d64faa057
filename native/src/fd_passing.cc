// Fd passing on SOCK_SEQPACKET unix sockets: one message per packet (the attach protocol), file
// descriptors with SCM_RIGHTS, the peer's credentials with SO_PEERCRED.
//
// The server side (seqpacketListen) runs on the main thread's libuv loop: the listening socket and
// every connection are uv_poll_t handles on fds that libuv does not otherwise own, so no extra
// thread and no blocking call. The client side (seqpacketConnect, sendFds, recvFds) is plain
// blocking calls for an attaching process (recvFds bounds its wait with a timeout).
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "errors.h"
#include "modules.h"

namespace farmem {
namespace {

constexpr size_t kMaxPayload = 64 * 1024;
constexpr size_t kMaxFds = 16;

bool FillAddr(const std::string& path, sockaddr_un* addr, socklen_t* len) {
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr->sun_path) return false;
  memcpy(addr->sun_path, path.data(), path.size());
  if (path[0] == '@') addr->sun_path[0] = '\0';  // abstract namespace
  *len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path.size() + (path[0] == '@' ? 0 : 1));
  return true;
}

std::vector<int> ArgFds(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = info[i];
  if (!v.IsArray()) throw ArgError(info.Env(), "an array of fds", "fds", v);
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() > kMaxFds) throw ArgError(info.Env(), "at most 16 fds", "fds", v);
  std::vector<int> fds;
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value f = a.Get(k);
    if (!f.IsNumber() || f.As<Napi::Number>().Int32Value() < 0) throw ArgError(info.Env(), "an array of fds", "fds", v);
    fds.push_back(f.As<Napi::Number>().Int32Value());
  }
  return fds;
}

// sendmsg of one packet with fds. Returns 0 or -errno.
int SendPacket(int fd, const uint8_t* data, size_t len, const std::vector<int>& fds) {
  struct iovec iov = {const_cast<uint8_t*>(data), len};
  char zero = 0;
  if (len == 0) iov = {&zero, 1};  // a seqpacket with only fds still needs a byte
  struct msghdr msg = {};
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
  return n < 0 ? -errno : 0;
}

struct Packet {
  std::vector<uint8_t> payload;
  std::vector<int> fds;
  bool truncated = false;  // payload or fds did not fit (received fds are closed)
};

// recvmsg of one packet. Returns bytes (0 = peer closed) or -errno.
ssize_t RecvPacket(int fd, size_t maxPayload, size_t maxFds, int flags, Packet* out) {
  out->payload.resize(maxPayload == 0 ? 1 : maxPayload);
  struct iovec iov = {out->payload.data(), out->payload.size()};
  std::vector<char> control(CMSG_SPACE(sizeof(int) * (maxFds == 0 ? 1 : maxFds)));
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control.data();
  msg.msg_controllen = control.size();
  ssize_t n;
  do n = recvmsg(fd, &msg, flags | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  out->fds.clear();
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
      size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const int* fds = reinterpret_cast<const int*>(CMSG_DATA(c));
      for (size_t k = 0; k < count; k++) out->fds.push_back(fds[k]);
    }
  }
  out->truncated = (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 || out->fds.size() > maxFds;
  out->payload.resize(static_cast<size_t>(n));
  return n;
}

Napi::Object Cred(Napi::Env env, int fd) {
  struct ucred cred = {};
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) throw ErrnoError(env, "getsockopt SO_PEERCRED", errno);
  Napi::Object o = Napi::Object::New(env);
  o.Set("pid", Napi::Number::New(env, cred.pid));
  o.Set("uid", Napi::Number::New(env, cred.uid));
  o.Set("gid", Napi::Number::New(env, cred.gid));
  return o;
}

Napi::Array FdArray(Napi::Env env, const std::vector<int>& fds) {
  Napi::Array a = Napi::Array::New(env, fds.size());
  for (size_t k = 0; k < fds.size(); k++) a.Set(static_cast<uint32_t>(k), Napi::Number::New(env, fds[k]));
  return a;
}

// ---------------------------------------------------------------------------------------------
// Server.

class Server;

struct Conn {
  uv_poll_t poll;
  Server* server;
  uint32_t id;
  int fd;
};

class Server {
 public:
  Server(Napi::Env env, int fd, std::string path, Napi::Function onEvent)
      : env_(env), fd_(fd), path_(std::move(path)), onEvent_(Napi::Persistent(onEvent)) {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env, &loop);
    loop_ = loop;
    uv_poll_init(loop_, &listen_, fd_);
    listen_.data = this;
    uv_poll_start(&listen_, UV_READABLE, OnAccept);
  }

  void Send(Napi::Env env, uint32_t id, const uint8_t* data, size_t len, const std::vector<int>& fds) {
    auto it = conns_.find(id);
    if (it == conns_.end()) throw ErrnoError(env, "send: connection " + std::to_string(id), ENOTCONN);
    int r = SendPacket(it->second->fd, data, len, fds);
    if (r < 0) throw ErrnoError(env, "sendmsg", -r);
  }

  void CloseConn(uint32_t id, bool emit) {
    auto it = conns_.find(id);
    if (it == conns_.end()) return;
    Conn* c = it->second;
    conns_.erase(it);
    uv_poll_stop(&c->poll);
    // The peer sees the hang-up now, not when libuv gets round to closing the handle.
    shutdown(c->fd, SHUT_RDWR);
    uv_close(reinterpret_cast<uv_handle_t*>(&c->poll), [](uv_handle_t* h) {
      Conn* c = static_cast<Conn*>(h->data);
      close(c->fd);
      delete c;
    });
    if (emit) Emit([&](Napi::Env env, Napi::Object e) {
      e.Set("type", "close");
      e.Set("conn", Napi::Number::New(env, id));
    });
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    std::vector<uint32_t> ids;
    for (auto& kv : conns_) ids.push_back(kv.first);
    for (uint32_t id : ids) CloseConn(id, false);
    // uv_poll_stop takes the fd out of epoll at once, so it can be closed now: a connect after
    // close() is refused, not queued on a socket nobody accepts from.
    uv_poll_stop(&listen_);
    close(fd_);
    if (!path_.empty() && path_[0] != '@') unlink(path_.c_str());
    // The Server itself is never freed: the JS functions returned by seqpacketListen keep its
    // address, and a closed server must still answer them (with ERR_CLOSED). One per daemon.
    uv_close(reinterpret_cast<uv_handle_t*>(&listen_), nullptr);
  }

  bool closed() const { return closed_; }

 private:
  template <typename F>
  void Emit(F fill) {
    Napi::HandleScope scope(env_);
    Napi::Object e = Napi::Object::New(env_);
    fill(env_, e);
    try {
      onEvent_.MakeCallback(env_.Global(), {e});
    } catch (const Napi::Error& err) {
      // An exception in the JS handler is the daemon's bug: surface it like any uncaught one.
      napi_fatal_exception(env_, err.Value());
    }
  }

  static void OnAccept(uv_poll_t* h, int status, int events) {
    Server* s = static_cast<Server*>(h->data);
    for (;;) {
      int fd = accept4(s->fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) {
        if (errno == EINTR) continue;
        return;  // EAGAIN, or a transient error (EMFILE...): try again on the next readiness
      }
      Conn* c = new Conn();
      c->server = s;
      c->id = s->nextId_++;
      c->fd = fd;
      uv_poll_init(s->loop_, &c->poll, fd);
      c->poll.data = c;
      s->conns_[c->id] = c;
      uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT, OnReadable);
      uint32_t id = c->id;
      s->Emit([&](Napi::Env env, Napi::Object e) {
        e.Set("type", "connect");
        e.Set("conn", Napi::Number::New(env, id));
        try {
          e.Set("cred", Cred(env, fd));
        } catch (const Napi::Error&) {
          Napi::Object o = Napi::Object::New(env);
          o.Set("pid", Napi::Number::New(env, 0));
          o.Set("uid", Napi::Number::New(env, -1));
          o.Set("gid", Napi::Number::New(env, -1));
          e.Set("cred", o);
        }
      });
      if (s->closed_) return;
    }
  }

  static void OnReadable(uv_poll_t* h, int status, int events) {
    Conn* c = static_cast<Conn*>(h->data);
    Server* s = c->server;
    uint32_t id = c->id;
    int fd = c->fd;
    for (int i = 0; i < 64; i++) {
      Packet p;
      ssize_t n = RecvPacket(fd, kMaxPayload, kMaxFds, MSG_DONTWAIT, &p);
      if (n == -EAGAIN) {
        if (events & UV_DISCONNECT) break;
        return;
      }
      if (n <= 0) {
        if (n < 0 && n != -ECONNRESET) {
          int err = static_cast<int>(-n);
          s->Emit([&](Napi::Env env, Napi::Object e) {
            e.Set("type", "error");
            e.Set("conn", Napi::Number::New(env, id));
            e.Set("error", ErrnoError(env, "recvmsg", err).Value());
          });
        }
        break;
      }
      if (p.truncated) {
        for (int f : p.fds) close(f);
        s->Emit([&](Napi::Env env, Napi::Object e) {
          e.Set("type", "error");
          e.Set("conn", Napi::Number::New(env, id));
          Napi::Error err = ErrnoError(env, "recvmsg: message over 64 KiB or more than 16 fds", EMSGSIZE);
          e.Set("error", err.Value());
        });
        if (s->conns_.count(id) == 0) return;
        continue;
      }
      s->Emit([&](Napi::Env env, Napi::Object e) {
        e.Set("type", "message");
        e.Set("conn", Napi::Number::New(env, id));
        e.Set("payload", Napi::Buffer<uint8_t>::Copy(env, p.payload.data(), p.payload.size()));
        e.Set("fds", FdArray(env, p.fds));
      });
      // The handler may have closed this connection (or the server).
      if (s->closed_ || s->conns_.count(id) == 0) return;
    }
    if (s->conns_.count(id) != 0 && !s->closed_) s->CloseConn(id, true);
  }

  Napi::Env env_;
  int fd_;
  std::string path_;
  uv_loop_t* loop_ = nullptr;
  uv_poll_t listen_;
  Napi::FunctionReference onEvent_;
  std::map<uint32_t, Conn*> conns_;
  uint32_t nextId_ = 1;
  bool closed_ = false;
};

Server* ServerOf(const Napi::CallbackInfo& info) {
  Server* s = static_cast<Server*>(info.Data());
  if (s == nullptr || s->closed()) {
    Napi::Error e = Napi::Error::New(info.Env(), "the attach socket server is closed");
    e.Set("code", Napi::String::New(info.Env(), "ERR_CLOSED"));
    throw e;
  }
  return s;
}

// seqpacketListen(path, mode, onEvent). Called from the main thread.
Napi::Value Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  int32_t mode = ArgInt32(info, 1, "mode");
  if (!info[2].IsFunction()) throw ArgError(env, "a function", "onEvent", info[2]);
  sockaddr_un addr;
  socklen_t len;
  if (!FillAddr(path, &addr, &len)) throw ArgError(env, "a unix socket path shorter than 108 bytes", "path", info[0]);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ErrnoError(env, "socket", errno);
  if (path[0] != '@') {
    struct stat st;
    // A stale socket file from a previous run: replace it (never anything else).
    if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path.c_str());
  }
  if (bind(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, "bind " + path, err);
  }
  if (path[0] != '@' && chmod(path.c_str(), static_cast<mode_t>(mode)) < 0) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, "chmod " + path, err);
  }
  if (listen(fd, 128) < 0) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, "listen " + path, err);
  }
  Server* s = new Server(env, fd, path, info[2].As<Napi::Function>());
  Napi::Object o = Napi::Object::New(env);
  o.Set("send", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    Server* s = ServerOf(info);
    uint32_t conn = static_cast<uint32_t>(ArgInt32(info, 0, "conn"));
    Napi::Buffer<uint8_t> payload = ArgBuffer(info, 1, "payload");
    std::vector<int> fds = ArgFds(info, 2);
    s->Send(info.Env(), conn, payload.Data(), payload.Length(), fds);
    return info.Env().Undefined();
  }, "send", s));
  o.Set("closeConnection", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    Server* s = ServerOf(info);
    s->CloseConn(static_cast<uint32_t>(ArgInt32(info, 0, "conn")), false);
    return info.Env().Undefined();
  }, "closeConnection", s));
  o.Set("close", Napi::Function::New(env, [](const Napi::CallbackInfo& info) -> Napi::Value {
    static_cast<Server*>(info.Data())->Close();
    return info.Env().Undefined();
  }, "close", s));
  return o;
}

// seqpacketConnect(path) → fd (blocking, close-on-exec). Called by attaching processes.
Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  sockaddr_un addr;
  socklen_t len;
  if (!FillAddr(path, &addr, &len)) throw ArgError(env, "a unix socket path shorter than 108 bytes", "path", info[0]);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ErrnoError(env, "socket", errno);
  int r;
  do r = connect(fd, reinterpret_cast<sockaddr*>(&addr), len);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, "connect " + path, err);
  }
  return Napi::Number::New(env, fd);
}

Napi::Value SendFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt32(info, 0, "fd");
  Napi::Buffer<uint8_t> payload = ArgBuffer(info, 1, "payload");
  std::vector<int> fds = ArgFds(info, 2);
  int r = SendPacket(fd, payload.Data(), payload.Length(), fds);
  if (r < 0) throw ErrnoError(env, "sendmsg", -r);
  return env.Undefined();
}

// recvFds(fd, maxPayload, maxFds, timeoutMs) → { payload, fds } | null on timeout. Blocks up to timeoutMs.
Napi::Value RecvFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt32(info, 0, "fd");
  int32_t maxPayload = ArgInt32(info, 1, "maxPayload");
  int32_t maxFds = ArgInt32(info, 2, "maxFds");
  int32_t timeoutMs = ArgInt32(info, 3, "timeoutMs");
  if (maxPayload < 1 || maxPayload > static_cast<int32_t>(kMaxPayload)) throw ArgError(env, "an integer from 1 to 65536", "maxPayload", info[1]);
  if (maxFds < 0 || maxFds > static_cast<int32_t>(kMaxFds)) throw ArgError(env, "an integer from 0 to 16", "maxFds", info[2]);
  struct pollfd p = {fd, POLLIN, 0};
  int r;
  do r = poll(&p, 1, timeoutMs);
  while (r < 0 && errno == EINTR);
  if (r < 0) throw ErrnoError(env, "poll", errno);
  if (r == 0) return env.Null();
  if (p.revents & POLLNVAL) throw ErrnoError(env, "recvmsg", EBADF);
  Packet pk;
  ssize_t n = RecvPacket(fd, static_cast<size_t>(maxPayload), static_cast<size_t>(maxFds), MSG_DONTWAIT, &pk);
  if (n == -EAGAIN) return env.Null();
  if (n < 0) throw ErrnoError(env, "recvmsg", static_cast<int>(-n));
  if (n == 0) {
    Napi::Error e = ErrnoError(env, "recvmsg", ECONNRESET);
    e.Set("message", Napi::String::New(env, "recvmsg: connection closed by peer (ECONNRESET)"));
    throw e;
  }
  if (pk.truncated) {
    for (int f : pk.fds) close(f);
    throw ErrnoError(env, "recvmsg: message larger than maxPayload or more fds than maxFds", EMSGSIZE);
  }
  Napi::Object o = Napi::Object::New(env);
  o.Set("payload", Napi::Buffer<uint8_t>::Copy(env, pk.payload.data(), pk.payload.size()));
  o.Set("fds", FdArray(env, pk.fds));
  return o;
}

Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  return Cred(info.Env(), ArgInt32(info, 0, "fd"));
}

}  // namespace

void InitFdPassing(Napi::Env env, Napi::Object exports) {
  exports.Set("seqpacketListen", Napi::Function::New(env, Listen, "seqpacketListen"));
  exports.Set("seqpacketConnect", Napi::Function::New(env, Connect, "seqpacketConnect"));
  exports.Set("sendFds", Napi::Function::New(env, SendFds, "sendFds"));
  exports.Set("recvFds", Napi::Function::New(env, RecvFds, "recvFds"));
  exports.Set("peerCred", Napi::Function::New(env, PeerCred, "peerCred"));
}

}  // namespace farmem
