// The pager's public face: fault handling (Pager), eviction and write-back (reached through
// pager.evictor, or the helpers below), the ops it drives, and its stats.
//
// Wiring in the daemon:
//   const pager = new Pager({ ops: nativeOps(), cache, log, onAttachmentGone: (id) => faultThread.remove(id) });
//   const faultThread = new addon().FaultThread(cpu, cache, pager.onEvents);
//   pager.addRegion({...}); pager.attach({...}); faultThread.add({...same attachment id...});
//
// Dirty tracking: 'wp' regions learn of writes by WP faults; 'async' regions (WP_ASYNC + PAGEMAP_SCAN,
// async-wp.ts) by scanning each attached process's pagemap at sync, drain and detach, and are never
// evicted, because async write-protect cannot block a write racing an eviction (KERNEL.md).
//
// onUnavailable: 'wait' regions keep a faulting thread blocked (like a hard NFS mount) until a memory
// server answers, logging loudly once per episode after unavailableAfterMs. 'sigbus' regions answer a
// fault still unanswered after unavailableAfterMs with UFFDIO_POISON through the waiting attachment's
// uffd, so the woken thread gets SIGBUS (BUS_ADRERR) — the effect UFFD_FEATURE_SIGBUS has, but only
// after the timeout (that feature itself would SIGBUS at once, on every miss, and send no fault at
// all). The poison marker is per mapping: that attachment keeps getting SIGBUS on the page until a
// copy overwrites it. Needs the addon's uffdPoison; without it 'sigbus' regions wait and say so.

export { Pager, type PagerOptions, type PagerLog } from './pager';
export { Evictor, type AccessSource, type EvictorOptions, type SyncProgress, type DrainResult, type WriteMode } from './evictor';
export { nativeOps, isGone, type PagerOps } from './ops';
export { nativeAsyncWpOps, probeAsyncWp, type AsyncWpOps, type DirtyTrackingMode } from './async-wp';
export { type RegionStats } from './stats';
export { type RegionConfig, type AttachmentInfo } from './state';
