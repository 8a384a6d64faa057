// Prefetch guesses: the path of a page the prefetcher asked for before any process did. The pager
// tells this collaborator of every fault (notePrefetch) and hands it every fetched page nobody waits
// for; it sends for the policy's guesses (or installs them from the native cache), places what comes
// back — installed in runs while the budget leaves room, a window's marker held back, the rest staged
// in the native cache — and keeps the used / wasted accounting the policy learns from.
//
// It calls back into the pager (pager.ts) for the mechanism: enqueueRead / scheduleFlush / readNow to
// fetch, install / complete to place one page, teardown when an attachment is gone. Everything here
// runs on the JS thread.

import type { FaultInfo } from '../prefetch/types';
import type { CopyResult } from '../native';
import { PageViews } from '../remote/page-views';
import { isGone } from './ops';
import type { Pager } from './pager';
import { addressOf, newInFlight, PREF, REF, RES, type Attachment, type InFlight, type RegionState } from './state';

export interface GuessOptions {
  /** Most prefetched pages in flight per region (default 256). */
  maxPrefetchInFlight?: number;
}

/** A policy decision of at least this many pages gets a marker (its first page is held back). */
const MARKER_MIN_WINDOW = 16;
/** Held markers per region at most (one per window in flight or just fetched). */
const MAX_HELD = 64;

export class Guesses {
  private readonly pager: Pager;
  private readonly maxPrefetchInFlight: number;
  private readonly onTouch: ((region: number, attachment: number | null, page: number) => void) | null;

  constructor(pager: Pager, opts: GuessOptions & { onTouch?: ((region: number, attachment: number | null, page: number) => void) | null }) {
    this.pager = pager;
    this.maxPrefetchInFlight = opts.maxPrefetchInFlight ?? 256;
    this.onTouch = opts.onTouch ?? null;
  }

  // ---------------------------------------------------------------------------------------------
  // Sending for guesses.

  /** A fault of attachment a: the region's policy answers with guesses, sent for here. */
  notePrefetch(a: Attachment, info: FaultInfo, checkMemfd = false): void {
    const r = a.state;
    const pf = r.cfg.prefetcher;
    if (pf === null) return;
    this.issueGuesses(r, pf.onFault(info), checkMemfd);
  }

  /**
   * Sends for the guesses that are not resident, in flight or cached, up to the in-flight bound (half
   * the cache when they can only be staged there). Guesses past the bound (or past the budget with no
   * cache) are handed back to the policy as dropped:
   * it counts them as asked for, so a later fault on one would be taken as a use and ask for nothing,
   * leaving a hole the stream faults through page by page; dropped, its window shrinks (backpressure).
   */
  private issueGuesses(r: RegionState, guesses: readonly number[], checkMemfd = false): void {
    if (guesses.length === 0) return;
    const { cache, evictor } = this.pager;
    const inFlight = countPrefetchInFlight(r);
    let room = this.maxPrefetchInFlight - inFlight;
    // Without room under the budget, what comes back is staged in the native cache: no more on the
    // way than half of it holds, or the guesses push each other (and the evicted pages kept there)
    // out before the process gets to them, and it faults them in again one by one.
    if (cache !== null && room > 0 && !evictor.hasPrefetchRoom(r)) room = Math.min(room, Math.floor(cache.capacityBytes() / r.pageSize / 2) - inFlight);
    let marker = guesses.length >= MARKER_MIN_WINDOW && r.cfg.prefetcher?.windowMarkers?.() === true;
    // Guesses the native cache holds (recently evicted clean pages, staged guesses): installed from
    // there in runs when the region has room, as a fetched guess would be, instead of each costing
    // the process a fault that the FaultThread serves from the cache. -1: not looked up yet.
    let cacheRoom = -1;
    const fromCache: number[] = [];
    for (let i = 0; i < guesses.length; i++) {
      const p = guesses[i]!;
      if (room <= 0 || (cache === null && !evictor.hasPrefetchRoom(r))) {
        for (const q of guesses.slice(i)) r.cfg.prefetcher?.onPrefetchWasted(q);
        break;
      }
      if (!sendable(r, p)) continue;
      if (cache !== null && cache.has(r.cfg.key, p)) {
        // A window's first page stays in the cache: its touch is a fault the FaultThread serves from
        // there, and the hit tells the policy to send for the next window (a held marker's job).
        if (marker) {
          marker = false;
          continue;
        }
        if (cacheRoom < 0) cacheRoom = runRoom(r, evictor);
        if (cacheRoom > 0) {
          fromCache.push(p);
          cacheRoom--;
        }
        continue;
      }
      if (checkMemfd && this.pager.ops.hasData(r.cfg.memfd, p * r.pageSize)) continue; // installed; its event is on its way
      r.inFlight.set(p, newInFlight(p, true));
      r.counters.prefetchIssued++;
      if (marker) {
        r.markers.add(p);
        marker = false;
      }
      this.pager.enqueueRead(r, p);
      room--;
    }
    if (fromCache.length > 0) this.installFromCache(r, fromCache);
  }

