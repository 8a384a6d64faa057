// The pager: policy over the native fault mechanism. The FaultThread hands it batches of faults it
// could not answer from the native page cache; the pager dedupes them (one fetch per page however
// many threads and attachments wait on it), fetches misses from the region's PageStore in batches,
// installs them with UFFDIO_COPY / UFFDIO_ZEROPAGE, tracks which pages are resident and dirty, and
// feeds the prefetcher. Two collaborators call back into it: the evictor (evictor.ts: eviction and
// write-back) and the guesses (guesses.ts: sending for prefetch guesses, placing what comes back,
// and their used/wasted accounting). Everything here runs on the JS thread; the ops it calls are
// synchronous.
//
// Invariants the evictor relies on (see evictor.ts):
// - a resident page that is not DIRTY is write-protected in every attachment, so a write to it
//   raises a WP fault before it changes a byte (an async attachment's write lifts the protection
//   without a fault and shows up in the next scan: collectWritten; async regions are never evicted);
// - the native page cache never holds a page that is resident (the memfd is the truth then);
// - a region with an attachment that cannot write-protect treats every resident page as dirty.

import type { FaultEvent, NativePageCache } from '../native';
import { PageViews } from '../remote/page-views';
import { PageStoreError } from '../remote/types';
import { armAsync, collectFrom, type AsyncWpOps } from './async-wp';
import { Evictor, type AccessSource, type DrainResult, type EvictorOptions, type SyncProgress } from './evictor';
import { Guesses, type GuessOptions } from './guesses';
import { isGone, type PagerOps } from './ops';
import { regionStats, type RegionStats } from './stats';
import {
  addressOf, budgetPagesOf, DIRTY, newInFlight, REF, RES, waitOn,
  RegionState, type Attachment, type AttachmentInfo, type InFlight, type RegionConfig,
} from './state';

/** The subset of a pino logger the pager uses (pino.Logger fits). */
export interface PagerLog {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface PagerOptions extends EvictorOptions, GuessOptions {
  ops: PagerOps;
  /** The native page cache shared with the FaultThread, or null for none. */
  cache: NativePageCache | null;
  log: PagerLog;
  /** Most pages in one PageStore.read (default 64). */
  maxBatchPages?: number;
  /** After this long without an answer from the store, log loudly and (sigbus regions) poison (default 10000). */
  unavailableAfterMs?: number;
  /** Backoff between retries of a failed read or write: initial and cap, in ms (default 5 and 1000). */
  retryInitialMs?: number;
  retryMaxMs?: number;
  /** Source of real accessed bits (PAGEMAP_SCAN) for CLOCK and prefetch accounting; null = fault history only. */
  accessSource?: AccessSource | null;
  /** PAGEMAP_SCAN for async attachments (async-wp.ts); null: none is async (their WP_ASYNC is ignored). */
  asyncWp?: AsyncWpOps | null;
  /** Called after the pager tore an attachment down (ESRCH/EBADF or a 'gone' event): remove it from the FaultThread, close fds. */
  onAttachmentGone?: (attachment: number, reason: string) => void;
  /**
   * Called once per demand install with the time (µs) from the pager receiving the miss on the JS
   * thread to the page's install: 'remote' (fetched), 'zero' (absent everywhere), 'cache' (staged in
   * the native cache after the fault thread looked). Not timed: native cache hits, the fault thread's
   * read and the hand-off to JS.
   */
  onFaultServed?: (region: number, kind: 'remote' | 'zero' | 'cache', micros: number) => void;
  /**
   * Every touch the pager learns of: a fault of an attachment, or a use of a prefetched page
   * (attachment null: the pager cannot tell which process used it). For replay recording; must be cheap.
   */
  onTouch?: ((region: number, attachment: number | null, page: number) => void) | null;
  now?: () => number;
  sleep?: (ms: number) => Promise<void>;
}

const defaultSleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Gone attachments remembered for their late events. */
const RECENTLY_GONE = 1024;

export class Pager {
  readonly ops: PagerOps;
  readonly cache: NativePageCache | null;
  readonly log: PagerLog;
  readonly evictor: Evictor;
  private readonly guesses: Guesses;
  readonly regions = new Map<number, RegionState>();
  private readonly attachments = new Map<number, Attachment>();
  /**
   * Recently gone attachments → their region, for the events still on the way: a fault thread may
   * hand over a page it installed from the cache for a process after that process's exit was seen,
   * and the page is in the memfd all the same.
   */
  private readonly recentlyGone = new Map<number, RegionState>();
  private readonly maxBatch: number;
  private readonly unavailableAfterMs: number;
  readonly retryInitialMs: number;
  readonly retryMaxMs: number;
  private readonly onGone: (attachment: number, reason: string) => void;
  private readonly onServed: ((region: number, kind: 'remote' | 'zero' | 'cache', micros: number) => void) | null;
  private readonly onTouch: ((region: number, attachment: number | null, page: number) => void) | null;
  private readonly asyncWp: AsyncWpOps | null;
  readonly now: () => number;
  readonly sleep: (ms: number) => Promise<void>;
  /** Pages waiting to be read, per region (flushed once per event batch / tick, or at maxBatch). */
  private readonly pending = new Map<RegionState, number[]>();
  private flushScheduled = false;
  private readsInFlight = 0;
  /** Installs waiting for room under a budget; run in order as the evictor frees pages. */
  private roomWaiters: { r: RegionState; run: () => void }[] = [];
  /** Installs to retry after EAGAIN (an event for the range is pending in the uffd). */
  private againQueue: (() => void)[] = [];
  private zero: Buffer | null = null;

