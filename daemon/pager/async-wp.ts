// Async dirty tracking: UFFD_FEATURE_WP_ASYNC + PAGEMAP_SCAN (Linux 6.7+). Pages are installed
// write-protected as in wp mode, but a write to a protected page does not fault: the kernel lifts
// the protection itself, and PAGEMAP_SCAN on the process's /proc/<pid>/pagemap later reports the
// page WRITTEN and re-protects it in the same ioctl (PM_SCAN_WP_MATCHING). About 10× cheaper per
// written page than a WP fault (KERNEL.md), but nothing can block a concurrent writer, so a write
// between an eviction's pread and its hole punch would be lost: async regions are never evicted.
// Here: the kernel side (AsyncWpOps), the probe, and what the pager does with an async attachment's
// pagemap (armAsync at attach, collectFrom at sync, drain and detach). All of it runs on the JS thread.

import { NativeError, pagemapOpen, pagemapScan, memfd, uffd } from '../native';
import type { PagerLog } from './pager';
import { DIRTY, RES, type Attachment } from './state';

/** The kernel side of async dirty tracking, as one interface (the pager's tests can fake it). */
export interface AsyncWpOps {
  /** Opens /proc/<pid>/pagemap (O_RDONLY|O_CLOEXEC). */
  open(pid: number): number;
  close(fd: number): void;
  /**
   * Ranges of [start, end) written since the last call, re-protected atomically with the report.
   * Throws NativeError EPERM when the range is not registered with an async-WP uffd
   * (PM_SCAN_CHECK_WPASYNC): that process negotiated plain WP and raises WP faults instead.
   */
  written(fd: number, start: bigint, end: bigint): { start: bigint; end: bigint }[];
  /**
   * true when the whole [start, end) is still an async-WP mapping of a live process. A scan of a
   * process that exited (or unmapped the region) walks no VMA and reports nothing, which must not
   * be read as "nothing written".
   */
  covered(fd: number, start: bigint, end: bigint): boolean;
}

export function nativeAsyncWpOps(): AsyncWpOps {
  return {
    open: (pid) => pagemapOpen(pid),
    close: (fd) => memfd.close(fd),
    written: (fd, start, end) =>
      pagemapScan(fd, start, end, { categoryMask: ['WRITTEN'], returnMask: ['WRITTEN'], wpMatching: true, checkWpAsync: true }).regions,
    covered: (fd, start, end) => {
      const res = pagemapScan(fd, start, end, { categoryMask: ['WPALLOWED'], returnMask: ['WPALLOWED'] });
      let at = start;
      for (const r of res.regions) {
        if (r.start !== at) return false;
        at = r.end;
      }
      return at === end;
    },
  };
}

/**
 * Whether this kernel offers async dirty tracking: null when it does, else why not. Asks UFFDIO_API
 * for WP_ASYNC on a scratch uffd (the kernel refuses unknown features with EINVAL; its reply lists
 * every feature whatever was asked, so the refusal is the test) and issues one PAGEMAP_SCAN
 * (ENOTTY before 6.7). Called once, at start-up.
 */
export function probeAsyncWp(): string | null {
  let fd: number;
  try {
    fd = uffd.open({ nonBlocking: true, allowUserModeOnly: true }).fd;
  } catch (e) {
    return `userfaultfd: ${(e as Error).message}`;
  }
  try {
    const res = uffd.api(fd, ['MISSING_SHMEM', 'WP_HUGETLBFS_SHMEM', 'PAGEFAULT_FLAG_WP', 'WP_ASYNC']);
    if (!res.features.includes('WP_ASYNC')) return 'the kernel does not grant UFFD_FEATURE_WP_ASYNC (Linux 6.7+)';
  } catch (e) {
    return e instanceof NativeError && e.code === 'EINVAL'
      ? 'the kernel refuses UFFD_FEATURE_WP_ASYNC (Linux 6.7+)'
      : `UFFDIO_API: ${(e as Error).message}`;
  } finally {
    memfd.close(fd);
  }
  let pm: number;
  try {
    pm = pagemapOpen(process.pid);
  } catch (e) {
    return `/proc/self/pagemap: ${(e as Error).message}`;
  }
  try {
    // Any range will do: no VMA there, nothing to report; only a kernel without the ioctl fails.
    pagemapScan(pm, 0x10000n, 0x11000n, { categoryMask: ['WRITTEN'] });
    return null;
  } catch (e) {
    return e instanceof NativeError && (e.code === 'ENOTTY' || e.code === 'EINVAL')
      ? 'the kernel lacks the PAGEMAP_SCAN ioctl (Linux 6.7+)'
      : `PAGEMAP_SCAN: ${(e as Error).message}`;
  } finally {
    memfd.close(pm);
  }
}

