// FaultThread: one native thread that serves the page faults of any number of uffds. It epolls
// the uffds (made O_NONBLOCK), the attached processes' pidfds, and an eventfd used only to stop it.
// A MISSING fault whose page is in the PageCache is installed right here with UFFDIO_COPY, with no
// JavaScript in the path; every other event goes to the sink, which hands batches to JS.
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <shared_mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <linux/userfaultfd.h>

#include "page_cache.h"

namespace farmem {

struct FaultRegistration {
  uint32_t attachment;
  int uffd;   // duplicated by Add: the caller keeps (and closes) its own fd
  int pidfd;  // -1: not watched; duplicated too
  uint32_t region;
  uint64_t start, length;
  uint32_t pageSize;
  bool writeProtect;
};

struct FaultEventData {
  enum Kind { kPagefault, kFork, kRemap, kRemove, kUnmap, kGone } kind;
  uint32_t attachment;
  int64_t page = -1;         // pagefault: index within the registration, -1 outside it
  uint64_t a = 0, b = 0;     // pagefault: address; remap: from, to; remove/unmap: start, end
  uint64_t length = 0;       // remap
  bool write = false, wp = false, minor = false, resolvedByCache = false;
  uint32_t tid = 0;
  int fd = -1;               // fork: the child's uffd, now an fd of this process
  const char* reason = "";   // gone: "closed" | "exited" | "error"
  std::string detail;        // gone: errno name or ""
};

class FaultThread {
 public:
  // Called from the fault thread, never while a lock of this class is held. `urgent`: some event
  // needs JS (anything but a fault already resolved from the cache). Returns true when the sink
  // holds events back (not yet handed to JS): the thread then calls it again, with nothing and
  // urgent, after kLingerMs without a new event.
  using Sink = std::function<bool(std::vector<FaultEventData>&&, bool urgent)>;
  static constexpr int kLingerMs = 2;

  FaultThread(std::shared_ptr<PageCache> cache, Sink sink);
  ~FaultThread();  // Stop()

  // Each returns 0 or -errno. Called from the main thread.
  int Start(int cpu);
  int Add(const FaultRegistration& r);
  // After it returns, the thread no longer touches the attachment's fds (they are closed).
  bool Remove(uint32_t attachment);
  int SetAffinity(int cpu);  // -1: every CPU
  void Stop();               // signals the eventfd and joins; idempotent

  uint64_t faults() const { return faults_.load(std::memory_order_relaxed); }
  uint64_t cacheHits() const { return cacheHits_.load(std::memory_order_relaxed); }

 private:
  struct Attachment {
    FaultRegistration reg;
    uint64_t serial;
    std::atomic<bool> gone{false};
  };
  struct Retry {
    size_t event;  // index in the batch
    uint64_t addr;
    std::unique_ptr<uint8_t[]> data;
    bool wp;
  };

  void Run();
  void ServeUffd(Attachment& a, std::vector<FaultEventData>& out);
  void HandleMessage(Attachment& a, const struct uffd_msg& m, std::vector<FaultEventData>& out, std::vector<Retry>& again);
  void Gone(Attachment& a, const char* reason, int err, std::vector<FaultEventData>& out);
  void Unwatch(Attachment& a);

  std::shared_ptr<PageCache> cache_;
  Sink sink_;
  int epfd_ = -1, stopfd_ = -1;
  std::thread thread_;
  std::atomic<bool> stopped_{false};
  std::shared_mutex mu_;  // shared: the fault thread serving; exclusive: Add/Remove/Stop
  std::unordered_map<uint64_t, std::unique_ptr<Attachment>> bySerial_;
  std::unordered_map<uint32_t, uint64_t> byId_;
  uint64_t nextSerial_ = 1;
  std::atomic<uint64_t> faults_{0}, cacheHits_{0};
};

}  // namespace farmem
