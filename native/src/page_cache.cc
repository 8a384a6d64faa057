// PageCache: see page_cache.h. Replacement is CLOCK (second chance), chosen because:
// - the cache is exclusive of resident pages: a fault that hits takes the entry out, so an entry is
//   used by a fault at most once and frequency (what 2Q/ARC track) carries no signal here;
// - the hit is on the fault thread under this lock: CLOCK touches one bit, no list splicing;
// - new entries start unreferenced, so a burst of prefetched pages nobody asks for leaves in
//   insertion order (scan resistant), while an entry JS looked at again (Get/Has/re-Put: the pager
//   checking it, a page evicted twice) survives one more sweep of the hand.
#include "page_cache.h"

#include <cstring>

#include "errors.h"
#include "modules.h"

namespace farmem {

PageCache::PageCache(uint64_t capacityBytes) : capacity_(capacityBytes) {}
PageCache::~PageCache() = default;

void PageCache::RemoveSlot(uint32_t i) {
  Slot& s = slots_[i];
  index_.erase(s.key);
  bytes_ -= s.len;
  s.data.reset();
  s.len = 0;
  s.used = false;
  s.referenced = false;
  free_.push_back(i);
}

bool PageCache::EvictOne() {
  if (index_.empty()) return false;
  // Two laps at most: the first clears every reference bit it passes.
  for (size_t n = 0; n <= 2 * slots_.size(); n++) {
    if (hand_ >= slots_.size()) hand_ = 0;
    Slot& s = slots_[hand_];
    uint32_t i = uint32_t(hand_++);
    if (!s.used) continue;
    if (s.referenced) {
      s.referenced = false;
      continue;
    }
    RemoveSlot(i);
    evictions_++;
    return true;
  }
  return false;
}

void PageCache::EvictTo(uint64_t budget) {
  while (bytes_ > budget && EvictOne()) {
  }
}

bool PageCache::Put(uint32_t region, uint64_t page, const void* data, size_t len) {
  std::lock_guard<std::mutex> l(mu_);
  Key k{region, page};
  auto it = index_.find(k);
  if (it != index_.end()) {
    // Fresher bytes for a page we hold (e.g. evicted again): replace them, and keep it a while longer.
    Slot& s = slots_[it->second];
    if (s.len != len) {
      bytes_ = bytes_ - s.len + len;
      s.data.reset(new uint8_t[len]);
      s.len = len;
    }
    memcpy(s.data.get(), data, len);
    s.referenced = true;
    inserts_++;
    EvictTo(capacity_);
    return index_.count(k) != 0;
  }
  if (len > capacity_) return false;
  EvictTo(capacity_ - len);
  uint32_t i;
  if (!free_.empty()) {
    i = free_.back();
    free_.pop_back();
  } else {
    i = uint32_t(slots_.size());
    slots_.emplace_back();
  }
  Slot& s = slots_[i];
  s.key = k;
  s.data.reset(new uint8_t[len]);
  memcpy(s.data.get(), data, len);
  s.len = len;
  s.used = true;
  s.referenced = false;
  index_.emplace(k, i);
  bytes_ += len;
  inserts_++;
  return true;
}

bool PageCache::Get(uint32_t region, uint64_t page, std::vector<uint8_t>* out) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = index_.find(Key{region, page});
  if (it == index_.end()) {
    misses_++;
    return false;
  }
  Slot& s = slots_[it->second];
  s.referenced = true;
  out->assign(s.data.get(), s.data.get() + s.len);
  hits_++;
  return true;
}

bool PageCache::Has(uint32_t region, uint64_t page) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = index_.find(Key{region, page});
  if (it == index_.end()) return false;
  slots_[it->second].referenced = true;
  return true;
}

bool PageCache::Delete(uint32_t region, uint64_t page) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = index_.find(Key{region, page});
  if (it == index_.end()) return false;
  RemoveSlot(it->second);
  return true;
}

uint64_t PageCache::DropRegion(uint32_t region) {
  std::lock_guard<std::mutex> l(mu_);
  uint64_t n = 0;
  for (uint32_t i = 0; i < slots_.size(); i++) {
    if (slots_[i].used && slots_[i].key.region == region) {
      RemoveSlot(i);
      n++;
    }
  }
  return n;
}

void PageCache::SetCapacity(uint64_t bytes) {
  std::lock_guard<std::mutex> l(mu_);
  capacity_ = bytes;
  EvictTo(capacity_);
}

uint64_t PageCache::Capacity() {
  std::lock_guard<std::mutex> l(mu_);
  return capacity_;
}

