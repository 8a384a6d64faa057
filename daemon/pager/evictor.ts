// The evictor keeps each region's resident pages under its budget (and all regions under the
// daemon-wide cap), ahead of faults: CLOCK over resident pages, unused prefetched pages first.
//
// Dropping a clean page: pread its bytes (optionally kept in the page cache as a victim), then punch
// the hole. pread and punch run in one JS turn, so no WP fault can be handled between them, and a
// clean page is write-protected in every attachment: a write in that window stays blocked, and after
// the punch its retry faults MISSING and gets the saved bytes.
//
// Dropping a dirty page, always in this order:
//   1. write-protect it in EVERY attachment (synchronous WP: from now on a write blocks in a WP fault),
//      clear DIRTY and set WB;
//   2. pread it;
//   3. PageStore.write, retried with backoff until acknowledged (never dropped);
//   4. in the JS turn that sees the ack: if a WP fault marked it DIRTY again meanwhile, keep it
//      (dirty, resident); else punch the hole;
//   5. wake the page in every attachment: a writer whose WP fault was not handled yet retries,
//      faults MISSING, and gets the bytes that were just written back.
// The protection of step 1 is what makes a concurrent write safe; the page is never read through a
// mapping (a load of a hole would allocate it and hide it from the process's next fault).

import { PageStoreError } from '../remote/types';
import type { Pager } from './pager';
import { DIRTY, QUEUED, REF, RES, WB, type RegionState } from './state';

/** A source of accessed bits (e.g. PAGEMAP_SCAN on the attached processes), read and cleared per page. */
export interface AccessSource {
  /** true when page p of the region (by key) was accessed since the last call for it; clears the bit. */
  testAndClear(region: number, page: number): boolean;
}

export interface EvictorOptions {
  /** Daemon-wide cap on resident pages over all regions, in bytes (0 = none). */
  globalCapBytes?: number;
  /** Background eviction starts at high × budget and stops at low × budget (defaults 0.95 and 0.85). */
  highWatermark?: number;
  lowWatermark?: number;
  /** Pages per PageStore.write (default 128) and write batches in flight (default 8): 32×4 wrote back
   * at ~43 MB/s over loopback gRPC, 128×8 at ~78 MB/s (test/bench/cases/paging.ts). */
  writeBatchPages?: number;
  maxWritesInFlight?: number;
  /** Keep evicted pages' bytes in the native page cache (default true). */
  cacheVictims?: boolean;
  /** A write-back not acknowledged after this long is logged as slow, once per episode (default 5000). */
  slowWriteMs?: number;
}

export type WriteMode = 'evict' | 'sync';

export interface SyncProgress {
  done: number;
  total: number;
}

export interface DrainResult {
  complete: boolean;
  dirtyLeft: number;
}

export class Evictor {
  private readonly pager: Pager;
  private readonly globalCap: number;
  private readonly high: number;
  private readonly low: number;
  private readonly batchPages: number;
  private readonly maxWrites: number;
  private readonly cacheVictims: boolean;
  private readonly slowWriteMs: number;
  private readonly access: AccessSource | null;
  private running = false;
  private again = false;
  private writesInFlight = 0;
  private slotWaiters: (() => void)[] = [];
  /** Capture sequence: each write-back batch takes the next number (see sync). */
  private seq = 0;
  private readonly noProgressLogged = new Set<RegionState>();

