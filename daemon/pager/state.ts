// What the pager knows about one region: its pages' state (one byte of flags per page), its
// attachments and the fetches in flight. Shared by the fault path (pager.ts), the fetcher, the
// prefetch guesses (guesses.ts) and the evictor; all of it lives on the JS thread.

import type { NativePageCache } from '../native';
import type { Prefetcher } from '../prefetch/types';
import type { OnUnavailable } from '../regions/types';
import type { PageStore, RegionRef } from '../remote/types';

/** Page flags. */
export const RES = 1; // in the memfd (as far as the pager knows)
export const DIRTY = 2; // written since last acknowledged write-back
export const PREF = 4; // brought in by the prefetcher and not touched yet: set and cleared by addPrefetched / takePrefetched only
export const REF = 8; // CLOCK reference bit (a fault touched it since the hand last passed)
export const WB = 16; // write-back in flight: protected in every attachment, DIRTY again = re-dirtied
/** The page has an entry in the queue of prefetched pages (RegionState.addPrefetched); it counts while PREF is set. */
const INQ = 64;

export interface RegionConfig {
  /** u32 key shared with the native page cache and FaultRegistration.region. */
  key: number;
  name: string;
  /** Region id and page size, as the PageStore knows it. */
  ref: RegionRef;
  sizeBytes: number;
  /** Resident budget in bytes; 0 = unlimited (the daemon-wide cap still applies). */
  residentBytes: number;
  onUnavailable: OnUnavailable;
  /** The daemon's fd of the region's memfd. */
  memfd: number;
  store: PageStore;
  prefetcher: Prefetcher | null;
  /**
   * How dirty pages are found (default 'wp'): WP faults, or 'async' (WP_ASYNC + PAGEMAP_SCAN at sync,
   * drain and detach). An async region is never evicted: async WP cannot block a concurrent writer.
   */
  dirtyTracking?: 'wp' | 'async';
}

export interface AttachmentInfo {
  /** The id given to the FaultThread (FaultRegistration.attachment). */
  attachment: number;
  region: number;
  uffd: number;
  pid: number;
  /** Where region offset 0 is mapped in the process. */
  base: bigint;
  length: number;
  /** The mapping is registered for write-protect (dirty tracking by WP faults). */
  writeProtect: boolean;
  /** The uffd was negotiated with WP_ASYNC: writes do not fault, PAGEMAP_SCAN finds them (async regions only). */
  asyncWp?: boolean;
  /** false: a mapping just made (nothing written through it yet); true or absent: it may be a reconnect. */
  reattach?: boolean;
}

export interface Attachment extends AttachmentInfo {
  state: RegionState;
  /** /proc/<pid>/pagemap of an async attachment (null otherwise). */
  pagemap: number | null;
}

/** A fetch of one page: every fault on the page while it is in flight waits on this one fetch. */
export interface InFlight {
  page: number;
  /** Attachments with a thread blocked on the page (insertion order: first = preferred installer). */
  waiters: Set<Attachment>;
  /** Some waiter faulted for a write: install unprotected through it and mark dirty. */
  writers: Set<Attachment>;
  /** Issued by the prefetcher (no waiter when issued). */
  prefetch: boolean;
  /** The page became resident another way while this fetch was out: its bytes must not be installed. */
  stale: boolean;
  /** The bytes came from the native cache (counted as a cache hit, not a remote fault). */
  fromCache: boolean;
  /** When the first attempt failed (ms), for the unavailability timeout. */
  failingSince: number | null;
  /** performance.now() when the first process fault on the page reached the pager (null: a guess nobody asked for yet). */
  missAt: number | null;
}

/**
 * The waiters and writers of a page nobody waits for yet, shared: most pages in flight are guesses,
 * and two Sets for each cost a scan's JS thread more than its bookkeeping. Never added to: waitOn
 * gives the page Sets of its own first.
 */
const NOBODY: Set<Attachment> = new Set();

export function newInFlight(page: number, prefetch: boolean): InFlight {
  return { page, waiters: NOBODY, writers: NOBODY, prefetch, stale: false, fromCache: false, failingSince: null, missAt: null };
}

