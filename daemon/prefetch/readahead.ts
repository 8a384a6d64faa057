// Sequential readahead, forward and backward, with CRIU lazy-pages' adaptive chunk: the window starts at
// 64 KiB, doubles each time the stream uses a window (up to 4 MiB, never past maxWindow), and a fault
// that continues no stream starts a new one from 64 KiB. A wasted guess resets its stream's window.
// A stream is born from two adjacent faults (p then p±1) of one thread.
import { StreamPolicy } from './streams';
import type { PrefetchOptions } from './types';

export class ReadaheadPrefetcher extends StreamPolicy {
  readonly name = 'readahead';
  /** Window of a new stream, in pages (64 KiB, at least 1 page). */
  readonly minWindow: number;
  /** Largest window, in pages (4 MiB, at most maxWindow). */
  readonly maxRamp: number;
  /** Largest window while auto runs this policy alone (aloneMaxWindow, at most 4 MiB). */
  private readonly aloneRamp: number;

  constructor(opts: PrefetchOptions) {
    const pageSize = opts.pageSize ?? 4096;
    const limit = Math.floor((4 << 20) / pageSize);
    const maxWindow = Math.max(1, Math.min(opts.readaheadMaxWindow ?? opts.maxWindow, limit));
    const minWindow = Math.max(1, Math.min(maxWindow, Math.floor((64 << 10) / pageSize)));
    super(opts, {
      cursorsPerThread: 8,
      recentPerThread: 8,
      minWindow,
      maxWindow,
      detect: (recent, page) => (recent.includes(page - 1) ? 1 : recent.includes(page + 1) ? -1 : null),
    });
    this.minWindow = minWindow;
    this.maxRamp = maxWindow;
    this.aloneRamp = Math.max(maxWindow, Math.min(opts.aloneMaxWindow ?? maxWindow, limit));
  }

  runAlone(alone: boolean): void {
    this.setMaxWindow(alone ? this.aloneRamp : this.maxRamp);
  }

  /** A window's first page is its marker (Cursor): a touch there sends for the next window. */
  windowMarkers(): boolean {
    return true;
  }
}