  constructor(opts: PagerOptions) {
    this.ops = opts.ops;
    this.cache = opts.cache;
    this.log = opts.log;
    this.maxBatch = opts.maxBatchPages ?? 64;
    this.unavailableAfterMs = opts.unavailableAfterMs ?? 10_000;
    this.retryInitialMs = opts.retryInitialMs ?? 5;
    this.retryMaxMs = opts.retryMaxMs ?? 1000;
    this.onGone = opts.onAttachmentGone ?? (() => {});
    this.onServed = opts.onFaultServed ?? null;
    this.onTouch = opts.onTouch ?? null;
    this.asyncWp = opts.asyncWp ?? null;
    this.now = opts.now ?? Date.now;
    this.sleep = opts.sleep ?? defaultSleep;
    this.evictor = new Evictor(this, opts);
    this.guesses = new Guesses(this, opts);
  }

  // ---------------------------------------------------------------------------------------------
  // Regions and attachments.

  /**
   * Starts managing a region. Pages that already hold data in the memfd (a daemon restart re-adopting
   * it) are taken as resident and dirty: nobody can tell whether they were written back.
   */
  addRegion(cfg: RegionConfig): void {
    if (this.regions.has(cfg.key)) throw new Error(`Expected an unused region key for region "${cfg.name}" but received ${cfg.key}`);
    const r = new RegionState(cfg);
    for (const d of this.ops.dataRanges(cfg.memfd)) {
      const first = Math.floor(d.offset / r.pageSize);
      const end = Math.min(r.pages, Math.ceil((d.offset + d.length) / r.pageSize));
      for (let p = first; p < end; p++) r.setFlag(p, RES | DIRTY);
    }
    this.regions.set(cfg.key, r);
    if (cfg.dirtyTracking === 'async') {
      this.log.info({ region: cfg.name, residentPages: r.resident },
        `region "${cfg.name}" tracks dirty pages asynchronously (WP_ASYNC + PAGEMAP_SCAN): it is never evicted, not even under the daemon-wide cap (its pages count toward the cap)`);
    }
    this.evictor.kick();
  }

  /** Forgets a region (its attachments must be gone; dirty pages are not written back: sync first). */
  removeRegion(key: number): void {
    const r = this.region(key);
    for (const a of [...r.attachments.values()]) this.detach(a.attachment);
    r.removed = true;
    this.regions.delete(key);
    this.pending.delete(r);
    this.roomWaiters = this.roomWaiters.filter((w) => w.r !== r);
    if (this.cache !== null) this.cache.dropRegion(key);
  }

  /** Changes a region's resident budget (bytes, 0 = unlimited); eviction catches up in the background. */
  setBudget(key: number, residentBytes: number): void {
    const r = this.region(key);
    r.budgetPages = budgetPagesOf(residentBytes, r.pageSize);
    this.evictor.kick();
  }