/** A thread of attachment `a` waits for the page (to write it, when `write`). */
export function waitOn(f: InFlight, a: Attachment, write: boolean): void {
  if (f.waiters === NOBODY) f.waiters = new Set();
  f.waiters.add(a);
  if (!write) return;
  if (f.writers === NOBODY) f.writers = new Set();
  f.writers.add(a);
}

export interface RegionCounters {
  faultsCacheHit: number;
  faultsRemote: number;
  faultsZero: number;
  faultsWp: number;
  faultsJoined: number;
  remoteBytesIn: number;
  remoteBytesOut: number;
  prefetchIssued: number;
  prefetchUsed: number;
  prefetchWasted: number;
  evictedClean: number;
  evictedDirty: number;
  writeBackBatches: number;
  writeBackPages: number;
  writeBackStalls: number;
  readStalls: number;
  poisoned: number;
}

export function newCounters(): RegionCounters {
  return {
    faultsCacheHit: 0, faultsRemote: 0, faultsZero: 0, faultsWp: 0, faultsJoined: 0,
    remoteBytesIn: 0, remoteBytesOut: 0,
    prefetchIssued: 0, prefetchUsed: 0, prefetchWasted: 0,
    evictedClean: 0, evictedDirty: 0, writeBackBatches: 0, writeBackPages: 0, writeBackStalls: 0,
    readStalls: 0, poisoned: 0,
  };
}

export class RegionState {
  readonly cfg: RegionConfig;
  readonly pageSize: number;
  readonly pages: number;
  readonly flags: Uint8Array;
  /** Faults per page since the region was loaded (saturating): the heatmap's heat. */
  readonly faults: Uint32Array;
  readonly attachments = new Map<number, Attachment>();
  readonly inFlight = new Map<number, InFlight>();
  /** Prefetched pages staged in the native page cache, not yet used. */
  readonly cachedPrefetch = new Set<number>();
  /**
   * Prefetched pages installed directly and not touched yet (PREF), oldest first: evicted first. A
   * queue of page numbers holding at most one entry per page (INQ); an entry whose page lost PREF is
   * stale, skipped by the walk and dropped when the stale ones outnumber the rest. (It was a Set: a
   * hash insert and delete per page of a scan, every page of a long scan held in it.)
   */
  private prefQueue = new Int32Array(256);
  private prefHead = 0;
  private prefTail = 0;
  /** In-flight guesses that open a policy's window (the first page of a large decision). */
  readonly markers = new Set<number>();
  /**
   * Fetched markers kept out of the region on purpose (page → bytes, oldest first): a read of an
   * installed page is invisible, so the first touch of a window would be too; held back, it faults,
   * is installed from here at once, and tells the policy to send for the next window while the
   * process walks this one (Linux's PG_readahead, for pages the pager cannot watch).
   */
  readonly held = new Map<number, Buffer>();
  /** Per page: the sequence number of the last acknowledged write-back capture (see Evictor.sync). */
  readonly ackSeq: Uint32Array;
  /** Write-backs in flight for this region. */
  readonly writeBacks = new Set<Promise<void>>();
  /** Pages picked or being written back for eviction (QUEUED or WB with mode 'evict'). */
  evicting = 0;
  readonly counters = newCounters();
  budgetPages: number;
  resident = 0;
  /** Pages being copied in off the JS thread: resident soon, so they count against the budget. */
  installing = 0;
  dirty = 0;
  /** CLOCK hand. */
  hand = 0;
  /** Unavailability episode (reads): start time, or null when the store answers. */
  readUnavailableSince: number | null = null;
  readUnavailableLogged = false;
  /** A page was found in the memfd that the pager did not know of (logged once). */
  unknownResidentLogged = false;
  /** Write-back stall episode: start time, or null. */
  writeStalledSince: number | null = null;
  /** Set when an attachment without write-protect made eviction unsafe (logged once). */
  noWpLogged = false;
  removed = false;
  /** A write-back was acknowledged since the store last made the region durable (sync). */
  unsynced = false;

