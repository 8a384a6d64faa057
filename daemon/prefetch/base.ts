// What every guessing policy shares: remembering which pages it asked for (and for which thread), so
// that a use or a waste is credited to the stream that made the guess, whether the pager reports it
// through onPrefetchUsed, a cache-hit fault, or both; and keeping guesses inside the region.
import type { FaultInfo, PrefetchOptions, Prefetcher } from './types';

/**
 * Guesses remembered: between MAX_OUTSTANDING and twice that (RecentMap); older ones are
 * forgotten (they are almost surely gone).
 */
const MAX_OUTSTANDING = 1 << 15;

export abstract class GuessingPolicy implements Prefetcher {
  abstract readonly name: string;
  protected readonly regionPages: number;
  protected readonly maxWindow: number;
  protected readonly pageSize: number;
  /** page → tid of the stream that asked for it. */
  private readonly outstanding = new RecentMap<number, number>(MAX_OUTSTANDING);

  constructor(opts: PrefetchOptions) {
    this.regionPages = opts.regionPages;
    this.maxWindow = opts.maxWindow;
    this.pageSize = opts.pageSize ?? 4096;
  }

  onFault(fault: FaultInfo): number[] {
    const owner = this.outstanding.take(fault.page);
    if (owner !== undefined) return this.keep(this.onUse(fault.page, owner), owner);
    return this.keep(this.onAccess(fault.page, fault.tid, fault.hit), fault.tid);
  }

  onPrefetchUsed(page: number): number[] {
    const owner = this.outstanding.take(page);
    if (owner === undefined) return [];
    return this.keep(this.onUse(page, owner), owner);
  }

  onPrefetchWasted(page: number): void {
    const owner = this.outstanding.take(page);
    if (owner === undefined) return;
    this.onWaste(page, owner);
  }

  reset(): void {
    this.outstanding.clear();
    this.forget();
  }

  current(): string {
    return this.name;
  }

  asked(page: number): boolean {
    return this.outstanding.has(page);
  }

  /**
   * Counts a guess of thread `tid` as used although nobody reported it (the stream moved past it
   * without faulting, so it was resident and touched); false when it is not an outstanding guess of `tid`.
   */
  protected claim(page: number, tid: number): boolean {
    if (this.outstanding.get(page) !== tid) return false;
    this.outstanding.take(page);
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
      if (Number.isInteger(p) && p >= 0 && p < this.regionPages && this.outstanding.add(p, tid)) out.push(p);
    }
    return out;
  }
}

/**
 * A map of the entries set lately, in two generations of `generation` sets each, like RecentSet: an
 * entry lives between one and two generations unless deleted. It bounds a policy's memory of its
 * guesses (most of which are touched without anyone telling it) without a trimming pass: the Map
 * copied and rebuilt each time it outgrew its bound cost a third of a policy's time on a long scan.
 */
export class RecentMap<K, V> {
  private newer = new Map<K, V>();
  private older = new Map<K, V>();
  constructor(private readonly generation: number) {}

  get(k: K): V | undefined {
    const v = this.newer.get(k);
    return v !== undefined ? v : this.older.get(k);
  }

  has(k: K): boolean {
    return this.newer.has(k) || this.older.has(k);
  }

  /**
   * Adds a key that is not there; false (and nothing changes) when it is. One pass over both
   * generations: a policy adds every page of every window it asks for.
   */
  add(k: K, v: V): boolean {
    if (this.newer.has(k) || this.older.has(k)) return false;
    this.newer.set(k, v);
    if (this.newer.size >= this.generation) {
      this.older = this.newer;
      this.newer = new Map();
    }
    return true;
  }

  /** Removes a key and answers its value (undefined when it was not there). */
  take(k: K): V | undefined {
    let v = this.newer.get(k);
    if (v !== undefined) {
      this.newer.delete(k);
      return v;
    }
    v = this.older.get(k);
    if (v !== undefined) this.older.delete(k);
    return v;
  }

  clear(): void {
    this.newer.clear();
    this.older.clear();
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

  /** The entries, least recently used first (does not change the order). */
  entries(): IterableIterator<[K, V]> {
    return this.map.entries();
  }
}

/** Pages start + step·i for i in [0, count), in order. */
export function run(start: number, step: number, count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(start + step * i);
  return out;
}