  /**
   * Installs guesses straight from the native cache (see issueGuesses), placed like fetched guesses
   * (installGuessRuns: one UFFDIO_COPY per run, write-protected, then out of the cache). A page the
   * cache dropped meanwhile is skipped (the process faults it as usual); one the FaultThread
   * installed first meets EEXIST, is never overwritten, and its pending event counts the hit.
   */
  private installFromCache(r: RegionState, pages: readonly number[]): void {
    const present = new Map<number, Buffer>();
    const run: number[] = [];
    /** Guesses staged earlier: counted issued then. */
    const staged = new Set<number>();
    for (const p of pages) {
      const data = this.pager.cache!.get(r.cfg.key, p);
      if (data === null) continue;
      if (r.cachedPrefetch.has(p)) staged.add(p);
      r.inFlight.set(p, newInFlight(p, true));
      present.set(p, data);
      run.push(p);
    }
    if (run.length === 0) return;
    this.installGuessRuns(r, run, present, true, () => {
      for (const p of run) {
        const installed = r.has(p, PREF);
        // Neither installed nor staged (again, by a leftover's complete()): the FaultThread got there
        // first, or a process faulted on it during the copy (its fault counted the hit).
        if (!installed && !r.cachedPrefetch.has(p)) continue;
        if (installed) r.cachedPrefetch.delete(p);
        if (!staged.has(p)) r.counters.prefetchIssued++;
      }
    });
  }

  /**
   * Replay warm-up: reads `pages` in one PageStore.read and places them like prefetch guesses —
   * installed when the region has an attachment and room under its budget, else staged in the
   * native cache (the FaultThread then serves them without JS). Resident, in-flight and cached pages
   * are skipped. Resolves with the pages sent for, once the read is done.
   */
  async warm(key: number, pages: readonly number[]): Promise<number> {
    const r = this.pager.region(key);
    const cache = this.pager.cache;
    const batch: number[] = [];
    for (const p of pages) {
      if (!sendable(r, p) || (cache !== null && cache.has(r.cfg.key, p))) continue;
      r.inFlight.set(p, newInFlight(p, true));
      r.counters.prefetchIssued++;
      batch.push(p);
    }
    if (batch.length === 0) return 0;
    await this.pager.readNow(r, batch);
    return batch.length;
  }

  // ---------------------------------------------------------------------------------------------
  // Placing what came back.

  /**
   * A fetched marker (see RegionState.held): kept out of the region when the region has one
   * attachment, all write-protecting, and its bytes are not stale; the oldest beyond the bound is
   * staged. false: not held (the caller places it like any guess).
   */
  hold(r: RegionState, f: InFlight, data: Buffer | null): boolean {
    if (f.stale || !inRuns(r)) return false;
    r.inFlight.delete(f.page);
    r.held.set(f.page, data ?? Buffer.alloc(r.pageSize));
    if (r.held.size <= MAX_HELD) return true;
    const [old, bytes] = r.held.entries().next().value as [number, Buffer];
    r.held.delete(old);
    this.stage(r, old, bytes);
    return true;
  }

  /**
   * Fetched guesses nobody asked for yet (in read order): as many as the budget leaves room for are
   * installed in runs of contiguous pages — one UFFDIO_COPY per run, write-protected and DONTWAKE —
   * then one UFFDIO_WAKE over the batch (a fault raised on one of them that JS has not seen yet is
   * resumed by it). The rest go through the pager's complete() one by one.
   */
  placeFetched(r: RegionState, guesses: readonly InFlight[], present: Map<number, Buffer>): void {
    let room = runRoom(r, this.pager.evictor);
    const runs: number[] = [];
    const rest: InFlight[] = [];
    for (const f of guesses) {
      if (room > 0 && !f.stale && !r.has(f.page, RES)) {
        runs.push(f.page);
        room--;
      } else {
        rest.push(f);
      }
    }
    if (runs.length > 0) this.installGuessRuns(r, runs, present, false);
    // After the runs: they took the room, so these are staged (or dropped), not installed one by one.
    for (const f of rest) this.pager.complete(r, f, present.get(f.page) ?? null);
  }

