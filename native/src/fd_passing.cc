// FdPassing: SOCK_SEQPACKET unix sockets carrying a small payload plus file descriptors
// (SCM_RIGHTS), with the peer's credentials (SO_PEERCRED). The server side runs on the main loop:
// the listening socket and every connection are uv_poll_t handles, so no extra thread and no
// blocking call. The client side (seqpacketConnect, sendFds, recvFds) is plain blocking calls for
// applications and tests, bounded by a timeout where it waits.
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <vector>

#include "errors.h"
#include "fd_passing.h"
#include "modules.h"

namespace farmem {

// sendmsg with fds attached (SCM_RIGHTS), to the connected peer or to `to` (a datagram socket).
// Returns 0 or -errno. Shared with sd_notify.cc (declared in fd_passing.h).
int SendWithFds(int sock, const uint8_t* data, size_t len, const std::vector<int>& fds, int flags, const struct sockaddr* to,
                socklen_t toLen) {
  struct iovec iov = {const_cast<uint8_t*>(data), len};
  struct msghdr msg = {};
  msg.msg_name = const_cast<struct sockaddr*>(to);
  msg.msg_namelen = to == nullptr ? 0 : toLen;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  std::vector<char> cbuf(CMSG_SPACE(sizeof(int) * (fds.empty() ? 1 : fds.size())), 0);
  if (!fds.empty()) {
    msg.msg_control = cbuf.data();
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    struct cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    memcpy(CMSG_DATA(c), fds.data(), sizeof(int) * fds.size());
  }
  ssize_t n;
  do n = sendmsg(sock, &msg, flags | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n < 0 ? -errno : 0;
}

namespace {

constexpr size_t kMaxPayload = 64 * 1024;  // a server message; bigger ones are an error event
constexpr int kMaxFds = 16;                // fds per message; more are dropped and reported
constexpr int kReadsPerWakeup = 64;        // fairness between connections

// Fills a sockaddr_un for a path, or an abstract name written "@name". Returns its length, or -errno.
int MakeAddr(const std::string& path, struct sockaddr_un* sa) {
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (path.empty()) return -EINVAL;
  if (path.size() >= sizeof sa->sun_path) return -ENAMETOOLONG;
  memcpy(sa->sun_path, path.data(), path.size());
  if (path[0] == '@') sa->sun_path[0] = '\0';
  return static_cast<int>(offsetof(struct sockaddr_un, sun_path) + path.size() + (path[0] == '@' ? 0 : 1));
}

std::vector<int> ArgFds(const Napi::CallbackInfo& info, size_t i) {
  Napi::Value v = info[i];
  if (!v.IsArray()) throw ArgError(info.Env(), "an array of fds", "fds", v);
  Napi::Array a = v.As<Napi::Array>();
  std::vector<int> fds;
  for (uint32_t k = 0; k < a.Length(); k++) {
    Napi::Value e = a.Get(k);
    if (!e.IsNumber() || e.As<Napi::Number>().DoubleValue() != e.As<Napi::Number>().Int32Value() ||
        e.As<Napi::Number>().Int32Value() < 0)
      throw ArgError(info.Env(), "an array of fds", "fds", v);
    fds.push_back(e.As<Napi::Number>().Int32Value());
  }
  if (fds.size() > static_cast<size_t>(kMaxFds)) throw ArgError(info.Env(), "at most 16 fds", "fds", v);
  return fds;
}


struct Received {
  ssize_t n = 0;  // payload bytes, or -errno
  std::vector<int> fds;
  bool truncated = false;  // payload or fds did not fit: the fds received are already closed
};

Received RecvWithFds(int sock, uint8_t* buf, size_t cap, int maxFds) {
  Received r;
  std::vector<char> cbuf(CMSG_SPACE(sizeof(int) * (maxFds > 0 ? maxFds : 1)));
  struct iovec iov = {buf, cap};
  struct msghdr msg = {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf.data();
  msg.msg_controllen = cbuf.size();
  do r.n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  while (r.n < 0 && errno == EINTR);
  if (r.n < 0) {
    r.n = -errno;
    return r;
  }
  for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < k; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      r.fds.push_back(fd);
    }
  }
  if ((msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) || r.fds.size() > static_cast<size_t>(maxFds)) {
    r.truncated = true;
    for (int fd : r.fds) close(fd);
    r.fds.clear();
  }
  return r;
}

Napi::Array FdArray(Napi::Env env, const std::vector<int>& fds) {
  Napi::Array a = Napi::Array::New(env, fds.size());
  for (uint32_t i = 0; i < fds.size(); i++) a.Set(i, Napi::Number::New(env, fds[i]));
  return a;
}

Napi::Object CredObject(Napi::Env env, const struct ucred& c) {
  Napi::Object o = Napi::Object::New(env);
  o.Set("pid", Napi::Number::New(env, c.pid));
  o.Set("uid", Napi::Number::New(env, c.uid));
  o.Set("gid", Napi::Number::New(env, c.gid));
  return o;
}

// ---------------------------------------------------------------------------------------------
// Server. Owned by itself while open (the JS functions hold shared_ptrs too), so the uv handles
// never outlive it; close() or environment teardown closes every handle.

class Server : public std::enable_shared_from_this<Server> {
 public:
  struct Conn {
    Server* server;
    uint32_t id;
    int fd;
    uv_poll_t poll;
  };

  Server(Napi::Env env, int fd, Napi::Function onEvent, std::string path)
      : env_(env), fd_(fd), path_(std::move(path)), context_(env, "farmem.seqpacket") {
    onEvent_ = Napi::Persistent(onEvent);
  }

  void Start() {
    uv_loop_t* loop = nullptr;
    napi_get_uv_event_loop(env_, &loop);
    self_ = shared_from_this();
    listen_.data = this;
    uv_poll_init(loop, &listen_, fd_);
    uv_poll_start(&listen_, UV_READABLE, [](uv_poll_t* h, int status, int events) {
      static_cast<Server*>(h->data)->OnAccept();
    });
    napi_add_env_cleanup_hook(env_, Cleanup, this);
  }

  // Called from the main thread (JS).
  int Send(uint32_t conn, const uint8_t* data, size_t len, const std::vector<int>& fds) {
    auto it = conns_.find(conn);
    if (closed_ || it == conns_.end()) return -EBADF;
    // Non-blocking: a full socket buffer is EAGAIN for the caller, never a stalled main loop.
    return SendWithFds(it->second->fd, data, len, fds, MSG_DONTWAIT);
  }

  void CloseConnection(uint32_t conn) {
    auto it = conns_.find(conn);
    if (it == conns_.end()) return;
    Conn* c = it->second;
    conns_.erase(it);
    Release(c);
  }

  void Close() {
    if (closed_) return;
    closed_ = true;
    napi_remove_env_cleanup_hook(env_, Cleanup, this);
    for (auto& kv : conns_) Release(kv.second);
    conns_.clear();
    pending_++;
    uv_close(reinterpret_cast<uv_handle_t*>(&listen_), [](uv_handle_t* h) { static_cast<Server*>(h->data)->HandleClosed(); });
    close(fd_);
    struct stat st;
    if (!path_.empty() && path_[0] != '@' && stat(path_.c_str(), &st) == 0 && st.st_ino == ino_) unlink(path_.c_str());
    onEvent_.Reset();
  }

  void SetInode(ino_t ino) { ino_ = ino; }

 private:
  static void Cleanup(void* arg) {
    // The environment is going away: release the handles; JS is no longer called.
    Server* s = static_cast<Server*>(arg);
    s->teardown_ = true;
    s->Close();
  }

  void Release(Conn* c) {
    pending_++;
    uv_close(reinterpret_cast<uv_handle_t*>(&c->poll), [](uv_handle_t* h) {
      Conn* c = static_cast<Conn*>(h->data);
      Server* s = c->server;
      delete c;
      s->HandleClosed();
    });
    close(c->fd);
  }

  void HandleClosed() {
    if (--pending_ == 0 && closed_) self_.reset();  // may delete this
  }

  void OnAccept() {
    for (int i = 0; i < kReadsPerWakeup && !closed_; i++) {
      int fd = accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
      if (fd < 0) {
        if (errno == EINTR || errno == ECONNABORTED) continue;
        if (errno != EAGAIN) Emit("error", 0, nullptr, nullptr, 0, nullptr, errno, "accept4");
        return;
      }
      struct ucred cred = {};
      socklen_t len = sizeof cred;
      getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len);
      Conn* c = new Conn{this, nextId_++, fd, {}};
      c->poll.data = c;
      uv_loop_t* loop = nullptr;
      napi_get_uv_event_loop(env_, &loop);
      uv_poll_init(loop, &c->poll, fd);
      uv_poll_start(&c->poll, UV_READABLE | UV_DISCONNECT, [](uv_poll_t* h, int status, int events) {
        Conn* c = static_cast<Conn*>(h->data);
        c->server->OnReadable(c->id);
      });
      conns_[c->id] = c;
      Emit("connect", c->id, &cred, nullptr, 0, nullptr, 0, nullptr);
    }
  }

  void OnReadable(uint32_t id) {
    std::vector<uint8_t> buf(kMaxPayload);
    for (int i = 0; i < kReadsPerWakeup; i++) {
      // The handler may have closed this connection or the server.
      auto it = conns_.find(id);
      if (closed_ || it == conns_.end()) return;
      Received r = RecvWithFds(it->second->fd, buf.data(), buf.size(), kMaxFds);
      if (r.n == -EAGAIN) return;
      if (r.n < 0 && r.n != -ECONNRESET) {
        Emit("error", id, nullptr, nullptr, 0, nullptr, static_cast<int>(-r.n), "recvmsg");
      }
      if (r.n < 0 || (r.n == 0 && r.fds.empty() && !r.truncated)) {
        // Hang-up (a zero-length read on a seqpacket socket is end of stream here).
        CloseConnection(id);
        Emit("close", id, nullptr, nullptr, 0, nullptr, 0, nullptr);
        return;
      }
      if (r.truncated) {
        Emit("error", id, nullptr, nullptr, 0, nullptr, EMSGSIZE, "recvmsg (message over 64 KiB or 16 fds, dropped)");
        continue;
      }
      Emit("message", id, nullptr, buf.data(), static_cast<size_t>(r.n), &r.fds, 0, nullptr);
    }
  }

  // Calls onEvent on the main thread, outside any JS frame: a handle scope and a callback scope
  // (so microtasks run after it). An exception from the handler goes to process 'uncaughtException'
  // as for any event listener; it never unwinds through libuv.
  void Emit(const char* type, uint32_t conn, const struct ucred* cred, const uint8_t* data, size_t len,
            const std::vector<int>* fds, int err, const char* syscall) {
    if (teardown_ || onEvent_.IsEmpty()) {
      if (fds)
        for (int fd : *fds) close(fd);
      return;
    }
    Napi::HandleScope scope(env_);
    try {
      Napi::Object e = Napi::Object::New(env_);
      e.Set("type", Napi::String::New(env_, type));
      e.Set("conn", Napi::Number::New(env_, conn));
      if (cred) e.Set("cred", CredObject(env_, *cred));
      if (data) {
        e.Set("payload", Napi::Buffer<uint8_t>::Copy(env_, data, len));
        e.Set("fds", FdArray(env_, *fds));
      }
      if (syscall) e.Set("error", ErrnoError(env_, syscall, err).Value());
      auto keep = shared_from_this();  // the handler may close the server
      onEvent_.MakeCallback(env_.Global(), {e}, context_);
    } catch (const Napi::Error& e) {
      napi_fatal_exception(env_, e.Value());
    }
  }

  Napi::Env env_;
  int fd_;
  std::string path_;
  ino_t ino_ = 0;
  Napi::AsyncContext context_;
  Napi::FunctionReference onEvent_;
  uv_poll_t listen_;
  std::map<uint32_t, Conn*> conns_;
  uint32_t nextId_ = 1;
  int pending_ = 0;
  bool closed_ = false;
  bool teardown_ = false;
  std::shared_ptr<Server> self_;
};

Napi::Value Listen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  int mode = ArgInt32(info, 1, "mode");
  if (!info[2].IsFunction()) throw ArgError(env, "a function", "onEvent", info[2]);
  struct sockaddr_un sa;
  int alen = MakeAddr(path, &sa);
  if (alen < 0) throw ErrnoError(env, "bind", -alen);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw ErrnoError(env, "socket", errno);
  if (path[0] != '@') {
    // A stale socket file from a previous run would make bind fail with EADDRINUSE.
    struct stat st;
    if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path.c_str());
  }
  const char* failed = nullptr;
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&sa), alen) < 0) failed = "bind";
  else if (path[0] != '@' && chmod(path.c_str(), mode) < 0) failed = "chmod";
  else if (listen(fd, 128) < 0) failed = "listen";
  if (failed) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, failed, err);
  }
  auto server = std::make_shared<Server>(env, fd, info[2].As<Napi::Function>(), path);
  struct stat st;
  if (path[0] != '@' && stat(path.c_str(), &st) == 0) server->SetInode(st.st_ino);
  server->Start();

  Napi::Object o = Napi::Object::New(env);
  o.Set("send", Napi::Function::New(env, [server](const Napi::CallbackInfo& info) {
    uint32_t conn = static_cast<uint32_t>(ArgInt32(info, 0, "conn"));
    Napi::Buffer<uint8_t> payload = ArgBuffer(info, 1, "payload");
    std::vector<int> fds = ArgFds(info, 2);
    int r = server->Send(conn, payload.Data(), payload.Length(), fds);
    if (r < 0) throw ErrnoError(info.Env(), "sendmsg", -r);
  }, "send"));
  o.Set("closeConnection", Napi::Function::New(env, [server](const Napi::CallbackInfo& info) {
    server->CloseConnection(static_cast<uint32_t>(ArgInt32(info, 0, "conn")));
  }, "closeConnection"));
  o.Set("close", Napi::Function::New(env, [server](const Napi::CallbackInfo& info) { server->Close(); }, "close"));
  return o;
}

