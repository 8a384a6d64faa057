// FaultThread: see fault_thread.h. The N-API class is at the end of this file.
//
// Threads per vCPU: one FaultThread per vCPU, each pinned, all watching the same uffds, is built from
// several FaultThread objects adding the same registrations. Measured on the 2-vCPU VMs (cache hits,
// 20000 faults, p50): the application on CPU 1 with a single thread on CPU 0: 38-48 us (every fault
// wakes the other vCPU); with threads on 0 and 1: 17 us wherever the application runs; a single
// thread on the application's CPU: ~10 us. The uffds are added WITHOUT EPOLLEXCLUSIVE: exclusive
// wake-ups go to the first epoll in the wait queue whatever its CPU (49 us when that is the remote
// one), while waking all lets the thread on the faulting CPU win (the other finds nothing: EAGAIN).
#include "fault_thread.h"

#include <chrono>

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include "errors.h"
#include "modules.h"
#include "uffd_ops.h"

namespace farmem {

static constexpr int kBatch = 64;       // uffd_msg per read, epoll events per wait
static constexpr int kCopyRetries = 8;  // EAGAIN rounds (each after draining the events) before JS gets the fault
static constexpr uint64_t kStopTag = 0;

FaultThread::FaultThread(std::shared_ptr<PageCache> cache, Sink sink) : cache_(std::move(cache)), sink_(std::move(sink)) {}

FaultThread::~FaultThread() { Stop(); }

int FaultThread::Start(int cpu) {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) return -errno;
  stopfd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stopfd_ < 0) return -errno;
  struct epoll_event ev = {};
  ev.events = EPOLLIN;
  ev.data.u64 = kStopTag;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, stopfd_, &ev) < 0) return -errno;
  thread_ = std::thread([this] { Run(); });
  return cpu >= 0 ? SetAffinity(cpu) : 0;
}

int FaultThread::SetAffinity(int cpu) {
  if (!thread_.joinable()) return -ESRCH;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (cpu >= 0) {
    CPU_SET(cpu, &set);
  } else {
    long n = sysconf(_SC_NPROCESSORS_CONF);
    for (long i = 0; i < n && i < CPU_SETSIZE; i++) CPU_SET(i, &set);
  }
  return -pthread_setaffinity_np(thread_.native_handle(), sizeof set, &set);
}

int FaultThread::Add(const FaultRegistration& r) {
  std::unique_lock<std::shared_mutex> l(mu_);
  if (stopped_) return -ESHUTDOWN;
  if (byId_.count(r.attachment)) return -EEXIST;
  auto a = std::make_unique<Attachment>();
  a->reg = r;
  a->serial = nextSerial_++;
  a->reg.uffd = fcntl(r.uffd, F_DUPFD_CLOEXEC, 3);
  if (a->reg.uffd < 0) return -errno;
  // epoll on a blocking uffd always reports an error (KERNEL.md). The flag lives on the open file,
  // shared with the process's copy, which never reads it.
  int fl = fcntl(a->reg.uffd, F_GETFL);
  if (fl >= 0 && !(fl & O_NONBLOCK)) fcntl(a->reg.uffd, F_SETFL, fl | O_NONBLOCK);
  a->reg.pidfd = -1;
  if (r.pidfd >= 0) {
    a->reg.pidfd = fcntl(r.pidfd, F_DUPFD_CLOEXEC, 3);
    if (a->reg.pidfd < 0) {
      int err = errno;
      close(a->reg.uffd);
      return -err;
    }
  }
  struct epoll_event ev = {};
  ev.events = EPOLLIN;  // not EPOLLEXCLUSIVE: see the note at the top
  ev.data.u64 = a->serial << 1;
  int rc = epoll_ctl(epfd_, EPOLL_CTL_ADD, a->reg.uffd, &ev);
  if (rc == 0 && a->reg.pidfd >= 0) {
    ev.events = EPOLLIN;
    ev.data.u64 = (a->serial << 1) | 1;
    rc = epoll_ctl(epfd_, EPOLL_CTL_ADD, a->reg.pidfd, &ev);
  }
  if (rc < 0) {
    int err = errno;
    epoll_ctl(epfd_, EPOLL_CTL_DEL, a->reg.uffd, nullptr);
    close(a->reg.uffd);
    if (a->reg.pidfd >= 0) close(a->reg.pidfd);
    return -err;
  }
  byId_[r.attachment] = a->serial;
  bySerial_[a->serial] = std::move(a);
  return 0;
}

