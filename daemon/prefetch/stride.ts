// Per-thread constant-stride detection: three faults of one thread at equal distances (p−2k, p−k, p:
// the stride seen twice) confirm a stream of stride k; it then asks for the next `depth` pages along
// the stride, starting at 4 and doubling each time a window is used (up to maxWindow), back to 4 when
// a guess is wasted. The three faults may be interleaved with other faults of the thread (up to 16
// recent ones are kept), so a thread walking two strided arrays at once gives two streams.
import { StreamPolicy } from './streams';
import type { PrefetchOptions } from './types';

export class StridePrefetcher extends StreamPolicy {
  readonly name = 'stride';

  constructor(opts: PrefetchOptions) {
    super(opts, {
      cursorsPerThread: 4,
      recentPerThread: 16,
      minWindow: Math.min(4, opts.maxWindow),
      maxWindow: opts.maxWindow,
      detect: (recent, page) => {
        for (let i = recent.length - 1; i > 0; i--) {
          const k = page - recent[i]!;
          if (k === 0) continue;
          if (recent.lastIndexOf(recent[i]! - k, i - 1) >= 0) return k;
        }
        return null;
      },
    });
  }
}
