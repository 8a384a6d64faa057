// auto: every candidate policy runs in shadow on the same access stream; only the chosen one's guesses
// are fetched. Each candidate keeps a virtual cache of its own guesses, so a later access to a page it
// guessed counts as a hit for it whether or not that page was really fetched. Over a sliding window of
// the last 256 accesses a candidate scores (hits − guesses wasted) ÷ accesses, where a guess is wasted
// when it is dropped or still untouched 256 accesses after it was made, or four of the largest windows
// when that is more (a guess waiting just ahead of a stream is not yet a waste: penalising it would
// make every stream look bad at its start, and readahead's two windows ahead look bad always); the best one takes
// over when it beats the current choice by a margin (hysteresis: no flapping between near-equals), and
// no candidate at all (none) when no score reaches MIN_SCORE, which is what happens on random access.
//
// An access is a fault or a reported use of a page the real prefetcher fetched (the pager reports those
// uses, through onPrefetchUsed or a cache-hit fault; the thread of a use is the thread whose fault
// made the guess). Starts with none: guessing begins once a candidate has shown it pays, after 64
// accesses, or from 16 on when one already predicted more than three accesses in four (a scan).
// A pager that installs guesses directly may never learn they were touched: a fault one step past (or
// inside) one of the thread's last evenly spaced windows of real guesses counts the guesses it passed as
// used, in order, before the fault itself: the stream walked over them without faulting.
//
// Running every candidate in shadow costs ~1.8 µs a page of a scan, ten times readahead alone, and on
// two vCPUs that CPU is taken from the memory server and the process. So a candidate that has scored
// COMMIT_SCORE or more for a whole scoring window runs alone (committed): the others forget their
// streams and auto only passes events through, watching for the first sign the pattern changed — a
// fault on a page the running policy did not ask for, or a guess of it wasted. Then the shadows start
// again (the running policy keeps its streams, and its guesses still ahead of them are scored as its
// own), and the usual choice resumes after a warm-up.
import { PrefetchAccounting } from './accounting';
import { LruMap, RecentSet } from './base';
import { ReadaheadPrefetcher } from './readahead';
import { StridePrefetcher } from './stride';
import { TrendPrefetcher } from './trend';
import type { FaultInfo, PrefetchOptions, Prefetcher } from './types';

const BUCKET = 32;
const BUCKETS = 8;
/** Accesses seen before the first choice. */
const WARMUP = 2 * BUCKET;
/**
 * An early first choice: from EARLY accesses on, every EARLY_STEP, a candidate whose score so far
 * reaches EARLY_SCORE starts at once. A scan is plain after a few faults; waiting for WARMUP cost
 * every attach ~48 more remote faults, a sixth of a 64 MiB scan's time.
 */