// Stops watching without closing (fault thread, or Remove under the exclusive lock).
void FaultThread::Unwatch(Attachment& a) {
  epoll_ctl(epfd_, EPOLL_CTL_DEL, a.reg.uffd, nullptr);
  if (a.reg.pidfd >= 0) epoll_ctl(epfd_, EPOLL_CTL_DEL, a.reg.pidfd, nullptr);
}

bool FaultThread::Remove(uint32_t attachment) {
  // The fault thread serves an attachment only under the shared lock, and looks it up by serial
  // each time: once we hold the lock exclusively and erase it, it cannot touch these fds again.
  std::unique_lock<std::shared_mutex> l(mu_);
  auto it = byId_.find(attachment);
  if (it == byId_.end()) return false;
  auto s = bySerial_.find(it->second);
  Attachment& a = *s->second;
  Unwatch(a);
  close(a.reg.uffd);
  if (a.reg.pidfd >= 0) close(a.reg.pidfd);
  bySerial_.erase(s);
  byId_.erase(it);
  return true;
}

void FaultThread::Stop() {
  if (stopped_.exchange(true)) return;
  if (thread_.joinable()) {
    uint64_t one = 1;
    while (write(stopfd_, &one, sizeof one) < 0 && errno == EINTR) {
    }
    thread_.join();
  }
  std::unique_lock<std::shared_mutex> l(mu_);
  for (auto& [serial, a] : bySerial_) {
    close(a->reg.uffd);
    if (a->reg.pidfd >= 0) close(a->reg.pidfd);
  }
  bySerial_.clear();
  byId_.clear();
  if (epfd_ >= 0) close(epfd_);
  if (stopfd_ >= 0) close(stopfd_);
  epfd_ = stopfd_ = -1;
}

// Called from the fault thread, shared lock held.
void FaultThread::Gone(Attachment& a, const char* reason, int err, std::vector<FaultEventData>& out) {
  if (a.gone.exchange(true)) return;
  Unwatch(a);  // a dead process's pidfd stays readable: stop watching, JS calls remove()
  FaultEventData e;
  e.kind = FaultEventData::kGone;
  e.attachment = a.reg.attachment;
  e.reason = reason;
  if (err) e.detail = ErrnoName(err);
  out.push_back(std::move(e));
}

// Called from the fault thread, shared lock held.
void FaultThread::HandleMessage(Attachment& a, const struct uffd_msg& m, std::vector<FaultEventData>& out, std::vector<Retry>& again) {
  const FaultRegistration& r = a.reg;
  FaultEventData e;
  e.kind = FaultEventData::kPagefault;
  e.attachment = r.attachment;
  switch (m.event) {
    case UFFD_EVENT_PAGEFAULT: {
      uint64_t addr = m.arg.pagefault.address & ~uint64_t(r.pageSize - 1);
      e.a = addr;
      e.write = m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE;
      e.wp = m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP;
      e.minor = m.arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR;
      e.tid = m.arg.pagefault.feat.ptid;
      bool inside = addr >= r.start && addr - r.start < r.length;
      if (inside) e.page = int64_t((addr - r.start) / r.pageSize);
      faults_.fetch_add(1, std::memory_order_relaxed);
      size_t len = 0;
      std::unique_ptr<uint8_t[]> data;
      if (inside && !e.wp && !e.minor && cache_) data = cache_->Take(r.region, uint64_t(e.page), &len);
      if (data && len == r.pageSize) {
        // A write fault installs the page writable: it is dirty at once (no second, WP round trip).
        bool wp = r.writeProtect && !e.write;
        int rc = UffdCopy(r.uffd, addr, data.get(), len, wp, false, nullptr);
        if (rc == -EEXIST) {  // installed by another path: success, wake the faulting thread
          UffdWake(r.uffd, addr, len);
          rc = 0;
        }
        if (rc == 0) {
          e.resolvedByCache = true;
          cacheHits_.fetch_add(1, std::memory_order_relaxed);
        } else if (rc == -EAGAIN) {
          e.resolvedByCache = true;  // until a retry fails
          again.push_back(Retry{out.size(), addr, std::move(data), wp});
        } else if (rc == -ESRCH) {
          out.push_back(std::move(e));
          Gone(a, "exited", ESRCH, out);
          return;
        } else {
          cache_->Put(r.region, uint64_t(e.page), data.get(), len);  // JS resolves it, from the cache
        }
      }
      break;
    }
    case UFFD_EVENT_FORK:
      e.kind = FaultEventData::kFork;
      e.fd = int(m.arg.fork.ufd);
      break;
    case UFFD_EVENT_REMAP:
      e.kind = FaultEventData::kRemap;
      e.a = m.arg.remap.from;
      e.b = m.arg.remap.to;
      e.length = m.arg.remap.len;
      break;
    case UFFD_EVENT_REMOVE:
    case UFFD_EVENT_UNMAP:
      e.kind = m.event == UFFD_EVENT_REMOVE ? FaultEventData::kRemove : FaultEventData::kUnmap;
      e.a = m.arg.remove.start;
      e.b = m.arg.remove.end;
      break;
    default:
      return;  // an event this build does not know
  }
  out.push_back(std::move(e));
}