  /**
   * A fetched guess nobody asked for yet, not stale nor resident (the pager's complete() checked):
   * installed if the budget leaves room, else staged.
   */
  place(r: RegionState, f: InFlight, data: Buffer | null): void {
    r.inFlight.delete(f.page);
    if (r.attachments.size > 0 && this.pager.evictor.hasPrefetchRoom(r)) {
      const a = r.attachments.values().next().value as Attachment;
      if (this.pager.install(r, f.page, data, [a], null) === 'done') {
        r.clearFlag(f.page, REF);
        r.addPrefetched(f.page);
        return;
      }
    }
    this.stage(r, f.page, data ?? this.pager.zeroPage(r.pageSize));
  }

  /** A guess into the native cache (the FaultThread serves it without JS), or counted wasted. */
  private stage(r: RegionState, p: number, data: Buffer): void {
    const cache = this.pager.cache;
    if (cache !== null && r.allWriteProtect()) {
      this.pager.armMarkers(r, p);
      if (cache.put(r.cfg.key, p, data)) r.cachedPrefetch.add(p);
      else this.prefetchWasted(r, p);
    } else {
      this.prefetchWasted(r, p);
    }
  }

  /**
   * `fromCache`: the pages came out of the native cache, and go from there once installed. A fetched
   * guess is never there: it was not when it was sent for (issueGuesses installs cached ones
   * instead), and nothing stages a page that is in flight.
   *
   * Where the addon offers it, each run is copied off the JS thread (copyRunsAsync): UFFDIO_COPY is
   * 1.2-1.4 µs a page, a fifth of the daemon's CPU per page of a scan, and the JS thread meanwhile
   * receives the next read.
   */
  private installGuessRuns(r: RegionState, pages: number[], present: Map<number, Buffer>, fromCache: boolean, after?: () => void): void {
    if (this.pager.ops.copyAsync !== null) {
      this.copyRunsAsync(r, pages, present, fromCache, after);
      return;
    }
    this.copyRuns(r, pages, present, fromCache);
    after?.();
  }

  /**
   * The runs copied off the JS thread, each with one UFFDIO_COPY (write-protected; it wakes its range
   * when done). Until then its pages stay in flight (and count against the budget as r.installing): a
   * fault on one waits for it like a fault on a page being fetched, and the copy's wake resumes it.
   * What a copy did not install (a page that got there first, an event pending, the process gone, a
   * failed copy) goes the synchronous way (runCopied).
   */
  private copyRunsAsync(r: RegionState, pages: number[], present: Map<number, Buffer>, fromCache: boolean, after?: () => void): void {
    const ops = this.pager.ops;
    const a = r.attachments.values().next().value as Attachment;
    const ps = r.pageSize;
    // Runs still being copied, and one for this loop: `after` runs once, when the last is placed.
    let runs = 1;
    const settled = () => {
      if (--runs === 0) after?.();
    };
    for (const run of runsOf(pages)) {
      const buf = runBytes(run, present, ps, this.pager.zeroPage(ps));
      r.installing += run.length;
      const done = (err: Error | null, res: CopyResult | null) => {
        r.installing -= run.length;
        if (r.removed) return;
        try {
          this.runCopied(r, a, run, present, fromCache, err, res);
        } catch (e) {
          this.pager.log.error({ err: e, region: r.cfg.name, first: run[0], pages: run.length }, 'placing a copied run of guesses failed');
        } finally {
          settled();
        }
      };
      runs++;
      try {
        ops.copyAsync!(a.uffd, addressOf(a, run[0]!), buf, true, false, done);
      } catch (e) {
        done(e as Error, null);
      }
    }
    settled();
  }