const EARLY = 16;
const EARLY_STEP = 8;
const EARLY_SCORE = 0.75;
const MIN_SCORE = 0.2;
const MARGIN = 0.1;
const TOUCHED = 1 << 16;
/** A candidate scoring at least this at BUCKETS evaluations in a row (a whole scoring window) runs alone. */
const COMMIT_SCORE = 0.9;
const WINDOWS_PER_THREAD = 8;

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
  /** The candidate that beat the active one at the last evaluation. */
  private challenger: Candidate | null = null;
  private readonly accesses: number[] = new Array<number>(BUCKETS).fill(0);
  private bucket = 0;
  private seen = 0;
  /** Pages accessed in the last 1-2 generations of TOUCHED accesses: guesses for them are pointless, repeats are dropped. */
  private readonly touched = new RecentSet(TOUCHED);
  /** page → tid for the real guesses, so a reported use can be replayed as an access of that thread. */
  private owner = new Map<number, number>();
  /** tid → its last few windows of real guesses (evenly spaced), for uses nobody reported. */
  private readonly windows = new LruMap<number, number[][]>(256);

  private readonly pageSize: number;
  private readonly capacity: number;
  /** Accesses after which an untouched virtual guess is written off as wasted (see the constructor). */
  private readonly horizon: number;
  /** The running policy's last decision during the current call (see newestFirst). */
  private newest: number[] = [];
  /** The active candidate runs alone (see the file comment). */
  private alone = false;
  /** Evaluations in a row at which the active candidate scored COMMIT_SCORE or more. */
  private streak = 0;
  /** The scores when the active candidate was left alone (what scores() reports meanwhile). */
  private frozen: Record<string, number | null> | null = null;

  constructor(opts: PrefetchOptions, candidates?: Prefetcher[]) {
    const list = candidates ?? [new ReadaheadPrefetcher(opts), new StridePrefetcher(opts), new TrendPrefetcher(opts)];
    this.pageSize = opts.pageSize ?? 4096;
    // Room for a few windows of guesses per candidate: a virtual guess older than that counts as wasted.
    // The shadows' windows set the horizon below; a policy left alone may grow larger ones, which
    // are its virtual guesses again when the shadows resume: room for those too.
    const largest = Math.max(opts.maxWindow, opts.readaheadMaxWindow ?? 0);
    this.capacity = Math.max(1024, 8 * Math.max(largest, opts.aloneMaxWindow ?? 0));
    // A guess is waste once its stream had time to reach it: a scoring window of accesses, or four of
    // the largest windows when that is more. Readahead asks for the next window when the stream enters
    // the current one, so its newest guesses lie up to two windows ahead: with a 256-page window, a
    // 256-access horizon wrote half of every window off while the scan was still walking towards it,
    // readahead's score fell below zero, and auto ran sequential scans with stride's smaller windows.
    this.horizon = Math.max(BUCKET * BUCKETS, 4 * largest);
    this.candidates = list.map((policy) => ({
      policy,
      virtual: new PrefetchAccounting(this.pageSize, this.capacity),
      hits: new Array<number>(BUCKETS).fill(0),
      wasted: new Array<number>(BUCKETS).fill(0),
      pending: [],
      pendingHead: 0,
    }));
  }

  windowMarkers(): boolean {
    return this.active?.policy.windowMarkers?.() === true;
  }

  current(): string {
    return this.active?.policy.name ?? 'none';
  }

  /**
   * Every candidate sees every access, so each one's streams are current whichever runs (or none,
   * after a switch): a page any of them is about to reach is 'ahead', else one any passed is 'behind'.
   */
  whereIs(page: number): 'behind' | 'ahead' | null {
    let out: 'behind' | null = null;
    for (const c of this.candidates) {
      const w = c.policy.whereIs?.(page) ?? null;
      if (w === 'ahead') return w;
      if (w === 'behind') out = w;
    }
    return out;
  }

  /**
   * A fault the policy running alone was waiting for: on one of its guesses that a stream of it is
   * about to reach. A remote fault on a guess its streams walked past is not (a scan's walked-over
   * guesses are never reported used, so the policy keeps them as asked for): it is a new pass over
   * old pages. A hit there is: the FaultThread hands cache hits over up to 2 ms late, after the stream
   * moved on.
   */
  private expected(a: Prefetcher, fault: FaultInfo): boolean {
    if (!a.asked!(fault.page)) return false;
    const where = a.whereIs?.(fault.page) ?? 'ahead';
    return where === 'ahead' || (fault.hit && where === 'behind');
  }

  /** true while the active candidate runs alone, its shadows stopped (see the file comment). */
  committed(): boolean {
    return this.alone;
  }

  /** Each candidate's score over the sliding window (null before the window has enough accesses). */
  scores(): Record<string, number | null> {
    if (this.frozen !== null) return { ...this.frozen };
    const out: Record<string, number | null> = {};
    for (const c of this.candidates) out[c.policy.name] = this.score(c);
    return out;
  }

  onFault(fault: FaultInfo): number[] {
    if (fault.hit && this.isTouched(fault.page)) return []; // the use was already reported
    if (this.alone) {
      const a = this.active!.policy;
      if (this.expected(a, fault)) {
        this.touch(fault.page);
        return a.onFault(fault);
      }
      this.resume(); // a fault it did not see coming: the pattern may have changed
    }
    this.newest = [];
    const out = this.passed(fault.page, fault.tid);
    out.push(...this.access(fault.page, fault.tid, fault.write));
    return this.newestFirst(out);
  }

  /** Replays, as uses, the guesses of `tid` that a fault at `page` shows were walked over. */
  private passed(page: number, tid: number): number[] {
    let lists = this.windows.get(tid);
    if (!lists) return [];
    // Walk back from the fault: a window it lands in (or just past) was walked over up to it; that
    // window's start lands just past an earlier window of the same stream, walked over whole; and so on.
    const segments: number[][] = [];
    let target = page;
    for (;;) {
      const i = lists.findIndex((g) => {
        const k = (target - g[0]!) / (g[1]! - g[0]!);
        return Number.isInteger(k) && k >= 1 && k <= g.length;
      });
      if (i < 0) break;
      const g = lists[i]!;
      const k = (target - g[0]!) / (g[1]! - g[0]!);
      segments.unshift(g.slice(0, k).filter((q) => q !== page));
      lists = lists.filter((_, j) => j !== i);
      if (g.length - k >= 2) lists.push(g.slice(k));
      target = g[0]!;
    }
    // Replaced before replaying: replaying the uses may remember new windows.
    this.windows.getOrCreate(tid, () => []).splice(0, Infinity, ...lists);
    const out: number[] = [];
    for (const q of segments.flat()) {
      if (this.owner.get(q) === tid && !this.isTouched(q)) out.push(...this.access(q, tid, false));
    }
    return out;
  }

  /** Keeps `guesses` as its evenly spaced runs (a window per stream; a take-over mixes several). */
  private remember(tid: number, guesses: number[]): void {
    const lists = this.windows.getOrCreate(tid, () => []);
    let i = 0;
    while (i + 1 < guesses.length) {
      const step = guesses[i + 1]! - guesses[i]!;
      let j = i + 2;
      while (j < guesses.length && guesses[j]! - guesses[j - 1]! === step) j++;
      lists.unshift(guesses.slice(i, j));
      i = j;
    }
    if (lists.length > WINDOWS_PER_THREAD) lists.length = WINDOWS_PER_THREAD;
  }

  onPrefetchUsed(page: number): number[] {
    if (this.alone) {
      const a = this.active!.policy;
      if (!a.asked!(page)) return [];
      this.touch(page);
      return a.onPrefetchUsed(page) ?? [];
    }
    const tid = this.owner.get(page);
    if (tid === undefined || this.isTouched(page)) return [];
    // A use shows the stream walked over the guesses before it as well (a held window marker is
    // reported here, not as a fault): replayed first, or they would expire as wasted in every candidate.
    this.newest = [];
    const out = this.passed(page, tid);
    out.push(...this.access(page, tid, false));
    return this.newestFirst(out);
  }

  /**
   * The running policy's newest window first. A pager that holds the first page of a decision back
   * (windowMarkers) must hold that window's: it is the one whose touch the policy waits for to send
   * the next. A fault that replays walked-over windows decides several windows at once, and with the
   * older one first its marker was held while the newest was read over unseen: the stream then ran
   * off its end with a remote fault every window.
   */
  private newestFirst(out: number[]): number[] {
    const w = this.newest;
    if (w.length === 0 || out[0] === w[0]) return out;
    const inW = new Set(w);
    return [...w, ...out.filter((q) => !inW.has(q))];
  }

  onPrefetchWasted(page: number): void {
    if (this.alone) {
      const a = this.active!.policy;
      if (!a.asked!(page)) return;
      a.onPrefetchWasted(page);
      this.resume(); // its guesses stopped paying
      return;
    }
    this.owner.delete(page);
    if (this.active && this.active.virtual.waste(page)) this.active.policy.onPrefetchWasted(page);
  }

  reset(): void {
    for (const c of this.candidates) {
      if (this.alone && c === this.active) c.policy.runAlone?.(false);
      c.policy.reset();
      this.clearScoring(c);
    }
    this.accesses.fill(0);
    this.seen = 0;
    this.active = null;
    this.challenger = null;
    this.alone = false;
    this.streak = 0;
    this.frozen = null;
    this.touched.clear();
    this.owner.clear();
    this.windows.clear();
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
      const before = out.length;
      for (const q of guesses) {
        if (this.isTouched(q) || c.virtual.isOutstanding(q)) continue;
        c.pending.push([q, this.seen, tid]);
        for (const dropped of c.virtual.issue(q)) this.wasteVirtual(c, dropped);
        if (c === this.active) {
          out.push(q);
          this.owner.set(q, tid);
        }
      }
      if (out.length > before) this.newest = out.slice(before);
    }
    this.remember(tid, out.slice());
    const taken = this.tick();
    if (taken) {
      for (const [page] of taken) out.push(page);
      this.own(taken);
    }
    return out;
  }

  /** Real guesses (page, thread whose stream made it), recorded for their uses: owner and windows. */
  private own(guesses: ReadonlyArray<readonly [number, number]>): void {
    const byThread = new Map<number, number[]>();
    for (const [page, tid] of guesses) {
      this.owner.set(page, tid);
      const pages = byThread.get(tid);
      if (pages === undefined) byThread.set(tid, [page]);
      else pages.push(page);
    }
    for (const [tid, pages] of byThread) this.remember(tid, pages);
  }

  /**
   * The active candidate runs alone: the others forget their streams, and the scoring state (virtual
   * guesses, hits, windows of real guesses) is dropped, as nothing keeps it current meanwhile.
   */
  private commit(): void {
    this.frozen = this.scores();
    this.alone = true;
    this.streak = 0;
    this.active!.policy.runAlone?.(true);
    for (const c of this.candidates) {
      if (c !== this.active) c.policy.reset();
      this.clearScoring(c);
    }
    this.accesses.fill(0);
    this.owner.clear();
    this.windows.clear();
  }

  /**
   * Back to running every candidate. The active one keeps its streams; its guesses still ahead of them
   * are its virtual guesses again (they would count as used by nobody otherwise, and its first score
   * would fall as if it guessed nothing). No choice before WARMUP accesses: the others start cold.
   */
  private resume(): void {
    const c = this.active!;
    c.policy.runAlone?.(false);
    this.alone = false;
    this.frozen = null;
    this.seen = 0;
    this.bucket = 0;
    this.challenger = null;
    // Not in `pending`: the larger windows of a policy left alone reach past the shadows' horizon, and
    // written off before the stream got there they would score as waste. One that is never used is
    // dropped as wasted when newer guesses fill the capacity.
    const ahead = c.policy.ahead!();
    for (const [page] of ahead) c.virtual.issue(page);
    this.own(ahead);
  }

  private clearScoring(c: Candidate): void {
    c.virtual = new PrefetchAccounting(this.pageSize, this.capacity);
    c.hits.fill(0);
    c.wasted.fill(0);
    c.pending = [];
    c.pendingHead = 0;
  }

  /**
   * A candidate that takes over has guesses only it believes were fetched: fetch them now (oldest,
   * nearest its streams, first), or its streams would fault through everything they expect ahead.
   */
  private takeOver(c: Candidate): Array<[number, number]> {
    const out: Array<[number, number]> = [];
    for (let i = c.pendingHead; i < c.pending.length && out.length < this.capacity; i++) {
      const [page, , tid] = c.pending[i]!;
      if (c.virtual.isOutstanding(page) && !this.isTouched(page)) out.push([page, tid]);
    }
    return out;
  }

  private wasteVirtual(c: Candidate, page: number): void {
    c.wasted[this.bucket]!++;
    c.policy.onPrefetchWasted(page);
  }

  /** Guesses untouched for a whole scoring window are written off. */
  private expire(c: Candidate): void {
    while (c.pendingHead < c.pending.length && this.seen - c.pending[c.pendingHead]![1] > this.horizon) {
      const page = c.pending[c.pendingHead++]![0];
      if (c.virtual.waste(page)) this.wasteVirtual(c, page);
    }
    if (c.pendingHead > 4096 && c.pendingHead * 2 > c.pending.length) {
      c.pending = c.pending.slice(c.pendingHead);
      c.pendingHead = 0;
    }
  }

  private touch(page: number): void {
    this.touched.add(page);
    // Guesses never used nor reported wasted: keep the newest half.
    if (this.owner.size > 2 * TOUCHED) this.owner = new Map([...this.owner].slice(-TOUCHED));
  }

  private isTouched(page: number): boolean {
    return this.touched.has(page);
  }

  private tick(): Array<[number, number]> | null {
    this.accesses[this.bucket]!++;
    this.seen++;
    for (const c of this.candidates) this.expire(c);
    if (this.active === null && this.seen >= EARLY && this.seen < WARMUP && this.seen % EARLY_STEP === 0) {
      const early = this.earlyChoice();
      if (early !== null) {
        this.active = early;
        return this.takeOver(early);
      }
    }
    if (this.accesses[this.bucket]! < BUCKET) return null;
    const was = this.active;
    if (this.seen >= WARMUP) this.choose();
    this.bucket = (this.bucket + 1) % BUCKETS;
    this.accesses[this.bucket] = 0;
    for (const c of this.candidates) {
      c.hits[this.bucket] = 0;
      c.wasted[this.bucket] = 0;
    }
    if (this.active !== was) {
      this.streak = 0;
      return this.active ? this.takeOver(this.active) : null;
    }
    if (this.seen >= WARMUP && this.canRunAlone(this.active)) {
      if (++this.streak >= BUCKETS) this.commit();
    } else this.streak = 0;
    return null;
  }

  /** The active candidate scores COMMIT_SCORE or more, nobody challenges it, and it can tell a miss. */
  private canRunAlone(c: Candidate | null): c is Candidate {
    if (c === null || this.challenger !== null || c.policy.asked === undefined || c.policy.ahead === undefined) return false;
    return (this.score(c) ?? 0) >= COMMIT_SCORE;
  }

  private score(c: Candidate): number | null {
    return this.seen < WARMUP ? null : this.rawScore(c);
  }

  /** (hits − wasted) ÷ accesses over the scoring window, whatever was seen so far (null: nothing). */
  private rawScore(c: Candidate): number | null {
    const accesses = sum(this.accesses);
    return accesses === 0 ? null : (sum(c.hits) - sum(c.wasted)) / accesses;
  }

  /** The candidate scoring highest above `floor` (null: none does), and its score. */
  private best(floor: number, scoreOf: (c: Candidate) => number | null): { best: Candidate | null; bestScore: number } {
    let best: Candidate | null = null;
    let bestScore = floor;
    for (const c of this.candidates) {
      const s = scoreOf(c) ?? -Infinity;
      if (s > bestScore) {
        best = c;
        bestScore = s;
      }
    }
    return { best, bestScore };
  }

  /**
   * The best candidate over every access so far, if it scores EARLY_SCORE or more (see EARLY). Before
   * WARMUP no bucket has been reset yet, so the scoring window holds every access.
   */
  private earlyChoice(): Candidate | null {
    return this.best(EARLY_SCORE - Number.EPSILON, (c) => this.rawScore(c)).best;
  }

  private choose(): void {
    const { best, bestScore } = this.best(MIN_SCORE, (c) => this.score(c));
    if (best === this.active) {
      this.challenger = null;
      return;
    }
    // Leaving a candidate for none needs no margin: below MIN_SCORE its guesses do not pay. Starting
    // to guess is immediate too; replacing one candidate by another needs the same challenger to win
    // by MARGIN twice in a row, so that a burst does not flip the choice back and forth.
    const currentScore = this.active ? (this.score(this.active) ?? 0) : 0;
    if (best === null || this.active === null) {
      this.active = best;
      this.challenger = null;
    } else if (bestScore >= currentScore + MARGIN) {
      if (this.challenger === best) {
        this.active = best;
        this.challenger = null;
      } else this.challenger = best;
    } else this.challenger = null;
  }
}

function sum(a: readonly number[]): number {
  let s = 0;
  for (const x of a) s += x;
  return s;
}
