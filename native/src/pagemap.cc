// pagemapOpen / pagemapScan: the kernel side of the WP_ASYNC dirty-tracking mode and of residency
// scans. The daemon opens /proc/<app pid>/pagemap (root: any process; same mm rules as ptrace
// read otherwise) and scans the application's mapping of a region.
#include "pagemap.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <string>

#include "errors.h"
#include "modules.h"

namespace farmem {

// Regions per ioctl: the kernel stops when the vec is full, and we call again from walk_end.
static constexpr size_t kVecLen = 512;

int PagemapScan(int fd, const PagemapScanRequest& req, PagemapScanResult* out) {
  out->regions.clear();
  out->walkEnd = req.start;
  page_region vec[kVecLen];
  uint64_t pagesLeft = req.maxPages;
  const uint64_t pageSize = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  uint64_t pos = req.start;
  while (pos < req.end) {
    struct pm_scan_arg arg = {};
    arg.size = sizeof arg;
    arg.flags = req.flags;
    arg.start = pos;
    arg.end = req.end;
    arg.vec = reinterpret_cast<uint64_t>(vec);
    arg.vec_len = kVecLen;
    arg.max_pages = pagesLeft;
    arg.category_mask = req.categoryMask;
    arg.category_inverted = req.categoryInverted;
    arg.category_anyof_mask = req.anyofMask;
    arg.return_mask = req.returnMask;
    long n = ioctl(fd, PAGEMAP_SCAN, &arg);
    if (n < 0) return -errno;
    for (long i = 0; i < n; i++) {
      const page_region& r = vec[i];
      if (!out->regions.empty() && out->regions.back().end == r.start && out->regions.back().categories == r.categories) {
        out->regions.back().end = r.end;
      } else {
        out->regions.push_back(r);
      }
      if (req.maxPages != 0) pagesLeft -= (r.end - r.start) / pageSize;
    }
    // walk_end is where the kernel stopped; it can only equal pos when nothing could be walked.
    if (arg.walk_end <= pos) break;
    pos = arg.walk_end;
    if (req.maxPages != 0 && pagesLeft == 0) break;
  }
  out->walkEnd = pos;
  return 0;
}

// pagemapOpen(pid) → fd. Called from the JS thread.
static Napi::Value PagemapOpenJs(const Napi::CallbackInfo& info) {
  int32_t pid = ArgInt32(info, 0, "pid");
  std::string path = "/proc/" + std::to_string(pid) + "/pagemap";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw ErrnoError(info.Env(), "open " + path, errno);
  return Napi::Number::New(info.Env(), fd);
}

// pagemapScan(fd, start, end, flags, categoryMask, categoryInverted, anyofMask, returnMask, maxPages)
// → { regions: [{start, end, categories}], walkEnd }. Arguments validated in daemon/native.ts.
// Called from the JS thread (a 64 MiB scan costs tens of µs).
static Napi::Value PagemapScanJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  int32_t fd = ArgInt32(info, 0, "fd");
  PagemapScanRequest req;
  req.start = ArgU64(info, 1, "start");
  req.end = ArgU64(info, 2, "end");
  req.flags = ArgU64(info, 3, "flags");
  req.categoryMask = ArgU64(info, 4, "categoryMask");
  req.categoryInverted = ArgU64(info, 5, "categoryInverted");
  req.anyofMask = ArgU64(info, 6, "anyofMask");
  req.returnMask = ArgU64(info, 7, "returnMask");
  req.maxPages = ArgU64(info, 8, "maxPages");
  PagemapScanResult res;
  int r = PagemapScan(fd, req, &res);
  if (r < 0) throw ErrnoError(env, "ioctl PAGEMAP_SCAN", -r);
  Napi::Array regions = Napi::Array::New(env, res.regions.size());
  for (size_t i = 0; i < res.regions.size(); i++) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("start", Napi::BigInt::New(env, static_cast<uint64_t>(res.regions[i].start)));
    o.Set("end", Napi::BigInt::New(env, static_cast<uint64_t>(res.regions[i].end)));
    o.Set("categories", Napi::Number::New(env, static_cast<double>(res.regions[i].categories)));
    regions.Set(i, o);
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("regions", regions);
  out.Set("walkEnd", Napi::BigInt::New(env, static_cast<uint64_t>(res.walkEnd)));
  return out;
}

void InitPagemap(Napi::Env env, Napi::Object exports) {
  exports.Set("pagemapOpen", Napi::Function::New(env, PagemapOpenJs, "pagemapOpen"));
  exports.Set("pagemapScan", Napi::Function::New(env, PagemapScanJs, "pagemapScan"));
}

}  // namespace farmem