  constructor(pager: Pager, opts: EvictorOptions & { accessSource?: AccessSource | null }) {
    this.pager = pager;
    this.globalCap = opts.globalCapBytes ?? 0;
    this.high = opts.highWatermark ?? 0.95;
    this.low = opts.lowWatermark ?? 0.85;
    this.batchPages = opts.writeBatchPages ?? 128;
    this.maxWrites = opts.maxWritesInFlight ?? 8;
    this.cacheVictims = opts.cacheVictims ?? true;
    this.slowWriteMs = opts.slowWriteMs ?? 5000;
    this.access = opts.accessSource ?? null;
    if (!(this.low > 0 && this.low <= this.high && this.high <= 1)) {
      throw new Error(`Expected 0 < lowWatermark <= highWatermark <= 1 for the evictor but received ${this.low} and ${this.high}`);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Room.

  private globalResident(): number {
    let n = 0;
    for (const r of this.pager.regions.values()) n += r.resident;
    return n;
  }

  /** Resident pages and guesses being copied in (resident soon): what room for more guesses leaves. */
  private globalOccupied(): number {
    let n = 0;
    for (const r of this.pager.regions.values()) n += r.resident + r.installing;
    return n;
  }

  private globalCapPages(r: RegionState): number {
    return this.globalCap > 0 ? Math.max(1, Math.floor(this.globalCap / r.pageSize)) : Infinity;
  }

  /** A demand page may be installed now without going over a budget. */
  hasRoom(r: RegionState): boolean {
    return r.resident < r.budgetPages && this.globalResident() < this.globalCapPages(r);
  }

  /**
   * The budget the watermarks apply to: none when the whole region fits in it. Otherwise a region
   * given all its size as budget would still be kept at 85–95% of it, evicting (and writing back)
   * pages that were allowed to stay.
   */
  private watermarkBudget(r: RegionState): number {
    return r.budgetPages >= r.pages ? Infinity : r.budgetPages;
  }

  /** A guess may be installed directly: it would not push the region past its low watermark. */
  hasPrefetchRoom(r: RegionState): boolean {
    return this.prefetchRoomPages(r) > 0;
  }

  /** How many guesses may be installed directly now (hasPrefetchRoom, for a batch). */
  prefetchRoomPages(r: RegionState): number {
    return Math.max(0, Math.min(Math.floor(this.watermarkBudget(r) * this.low) - r.resident - r.installing, Math.floor(this.globalCapPages(r) * this.low) - this.globalOccupied()));
  }

  /**
   * Called by a demand install over budget: drops one clean page now if it can ('room'), or says to
   * wait for a write-back ('wait'), or 'over' when nothing in reach can be evicted at all (then the
   * install goes over budget rather than wait forever, and the evictor says so once).
   */
  makeRoom(r: RegionState): 'room' | 'wait' | 'over' {
    const victimRegion = r.resident >= r.budgetPages ? r : this.largestEvictable() ?? r;
    if (this.canEvict(victimRegion)) {
      const [p] = this.select(victimRegion, 1, true);
      if (p !== undefined) {
        this.evictClean(victimRegion, p);
        if (this.hasRoom(r)) return 'room';
      }
      if (victimRegion.resident > 0) {
        this.kick();
        return 'wait';
      }
    }
    if (!this.noProgressLogged.has(r)) {
      this.noProgressLogged.add(r);
      this.pager.log.warn({ region: r.cfg.name, resident: r.resident, budget: r.budgetPages },
        'over budget and nothing can be evicted: installing anyway');
    }
    return 'over';
  }

  private largestEvictable(): RegionState | null {
    let best: RegionState | null = null;
    for (const r of this.pager.regions.values()) {
      if (this.canEvict(r) && (best === null || r.resident > best.resident)) best = r;
    }
    return best;
  }

  /**
   * A region whose every attachment tracks writes synchronously can be evicted; else a write could
   * go unseen. Async regions never: a write between the read-back (or the scan that called the page
   * clean) and the punch would be lost, as async WP cannot block the writer (KERNEL.md).
   */
  private canEvict(r: RegionState): boolean {
    if (r.asyncTracking()) return false;
    if (r.allWriteProtect()) return true;
    if (!r.noWpLogged) {
      r.noWpLogged = true;
      this.pager.log.warn({ region: r.cfg.name }, 'region has an attachment without write-protect: it is not evicted');
    }
    return false;
  }

  /** Pages region r should shed now (watermarks, installs waiting for room, the global cap). */
  private wanted(r: RegionState): number {
    let n = 0;
    const budget = this.watermarkBudget(r);
    if (budget !== Infinity && r.resident >= Math.ceil(budget * this.high)) {
      n = r.resident - Math.floor(budget * this.low);
    }
    n = Math.max(n, r.resident + this.pager.roomWanted(r) - r.budgetPages);
    const cap = this.globalCapPages(r);
    if (cap !== Infinity) {
      const g = this.globalResident();
      if (g >= Math.ceil(cap * this.high) && this.largestEvictable() === r) n = Math.max(n, g - Math.floor(cap * this.low));
    }
    return n - r.evicting;
  }

  // ---------------------------------------------------------------------------------------------
  // Background eviction.

  /** Starts (or re-runs) background eviction when some region is over its high watermark. */
  kick(): void {
    if (this.running) {
      this.again = true;
      return;
    }
    for (const r of this.pager.regions.values()) {
      if (this.wanted(r) > 0) {
        this.running = true;
        setImmediate(() => this.run().catch((err) => this.pager.log.error({ err }, 'eviction failed')).finally(() => (this.running = false)));
        return;
      }
    }
  }

  busy(): boolean {
    if (this.running || this.writesInFlight > 0) return true;
    for (const r of this.pager.regions.values()) if (r.writeBacks.size > 0) return true;
    return false;
  }

  private async run(): Promise<void> {
    for (;;) {
      this.again = false;
      let progressed = false;
      const waits: Promise<void>[] = [];
      for (const r of [...this.pager.regions.values()]) {
        const want = this.wanted(r);
        if (want <= 0 || !this.canEvict(r)) {
          for (const w of r.writeBacks) waits.push(w);
          continue;
        }
        const victims = this.select(r, want, false);
        const dirty: number[] = [];
        for (const p of victims) {
          if (r.has(p, DIRTY)) dirty.push(p);
          else this.evictClean(r, p);
        }
        if (victims.length > dirty.length) this.pager.roomFreed();
        if (dirty.length > 0) this.writeBack(r, dirty, 'evict');
        if (victims.length > 0) progressed = true;
        for (const w of r.writeBacks) waits.push(w);
      }
      if (!progressed) {
        if (waits.length === 0 || this.pager.regions.size === 0) return;
        await Promise.race(waits);
      } else {
        await new Promise<void>((resolve) => setImmediate(resolve)); // let faults run between rounds
      }
      if (!this.again && ![...this.pager.regions.values()].some((r) => this.wanted(r) > 0 || r.writeBacks.size > 0)) return;
    }
  }

  /**
   * CLOCK with second chance: prefetched pages nobody was seen to use first (oldest first), then pages
   * whose reference bit (fault history, or the access source) is clear. Guesses the prefetcher says a
   * stream is about to reach are kept out of both while anything else can go: evicting one means
   * fetching it again a moment later (under a tight budget that is what made a scan's guesses race
   * the evictor); if nothing else can, they go farthest-ahead (newest) first. Skips pages in
   * write-back or queued for it.
   */
  private select(r: RegionState, want: number, cleanOnly: boolean): number[] {
    const out: number[] = [];
    const pf = r.cfg.prefetcher;
    const where = pf?.whereIs?.bind(pf) ?? null;
    const ahead = new Set<number>();
    for (const p of r.prefetched()) {
      if (out.length >= want) return out;
      if (!this.evictable(r, p, cleanOnly)) continue;
      if (where !== null && where(p) === 'ahead') ahead.add(p);
      else out.push(p);
    }
    const picked = new Set(out);
    for (let steps = 0; steps < 2 * r.pages && out.length < want; steps++) {
      const p = r.hand;
      r.hand = r.hand + 1 >= r.pages ? 0 : r.hand + 1;
      if (!this.evictable(r, p, cleanOnly) || picked.has(p) || ahead.has(p)) continue;
      const accessed = this.access !== null && this.access.testAndClear(r.cfg.key, p);
      if (r.has(p, REF) || accessed) {
        r.clearFlag(p, REF);
        continue;
      }
      out.push(p);
      picked.add(p);
    }
    if (out.length < want && ahead.size > 0) {
      const rest = [...ahead];
      for (let i = rest.length - 1; i >= 0 && out.length < want; i--) out.push(rest[i]!);
    }
    return out;
  }

  private evictable(r: RegionState, p: number, cleanOnly: boolean): boolean {
    const f = r.flags[p]!;
    if (!(f & RES) || f & (WB | QUEUED)) return false;
    if (cleanOnly && f & DIRTY) return false;
    return !r.inFlight.has(p);
  }

  /** Drops a clean page: its bytes to the cache as a victim (read BEFORE the punch), then the hole. */
  private evictClean(r: RegionState, p: number): void {
    const ps = r.pageSize;
    let bytes: Buffer | null = null;
    const cache = this.pager.cache;
    if (cache !== null && this.cacheVictims) bytes = this.readPage(r, p);
    this.pager.ops.punchHole(r.cfg.memfd, p * ps, ps);
    this.dropped(r, p);
    r.counters.evictedClean++;
    if (bytes !== null && cache !== null) {
      this.pager.armMarkers(r, p);
      cache.put(r.cfg.key, p, bytes);
    }
  }

  /** Bookkeeping for a page that just left the memfd. */
  private dropped(r: RegionState, p: number): void {
    if (r.takePrefetched(p)) {
      if (this.access !== null && this.access.testAndClear(r.cfg.key, p)) this.pager.prefetchUsed(r, p);
      // A stream walked past it: read without a fault (a use), not a wasted guess.
      else if (r.cfg.prefetcher?.whereIs?.(p) === 'behind') this.pager.prefetchPassed(r, p);
      else this.pager.prefetchWasted(r, p);
    }
    r.clearFlag(p, RES | DIRTY | REF | WB | QUEUED);
  }

  private readPage(r: RegionState, p: number): Buffer {
    const buf = Buffer.alloc(r.pageSize);
    this.pager.ops.pread(r.cfg.memfd, buf, p * r.pageSize);
    return buf;
  }

  /** Clean pages still in the cache as staged guesses that fell out of it: count them wasted. */
  sweepCachedPrefetch(r: RegionState): void {
    const cache = this.pager.cache;
    if (cache === null) return;
    for (const p of r.cachedPrefetch) {
      if (!cache.has(r.cfg.key, p)) {
        r.cachedPrefetch.delete(p);
        this.pager.prefetchWasted(r, p);
      }
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Write-back.

  /** Writes the given dirty pages back in batches; 'evict' punches them after the ack. */
  writeBack(r: RegionState, pages: number[], mode: WriteMode): Promise<void> {
    const all: Promise<void>[] = [];
    for (let i = 0; i < pages.length; i += this.batchPages) {
      const batch = pages.slice(i, i + this.batchPages);
      if (mode === 'evict') {
        for (const p of batch) r.setFlag(p, QUEUED);
        r.evicting += batch.length;
      }
      const w = this.writeBatch(r, batch, mode).finally(() => {
        r.writeBacks.delete(w);
        if (mode === 'evict') r.evicting -= batch.length;
      });
      r.writeBacks.add(w);
      all.push(w);
    }
    return Promise.all(all).then(() => undefined);
  }

  private async slot(): Promise<void> {
    if (this.writesInFlight < this.maxWrites) {
      this.writesInFlight++;
      return;
    }
    await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
  }

  private release(): void {
    const next = this.slotWaiters.shift();
    if (next !== undefined) next();
    else this.writesInFlight--;
  }

  private async writeBatch(r: RegionState, batch: number[], mode: WriteMode): Promise<void> {
    await this.slot();
    try {
      for (const p of batch) r.clearFlag(p, QUEUED);
      if (r.removed) return;
      // 1. protect everywhere, clear DIRTY, mark WB: from here a write shows up as DIRTY again.
      // (A region with a mapping that cannot protect is only ever synced, and its pages stay dirty.)
      const pages = batch.filter((p) => r.has(p, RES) && r.has(p, DIRTY) && !r.has(p, WB));
      if (pages.length === 0) return;
      const tracked = r.allWriteProtect();
      // Async attachments were re-protected by the scan that found these pages (sync collects
      // first): a write since shows up in the next scan, and one before the pread is in the bytes.
      if (tracked) for (const p of pages) for (const a of [...r.attachments.values()]) if (a.pagemap === null) this.pager.protect(a, p, true);
      const ps = r.pageSize;
      const data = Buffer.alloc(pages.length * ps);
      for (const [i, p] of pages.entries()) {
        r.clearFlag(p, DIRTY);
        r.setFlag(p, WB);
        // 2. read the protected bytes (pread: never through a mapping).
        this.pager.ops.pread(r.cfg.memfd, data.subarray(i * ps, (i + 1) * ps), p * ps);
      }
      const seq = ++this.seq;
      // 3. write until acknowledged.
      await this.writeUntilAcked(r, pages, data);
      if (r.removed) return;
      r.counters.writeBackBatches++;
      r.counters.writeBackPages += pages.length;
      r.counters.remoteBytesOut += data.length;
      // 4. + 5. in this one turn: re-dirtied pages stay; the others are punched and woken.
      let freed = false;
      for (const [i, p] of pages.entries()) {
        r.clearFlag(p, WB);
        r.ackSeq[p] = seq;
        if (!tracked || !r.allWriteProtect()) r.setFlag(p, DIRTY);
        if (mode !== 'evict' || r.has(p, DIRTY) || !r.has(p, RES)) continue;
        this.pager.ops.punchHole(r.cfg.memfd, p * ps, ps);
        this.dropped(r, p);
        r.counters.evictedDirty++;
        freed = true;
        if (this.pager.cache !== null && this.cacheVictims) {
          this.pager.armMarkers(r, p);
          this.pager.cache.put(r.cfg.key, p, Buffer.from(data.subarray(i * ps, (i + 1) * ps)));
        }
        for (const a of [...r.attachments.values()]) this.pager.wakeOne(a, p);
      }
      if (freed) this.pager.roomFreed();
    } finally {
      this.release();
      this.kick();
    }
  }

  private async writeUntilAcked(r: RegionState, pages: number[], data: Buffer): Promise<void> {
    let delay = this.pager.retryInitialMs;
    let slow: NodeJS.Timeout | null = null;
    if (r.writeStalledSince === null) {
      slow = setTimeout(() => this.stalled(r, pages.length, `no acknowledgement after ${this.slowWriteMs} ms`), this.slowWriteMs);
      slow.unref();
    }
    try {
      for (;;) {
        try {
          await r.cfg.store.write(r.cfg.ref, pages, data);
          r.unsynced = true;
          break;
        } catch (err) {
          if (r.removed) return;
          this.stalled(r, pages.length, err instanceof PageStoreError ? `${err.kind}: ${err.message}` : String(err));
          await this.pager.sleep(delay);
          delay = Math.min(this.pager.retryMaxMs, delay * 2);
        }
      }
    } finally {
      if (slow !== null) clearTimeout(slow);
    }
    if (r.writeStalledSince !== null) {
      this.pager.log.warn({ region: r.cfg.name, afterMs: this.pager.now() - r.writeStalledSince }, 'write-back resumed');
      r.writeStalledSince = null;
    }
  }

  /** One clear line per stall episode; dirty pages stay resident meanwhile. */
  private stalled(r: RegionState, pages: number, reason: string): void {
    if (r.writeStalledSince !== null) return;
    r.writeStalledSince = this.pager.now();
    r.counters.writeBackStalls++;
    this.pager.log.warn({ region: r.cfg.name, pages, dirty: r.dirty, reason },
      'write-back stalled: dirty pages stay resident and are retried until a memory server acknowledges them');
  }

  // ---------------------------------------------------------------------------------------------
  // Operator actions.

  /**
   * Writes back every page dirty when called (they stay resident, clean and protected), then asks the
   * store to make them durable. A page counts as done once a write-back that captured it after this
   * call began was acknowledged, or once it is clean or gone — so a process that keeps writing cannot
   * keep sync from finishing.
   */
  async sync(r: RegionState, onProgress?: (p: SyncProgress) => void, opts: { onlyIfWritten?: boolean } = {}): Promise<void> {
    if (!r.removed) this.pager.collectWritten(r.cfg.key); // async attachments: what was written since the last scan
    const start = ++this.seq;
    const todo = new Set<number>();
    for (let p = 0; p < r.pages; p++) if (r.has(p, RES) && r.flags[p]! & (DIRTY | WB | QUEUED)) todo.add(p);
    const total = todo.size;
    const report = () => onProgress?.({ done: total - todo.size, total });
    report();
    while (todo.size > 0 && !r.removed) {
      for (const p of todo) {
        if (!r.has(p, RES) || !(r.flags[p]! & (DIRTY | WB | QUEUED)) || r.ackSeq[p]! > start) todo.delete(p);
      }
      report();
      if (todo.size === 0) break;
      const ready = [...todo].filter((p) => r.has(p, DIRTY) && !(r.flags[p]! & (WB | QUEUED)));
      if (ready.length > 0) await this.writeBack(r, ready, 'sync');
      else await Promise.race(r.writeBacks); // the rest are out in an eviction's write-back
    }
    // A drain with nothing written since the last sync asks no server anything (it may be gone).
    if (opts.onlyIfWritten === true && !r.unsynced) return;
    r.unsynced = false;
    await r.cfg.store.sync(r.cfg.ref);
  }

  /** Drops every clean resident page now (operators, tests). Returns how many. */
  evictAll(r: RegionState): number {
    if (!this.canEvict(r)) return 0;
    let n = 0;
    for (let p = 0; p < r.pages; p++) {
      if (this.evictable(r, p, true)) {
        this.evictClean(r, p);
        n++;
      }
    }
    this.sweepCachedPrefetch(r);
    if (n > 0) this.pager.roomFreed();
    return n;
  }

  private hasUnwritten(r: RegionState): boolean {
    for (let p = 0; p < r.pages; p++) if (r.has(p, RES) && r.flags[p]! & (DIRTY | WB | QUEUED)) return true;
    return false;
  }

  /** SIGTERM: writes back every dirty page of every region, bounded by timeoutMs. */
  async drain(timeoutMs: number): Promise<DrainResult> {
    let timer: NodeJS.Timeout | null = null;
    const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs)));
    // Per region, the pages its sync found dirty (or out in a write-back): the count the log gives.
    const totals = new Map<RegionState, number>();
    // Only regions with something to write or to make durable (write-backs since the last sync): a
    // clean region needs no memory server, and a drain
    // must not fail (exit 1) because a server that holds nothing for us is unreachable.
    for (const r of this.pager.regions.values()) this.pager.collectWritten(r.cfg.key);
    const dirty = [...this.pager.regions.values()].filter((r) => this.hasUnwritten(r) || r.unsynced);
    const work = Promise.all(dirty.map((r) => this.sync(r, (p) => totals.set(r, p.total), { onlyIfWritten: true }))).then(() => 'done' as const);
    try {
      const res = await Promise.race([work, timeout]);
      const dirtyLeft = [...this.pager.regions.values()].reduce((n, r) => n + r.dirty, 0);
      if (res === 'timeout') {
        this.pager.log.error({ timeoutMs, dirtyLeft }, 'drain timed out: dirty pages were not all written back');
        return { complete: false, dirtyLeft };
      }
      const pages = [...totals.values()].reduce((n, v) => n + v, 0);
      this.pager.log.info({ pages, dirtyLeft }, `drained: ${pages} dirty page(s) written back`);
      return { complete: true, dirtyLeft };
    } finally {
      if (timer !== null) clearTimeout(timer);
    }
  }
}

