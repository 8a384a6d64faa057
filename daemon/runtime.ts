// The seam between the control plane and the parts that make regions live (the pager, the attach
// server, the evictor). The Daemon calls a RegionRuntime on every region change and asks it for
// numbers; until a pager plugs in, NoPagerRuntime answers — honestly: no stats (`pager: false`),
// and sync/evict refused with the reason — rather than with invented zeros.
import type { RegionSpec } from './regions/types';
import { RegionError } from './regions/errors';

export interface FaultCounts {
  cacheHit: number;
  remote: number;
  zero: number;
  writeProtect: number;
  sigbus: number;
}

export interface AttachmentInfo {
  pid: number;
  uid: number;
  /** ISO time of the attach. */
  since: string;
  /** /proc/PID/comm, or '' when unknown. */
  comm: string;
}

export interface RegionStatsSnapshot {
  residentPages: number;
  dirtyPages: number;
  faults: FaultCounts;
  cacheHits: number;
  cacheMisses: number;
  /** used prefetched pages / prefetched pages, 0..1. */
  prefetchAccuracy: number;
  /** faults avoided by prefetching / (those + remote faults), 0..1. */
  prefetchCoverage: number;
  prefetchedPages: number;
  /** Prefetched pages touched, dropped untouched (and those in bytes); the policy guessing now. */
  prefetchUsedPages?: number;
  prefetchWastedPages?: number;
  prefetchWastedBytes?: number;
  prefetchPolicy?: string;
  evictedPages: number;
  writtenBackPages: number;
  /** A write-back is waiting for a memory server (refusing, full, or slow): dirty pages stay resident. */
  writeBackStalled?: boolean;
  /** Stall episodes since the region was loaded. */
  writeBackStalls?: number;
  remoteBytesIn: number;
  remoteBytesOut: number;
  attachments: AttachmentInfo[];
  faultP50Us: number;
  faultP99Us: number;
  /** The dirty tracking in effect ('wp' or 'async') and a note on it (why not async, or what async means). */
  dirtyTracking?: string;
  dirtyTrackingNote?: string;
}

export interface RuntimeStats {
  attachments: number;
  cacheCapacityBytes: number;
  cacheBytes: number;
  cacheHits: number;
  cacheMisses: number;
  residentBytes: number;
  faults: FaultCounts;
  remoteBytesIn: number;
  remoteBytesOut: number;
  dirtyPages: number;
  evictions: number;
  writebacks: number;
}

/** Per-page picture of a region (for the heatmap). Arrays have `pages` entries. */
export interface RegionPageMap {
  pageSize: number;
  pages: number;
  /** One byte per page: bit 0 resident, bit 1 dirty (PAGE_RESIDENT, PAGE_DIRTY). */
  state: Uint8Array;
  /** Faults per page since the region was created, saturating at 2^32 - 1. */
  faults: Uint32Array;
}

export const PAGE_RESIDENT = 1;
export const PAGE_DIRTY = 2;

export interface Progress {
  pagesDone: number;
  pagesTotal: number;
  bytesDone: number;
  message: string;
}

/** What the control plane needs from the pager side. Every method is called on the main JS thread. */
export interface RegionRuntime {
  /** Shown in stats: e.g. 'pager (4 fault threads)'. */
  readonly description: string;
  /** false for the placeholder: callers report "no pager" instead of numbers. */
  readonly serving: boolean;
  /** Called after the region is persisted in the registry (also for each region at start-up). */
  onRegionCreated(spec: RegionSpec): Promise<void>;
  /** Called after a change (resident budget, mode) is persisted. */
  onRegionUpdated(spec: RegionSpec): Promise<void>;
  /**
   * Called before the region leaves the registry; must detach its processes and free its pages on
   * the memory servers. Resolves with the pages freed there. Throws RegionError('precondition') to refuse.
   */
  onRegionDeleted(spec: RegionSpec): Promise<{ pagesFreed: number }>;
  /** Live numbers of a region, or null when the runtime counts nothing. */
  regionStats(spec: RegionSpec): RegionStatsSnapshot | null;
  /** Attached processes of a region (for list), 0 when unknown. */
  attachmentCount(spec: RegionSpec): number;
  /** Daemon-wide numbers, or null when the runtime counts nothing. */
  stats(): RuntimeStats | null;
  /** Writes back every dirty page and makes it durable; reports progress; honours `signal`. */
  sync(spec: RegionSpec, progress: (p: Progress) => void, signal: AbortSignal): Promise<Progress>;
  /** Drops every clean resident page now. */
  evict(spec: RegionSpec, progress: (p: Progress) => void, signal: AbortSignal): Promise<Progress>;
  /**
   * A snapshot of the region's per-page state and fault counts, or null when the runtime keeps none.
   * The caller may keep the arrays (return a copy, not live memory the fault path writes to).
   */
  pageMap(spec: RegionSpec): RegionPageMap | null;
  /** Why async dirty tracking cannot be used on this host, or null when it can (absent: no pager, nothing to check). */
  asyncUnavailable?(): string | null;
  /** Why the region may not get a resident budget now (processes attached with async tracking), or null. */
  budgetRefusal?(spec: RegionSpec): string | null;
  /** Replay warm-up: fetches the region's recorded working set before it is touched (absent: not offered). */
  warm?(spec: RegionSpec, progress: (p: Progress) => void, signal: AbortSignal): Promise<Progress>;
}

export const NO_PAGER_DETAIL = 'no pager is attached to this daemon: faults are not served and nothing is counted';

/** The runtime of a daemon without a pager: it knows regions exist, nothing more. */
export class NoPagerRuntime implements RegionRuntime {
  readonly description = 'none';
  readonly serving = false;
  async onRegionCreated(): Promise<void> {}
  async onRegionUpdated(): Promise<void> {}
  async onRegionDeleted(): Promise<{ pagesFreed: number }> {
    return { pagesFreed: 0 };
  }
  regionStats(): RegionStatsSnapshot | null {
    return null;
  }
  attachmentCount(): number {
    return 0;
  }
  stats(): RuntimeStats | null {
    return null;
  }
  pageMap(): RegionPageMap | null {
    return null;
  }
  sync(spec: RegionSpec): Promise<Progress> {
    return Promise.reject(new RegionError('precondition', `sync region "${spec.name}": ${NO_PAGER_DETAIL}, so it holds no dirty page to write back`));
  }
  evict(spec: RegionSpec): Promise<Progress> {
    return Promise.reject(new RegionError('precondition', `evict region "${spec.name}": ${NO_PAGER_DETAIL}, so it holds no resident page to evict`));
  }
}
