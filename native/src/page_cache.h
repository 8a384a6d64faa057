// The daemon's page cache: pages that are NOT resident in any region (prefetched, or evicted clean),
// keyed by (region, page), held in native memory off the JS heap, within a byte budget.
// Thread-safe: JS (main thread) puts and peeks; the fault thread takes hits out.
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <unordered_map>
#include <vector>

namespace farmem {

struct PageCacheStats {
  uint64_t hits, misses, inserts, evictions, entries, bytes, capacity;
};

class PageCache {
 public:
  explicit PageCache(uint64_t capacityBytes);
  ~PageCache();
  PageCache(const PageCache&) = delete;
  PageCache& operator=(const PageCache&) = delete;

  // Copies `len` bytes in (replacing an existing entry). False when one page exceeds the budget.
  bool Put(uint32_t region, uint64_t page, const void* data, size_t len);
  // Copies the page out into `out` (resized) without removing it; counts a hit or a miss.
  bool Get(uint32_t region, uint64_t page, std::vector<uint8_t>* out);
  bool Has(uint32_t region, uint64_t page);
  bool Delete(uint32_t region, uint64_t page);
  uint64_t DropRegion(uint32_t region);
  void SetCapacity(uint64_t bytes);
  uint64_t Capacity();
  PageCacheStats Stats();

  // Removes the page and hands its bytes to the caller (a hit), or returns null (a miss).
  // The cache is exclusive of resident pages: once installed, the memfd holds the page and later
  // writes would make a cached copy stale, so a page used by a fault never stays here.
  // `len` gets the page's size. Called from the fault thread.
  std::unique_ptr<uint8_t[]> Take(uint32_t region, uint64_t page, size_t* len);

 private:
  struct Key {
    uint32_t region;
    uint64_t page;
    bool operator==(const Key& o) const { return region == o.region && page == o.page; }
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      uint64_t x = k.page * 0x9E3779B97F4A7C15ULL ^ (uint64_t(k.region) << 1);
      return size_t(x ^ (x >> 29));
    }
  };
  struct Slot {
    Key key;
    std::unique_ptr<uint8_t[]> data;
    size_t len = 0;
    bool used = false;
    bool referenced = false;
  };

  void RemoveSlot(uint32_t slot);  // lock held
  bool EvictOne();                 // lock held
  void EvictTo(uint64_t budget);   // lock held: until bytes_ <= budget

  std::mutex mu_;
  std::unordered_map<Key, uint32_t, KeyHash> index_;
  std::vector<Slot> slots_;  // the CLOCK ring
  std::vector<uint32_t> free_;
  size_t hand_ = 0;
  uint64_t capacity_;
  uint64_t bytes_ = 0;
  uint64_t hits_ = 0, misses_ = 0, inserts_ = 0, evictions_ = 0;
};

}  // namespace farmem

#include <napi.h>

namespace farmem {
// The PageCache behind a JS PageCache object, or null when `v` is not one (checked by type tag).
// Called from the main thread.
std::shared_ptr<PageCache> PageCacheFromJs(const Napi::Value& v);
}  // namespace farmem
