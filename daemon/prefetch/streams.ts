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
}

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
    const step = this.shape.detect(t.recent, page);
    if (step !== null) {
      // The recent faults that made this stream belong to it now.
      t.recent = t.recent.filter((p) => (page - p) % step !== 0 || (page - p) / step <= 0);
      const fresh = new Cursor(step, page, this.shape.minWindow, this.shape.minWindow, this.shape.maxWindow);
      t.cursors.unshift(fresh);
      if (t.cursors.length > this.shape.cursorsPerThread) t.cursors.pop();
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
    return this.threads.getOrCreate(tid, () => ({ cursors: [], recent: [] }));
  }
}