/**
 * Async attachment: opens its pagemap and arms the range with one matching scan (pages never
 * populated report WRITTEN until then: KERNEL.md). On a reconnect, the pages of that first report
 * already in the memfd count as dirty: the process may have written them since the last scan of
 * its previous attachment (over-counting is safe; missing one would not be). A fresh mapping has
 * had no write through it, so its report (every page in the memfd) is ignored. A
 * process whose uffd lacks WP_ASYNC after all (EPERM from PM_SCAN_CHECK_WPASYNC) is served by WP
 * faults instead.
 */
export function armAsync(ops: AsyncWpOps, a: Attachment, log: PagerLog): boolean {
  const r = a.state;
  const end = a.base + BigInt(a.length);
  a.pagemap = ops.open(a.pid);
  try {
    const ps = BigInt(r.pageSize);
    const ranges = ops.written(a.pagemap, a.base, end);
    if (a.reattach === false) return true;
    for (const g of ranges) {
      const last = Math.min(r.pages, Number((g.end - a.base + ps - 1n) / ps));
      for (let p = Math.max(0, Number((g.start - a.base) / ps)); p < last; p++) if (r.has(p, RES)) r.setFlag(p, DIRTY);
    }
  } catch (e) {
    ops.close(a.pagemap);
    a.pagemap = null;
    a.asyncWp = false;
    if ((e as { code?: unknown }).code !== 'EPERM') throw e;
    log.warn({ region: a.state.cfg.name, pid: a.pid, attachment: a.attachment },
      'the process registered without WP_ASYNC: its writes are tracked with write-protect faults');
    return false;
  }
  return true;
}

/**
 * Marks dirty the pages of attachment a's region that its process wrote since the last scan (the
 * same ioctl re-protects them); returns how many it newly marked. A process that cannot be scanned
 * any more makes every resident page of the region dirty.
 */
export function collectFrom(ops: AsyncWpOps, a: Attachment, log: PagerLog): number {
  const r = a.state;
  const before = r.dirty;
  let ranges: { start: bigint; end: bigint }[] | null = null;
  try {
    const end = a.base + BigInt(a.length);
    ranges = ops.written(a.pagemap!, a.base, end);
    // A process that exited or unmapped the region walks no VMA: an empty answer proves nothing.
    if (!ops.covered(a.pagemap!, a.base, end)) ranges = null;
  } catch (e) {
    log.debug({ err: e, region: r.cfg.name, pid: a.pid }, 'PAGEMAP_SCAN failed');
    ranges = null;
  }
  if (ranges === null) {
    // Its writes cannot be known any more: every page in the memfd may have been written.
    for (let p = 0; p < r.pages; p++) if (r.has(p, RES)) r.setFlag(p, DIRTY);
    log.info({ region: r.cfg.name, pid: a.pid, attachment: a.attachment, dirty: r.dirty },
      'async attachment could not be scanned (process gone or region unmapped): every resident page counts as dirty');
    return r.dirty - before;
  }
  const ps = BigInt(r.pageSize);
  for (const g of ranges) {
    const first = Number((g.start - a.base) / ps);
    const last = Math.min(r.pages, Number((g.end - a.base + ps - 1n) / ps));
    for (let p = Math.max(0, first); p < last; p++) r.setFlag(p, RES | DIRTY);
  }
  return r.dirty - before;
}

export type DirtyTrackingMode = 'wp' | 'async';