  /** A run's asynchronous copy is done (see copyRunsAsync). */
  private runCopied(r: RegionState, a: Attachment, run: number[], present: Map<number, Buffer>, fromCache: boolean, err: Error | null, res: CopyResult | null): void {
    const cache = this.pager.cache;
    if (err !== null && isGone(err)) this.pager.teardown(a, err.message);
    else if (err !== null) {
      // Not the process gone (say ENOMEM): nothing of the run is taken as installed, and each page
      // goes the synchronous way below, where install() meets and reports the same failure as a
      // synchronous copy would. Left in flight, a process touching one would wait forever.
      this.pager.log.warn({ err, region: r.cfg.name, first: run[0], pages: run.length }, 'UFFDIO_COPY of a run of guesses off the JS thread failed: placing its pages one by one');
    }
    const n = res === null ? 0 : Math.min(run.length, Math.floor(res.bytes / r.pageSize));
    for (let k = 0; k < n; k++) {
      const p = run[k]!;
      const f = r.inFlight.get(p);
      if (f === undefined) continue;
      if (f.waiters.size === 0) {
        this.placed(r, p, fromCache);
        continue;
      }
      // A process faulted on it during the copy (onMissing counted the use): resident, touched.
      r.inFlight.delete(p);
      if (fromCache) r.cacheDelete(cache, p);
      r.setFlag(p, RES | REF);
      for (const b of f.waiters) if (b !== a) this.pager.wakeOne(b, p);
    }
    const rest = run.slice(n).filter((p) => r.inFlight.has(p));
    if (rest.length === 0) return;
    // Runs again while they may (another process may have attached meanwhile: then one by one).
    if (err === null && r.attachments.has(a.attachment) && inRuns(r)) {
      this.copyRuns(r, rest, present, fromCache);
      return;
    }
    for (const p of rest) this.pager.complete(r, r.inFlight.get(p)!, present.get(p) ?? null);
  }

  /** A guess just installed by a run's copy: resident, untouched (PREF), out of the cache it came from. */
  private placed(r: RegionState, p: number, fromCache: boolean): void {
    r.inFlight.delete(p);
    r.setFlag(p, RES);
    r.clearFlag(p, REF);
    r.addPrefetched(p);
    if (fromCache) r.cacheDelete(this.pager.cache, p);
  }

  /** The runs copied here, one UFFDIO_COPY each (DONTWAKE), then one wake over them all. */
  private copyRuns(r: RegionState, pages: number[], present: Map<number, Buffer>, fromCache: boolean): void {
    const { cache, ops } = this.pager;
    const a = r.attachments.values().next().value as Attachment;
    const ps = r.pageSize;
    // Pages the batch could not install (an event pending, the process gone): placed one by one.
    const leftover: number[] = [];
    for (const run of runsOf(pages)) {
      if (leftover.length > 0) {
        leftover.push(...run);
        continue;
      }
      const buf = runBytes(run, present, ps, this.pager.zeroPage(ps));
      let k = 0;
      while (k < run.length) {
        let res;
        try {
          res = ops.copy(a.uffd, addressOf(a, run[k]!), k === 0 ? buf : buf.subarray(k * ps), true, true);
        } catch (e) {
          if (!isGone(e)) throw e;
          this.pager.teardown(a, (e as Error).message);
          leftover.push(...run.slice(k));
          break;
        }
        const n = Math.min(run.length - k, Math.floor(res.bytes / ps));
        for (let q = k; q < k + n; q++) this.placed(r, run[q]!, fromCache);
        k += n;
        if (res.outcome === 'done') break;
        if (res.outcome === 'again') {
          leftover.push(...run.slice(k));
          break;
        }
        // EEXIST: the process already has this page (another path installed it; its own
        // bookkeeping follows). Never overwritten; the guess is simply not needed.
        const p = run[k]!;
        r.inFlight.delete(p);
        r.setFlag(p, RES);
        r.cacheDelete(cache, p);
        k++;
      }
    }
    if (r.attachments.has(a.attachment)) {
      try {
        ops.wake(a.uffd, addressOf(a, pages[0]!), (pages[pages.length - 1]! - pages[0]! + 1) * ps);
      } catch (e) {
        if (!isGone(e)) throw e;
        this.pager.teardown(a, (e as Error).message);
      }
    }
    for (const p of leftover) {
      const f = r.inFlight.get(p);
      if (f !== undefined) this.pager.complete(r, f, present.get(p) ?? null);
    }
  }

  // ---------------------------------------------------------------------------------------------
  // Accounting: used, passed, wasted.

