// Leap's majority trend (ATC'20). Per stream (thread) a ring of the last 32 page-index deltas; the trend
// is the Boyer–Moore majority of the newest 8 deltas, else of the newest 16, else of all 32 (a majority
// is strictly more than half of the deltas looked at). On each fault that needs a remote fetch the
// prefetch window is decided from the prefetched pages the stream used since the last decision:
//   0 hits → 1 page if there is a trend, else 0; h hits → the next power of two ≥ h + 1;
//   then capped by maxWindow (Leap uses 8; batched gRPC wants more, 64 by default), and never below half
//   the previous window, so a window shrinks smoothly instead of collapsing on one bad guess.
// The window's pages follow the current trend, or Leap's latest trend when the vote has none.
// Uses of prefetched pages are accesses too: they enter the history in the order they are reported.
// A pager that installs guesses directly may never learn they were touched: a fault on the trend just
// past the last window (or inside it) counts the window's guesses it passed as used, in trend order,
// before the fault itself: the stream walked over them without faulting. A jump elsewhere claims none.
// whereIs tells the pager the same: a guess so claimed is 'behind', one of a stream's last window
// not yet passed is 'ahead' (the pager counts a guess behind a stream used, not wasted, when it
// evicts it or the process leaves: without it, a trend region's own accuracy and coverage read 0).
import { GuessingPolicy, LruMap, RecentSet, run } from './base';
import type { PrefetchOptions } from './types';

export const HISTORY = 32;
const WINDOWS = [8, 16, 32];
const THREADS = 256;
/** Claims remembered for whereIs: the newest between this many and twice as many. */
const PASSED = 1 << 16;

/**
 * The majority delta of the newest 8, then 16, then 32 deltas of `newestFirst`, or null. A window
 * looks at the newest min(size, available) deltas, and at least two are needed: one delta is no trend.
 */
export function majorityTrend(newestFirst: readonly number[]): number | null {
  for (const size of WINDOWS) {
    const n = Math.min(size, newestFirst.length);
    if (n < 2) return null;
    let candidate = 0;
    let votes = 0;
    for (let i = 0; i < n; i++) {
      const d = newestFirst[i]!;
      if (votes === 0) {
        candidate = d;
        votes = 1;
      } else votes += d === candidate ? 1 : -1;
    }
    let count = 0;
    for (let i = 0; i < n; i++) if (newestFirst[i] === candidate) count++;
    if (count * 2 > n) return candidate;
    if (n < size) return null; // the larger windows would see the same deltas
  }
  return null;
}

/** The smallest power of two ≥ n (n ≥ 1). */
export function nextPowerOfTwo(n: number): number {
  let p = 1;
  while (p < n) p *= 2;
  return p;
}

class Stream {
  private readonly ring = new Int32Array(HISTORY);
  private head = 0;
  private count = 0;
  last: number | null = null;
  /** Prefetched pages of this stream used since the last decision. */
  hits = 0;
  window = 0;
  latestTrend = 0;
  /** The last window's pages, in trend order. */
  ahead: number[] = [];

  access(page: number): void {
    if (this.last !== null && page !== this.last) {
      this.ring[this.head] = page - this.last;
      this.head = (this.head + 1) % HISTORY;
      if (this.count < HISTORY) this.count++;
    }
    this.last = page;
  }

  newestFirst(): number[] {
    const out: number[] = [];
    for (let i = 1; i <= this.count; i++) out.push(this.ring[(this.head - i + HISTORY) % HISTORY]!);
    return out;
  }
}

export class TrendPrefetcher extends GuessingPolicy {
  readonly name = 'trend';
  private readonly streams = new LruMap<number, Stream>(THREADS);
  /** Guesses claimed as walked over (see claim): 'behind' for whereIs. */
  private readonly passed = new RecentSet(PASSED);
  /** page → the stream whose last window holds it and has not passed it yet: 'ahead'. */
  private aheadOf = new Map<number, Stream>();

  constructor(opts: PrefetchOptions) {
    super(opts);
  }

  /** The window of the stream's last decision (for tests and `region show`). */
  windowOf(tid: number): number {
    return this.streams.get(tid)?.window ?? 0;
  }

  protected onAccess(page: number, tid: number, cached: boolean): number[] {
    const s = this.stream(tid);
    const k = s.last === null || s.latestTrend === 0 ? 0 : (page - s.last) / s.latestTrend;
    if (Number.isInteger(k) && k > 1 && k <= s.ahead.length + 1) {
      for (const q of s.ahead.slice(0, k - 1)) {
        if (this.claim(q, tid)) {
          s.access(q);
          s.hits++;
          this.walkedOver(q);
        }
      }
    }
    s.access(page);
    // A cache hit cost no round trip: like Leap, decide only on faults that go remote.
    if (cached) return [];
    const trend = majorityTrend(s.newestFirst());
    let w = s.hits === 0 ? (trend !== null ? 1 : 0) : nextPowerOfTwo(s.hits + 1);
    w = Math.min(w, this.maxWindow);
    w = Math.max(w, Math.floor(s.window / 2));
    s.hits = 0;
    s.window = w;
    if (trend !== null) s.latestTrend = trend;
    for (const q of s.ahead) if (this.aheadOf.get(q) === s) this.aheadOf.delete(q);
    s.ahead = w === 0 || s.latestTrend === 0 ? [] : run(page + s.latestTrend, s.latestTrend, w);
    for (const q of s.ahead) this.aheadOf.set(q, s);
    if (this.aheadOf.size > 4 * THREADS * Math.max(1, this.maxWindow)) this.pruneAhead();
    return s.ahead;
  }

  whereIs(page: number): 'behind' | 'ahead' | null {
    if (this.aheadOf.has(page)) return 'ahead';
    return this.passed.has(page) ? 'behind' : null;
  }

  ahead(): Array<[page: number, tid: number]> {
    const out: Array<[number, number]> = [];
    for (const [tid, s] of this.streams.entries()) for (const q of s.ahead) if (this.aheadOf.get(q) === s && this.asked(q)) out.push([q, tid]);
    return out;
  }

  private walkedOver(page: number): void {
    this.aheadOf.delete(page);
    this.passed.add(page);
  }

  /** Keeps only the windows of streams still in the table (one pushed out of it is forgotten). */
  private pruneAhead(): void {
    this.aheadOf.clear();
    for (const s of this.streams.values()) for (const q of s.ahead) this.aheadOf.set(q, s);
  }

  protected onUse(page: number, tid: number): number[] {
    const s = this.stream(tid);
    s.access(page);
    s.hits++;
    this.walkedOver(page);
    return [];
  }

  protected onWaste(): void {
    // Leap's window already shrinks when guesses stop paying (no hits → half the window).
  }

  protected forget(): void {
    this.streams.clear();
    this.passed.clear();
    this.aheadOf.clear();
  }

  private stream(tid: number): Stream {
    return this.streams.getOrCreate(tid, () => new Stream());
  }
}
