// Per-thread stream tables shared by readahead and stride: each thread keeps a few cursors (like Linux
// keeps one readahead state per open file, so one thread walking two arrays at once is two streams, not
// a random walk) and a short list of recent faults that continued no cursor, from which a new stream is
// recognised. A single fault never triggers a guess, which keeps uniform random access quiet.
import { Cursor } from './cursor';
import { GuessingPolicy, LruMap } from './base';
import type { PrefetchOptions } from './types';

const THREADS = 256;

interface Thread {
  cursors: Cursor[];
  /** Recent faults that continued no cursor, newest last. */
  recent: number[];
  /** Streams pushed out of `cursors`, newest first: what they walked over is still 'behind' (whereIs). */
  retired: Cursor[];
}

/** Retired streams remembered per thread. */
const RETIRED = 16;

export interface StreamShape {
  cursorsPerThread: number;
  recentPerThread: number;
  /** Window of a newly detected stream, in steps. */
  minWindow: number;
  maxWindow: number;
  /** The step of a stream that `page` completes with some of `recent` (newest last), or null. */
  detect(recent: readonly number[], page: number): number | null;
}

export abstract class StreamPolicy extends GuessingPolicy {
  private readonly threads = new LruMap<number, Thread>(THREADS);

  constructor(opts: PrefetchOptions, private readonly shape: StreamShape) {
    super(opts);
  }

  protected onAccess(page: number, tid: number): number[] {
    const t = this.thread(tid);
    const c = t.cursors.find((x) => x.continues(page));
    if (c) return this.move(t, c, page, true);
    // The same page again (a use then its fault, a retried fault): not a new stream. Detected again,
    // it made a duplicate of the stream that pushed real ones out of the thread's table.
    if (t.cursors.some((x) => x.last === page)) return [];
    const step = this.shape.detect(t.recent, page);
    if (step !== null) {
      // The recent faults that made this stream belong to it now.
      t.recent = t.recent.filter((p) => (page - p) % step !== 0 || (page - p) / step <= 0);
      const fresh = new Cursor(step, page, this.shape.minWindow, this.shape.minWindow, this.shape.maxWindow);
      // The same walk picked up again after it outran its stream (a fault past the front): what the
      // earlier stream walked over is still behind this one.
      const prev = [...t.cursors, ...t.retired].find((c) => c.step === step && c.whereIs(page) === null && (page - c.origin) / step > 0 && Number.isInteger((page - c.origin) / step));
      if (prev !== undefined) fresh.origin = prev.origin;
      t.cursors.unshift(fresh);
      if (t.cursors.length > this.shape.cursorsPerThread) {
        t.retired.unshift(t.cursors.pop()!);
        if (t.retired.length > RETIRED) t.retired.pop();
      }
      return fresh.start();
    }
    t.recent.push(page);
    if (t.recent.length > this.shape.recentPerThread) t.recent.shift();
    return [];
  }

  protected onUse(page: number, tid: number): number[] {
    const t = this.thread(tid);
    const c = t.cursors.find((x) => x.continues(page));
    return c ? this.move(t, c, page) : [];
  }

  protected onWaste(page: number, tid: number): void {
    for (const c of this.thread(tid).cursors) if (c.spans(page)) c.shrink();
  }

  protected forget(): void {
    this.threads.clear();
  }

  /** 'ahead' wins over 'behind': a page one stream passed and another is about to touch is kept. */
  whereIs(page: number): 'behind' | 'ahead' | null {
    let out: 'behind' | null = null;
    for (const t of this.threads.values()) {
      for (const c of t.cursors) {
        const w = c.whereIs(page);
        if (w === 'ahead') return w;
        if (w === 'behind') out = w;
      }
      // A retired stream is reaching for nothing any more: what it left ahead is no one's.
      if (out === null) for (const c of t.retired) if (c.whereIs(page) === 'behind') out = 'behind';
    }
    return out;
  }

  /** A new largest window for new and current streams. */
  protected setMaxWindow(maxWindow: number): void {
    this.shape.maxWindow = maxWindow;
    for (const t of this.threads.values()) for (const c of t.cursors) c.cap(maxWindow);
  }

  ahead(): Array<[page: number, tid: number]> {
    const out: Array<[number, number]> = [];
    for (const [tid, t] of this.threads.entries()) {
      for (const c of t.cursors) {
        for (let q = c.last + c.step; c.spans(q); q += c.step) if (this.asked(q)) out.push([q, tid]);
      }
    }
    return out;
  }

  /** The thread's streams as [step, window] pairs, most recently moved first (for tests and `region show`). */
  streamsOf(tid: number): Array<[number, number]> {
    return this.thread(tid).cursors.map((c) => [c.step, c.window]);
  }

  private move(t: Thread, c: Cursor, page: number, fault = false): number[] {
    // Most recently moved first: the next fault most likely continues it.
    t.cursors.splice(t.cursors.indexOf(c), 1);
    t.cursors.unshift(c);
    return c.advance(page, fault);
  }

  private thread(tid: number): Thread {
    return this.threads.getOrCreate(tid, () => ({ cursors: [], recent: [], retired: [] }));
  }
}