// Reads every pending message (EAGAIN ends it), then retries the cache copies that met EAGAIN
// (an unread REMOVE/UNMAP blocks copies: drain, then retry). Fault thread, shared lock held.
void FaultThread::ServeUffd(Attachment& a, std::vector<FaultEventData>& out) {
  struct uffd_msg msgs[kBatch];
  std::vector<Retry> again;
  for (int round = 0;; round++) {
    for (;;) {
      ssize_t n = read(a.reg.uffd, msgs, sizeof msgs);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      if (n <= 0) {
        Gone(a, n == 0 ? "closed" : "error", n == 0 ? 0 : errno, out);
        return;
      }
      for (size_t i = 0; i < size_t(n) / sizeof msgs[0] && !a.gone; i++) HandleMessage(a, msgs[i], out, again);
      if (a.gone) return;
      // A short read drained the queue: skip the read that would say EAGAIN (a syscall on every
      // fault); epoll is level-triggered and reports what arrives later.
      if (size_t(n) < sizeof msgs && again.empty()) break;
    }
    if (again.empty()) return;
    std::vector<Retry> still;
    for (Retry& t : again) {
      FaultEventData& e = out[t.event];
      int rc = UffdCopy(a.reg.uffd, t.addr, t.data.get(), a.reg.pageSize, t.wp, false, nullptr);
      if (rc == -EEXIST) {
        UffdWake(a.reg.uffd, t.addr, a.reg.pageSize);
        rc = 0;
      }
      if (rc == 0) {
        cacheHits_.fetch_add(1, std::memory_order_relaxed);
      } else if (rc == -EAGAIN && round + 1 < kCopyRetries) {
        still.push_back(std::move(t));
      } else if (rc == -ESRCH) {
        e.resolvedByCache = false;
        Gone(a, "exited", ESRCH, out);
        return;
      } else {
        e.resolvedByCache = false;
        cache_->Put(a.reg.region, uint64_t(e.page), t.data.get(), a.reg.pageSize);
      }
    }
    again.swap(still);
    if (again.empty()) return;
  }
}

