// What every guessing policy shares: remembering which pages it asked for (and for which thread), so
// that a use or a waste is credited to the stream that made the guess, whether the pager reports it
// through onPrefetchUsed, a cache-hit fault, or both; and keeping guesses inside the region.
import type { FaultInfo, PrefetchOptions, Prefetcher } from './types';

/** Guesses remembered at once; past this the oldest are forgotten (they are almost surely gone). */
const MAX_OUTSTANDING = 1 << 16;

export abstract class GuessingPolicy implements Prefetcher {
  abstract readonly name: string;
  protected readonly regionPages: number;
  protected readonly maxWindow: number;
  protected readonly pageSize: number;
  /** page → tid of the stream that asked for it; insertion order is issue order. */
  private outstanding = new Map<number, number>();

  constructor(opts: PrefetchOptions) {
    this.regionPages = opts.regionPages;
    this.maxWindow = opts.maxWindow;
    this.pageSize = opts.pageSize ?? 4096;
  }

  onFault(fault: FaultInfo): number[] {
    const owner = this.outstanding.get(fault.page);
    if (owner !== undefined) {
      this.outstanding.delete(fault.page);
      return this.keep(this.onUse(fault.page, owner), owner);
    }
    return this.keep(this.onAccess(fault.page, fault.tid, fault.hit), fault.tid);
  }

  onPrefetchUsed(page: number): number[] {
    const owner = this.outstanding.get(page);
    if (owner === undefined) return [];
    this.outstanding.delete(page);
    return this.keep(this.onUse(page, owner), owner);
  }

  onPrefetchWasted(page: number): void {
    const owner = this.outstanding.get(page);
    if (owner === undefined) return;
    this.outstanding.delete(page);
    this.onWaste(page, owner);
  }

  reset(): void {
    this.outstanding.clear();
    this.forget();
  }

  current(): string {
    return this.name;
  }

  /**
   * Counts a guess of thread `tid` as used although nobody reported it (the stream moved past it
   * without faulting, so it was resident and touched); false when it is not an outstanding guess of `tid`.
   */
  protected claim(page: number, tid: number): boolean {
    if (this.outstanding.get(page) !== tid) return false;
    this.outstanding.delete(page);
    return true;
  }

  /** A fault on a page this policy did not ask for; `cached` when it needed no remote round trip. */
  protected abstract onAccess(page: number, tid: number, cached: boolean): number[];
  /** A page this policy asked for on behalf of thread `tid` was touched. */
  protected abstract onUse(page: number, tid: number): number[];
  /** A page this policy asked for on behalf of thread `tid` was dropped untouched. */
  protected abstract onWaste(page: number, tid: number): void;
  protected abstract forget(): void;

  /** Drops guesses outside the region or already asked for, and remembers the rest. */
  private keep(pages: number[], tid: number): number[] {
    const out: number[] = [];
    for (const p of pages) {
      if (!Number.isInteger(p) || p < 0 || p >= this.regionPages || this.outstanding.has(p)) continue;
      this.outstanding.set(p, tid);
      out.push(p);
    }
    if (this.outstanding.size > MAX_OUTSTANDING) {
      // Trimmed by a quarter at once and rebuilt: deleting from the front of a V8 Map one entry per
      // call costs O(size) each (iteration skips the deleted slots).
      this.outstanding = new Map([...this.outstanding].slice(-(MAX_OUTSTANDING * 3) / 4));
    }
    return out;
  }
}

/**
 * The values added lately, in two generations of `generation` adds each: a value counts as recent for
 * between one and two generations. One Set.add per add and two lookups, never a trimming pass: a Set
 * trimmed from its oldest end costs O(size) per trim in V8 (iteration skips the deleted slots at the
 * front), which once made auto ~20× dearer per fault than any policy, and a value → stamp Map pruned
 * in one pass when it doubled cost a third of auto's time on a scan.
 */
export class RecentSet {
  private newer = new Set<number>();
  private older = new Set<number>();
  private adds = 0;
  constructor(private readonly generation: number) {}

  add(v: number): void {
    this.newer.add(v);
    if (++this.adds % this.generation === 0) {
      this.older = this.newer;
      this.newer = new Set();
    }
  }

  has(v: number): boolean {
    return this.newer.has(v) || this.older.has(v);
  }

  clear(): void {
    this.newer.clear();
    this.older.clear();
    this.adds = 0;
  }
}

/** A small map with least-recently-used eviction, for per-thread state (threads come and go). */
export class LruMap<K, V> {
  private readonly map = new Map<K, V>();
  /** The most recently used key: moving it to the end again is skipped (one thread faulting is the common case). */
  private newest: K | undefined = undefined;
  constructor(private readonly limit: number) {}

  get(key: K): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined && key !== this.newest) {
      this.map.delete(key);
      this.map.set(key, v);
      this.newest = key;
    }
    return v;
  }

  getOrCreate(key: K, create: () => V): V {
    let v = this.get(key);
    if (v === undefined) {
      v = create();
      this.map.set(key, v);
      this.newest = key;
      if (this.map.size > this.limit) this.map.delete(this.map.keys().next().value as K);
    }
    return v;
  }

  clear(): void {
    this.map.clear();
    this.newest = undefined;
  }

  /** The values, least recently used first (does not change the order). */
  values(): IterableIterator<V> {
    return this.map.values();
  }
}

/** Pages start + step·i for i in [0, count), in order. */
export function run(start: number, step: number, count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(start + step * i);
  return out;
}