  constructor(cfg: RegionConfig) {
    this.cfg = cfg;
    this.pageSize = cfg.ref.pageSize;
    this.pages = Math.floor(cfg.sizeBytes / cfg.ref.pageSize);
    this.flags = new Uint8Array(this.pages);
    this.faults = new Uint32Array(this.pages);
    this.ackSeq = new Uint32Array(this.pages);
    this.budgetPages = budgetPagesOf(cfg.residentBytes, cfg.ref.pageSize);
  }

  /** The region finds dirty pages by scanning (async WP): its pages are never evicted. */
  asyncTracking(): boolean {
    if (this.cfg.dirtyTracking === 'async') return true;
    for (const a of this.attachments.values()) if (a.asyncWp === true) return true;
    return false;
  }

  /** Every attachment tracks dirtiness by WP (faults, or async with scans): only then may a resident page be called clean. */
  allWriteProtect(): boolean {
    for (const a of this.attachments.values()) if (!a.writeProtect) return false;
    return true;
  }

  setFlag(p: number, f: number): void {
    const old = this.flags[p]!;
    if ((old & f) === f) return;
    if (f & RES && !(old & RES)) this.resident++;
    if (f & DIRTY && !(old & DIRTY)) this.dirty++;
    this.flags[p] = old | f;
  }

  clearFlag(p: number, f: number): void {
    const old = this.flags[p]!;
    if (!(old & f)) return;
    if (f & RES && old & RES) this.resident--;
    if (f & DIRTY && old & DIRTY) this.dirty--;
    this.flags[p] = old & ~f;
  }

  has(p: number, f: number): boolean {
    return (this.flags[p]! & f) !== 0;
  }

  /** Page p, resident, came in as a guess nobody touched yet (PREF): the newest of them. */
  addPrefetched(p: number): void {
    const old = this.flags[p]!;
    if (old & PREF) return;
    if (old & INQ) {
      // A stale entry of an earlier visit is still queued: it counts again, at its old place.
      this.flags[p] = old | PREF;
      return;
    }
    if (this.prefTail === this.prefQueue.length) this.compactPrefetched();
    this.prefQueue[this.prefTail++] = p;
    this.flags[p] = old | PREF | INQ;
  }

  /** Page p is no longer an untouched guess (touched, or gone); true when it was one. */
  takePrefetched(p: number): boolean {
    const old = this.flags[p]!;
    if (!(old & PREF)) return false;
    this.flags[p] = old & ~PREF;
    return true;
  }

  /** The pages with PREF, oldest first. Taking pages while walking is allowed; adding is not. */
  *prefetched(): Generator<number> {
    // The stale entries at the front go for good.
    while (this.prefHead < this.prefTail) {
      const p = this.prefQueue[this.prefHead]!;
      if (this.flags[p]! & PREF) break;
      this.flags[p] = this.flags[p]! & ~INQ;
      this.prefHead++;
    }
    for (let i = this.prefHead; i < this.prefTail; i++) {
      const p = this.prefQueue[i]!;
      if (this.flags[p]! & PREF) yield p;
    }
  }

  /** Drops the stale entries (their pages lose INQ) and grows the queue when it is more than half live. */
  private compactPrefetched(): void {
    const q = this.prefQueue;
    let n = 0;
    for (let i = this.prefHead; i < this.prefTail; i++) {
      const p = q[i]!;
      if (this.flags[p]! & PREF) q[n++] = p;
      else this.flags[p] = this.flags[p]! & ~INQ;
    }
    if (2 * n > q.length) {
      this.prefQueue = new Int32Array(2 * q.length);
      this.prefQueue.set(q.subarray(0, n));
    }
    this.prefHead = 0;
    this.prefTail = n;
  }

  cacheDelete(cache: NativePageCache | null, p: number): void {
    if (cache !== null) cache.delete(this.cfg.key, p);
  }
}

export function budgetPagesOf(bytes: number, pageSize: number): number {
  return bytes > 0 ? Math.max(1, Math.floor(bytes / pageSize)) : Infinity;
}

export function addressOf(a: Attachment, page: number): bigint {
  return a.base + BigInt(page) * BigInt(a.state.pageSize);
}

export const QUEUED = 32; // picked for write-back by the evictor, not yet protected
