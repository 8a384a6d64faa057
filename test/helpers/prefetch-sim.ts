// Replays a page-access pattern against a prefetcher with a simulated cache of prefetched pages, the
// way the pager drives it: a touch of a page neither resident nor prefetched is a miss (onFault, hit
// false); a touch of a prefetched page is a hit, reported as the pager may learn of it:
//   'notify' — onPrefetchUsed(page) (pages installed directly, use learned at once);
//   'cache'  — onFault with hit true (pages staged in the page cache, the fault served from it);
//   'both'   — both, onPrefetchUsed first (a pager that reports twice);
//   'silent' — not at all (pages installed directly, a pager that never learns they were touched).
// Guesses for resident or already prefetched pages are dropped, as the pager drops them; past
// `capacity` untouched prefetched pages the oldest is evicted (onPrefetchWasted).
import { PrefetchAccounting, type PrefetchStats } from '../../daemon/prefetch/accounting';
import type { Prefetcher } from '../../daemon/prefetch/types';

export interface Access {
  page: number;
  tid: number;
}

export interface SimOptions {
  mode?: 'notify' | 'cache' | 'both' | 'silent';
  /** Untouched prefetched pages kept at most (default: no limit). */
  capacity?: number;
  /** Which untouched page goes when over capacity: the oldest guess (default) or the newest. */
  evict?: 'oldest' | 'newest';
  pageSize?: number;
}

export interface SimResult extends PrefetchStats {
  accesses: number;
  /** Pages fetched but never touched, per access: the waste of guessing on this pattern. */
  extraRatio: number;
}

export function simulate(policy: Prefetcher, pattern: readonly Access[], opts: SimOptions = {}): SimResult {
  const mode = opts.mode ?? 'notify';
  const newest = opts.evict === 'newest';
  const capacity = opts.capacity ?? 0;
  const acct = new PrefetchAccounting(opts.pageSize ?? 4096, newest ? 0 : capacity);
  const resident = new Set<number>();
  const fetch = (pages: number[] | void) => {
    for (const q of pages ?? []) {
      if (resident.has(q) || acct.isOutstanding(q)) continue;
      if (newest && capacity > 0 && acct.snapshot().outstandingPages >= capacity) {
        // The newest untouched guess is dropped: that is q itself (a full cache admits no more guesses).
        acct.issue(q);
        acct.waste(q);
        policy.onPrefetchWasted(q);
        continue;
      }
      for (const old of acct.issue(q)) policy.onPrefetchWasted(old);
    }
  };
  let accesses = 0;
  for (const a of pattern) {
    if (resident.has(a.page)) continue;
    accesses++;
    resident.add(a.page);
    if (acct.use(a.page)) {
      if (mode === 'notify' || mode === 'both') fetch(policy.onPrefetchUsed(a.page));
      if (mode === 'cache' || mode === 'both') fetch(policy.onFault({ page: a.page, hit: true, tid: a.tid, write: false }));
    } else {
      acct.fault();
      fetch(policy.onFault({ page: a.page, hit: false, tid: a.tid, write: false }));
    }
  }
  acct.writeOffOutstanding();
  const s = acct.snapshot();
  return { ...s, accesses, extraRatio: accesses === 0 ? 0 : (s.issuedPages - s.usedPages) / accesses };
}

// Patterns. All deterministic; `random` takes a seed.

export function sequential(start: number, count: number, tid = 1, step = 1): Access[] {
  return Array.from({ length: count }, (_, i) => ({ page: start + i * step, tid }));
}

export function reverse(end: number, count: number, tid = 1): Access[] {
  return sequential(end, count, tid, -1);
}

export function strided(start: number, k: number, count: number, tid = 1): Access[] {
  return sequential(start, count, tid, k);
}

/** One access of each pattern in turn (a round robin), until all are done. */
export function interleave(...patterns: Access[][]): Access[] {
  const out: Access[] = [];
  const longest = Math.max(...patterns.map((p) => p.length));
  for (let i = 0; i < longest; i++) for (const p of patterns) if (i < p.length) out.push(p[i]!);
  return out;
}

export function uniformRandom(regionPages: number, count: number, seed: number, tid = 1): Access[] {
  const next = mulberry32(seed);
  return Array.from({ length: count }, () => ({ page: Math.floor(next() * regionPages), tid }));
}

/** A small seeded PRNG (mulberry32): the same seed gives the same stream on every run. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Zipf(s) over the region's pages: rank r is drawn with weight 1/r^s, and ranks are scattered over the
 * region by a fixed odd multiplier, so hot pages are not neighbours.
 */
export function zipf(regionPages: number, count: number, s: number, seed: number, tid = 1): Access[] {
  const cdf = new Float64Array(regionPages);
  let total = 0;
  for (let r = 0; r < regionPages; r++) cdf[r] = total += 1 / Math.pow(r + 1, s);
  const next = mulberry32(seed);
  const out: Access[] = [];
  for (let i = 0; i < count; i++) {
    const x = next() * total;
    let lo = 0;
    let hi = regionPages - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    out.push({ page: Number((BigInt(lo) * 2654435761n) % BigInt(regionPages)), tid });
  }
  return out;
}