  /**
   * Adds an attachment (the caller also adds it to the FaultThread). The process must not touch the
   * region before this returns: write-protecting the whole range here is what makes its first write
   * to an already resident page raise a WP fault.
   */
  attach(info: AttachmentInfo): void {
    const r = this.region(info.region);
    if (this.attachments.has(info.attachment)) {
      throw new Error(`Expected an unused attachment id for region "${r.cfg.name}" but received ${info.attachment}`);
    }
    const a: Attachment = { ...info, state: r, pagemap: null };
    if (a.asyncWp === true && (!a.writeProtect || this.asyncWp === null)) {
      // Its writes would be invisible: no fault, and nothing here to scan them with.
      throw new Error(`attach region "${r.cfg.name}": pid ${a.pid} negotiated WP_ASYNC, but this daemon cannot scan for written pages (PAGEMAP_SCAN)`);
    }
    if (a.asyncWp === true && r.cfg.dirtyTracking !== 'async') {
      // A reattach with a uffd negotiated for async before the region's mode changed (e.g. auto
      // under a new resident cap): safe, as an async attachment keeps the region from eviction.
      this.log.warn({ region: r.cfg.name, pid: a.pid, attachment: a.attachment },
        'the process tracks writes asynchronously from an earlier attach: the region is not evicted while it is attached');
    }
    if (a.writeProtect) {
      // Protects resident pages and leaves a marker on the others (shmem), so writes through this
      // mapping to pages installed through another one fault first.
      // (The kernel refuses DONTWAKE together with protect: EINVAL; protecting wakes no one anyway.)
      // Async: the arming scan protects instead. A UFFDIO_WRITEPROTECT of the range would also
      // wipe the trace of a write made since the last scan (a reconnecting process's).
      if (a.asyncWp !== true || !armAsync(this.asyncWp!, a, this.log)) this.ops.writeProtect(a.uffd, a.base, a.length, true, false);
    } else {
      // Writes through this mapping are invisible: no resident page can be called clean any more.
      for (let p = 0; p < r.pages; p++) if (r.has(p, RES)) r.setFlag(p, DIRTY);
      this.log.warn({ region: r.cfg.name, pid: a.pid, attachment: a.attachment },
        'attachment without write-protect: every resident page of the region counts as dirty and the region cannot be evicted while it is attached');
    }
    r.attachments.set(a.attachment, a);
    this.attachments.set(a.attachment, a);
  }

  /**
   * Async regions: asks every async attachment's pagemap which pages were written since the last
   * scan (re-protecting them in the same ioctl) and marks them dirty. Called before sync, drain and
   * detach decide what to write back; returns how many pages it newly marked.
   */
  collectWritten(key: number): number {
    const r = this.region(key);
    let n = 0;
    for (const a of [...r.attachments.values()]) if (a.pagemap !== null) n += collectFrom(this.asyncWp!, a, this.log);
    return n;
  }

  /** 'async' when the attachment's writes are found by PAGEMAP_SCAN, 'wp' when they raise WP faults, 'none' untracked; null if unknown. */
  attachmentTracking(attachment: number): 'async' | 'wp' | 'none' | null {
    const a = this.attachments.get(attachment);
    if (a === undefined) return null;
    return a.pagemap !== null ? 'async' : a.writeProtect ? 'wp' : 'none';
  }

  /** Removes an attachment (detach, or its process exited). Threads waiting in it are gone with it. */
  detach(attachment: number): boolean {
    const a = this.attachments.get(attachment);
    if (a === undefined) return false;
    if (a.pagemap !== null) {
      // Last look at what it wrote (or, if it cannot be scanned, count everything dirty).
      collectFrom(this.asyncWp!, a, this.log);
      this.asyncWp!.close(a.pagemap);
      a.pagemap = null;
    }
    this.attachments.delete(attachment);
    a.state.attachments.delete(attachment);
    this.recentlyGone.set(attachment, a.state);
    if (this.recentlyGone.size > RECENTLY_GONE) this.recentlyGone.delete(this.recentlyGone.keys().next().value as number);
    for (const f of a.state.inFlight.values()) {
      f.waiters.delete(a);
      f.writers.delete(a);
    }
    if (a.state.attachments.size === 0) this.guesses.lastDetached(a.state);
    this.evictor.kick();
    return true;
  }

  /** An ioctl said the process is gone (ESRCH/EBADF): clean teardown, not an error. */
  teardown(a: Attachment, reason: string): void {
    if (!this.detach(a.attachment)) return;
    this.log.info({ region: a.state.cfg.name, pid: a.pid, attachment: a.attachment, reason }, 'attachment gone');
    this.onGone(a.attachment, reason);
  }

  /** Writes back every dirty page of the region (they stay resident, clean), then PageStore.sync. */
  sync(key: number, onProgress?: (p: SyncProgress) => void): Promise<void> {
    return this.evictor.sync(this.region(key), onProgress);
  }

  /** Drops every clean resident page of the region now; returns how many. */
  evictAll(key: number): number {
    return this.evictor.evictAll(this.region(key));
  }

