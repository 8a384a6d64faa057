// auto: every candidate policy runs in shadow on the same access stream; only the chosen one's guesses
// are fetched. Each candidate keeps a virtual cache of its own guesses, so a later access to a page it
// guessed counts as a hit for it whether or not that page was really fetched. Over a sliding window of
// the last 256 accesses a candidate scores (hits − guesses wasted) ÷ accesses, where a guess is wasted
// when it is dropped or still untouched 256 accesses after it was made (a guess waiting just ahead of a
// stream is not yet a waste: penalising it would make every stream look bad at its start); the best one takes
// over when it beats the current choice by a margin (hysteresis: no flapping between near-equals), and
// no candidate at all (none) when no score reaches MIN_SCORE, which is what happens on random access.
//
// An access is a fault or a reported use of a page the real prefetcher fetched (the pager reports those
// uses, through onPrefetchUsed or a cache-hit fault; the thread of a use is the thread whose fault
// made the guess). Starts with none: guessing begins once a candidate has shown it pays.
import { PrefetchAccounting } from './accounting';
import { ReadaheadPrefetcher } from './readahead';
import { StridePrefetcher } from './stride';
import { TrendPrefetcher } from './trend';
import type { FaultInfo, PrefetchOptions, Prefetcher } from './types';

const BUCKET = 32;
const BUCKETS = 8;
/** Accesses seen before the first choice. */
const WARMUP = 2 * BUCKET;
const MIN_SCORE = 0.2;
const MARGIN = 0.1;
const TOUCHED = 1 << 16;

interface Candidate {
  policy: Prefetcher;
  virtual: PrefetchAccounting;
  hits: number[];
  wasted: number[];
  /** Virtual guesses in issue order with the access count when made, for expiry. */
  pending: Array<[page: number, at: number, tid: number]>;
  pendingHead: number;
}

export class AutoPrefetcher implements Prefetcher {
  readonly name = 'auto';
  private readonly candidates: Candidate[];
  private active: Candidate | null = null;
  private readonly accesses: number[] = new Array<number>(BUCKETS).fill(0);
  private bucket = 0;
  private seen = 0;
  /** Pages accessed lately (bounded, oldest first): guesses for them are pointless, repeats are dropped. */
  private readonly touched = new Set<number>();
  /** page → tid for the real guesses, so a reported use can be replayed as an access of that thread. */
  private readonly owner = new Map<number, number>();

  private readonly pageSize: number;
  private readonly capacity: number;
  private readonly maxWindow: number;

  constructor(opts: PrefetchOptions, candidates?: Prefetcher[]) {
    const list = candidates ?? [new ReadaheadPrefetcher(opts), new StridePrefetcher(opts), new TrendPrefetcher(opts)];
    this.pageSize = opts.pageSize ?? 4096;
    this.maxWindow = opts.maxWindow;
    // Room for a few windows of guesses per candidate: a virtual guess older than that counts as wasted.
    this.capacity = Math.max(1024, 8 * opts.maxWindow);
    this.candidates = list.map((policy) => ({
      policy,
      virtual: new PrefetchAccounting(this.pageSize, this.capacity),
      hits: new Array<number>(BUCKETS).fill(0),
      wasted: new Array<number>(BUCKETS).fill(0),
      pending: [],
      pendingHead: 0,
    }));
  }

  current(): string {
    return this.active?.policy.name ?? 'none';
  }

  /** Each candidate's score over the sliding window (null before the window has enough accesses). */
  scores(): Record<string, number | null> {
    const out: Record<string, number | null> = {};
    for (const c of this.candidates) out[c.policy.name] = this.score(c);
    return out;
  }

  onFault(fault: FaultInfo): number[] {
    if (fault.hit && this.touched.has(fault.page)) return []; // the use was already reported
    return this.access(fault.page, fault.tid, fault.write);
  }

  onPrefetchUsed(page: number): number[] {
    const tid = this.owner.get(page);
    if (tid === undefined || this.touched.has(page)) return [];
    return this.access(page, tid, false);
  }

  onPrefetchWasted(page: number): void {
    this.owner.delete(page);
    if (this.active && this.active.virtual.waste(page)) this.active.policy.onPrefetchWasted(page);
  }

