import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TrendPrefetcher, majorityTrend } from '../../daemon/prefetch';
import { nextPowerOfTwo } from '../../daemon/prefetch/trend';

const fault = (p: TrendPrefetcher, page: number, tid = 1) => p.onFault({ page, hit: false, tid, write: false });
const range = (from: number, n: number, step = 1) => Array.from({ length: n }, (_, i) => from + step * i);
const ones = (n: number) => new Array<number>(n).fill(1);

test('majorityTrend: strictly more than half of the newest 8, then 16, then 32 deltas', () => {
  assert.equal(majorityTrend([]), null);
  assert.equal(majorityTrend([5]), null); // one delta is no trend
  assert.equal(majorityTrend([3, 3]), 3);
  assert.equal(majorityTrend([3, 4]), null);
  assert.equal(majorityTrend([2, 2, 3, 4]), null); // half is not a majority
  assert.equal(majorityTrend([7, 7, 7, 1, 2]), 7);
  // newest 8: five of 8 → 1.
  assert.equal(majorityTrend([1, 2, 1, 3, 1, 4, 1, 1]), 1);
  // newest 8 split 4/4, newest 16 holds twelve -1s.
  assert.equal(majorityTrend([9, 8, 7, 6, -1, -1, -1, -1, ...new Array<number>(8).fill(-1)]), -1);
  // newest 8 and 16 have none; all 32 hold seventeen 2s.
  const deltas = [...range(100, 9, 1), 2, 2, 2, 2, 2, 2, 2, ...new Array<number>(10).fill(2), 50, 51, 52, 53, 54, 55];
  assert.equal(deltas.length, 32);
  assert.equal(majorityTrend(deltas), 2);
  deltas[31] = 7;
  deltas[20] = 8; // sixteen 2s out of 32: not more than half
  assert.equal(majorityTrend(deltas), null);
  // only the newest 32 count, and a window of 8 sees only the newest 8
  assert.equal(majorityTrend([...ones(4), 5, 6, 7, 8, ...new Array<number>(24).fill(9)]), 9);
});

test('nextPowerOfTwo', () => {
  assert.deepEqual([1, 2, 3, 4, 5, 9, 64, 65].map(nextPowerOfTwo), [1, 2, 4, 4, 8, 16, 64, 128]);
});

test('trend window follows Leap: 1 on a fresh trend, then next power of two ≥ hits + 1, capped, halving at most', () => {
  const p = new TrendPrefetcher({ regionPages: 1 << 20, maxWindow: 8 });
  const seen: number[] = [];
  const decide = (page: number) => {
    const pages = fault(p, page);
    seen.push(p.windowOf(1));
    return pages;
  };
  const use = (pages: number[]) => {
    for (const q of pages) assert.deepEqual(p.onPrefetchUsed(q), []);
  };
  assert.deepEqual(decide(100), []); // no history
  assert.deepEqual(decide(101), []); // one delta: no trend
  assert.deepEqual(decide(102), [103]); // trend +1, no hits: 1 page
  use([103]);
  assert.deepEqual(decide(104), [105, 106]); // 1 hit → 2
  use([105, 106]);
  assert.deepEqual(decide(107), range(108, 4)); // 2 hits → 4
  use(range(108, 4));
  assert.deepEqual(decide(112), range(113, 8)); // 4 hits → 8
  use(range(113, 8));
  assert.deepEqual(decide(121), range(122, 8)); // 8 hits → 16, capped at 8
  // No more hits: the trend is still the majority (1 page), but never below half the last window.
  assert.deepEqual(decide(1000), range(1001, 4));
  assert.deepEqual(decide(3000), range(3001, 2));
  assert.deepEqual(decide(7000), [7001]);
  // Faults that break the pattern (all deltas distinct): the history holds 21 deltas of +1 (faults and
  // uses alike). The newest 8 lose their majority after 4 breaks, the newest 16 after 8, but all 32 keep
  // it while the ring holds more than 16 of them: up to the 16th break. Then the window is 0.
  for (let i = 4; i <= 16; i++) decide(i * i * 1000);
  assert.deepEqual(seen, [0, 0, 1, 2, 4, 8, 8, 4, 2, 1, ...new Array<number>(12).fill(1), 0]);
  assert.deepEqual(decide(200000), []);
});

test('trend decides only on faults that go remote; uses and cache hits feed the history', () => {
  const p = new TrendPrefetcher({ regionPages: 1 << 20, maxWindow: 64 });
  fault(p, 0);
  fault(p, 2);
  assert.deepEqual(p.onFault({ page: 4, hit: true, tid: 1, write: false }), []);
  // The cache hit at 4 added a delta: two +2 deltas make a trend.
  assert.deepEqual(fault(p, 6), [8]);
  // A use reported twice (onPrefetchUsed then a hit fault) counts once.
  p.onPrefetchUsed(8);
  p.onFault({ page: 8, hit: true, tid: 1, write: false });
  assert.deepEqual(fault(p, 10), [12, 14]);
});

test('trend keeps one history per thread', () => {
  const p = new TrendPrefetcher({ regionPages: 1 << 20, maxWindow: 64 });
  for (let i = 0; i < 3; i++) {
    fault(p, 1000 + i, 1);
    fault(p, 90000 - 3 * i, 2);
  }
  assert.equal(p.windowOf(1), 1);
  assert.equal(p.windowOf(2), 1);
  assert.equal(p.windowOf(3), 0);
});