  /** SIGTERM: writes back every dirty page of every region, bounded by timeoutMs. */
  drain(timeoutMs: number): Promise<DrainResult> {
    return this.evictor.drain(timeoutMs);
  }

  stats(key: number): RegionStats {
    return regionStats(this.region(key));
  }

  allStats(): RegionStats[] {
    return [...this.regions.values()].map(regionStats);
  }

  /** true while anything is queued, in flight or being evicted (tests wait for false). */
  busy(): boolean {
    if (this.flushScheduled || this.readsInFlight > 0 || this.roomWaiters.length > 0 || this.againQueue.length > 0) return true;
    for (const r of this.regions.values()) if (r.inFlight.size > 0) return true;
    return this.evictor.busy();
  }

  region(key: number): RegionState {
    const r = this.regions.get(key);
    if (r === undefined) throw new Error(`Expected a known region key but received ${key}`);
    return r;
  }

  // ---------------------------------------------------------------------------------------------
  // Events from the FaultThread (called on the JS thread with one batch).

  readonly onEvents = (events: FaultEvent[]): void => {
    for (const e of events) {
      try {
        this.onEvent(e);
      } catch (err) {
        this.log.error({ err, event: e.kind, attachment: e.attachment }, 'fault event handling failed');
      }
    }
    // Sent now, not from a setImmediate: a lone miss's read leaves in this turn of the loop (the
    // batch of events is already all the coalescing there is to wait for).
    this.flushReads();
    this.evictor.kick();
  };

  private onEvent(e: FaultEvent): void {
    const a = this.attachments.get(e.attachment);
    if (a === undefined) {
      // A late event of an attachment already torn down: only a page it got from the cache matters.
      const r = this.recentlyGone.get(e.attachment);
      if (r !== undefined && !r.removed && e.kind === 'pagefault' && e.resolved === 'cache' && Number.isInteger(e.page) && e.page >= 0 && e.page < r.pages) {
        this.cacheInstalled(r, e.page, true); // its protection is unknown now: counted dirty (one more write-back at worst)
      }
      return;
    }
    switch (e.kind) {
      case 'pagefault':
        if (e.page < 0 || e.page >= a.state.pages || !Number.isInteger(e.page)) {
          this.log.warn({ region: a.state.cfg.name, pid: a.pid, page: e.page }, 'fault outside the region: ignored');
          return;
        }
        if (a.state.faults[e.page]! < 0xffffffff) a.state.faults[e.page]!++;
        if (this.onTouch !== null) this.onTouch(a.state.cfg.key, a.attachment, e.page);
        if (e.resolved === 'cache') this.onCacheInstalled(a, e.page, e.write, e.tid);
        else if (e.wp) this.onWriteProtectFault(a, e.page);
        else this.onMissing(a, e.page, e.write, e.tid);
        return;
      case 'gone':
        this.teardown(a, e.detail === null ? e.reason : `${e.reason}: ${e.detail}`);
        return;
      case 'remap':
        if (e.from === a.base) a.base = e.to;
        return;
      case 'unmap':
      case 'remove':
        // The process dropped part of its mapping; the memfd (shared) keeps the pages. A page the
        // process punched itself (MADV_REMOVE) is found missing by the next fault's EEXIST-free copy.
        this.log.debug({ region: a.state.cfg.name, pid: a.pid, kind: e.kind }, 'mapping event');
        return;
      case 'fork':
        this.log.warn({ region: a.state.cfg.name, pid: a.pid }, 'attached process forked: the child is not paged by this attachment');
        return;
    }
  }

  /** The FaultThread already installed the page from the native cache. */
  private onCacheInstalled(a: Attachment, p: number, write: boolean, tid: number): void {
    // Installed unprotected for a write, or through a mapping that cannot protect: dirty.
    this.cacheInstalled(a.state, p, write || !a.writeProtect || !a.state.allWriteProtect());
    // The FaultThread serves a walk over cached pages faster than these events arrive: a guess it
    // already installed is neither cached nor known resident yet, so each is looked up in the memfd
    // before it is sent for (else a rescan from the cache sends for pages it passed: waste).
    this.guesses.notePrefetch(a, { page: p, hit: true, tid, write }, true);
  }