  reset(): void {
    for (const c of this.candidates) {
      c.policy.reset();
      c.virtual = new PrefetchAccounting(this.pageSize, this.capacity);
      c.hits.fill(0);
      c.wasted.fill(0);
      c.pending = [];
      c.pendingHead = 0;
    }
    this.accesses.fill(0);
    this.seen = 0;
    this.active = null;
    this.touched.clear();
    this.owner.clear();
  }

  private access(page: number, tid: number, write: boolean): number[] {
    this.touch(page);
    this.owner.delete(page);
    const out: number[] = [];
    for (const c of this.candidates) {
      let guesses: number[];
      if (c.virtual.use(page)) {
        c.hits[this.bucket]!++;
        guesses = c.policy.onPrefetchUsed(page) ?? [];
      } else {
        guesses = c.policy.onFault({ page, tid, hit: false, write });
      }
      for (const q of guesses) {
        if (this.touched.has(q) || c.virtual.isOutstanding(q)) continue;
        c.pending.push([q, this.seen, tid]);
        for (const dropped of c.virtual.issue(q)) this.wasteVirtual(c, dropped);
        if (c === this.active) {
          out.push(q);
          this.owner.set(q, tid);
        }
      }
    }
    const taken = this.tick();
    if (taken) {
      for (const [page, tid] of taken) {
        out.push(page);
        this.owner.set(page, tid);
      }
    }
    return out;
  }

  /**
   * A candidate that takes over has guesses only it believes were fetched: fetch them now (oldest,
   * nearest its streams, first), or its streams would fault through everything they expect ahead.
   */
  private takeOver(c: Candidate): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (let i = c.pendingHead; i < c.pending.length && out.length < 2 * this.maxWindow; i++) {
      const [page, , tid] = c.pending[i]!;
      if (c.virtual.isOutstanding(page) && !this.touched.has(page)) out.push([page, tid]);
    }
    return out;
  }

  private wasteVirtual(c: Candidate, page: number): void {
    c.wasted[this.bucket]!++;
    c.policy.onPrefetchWasted(page);
  }

  /** Guesses untouched for a whole scoring window are written off. */
  private expire(c: Candidate): void {
    while (c.pendingHead < c.pending.length && this.seen - c.pending[c.pendingHead]![1] > BUCKET * BUCKETS) {
      const page = c.pending[c.pendingHead++]![0];
      if (c.virtual.waste(page)) this.wasteVirtual(c, page);
    }
    if (c.pendingHead > 4096 && c.pendingHead * 2 > c.pending.length) {
      c.pending = c.pending.slice(c.pendingHead);
      c.pendingHead = 0;
    }
  }

  private touch(page: number): void {
    this.touched.delete(page);
    this.touched.add(page);
    if (this.touched.size > TOUCHED) this.touched.delete(this.touched.values().next().value as number);
    if (this.owner.size > TOUCHED) this.owner.delete(this.owner.keys().next().value as number);
  }

  private tick(): Array<[number, number]> | null {
    this.accesses[this.bucket]!++;
    this.seen++;
    for (const c of this.candidates) this.expire(c);
    if (this.accesses[this.bucket]! < BUCKET) return null;
    const was = this.active;
    if (this.seen >= WARMUP) this.choose();
    this.bucket = (this.bucket + 1) % BUCKETS;
    this.accesses[this.bucket] = 0;
    for (const c of this.candidates) {
      c.hits[this.bucket] = 0;
      c.wasted[this.bucket] = 0;
    }
    return this.active !== was && this.active ? this.takeOver(this.active) : null;
  }

  private score(c: Candidate): number | null {
    const accesses = sum(this.accesses);
    if (this.seen < WARMUP || accesses === 0) return null;
    return (sum(c.hits) - sum(c.wasted)) / accesses;
  }

  private choose(): void {
    let best: Candidate | null = null;
    let bestScore = MIN_SCORE;
    for (const c of this.candidates) {
      const s = this.score(c) ?? -Infinity;
      if (s > bestScore) {
        best = c;
        bestScore = s;
      }
    }
    if (best === this.active) return;
    const currentScore = this.active ? (this.score(this.active) ?? 0) : 0;
    // Leaving a candidate for none needs no margin: below MIN_SCORE its guesses do not pay.
    if (best === null || bestScore >= currentScore + MARGIN) this.active = best;
  }
}

function sum(a: readonly number[]): number {
  let s = 0;
  for (const x of a) s += x;
  return s;
}