PageCacheStats PageCache::Stats() {
  std::lock_guard<std::mutex> l(mu_);
  return {hits_, misses_, inserts_, evictions_, uint64_t(index_.size()), bytes_, capacity_};
}

std::unique_ptr<uint8_t[]> PageCache::Take(uint32_t region, uint64_t page, size_t* len) {
  std::lock_guard<std::mutex> l(mu_);
  auto it = index_.find(Key{region, page});
  if (it == index_.end()) {
    misses_++;
    return nullptr;
  }
  uint32_t i = it->second;
  Slot& s = slots_[i];
  std::unique_ptr<uint8_t[]> data = std::move(s.data);
  *len = s.len;
  RemoveSlot(i);
  hits_++;
  return data;
}

// ---------------------------------------------------------------------------------------------
// The JS class. Every method runs on the main thread; arguments were validated in daemon/native.ts.

static const napi_type_tag kPageCacheTag = {0x6661726d656d5043ULL, 0x7061676563616368ULL};

class PageCacheWrap : public Napi::ObjectWrap<PageCacheWrap> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "PageCache",
                       {InstanceMethod("put", &PageCacheWrap::PutJs), InstanceMethod("get", &PageCacheWrap::GetJs),
                        InstanceMethod("has", &PageCacheWrap::HasJs), InstanceMethod("delete", &PageCacheWrap::DeleteJs),
                        InstanceMethod("dropRegion", &PageCacheWrap::DropRegionJs),
                        InstanceMethod("setCapacity", &PageCacheWrap::SetCapacityJs),
                        InstanceMethod("capacityBytes", &PageCacheWrap::CapacityJs),
                        InstanceMethod("stats", &PageCacheWrap::StatsJs)});
  }

  explicit PageCacheWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<PageCacheWrap>(info) {
    cache_ = std::make_shared<PageCache>(ArgU64(info, 0, "capacityBytes"));
    info.This().As<Napi::Object>().TypeTag(&kPageCacheTag);
  }

  std::shared_ptr<PageCache> cache() const { return cache_; }

 private:
  static uint32_t Region(const Napi::CallbackInfo& info) { return uint32_t(ArgU64(info, 0, "region")); }

  Napi::Value PutJs(const Napi::CallbackInfo& info) {
    Napi::Buffer<uint8_t> b = ArgBuffer(info, 2, "data");
    return Napi::Boolean::New(info.Env(), cache_->Put(Region(info), ArgU64(info, 1, "page"), b.Data(), b.Length()));
  }
  Napi::Value GetJs(const Napi::CallbackInfo& info) {
    std::vector<uint8_t> out;
    if (!cache_->Get(Region(info), ArgU64(info, 1, "page"), &out)) return info.Env().Null();
    return Napi::Buffer<uint8_t>::Copy(info.Env(), out.data(), out.size());
  }
  Napi::Value HasJs(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), cache_->Has(Region(info), ArgU64(info, 1, "page")));
  }
  Napi::Value DeleteJs(const Napi::CallbackInfo& info) {
    return Napi::Boolean::New(info.Env(), cache_->Delete(Region(info), ArgU64(info, 1, "page")));
  }
  Napi::Value DropRegionJs(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), double(cache_->DropRegion(Region(info))));
  }
  void SetCapacityJs(const Napi::CallbackInfo& info) { cache_->SetCapacity(ArgU64(info, 0, "bytes")); }
  Napi::Value CapacityJs(const Napi::CallbackInfo& info) { return Napi::Number::New(info.Env(), double(cache_->Capacity())); }
  Napi::Value StatsJs(const Napi::CallbackInfo& info) {
    PageCacheStats s = cache_->Stats();
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("hits", double(s.hits));
    o.Set("misses", double(s.misses));
    o.Set("inserts", double(s.inserts));
    o.Set("evictions", double(s.evictions));
    o.Set("entries", double(s.entries));
    o.Set("bytes", double(s.bytes));
    o.Set("capacityBytes", double(s.capacity));
    return o;
  }

  std::shared_ptr<PageCache> cache_;
};

std::shared_ptr<PageCache> PageCacheFromJs(const Napi::Value& v) {
  if (!v.IsObject()) return nullptr;
  Napi::Object o = v.As<Napi::Object>();
  if (!o.CheckTypeTag(&kPageCacheTag)) return nullptr;
  return PageCacheWrap::Unwrap(o)->cache();
}

void InitPageCache(Napi::Env env, Napi::Object exports) { exports.Set("PageCache", PageCacheWrap::Define(env)); }

}  // namespace farmem