  private cacheInstalled(r: RegionState, p: number, dirty: boolean): void {
    r.counters.faultsCacheHit++;
    // News can come late (held back in another fault thread, or after its process's exit): by
    // then the page may have been taken as resident and evicted again. A hole is not resident.
    if (!r.has(p, RES) && !this.ops.hasData(r.cfg.memfd, p * r.pageSize)) return;
    const f = r.inFlight.get(p);
    if (f !== undefined) f.stale = true; // its bytes may be older than what is now mapped
    r.setFlag(p, RES | REF);
    if (dirty) r.setFlag(p, DIRTY);
    r.cacheDelete(this.cache, p);
    if (r.cachedPrefetch.delete(p)) this.guesses.prefetchUsed(r, p);
  }

  private onWriteProtectFault(a: Attachment, p: number): void {
    const r = a.state;
    r.counters.faultsWp++;
    if (!r.has(p, RES)) {
      if (!this.ops.hasData(r.cfg.memfd, p * r.pageSize)) {
        // Stale: the page was punched after this fault was raised. Wake the writer: it faults
        // MISSING next and gets the saved bytes.
        this.wakeOne(a, p);
        return;
      }
      // In the memfd but unknown here (an install whose news was lost): waking would only repeat
      // this fault. It is resident; dirty, since what it holds was never written back by us.
      if (!r.unknownResidentLogged) {
        r.unknownResidentLogged = true;
        this.log.warn({ region: r.cfg.name, page: p }, 'a write-protect fault on a page in the memfd the pager did not know of: taken as resident and dirty');
      }
      r.setFlag(p, RES);
    }
    // Mark before lifting the protection: the evictor's re-dirty check reads this flag.
    r.setFlag(p, DIRTY | REF);
    if (r.takePrefetched(p)) this.guesses.prefetchUsed(r, p);
    try {
      this.ops.writeProtect(a.uffd, addressOf(a, p), r.pageSize, false, false);
    } catch (e) {
      if (isGone(e)) this.teardown(a, (e as Error).message);
      else throw e;
    }
  }

  private onMissing(a: Attachment, p: number, write: boolean, tid: number): void {
    const r = a.state;
    if (r.has(p, RES)) {
      // Installed since the fault was raised (through another attachment, or a cache hit racing).
      r.setFlag(p, REF);
      r.held.delete(p); // held pages are installed only below; should one get in another way, its copy goes
      this.wakeOne(a, p);
      this.guesses.notePrefetch(a, { page: p, hit: true, tid, write });
      return;
    }
    let f = r.inFlight.get(p);
    const hit = f !== undefined;
    if (f === undefined) {
      f = newInFlight(p, false);
      if (this.onServed !== null) f.missAt = performance.now();
      r.inFlight.set(p, f);
      waitOn(f, a, write);
      // Staged in the cache after the FaultThread looked (a guess that landed meanwhile), or a held marker.
      const held = r.held.get(p);
      const cached = held !== undefined ? held : this.cache !== null ? this.cache.get(r.cfg.key, p) : null;
      if (cached !== null) {
        f.fromCache = true;
        r.counters.faultsCacheHit++;
        if (r.held.delete(p) || r.cachedPrefetch.delete(p)) this.guesses.prefetchUsed(r, p);
        this.complete(r, f, cached);
        this.guesses.notePrefetch(a, { page: p, hit: true, tid, write });
        return;
      }
      this.enqueueRead(r, p);
    } else {
      r.counters.faultsJoined++;
      if (f.missAt === null && this.onServed !== null) f.missAt = performance.now(); // a guess a process now waits on
      if (f.prefetch && f.waiters.size === 0) {
        // A guess that paid: the fetch was already out when the process asked.
        f.prefetch = false;
        this.guesses.prefetchUsed(r, p);
      }
    }
    waitOn(f, a, write);
    this.guesses.notePrefetch(a, { page: p, hit, tid, write });
  }

  // ---------------------------------------------------------------------------------------------
  // Prefetch guesses (guesses.ts), for the evictor and the serving runtime.

  /**
   * Replay warm-up: reads `pages` in one PageStore.read and places them like prefetch guesses.
   * Resolves with the pages sent for, once the read is done.
   */
  warm(key: number, pages: readonly number[]): Promise<number> {
    return this.guesses.warm(key, pages);
  }

  /** A guess was used (a fault, or an accessed bit at its eviction); the policy may answer with more. */
  prefetchUsed(r: RegionState, p: number): void {
    this.guesses.prefetchUsed(r, p);
  }

  /** A guess the stream walked over without a fault: counted used, the policy not told. */
  prefetchPassed(r: RegionState, p: number): void {
    this.guesses.prefetchPassed(r, p);
  }

  /** A guess dropped unused. */
  prefetchWasted(r: RegionState, p: number): void {
    this.guesses.prefetchWasted(r, p);
  }