// ---------------------------------------------------------------------------------------------
// Client side: blocking calls.

Napi::Value Connect(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  struct sockaddr_un sa;
  int alen = MakeAddr(path, &sa);
  if (alen < 0) throw ErrnoError(env, "connect", -alen);
  int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ErrnoError(env, "socket", errno);
  int r;
  do r = connect(fd, reinterpret_cast<struct sockaddr*>(&sa), alen);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, "connect", err);
  }
  return Napi::Number::New(env, fd);
}

Napi::Value SendFds(const Napi::CallbackInfo& info) {
  int fd = ArgInt32(info, 0, "fd");
  Napi::Buffer<uint8_t> payload = ArgBuffer(info, 1, "payload");
  std::vector<int> fds = ArgFds(info, 2);
  int r = SendWithFds(fd, payload.Data(), payload.Length(), fds, 0);
  if (r < 0) throw ErrnoError(info.Env(), "sendmsg", -r);
  return info.Env().Undefined();
}

// Waits up to timeoutMs (-1: forever) for one message. null on timeout. A hang-up is ECONNRESET.
Napi::Value RecvFds(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int fd = ArgInt32(info, 0, "fd");
  int maxPayload = ArgInt32(info, 1, "maxPayload");
  int maxFds = ArgInt32(info, 2, "maxFds");
  int timeoutMs = ArgInt32(info, 3, "timeoutMs");
  struct pollfd p = {fd, POLLIN, 0};
  int r;
  do r = poll(&p, 1, timeoutMs);
  while (r < 0 && errno == EINTR);
  if (r < 0) throw ErrnoError(env, "poll", errno);
  if (r == 0) return env.Null();
  if (p.revents & POLLNVAL) throw ErrnoError(env, "poll", EBADF);
  std::vector<uint8_t> buf(maxPayload > 0 ? maxPayload : 1);
  Received m = RecvWithFds(fd, buf.data(), maxPayload, maxFds);
  if (m.n == -EAGAIN) return env.Null();
  if (m.n < 0) throw ErrnoError(env, "recvmsg", static_cast<int>(-m.n));
  if (m.truncated) throw ErrnoError(env, "recvmsg (message larger than maxPayload or maxFds, dropped)", EMSGSIZE);
  if (m.n == 0 && m.fds.empty() && (p.revents & POLLHUP)) throw ErrnoError(env, "recvmsg (peer closed)", ECONNRESET);
  Napi::Object o = Napi::Object::New(env);
  o.Set("payload", Napi::Buffer<uint8_t>::Copy(env, buf.data(), m.n));
  o.Set("fds", FdArray(env, m.fds));
  return o;
}

