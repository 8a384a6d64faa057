// PAGEMAP_SCAN over /proc/<pid>/pagemap (Linux 6.7+): finds pages by category (written since the
// last async write-protect, present, ...) and can re-protect what it found in the same ioctl.
// Plain C++, no N-API: usable from any thread. Returns 0 or -errno.
#pragma once
#include <cstdint>
#include <vector>

#include "uffd_compat.h"

namespace farmem {

struct PagemapScanRequest {
  uint64_t start;
  uint64_t end;
  uint64_t flags;  // PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC
  uint64_t categoryMask;
  uint64_t categoryInverted;
  uint64_t anyofMask;
  uint64_t returnMask;
  uint64_t maxPages;  // 0: no limit
};

struct PagemapScanResult {
  std::vector<page_region> regions;  // adjacent regions with equal categories merged
  uint64_t walkEnd;                  // == end when the whole range was walked
};

// Walks [start, end) with as many vec-bounded ioctls as needed, stopping early only when maxPages
// pages have matched; the caller continues from walkEnd then.
int PagemapScan(int fd, const PagemapScanRequest& req, PagemapScanResult* out);

}  // namespace farmem