  // ---------------------------------------------------------------------------------------------
  // Fetching: one PageStore.read per region per batch.

  enqueueRead(r: RegionState, p: number): void {
    let q = this.pending.get(r);
    if (q === undefined) this.pending.set(r, (q = []));
    q.push(p);
    if (q.length >= this.maxBatch) {
      this.pending.delete(r);
      this.startRead(r, q);
    }
  }

  scheduleFlush(): void {
    if (this.flushScheduled || this.pending.size === 0) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.flushReads();
    });
  }

  /** Starts one read per region for everything queued. */
  private flushReads(): void {
    if (this.pending.size === 0) return;
    const all = [...this.pending];
    this.pending.clear();
    for (const [r, q] of all) this.startRead(r, q);
  }

  /** Reads a batch now, not queued (warm-up); rejects if the read is given up. */
  async readNow(r: RegionState, batch: number[]): Promise<void> {
    this.readsInFlight++;
    try {
      await this.readLoop(r, batch);
    } finally {
      this.readsInFlight--;
    }
  }

  private startRead(r: RegionState, pages: number[]): void {
    this.readsInFlight++;
    this.readLoop(r, pages)
      .catch((err) => this.log.error({ err, region: r.cfg.name }, 'page read failed'))
      .finally(() => this.readsInFlight--);
  }

  /** Reads a batch until the store answers; retries with backoff, never installs unverified bytes. */
  private async readLoop(r: RegionState, batch: number[]): Promise<void> {
    let delay = this.retryInitialMs;
    let pages = batch;
    for (;;) {
      if (r.removed) return;
      try {
        const res = await r.cfg.store.read(r.cfg.ref, pages);
        checkReadResult(r, pages, res.present, res.absent);
        if (r.readUnavailableSince !== null) {
          this.log.warn({ region: r.cfg.name, afterMs: this.now() - r.readUnavailableSince }, 'memory servers answer again');
          r.readUnavailableSince = null;
          r.readUnavailableLogged = false;
        }
        this.completeRead(r, pages, res.present);
        return;
      } catch (err) {
        if (r.removed) return;
        pages = this.onReadFailure(r, pages, err);
        if (pages.length === 0) return;
        await this.sleep(delay);
        delay = Math.min(this.retryMaxMs, delay * 2);
      }
    }
  }

  /** Drops guesses, counts the episode, and after the timeout logs loudly / poisons sigbus regions. Returns the pages to retry. */
  private onReadFailure(r: RegionState, pages: number[], err: unknown): number[] {
    const now = this.now();
    if (r.readUnavailableSince === null) {
      r.readUnavailableSince = now;
      r.counters.readStalls++;
    }
    const keep: number[] = [];
    for (const p of pages) {
      const f = r.inFlight.get(p);
      if (f === undefined) continue;
      if (f.waiters.size === 0) {
        r.inFlight.delete(p); // a prefetch guess is not worth waiting for
        r.markers.delete(p);
        // Handed back as dropped (never fetched: not counted wasted), or the policy would count it
        // as asked for and leave a hole its stream faults through page by page (see issueGuesses).
        r.cfg.prefetcher?.onPrefetchWasted(p);
        continue;
      }
      if (f.failingSince === null) f.failingSince = now;
      keep.push(p);
    }
    if (now - r.readUnavailableSince >= this.unavailableAfterMs) {
      const sigbus = r.cfg.onUnavailable === 'sigbus' && this.ops.poison !== null;
      if (!r.readUnavailableLogged) {
        r.readUnavailableLogged = true;
        this.log.error({
          region: r.cfg.name, waitingPages: keep.length, sinceMs: now - r.readUnavailableSince,
          err: err instanceof PageStoreError ? `${err.kind}: ${err.message}` : String(err),
        }, sigbus
          ? 'no memory server answers: faulting threads get SIGBUS (region created with onUnavailable=sigbus)'
          : r.cfg.onUnavailable === 'sigbus'
            ? 'no memory server answers: faulting processes wait (onUnavailable=sigbus needs UFFDIO_POISON, which this addon lacks)'
            : 'no memory server answers: faulting processes wait until one does');
      }
      if (sigbus) {
        return keep.filter((p) => {
          const f = r.inFlight.get(p)!;
          if (this.now() - f.failingSince! < this.unavailableAfterMs) return true;
          this.poisonWaiters(r, f);
          return false;
        });
      }
    }
    return keep;
  }

  /**
   * sigbus regions: answer the fault with UFFDIO_POISON, so the woken thread gets SIGBUS. The kernel
   * refuses to poison over any pte marker (EEXIST), and a page evicted while write-protected keeps a
   * uffd-wp marker, so the marker is cleared first (DONTWAKE; the poison wakes). If the pte is still
   * not empty (another process sharing the memfd brought the page in), the thread is woken to retry.
   */
  private poisonWaiters(r: RegionState, f: InFlight): void {
    r.inFlight.delete(f.page);
    for (const a of f.waiters) {
      try {
        const at = addressOf(a, f.page);
        this.ops.writeProtect(a.uffd, at, r.pageSize, false, true);
        const res = this.ops.poison!(a.uffd, at, r.pageSize, false);
        if (res.outcome === 'done') r.counters.poisoned++;
        else this.ops.wake(a.uffd, at, r.pageSize);
      } catch (e) {
        if (isGone(e)) this.teardown(a, (e as Error).message);
        else this.log.error({ err: e, region: r.cfg.name, pid: a.pid, page: f.page }, 'poison failed');
      }
    }
  }

  /** A fetch finished: install for the waiters, or place a guess (installed if there is room, else cached). */
  complete(r: RegionState, f: InFlight, data: Buffer | null): void {
    if (f.stale || r.has(f.page, RES)) {
      r.inFlight.delete(f.page);
      for (const a of f.waiters) this.wakeOne(a, f.page);
      return;
    }
    if (f.waiters.size > 0) {
      // Over budget: evict a clean page now, or wait for a write-back; install over budget only
      // when nothing in reach can be evicted (so a fault never waits for nothing).
      const room = this.evictor.hasRoom(r) ? 'room' : this.evictor.makeRoom(r);
      if (room === 'wait') this.roomWaiters.push({ r, run: () => this.complete(r, f, data) });
      else this.installDemand(r, f, data);
      return;
    }
    this.guesses.place(r, f, data); // a guess nobody asked for yet
  }

  /**
   * A read came back. Pages someone waits for go through complete() one by one, in read order; a
   * fetched window marker may be held back; the other guesses nobody asked for yet are placed
   * together (guesses.ts: installed in runs while the budget leaves room, else staged).
   */
  private completeRead(r: RegionState, pages: readonly number[], present: Map<number, Buffer>): void {
    const guesses: InFlight[] = [];
    for (const p of pages) {
      const f = r.inFlight.get(p);
      if (f === undefined) continue;
      // Every present page is pageSize bytes (checkReadResult); its bytes are looked up only where
      // they go one by one (a guess's go in runs: placeFetched).
      if (present.has(p)) r.counters.remoteBytesIn += r.pageSize;
      const marker = r.markers.delete(p);
      if (f.waiters.size > 0) this.complete(r, f, present.get(p) ?? null); // someone waits: first
      else if (!marker || !this.guesses.hold(r, f, present.get(p) ?? null)) guesses.push(f);
    }
    if (guesses.length === 0) return;
    this.guesses.placeFetched(r, guesses, present);
  }

  /** Runs installs that waited for room, in order, while their regions have room. */
  roomFreed(): void {
    if (this.roomWaiters.length === 0) return;
    const waiting = this.roomWaiters;
    this.roomWaiters = [];
    for (const w of waiting) {
      if (w.r.removed) continue;
      if (this.evictor.hasRoom(w.r)) w.run();
      else this.roomWaiters.push(w);
    }
  }

  /** Pages waiting for room in region r (the evictor frees that many more). */
  roomWanted(r: RegionState): number {
    let n = 0;
    for (const w of this.roomWaiters) if (w.r === r) n++;
    return n;
  }

  private installDemand(r: RegionState, f: InFlight, data: Buffer | null): void {
    // A writer installs unprotected and the page is dirty at once: one round trip, not two.
    const order = [...f.writers, ...[...f.waiters].filter((a) => !f.writers.has(a))];
    const out = this.install(r, f.page, data, order, f);
    if (out === 'again') {
      this.againQueue.push(() => this.complete(r, f, data));
      if (this.againQueue.length === 1) setImmediate(() => this.runAgain());
      return;
    }
    r.inFlight.delete(f.page);
    if (out === 'done' && !f.fromCache) {
      if (data === null) r.counters.faultsZero++;
      else r.counters.faultsRemote++;
    }
    if (out === 'done' && f.missAt !== null && this.onServed !== null) {
      this.onServed(r.cfg.key, f.fromCache ? 'cache' : data === null ? 'zero' : 'remote', (performance.now() - f.missAt) * 1000);
    }
  }

  private runAgain(): void {
    const q = this.againQueue;
    this.againQueue = [];
    for (const run of q) run();
  }

  /**
   * Installs page p through the first live attachment of `order` and wakes every waiter of f.
   * 'done': installed (or found installed: EEXIST); 'again': retry later; 'none': nobody left to install for.
   */
  install(r: RegionState, p: number, data: Buffer | null, order: Attachment[], f: InFlight | null): 'done' | 'again' | 'none' {
    const ps = r.pageSize;
    for (const a of order) {
      if (!r.attachments.has(a.attachment)) continue;
      const write = f !== null && f.writers.has(a);
      const wp = !write && r.allWriteProtect();
      try {
        // Protect the page in the other mappings first, so none of them can write it unseen once
        // it exists (WP is per mapping; on shmem this leaves a marker where there is no pte).
        if (wp) for (const b of r.attachments.values()) if (b !== a) this.protect(b, p, true);
        const res = data !== null
          ? this.ops.copy(a.uffd, addressOf(a, p), data, wp, false)
          // UFFDIO_ZEROPAGE cannot install write-protected: a read of a never-written page gets a
          // protected copy of zeros instead, or its first write would go unseen.
          : wp ? this.ops.copy(a.uffd, addressOf(a, p), this.zeroPage(ps), true, false)
            : this.ops.zeropage(a.uffd, addressOf(a, p), ps, false);
        if (res.outcome === 'again') return 'again';
        if (res.outcome === 'exists') {
          // Installed by another path meanwhile; its own bookkeeping (a cache event) follows.
          this.wakeOne(a, p);
          r.setFlag(p, RES);
          if (!r.allWriteProtect()) r.setFlag(p, DIRTY);
        } else {
          r.setFlag(p, wp ? RES | REF : RES | REF | DIRTY);
        }
        r.cacheDelete(this.cache, p);
        if (f !== null) for (const b of f.waiters) if (b !== a) this.wakeOne(b, p);
        return 'done';
      } catch (e) {
        if (!isGone(e)) throw e;
        this.teardown(a, (e as Error).message);
      }
    }
    return 'none';
  }

  /** UFFDIO_WRITEPROTECT of one page through one attachment (no wake); false if it is gone. */
  protect(a: Attachment, p: number, on: boolean): boolean {
    if (!a.writeProtect) return true;
    try {
      // DONTWAKE only when lifting protection: the kernel refuses it with protect (EINVAL).
      this.ops.writeProtect(a.uffd, addressOf(a, p), a.state.pageSize, on, !on);
      return true;
    } catch (e) {
      if (!isGone(e)) throw e;
      this.teardown(a, (e as Error).message);
      return false;
    }
  }

  /**
   * Before a page goes into the native cache of a region with several attachments: protect it in all
   * of them, so that when the FaultThread installs it through one, the others still fault on a write.
   */
  armMarkers(r: RegionState, p: number): void {
    if (r.attachments.size < 2) return;
    for (const a of [...r.attachments.values()]) this.protect(a, p, true);
  }

  wakeOne(a: Attachment, p: number): void {
    try {
      this.ops.wake(a.uffd, addressOf(a, p), a.state.pageSize);
    } catch (e) {
      if (!isGone(e)) throw e;
      this.teardown(a, (e as Error).message);
    }
  }

  zeroPage(size: number): Buffer {
    if (this.zero === null || this.zero.length !== size) this.zero = Buffer.alloc(size);
    return this.zero;
  }
}

/** A store answer that does not account for every page exactly once with page-size bytes is refused. */
function checkReadResult(r: RegionState, pages: number[], present: Map<number, Buffer>, absent: number[]): void {
  // Page-size views of the pages asked, back to back, by construction.
  if (present instanceof PageViews && absent.length === 0 && present.holdsExactly(pages)) return;
  const abs = new Set(absent);
  for (const p of pages) {
    const d = present.get(p);
    if (d !== undefined && abs.has(p)) throw new PageStoreError('corrupt', `page ${p} of region "${r.cfg.name}" came back both present and absent`);
    if (d === undefined && !abs.has(p)) throw new PageStoreError('corrupt', `page ${p} of region "${r.cfg.name}" is missing from the answer`);
    if (d !== undefined && d.length !== r.pageSize) {
      throw new PageStoreError('corrupt', `Expected ${r.pageSize} bytes for page ${p} of region "${r.cfg.name}" but received ${d.length}`);
    }
  }
}