// Held cache hits are handed over after kLingerMs of quiet, and in any case kLingerMs after they
// were first held: every thread epolls every uffd, so a uffd another thread keeps serving (say a
// write-protect fault JavaScript answers with a wake, because it has not yet seen this thread's
// cache hit of that page) wakes this thread without giving it anything to read. "Quiet" alone would
// then never come, and the held hit — the news JS is waiting for — never leave.
void FaultThread::Run() {
  struct epoll_event evs[kBatch];
  bool held = false;
  std::chrono::steady_clock::time_point heldUntil{};
  auto hold = [&](bool nowHeld) {
    if (nowHeld && !held) heldUntil = std::chrono::steady_clock::now() + std::chrono::milliseconds(kLingerMs);
    held = nowHeld;
  };
  for (;;) {
    int timeout = -1;
    if (held) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(heldUntil - std::chrono::steady_clock::now()).count();
      timeout = left > 0 ? static_cast<int>(left) : 0;
    }
    int n = epoll_wait(epfd_, evs, kBatch, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      return;  // only EBADF/EINVAL: the fds are ours, so not while running
    }
    if (n == 0 || (held && std::chrono::steady_clock::now() >= heldUntil)) {  // hand the held cache hits over now
      hold(sink_({}, true));
      if (n == 0) continue;
    }
    std::vector<FaultEventData> out;
    bool stop = false;
    {
      std::shared_lock<std::shared_mutex> l(mu_);
      for (int i = 0; i < n; i++) {
        uint64_t tag = evs[i].data.u64;
        if (tag == kStopTag) {
          stop = true;
          continue;
        }
        auto it = bySerial_.find(tag >> 1);
        if (it == bySerial_.end() || it->second->gone) continue;  // removed since epoll_wait returned
        Attachment& a = *it->second;
        if (tag & 1) {
          Gone(a, "exited", 0, out);
        } else {
          if (evs[i].events & EPOLLIN) ServeUffd(a, out);
          if (evs[i].events & (EPOLLHUP | EPOLLERR)) Gone(a, "closed", 0, out);
        }
      }
    }
    if (stop) {
      sink_(std::move(out), true);
      return;
    }
    if (!out.empty()) {
      bool urgent = false;
      for (const auto& e : out) urgent = urgent || e.kind != FaultEventData::kPagefault || !e.resolvedByCache;
      hold(sink_(std::move(out), urgent));
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The JS class. Methods run on the main thread; arguments were validated in daemon/native.ts.
// Events reach JS through a ThreadSafeFunction that never blocks the fault thread: batches
// accumulate in the outbox and one call is posted while none is pending (coalescing).

static constexpr size_t kHoldMax = 256;  // cache-hit events held back at most

struct Outbox {
  std::mutex mu;
  std::vector<FaultEventData> events;
  bool posted = false;
  uint64_t batches = 0, delivered = 0;  // main thread only
};

static Napi::Value EventToJs(Napi::Env env, const FaultEventData& e) {
  static const char* kinds[] = {"pagefault", "fork", "remap", "remove", "unmap", "gone"};
  Napi::Object o = Napi::Object::New(env);
  o.Set("kind", kinds[e.kind]);
  o.Set("attachment", double(e.attachment));
  switch (e.kind) {
    case FaultEventData::kPagefault:
      o.Set("page", double(e.page));
      o.Set("address", Napi::BigInt::New(env, e.a));
      o.Set("write", e.write);
      o.Set("wp", e.wp);
      o.Set("minor", e.minor);
      o.Set("tid", double(e.tid));
      o.Set("resolved", e.resolvedByCache ? Napi::Value(Napi::String::New(env, "cache")) : env.Null());
      break;
    case FaultEventData::kFork:
      o.Set("uffd", double(e.fd));
      break;
    case FaultEventData::kRemap:
      o.Set("from", Napi::BigInt::New(env, e.a));
      o.Set("to", Napi::BigInt::New(env, e.b));
      o.Set("length", double(e.length));
      break;
    case FaultEventData::kRemove:
    case FaultEventData::kUnmap:
      o.Set("start", Napi::BigInt::New(env, e.a));
      o.Set("end", Napi::BigInt::New(env, e.b));
      break;
    case FaultEventData::kGone:
      o.Set("reason", e.reason);
      o.Set("detail", e.detail.empty() ? env.Null() : Napi::Value(Napi::String::New(env, e.detail)));
      break;
  }
  return o;
}

static Napi::Value Field(const Napi::Object& o, const char* name) { return o.Get(name); }

static uint64_t FieldU64(Napi::Env env, const Napi::Object& o, const char* name) {
  Napi::Value v = Field(o, name);
  if (v.IsBigInt()) {
    bool lossless = true;
    uint64_t r = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (lossless) return r;
  } else if (v.IsNumber()) {
    double d = v.As<Napi::Number>().DoubleValue();
    if (d >= 0 && d == double(uint64_t(d))) return uint64_t(d);
  }
  throw ArgError(env, "an unsigned integer", std::string("reg.") + name, v);
}

class FaultThreadWrap : public Napi::ObjectWrap<FaultThreadWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "FaultThread",
                       {InstanceMethod("add", &FaultThreadWrap::Add), InstanceMethod("remove", &FaultThreadWrap::Remove),
                        InstanceMethod("setAffinity", &FaultThreadWrap::SetAffinity),
                        InstanceMethod("stats", &FaultThreadWrap::Stats), InstanceMethod("stop", &FaultThreadWrap::Stop)});
  }

  // new FaultThread(cpu: number | null, cache: PageCache | null, onEvents)
  explicit FaultThreadWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<FaultThreadWrap>(info) {
    Napi::Env env = info.Env();
    int cpu = info[0].IsNull() ? -1 : ArgInt32(info, 0, "cpu");
    std::shared_ptr<PageCache> cache;
    if (!info[1].IsNull()) {
      cache = PageCacheFromJs(info[1]);
      if (!cache) throw ArgError(env, "a PageCache or null", "cache", info[1]);
    }
    if (!info[2].IsFunction()) throw ArgError(env, "a function", "onEvents", info[2]);
    // Keeps the event loop alive until stop(): a watched uffd is live work.
    tsfn_ = Napi::ThreadSafeFunction::New(env, info[2].As<Napi::Function>(), "farmem fault thread", 0, 1);
    outbox_ = std::make_shared<Outbox>();
    std::shared_ptr<Outbox> box = outbox_;
    Napi::ThreadSafeFunction tsfn = tsfn_;
    // Called from the fault thread.
    // Faults already resolved from the cache are only news for JS (resident sets, prefetcher): they
    // wait for an urgent event, kHoldMax of them, or kLingerMs of quiet. Waking the JS thread for
    // each one put it on the faulting CPU between two faults and doubled the cache-hit round trip.
    auto sink = [box, tsfn](std::vector<FaultEventData>&& evs, bool urgent) mutable {
      std::unique_lock<std::mutex> l(box->mu);
      for (auto& e : evs) box->events.push_back(std::move(e));
      if (box->posted || box->events.empty()) return false;
      if (!urgent && box->events.size() < kHoldMax) return true;
      box->posted = true;
      l.unlock();
      napi_status st = tsfn.NonBlockingCall([box](Napi::Env env, Napi::Function fn) { Deliver(env, fn, *box); });
      if (st != napi_ok) {  // closing: nobody will read them
        std::lock_guard<std::mutex> g(box->mu);
        box->posted = false;
        box->events.clear();
      }
      return false;
    };
    thread_ = std::make_unique<FaultThread>(std::move(cache), std::move(sink));
    int rc = thread_->Start(cpu);
    if (rc < 0) {
      thread_.reset();
      tsfn_.Release();
      throw ErrnoError(env, "start fault thread", -rc);
    }
  }

  ~FaultThreadWrap() override { Shutdown(); }

 private:
  // Main thread: takes the whole outbox and hands it to JS as one array.
  static void Deliver(Napi::Env env, Napi::Function fn, Outbox& box) {
    if (env == nullptr || fn.IsEmpty()) return;
    std::vector<FaultEventData> evs;
    {
      std::lock_guard<std::mutex> l(box.mu);
      evs.swap(box.events);
      box.posted = false;
    }
    if (evs.empty()) return;
    box.batches++;
    box.delivered += evs.size();
    Napi::Array arr = Napi::Array::New(env, evs.size());
    for (size_t i = 0; i < evs.size(); i++) arr.Set(uint32_t(i), EventToJs(env, evs[i]));
    try {
      fn.Call({arr});
    } catch (const Napi::Error& e) {
      e.ThrowAsJavaScriptException();  // surfaces as an uncaught exception, as any callback's would
    }
  }

  void Shutdown() {
    if (thread_) thread_->Stop();  // joined: no more NonBlockingCall after this
    if (!released_) {
      released_ = true;
      tsfn_.Release();  // calls already queued are still delivered
    }
  }

  void Add(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!info[0].IsObject()) throw ArgError(env, "a registration object", "reg", info[0]);
    Napi::Object o = info[0].As<Napi::Object>();
    FaultRegistration r{};
    r.attachment = uint32_t(FieldU64(env, o, "attachment"));
    r.uffd = int(FieldU64(env, o, "uffd"));
    r.pidfd = Field(o, "pidfd").IsNull() ? -1 : int(FieldU64(env, o, "pidfd"));
    r.region = uint32_t(FieldU64(env, o, "region"));
    r.start = FieldU64(env, o, "start");
    r.length = FieldU64(env, o, "length");
    r.pageSize = uint32_t(FieldU64(env, o, "pageSize"));
    r.writeProtect = Field(o, "writeProtect").ToBoolean().Value();
    int rc = thread_->Add(r);
    if (rc < 0) throw ErrnoError(env, "watch attachment " + std::to_string(r.attachment), -rc);
  }

  Napi::Value Remove(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), thread_->Remove(uint32_t(ArgU64(info, 0, "attachment"))));
  }

  void SetAffinity(const Napi::CallbackInfo& info) {
    int cpu = info[0].IsNull() ? -1 : ArgInt32(info, 0, "cpu");
    int rc = thread_->SetAffinity(cpu);
    if (rc < 0) throw ErrnoError(info.Env(), "pthread_setaffinity_np", -rc);
  }

  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("faults", double(thread_->faults()));
    o.Set("cacheHits", double(thread_->cacheHits()));
    o.Set("batches", double(outbox_->batches));
    o.Set("events", double(outbox_->delivered));
    return o;
  }

  void Stop(const Napi::CallbackInfo&) { Shutdown(); }

  std::unique_ptr<FaultThread> thread_;
  Napi::ThreadSafeFunction tsfn_;
  std::shared_ptr<Outbox> outbox_;
  bool released_ = false;
};

void InitFaultThread(Napi::Env env, Napi::Object exports) { exports.Set("FaultThread", FaultThreadWrap::Define(env)); }

}  // namespace farmem