Napi::Value PeerCred(const Napi::CallbackInfo& info) {
  struct ucred c = {};
  socklen_t len = sizeof c;
  if (getsockopt(ArgInt32(info, 0, "fd"), SOL_SOCKET, SO_PEERCRED, &c, &len) < 0)
    throw ErrnoError(info.Env(), "getsockopt SO_PEERCRED", errno);
  return CredObject(info.Env(), c);
}

// A bound unix datagram socket (path or "@abstract"), for receiving sd_notify messages in tests
// and anything else that plays the service manager's side; read it with recvFds.
Napi::Value DgramBind(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::string path = ArgString(info, 0, "path");
  struct sockaddr_un sa;
  int alen = MakeAddr(path, &sa);
  if (alen < 0) throw ErrnoError(env, "bind", -alen);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw ErrnoError(env, "socket", errno);
  if (bind(fd, reinterpret_cast<struct sockaddr*>(&sa), alen) < 0) {
    int err = errno;
    close(fd);
    throw ErrnoError(env, "bind", err);
  }
  return Napi::Number::New(env, fd);
}

}  // namespace

void InitFdPassing(Napi::Env env, Napi::Object exports) {
  exports.Set("seqpacketListen", Napi::Function::New(env, Listen, "seqpacketListen"));
  exports.Set("seqpacketConnect", Napi::Function::New(env, Connect, "seqpacketConnect"));
  exports.Set("sendFds", Napi::Function::New(env, SendFds, "sendFds"));
  exports.Set("recvFds", Napi::Function::New(env, RecvFds, "recvFds"));
  exports.Set("peerCred", Napi::Function::New(env, PeerCred, "peerCred"));
  exports.Set("dgramBind", Napi::Function::New(env, DgramBind, "dgramBind"));
}

}  // namespace farmem