  prefetchUsed(r: RegionState, p: number): void {
    r.counters.prefetchUsed++;
    if (this.onTouch !== null) this.onTouch(r.cfg.key, null, p);
    // A policy may answer a use with its next window (the stream reached its marker). It counts those
    // pages as asked for, so a later fault on one is taken as a use and asks for nothing: dropping
    // them here would leave a hole that faults page by page until the stream passes it.
    const next = r.cfg.prefetcher?.onPrefetchUsed(p);
    if (next && next.length > 0) {
      this.issueGuesses(r, next);
      this.pager.scheduleFlush();
    }
  }

  /**
   * A guess the prefetcher's stream walked over without a fault (seen at its eviction): counted used.
   * The policy is not told: the stream is long past it, and a late use would read as a new access.
   */
  prefetchPassed(r: RegionState, p: number): void {
    r.counters.prefetchUsed++;
    if (this.onTouch !== null) this.onTouch(r.cfg.key, null, p);
  }

  prefetchWasted(r: RegionState, p: number): void {
    r.counters.prefetchWasted++;
    r.cfg.prefetcher?.onPrefetchWasted(p);
  }

  /**
   * The last process left: its streams are over, and a policy that remembers touched pages (auto)
   * would otherwise refuse to guess them for the next run.
   */
  lastDetached(r: RegionState): void {
    this.settlePassed(r); // while the policy still knows its streams
    r.cfg.prefetcher?.reset();
    // Nobody left to fault on them: staged like any guess (a warm cache for the next process).
    for (const [p, bytes] of r.held) this.stage(r, p, bytes);
    r.held.clear();
  }

  /** Installed guesses a stream walked over become ordinary resident pages, counted used. */
  private settlePassed(r: RegionState): void {
    const pf = r.cfg.prefetcher;
    if (pf?.whereIs === undefined) return;
    for (const p of r.prefetched()) {
      if (pf.whereIs(p) !== 'behind') continue;
      r.takePrefetched(p);
      this.prefetchPassed(r, p);
    }
  }
}

/** pages sorted (in place) and cut into runs of consecutive pages. */
function runsOf(pages: number[]): number[][] {
  pages.sort((x, y) => x - y);
  const runs: number[][] = [];
  for (let i = 0; i < pages.length; ) {
    let j = i + 1;
    while (j < pages.length && pages[j] === pages[j - 1]! + 1) j++;
    runs.push(pages.slice(i, j));
    i = j;
  }
  return runs;
}

/**
 * The bytes of a run of consecutive pages for one UFFDIO_COPY. A store answer is one message whose
 * pages are views of it, so a run from one answer lies back to back in one buffer: a view of it
 * (no copy in JS; the copy of a 64 MiB scan's pages cost ~13 ms of the JS thread), handed over whole
 * by a sequential answer (PageViews.span) without a view per page. Otherwise (pages
 * from several answers, or absent ones: zeros) one Buffer.concat, still cheaper than a copy per page.
 */
function runBytes(run: readonly number[], present: Map<number, Buffer>, ps: number, zero: Buffer): Buffer {
  if (present instanceof PageViews) {
    const whole = present.span(run[0]!, run.length);
    if (whole !== undefined) return whole;
  }
  const first = present.get(run[0]!);
  if (first !== undefined) {
    let end = first.byteOffset + ps;
    let k = 1;
    for (; k < run.length; k++, end += ps) {
      const b = present.get(run[k]!);
      if (b === undefined || b.buffer !== first.buffer || b.byteOffset !== end) break;
    }
    if (k === run.length) return run.length === 1 ? first : Buffer.from(first.buffer, first.byteOffset, run.length * ps);
  }
  return Buffer.concat(run.map((p) => present.get(p) ?? zero), run.length * ps);
}

/** A page in the region that is neither resident, in flight nor held back: worth sending for. */
function sendable(r: RegionState, p: number): boolean {
  return Number.isInteger(p) && p >= 0 && p < r.pages && !r.has(p, RES) && !r.inFlight.has(p) && !r.held.has(p);
}

/**
 * Guesses go in as batched runs (and markers are held) only in a region with one attachment, all
 * write-protecting: several mappings would each need the page protected first (the pager's install()).
 */
function inRuns(r: RegionState): boolean {
  return r.attachments.size === 1 && r.allWriteProtect();
}

/** How many guesses may go in as runs now. */
function runRoom(r: RegionState, evictor: Pager['evictor']): number {
  return inRuns(r) ? evictor.prefetchRoomPages(r) : 0;
}

function countPrefetchInFlight(r: RegionState): number {
  let n = 0;
  for (const f of r.inFlight.values()) if (f.prefetch) n++;
  return n;
}
