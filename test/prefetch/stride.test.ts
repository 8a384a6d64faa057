import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StridePrefetcher } from '../../daemon/prefetch';

const fault = (p: StridePrefetcher, page: number, tid = 1) => p.onFault({ page, hit: false, tid, write: false });
const along = (start: number, k: number, n: number) => Array.from({ length: n }, (_, i) => start + k * i);

test('stride confirms a stride once it repeats, then asks 4 strides ahead', () => {
  const p = new StridePrefetcher({ regionPages: 10000, maxWindow: 64 });
  assert.deepEqual(fault(p, 100), []);
  assert.deepEqual(fault(p, 107), []);
  assert.deepEqual(fault(p, 114), along(121, 7, 4));
  assert.deepEqual(p.streamsOf(1), [[7, 4]]);
});

test('stride doubles its depth as windows are used, up to maxWindow', () => {
  const p = new StridePrefetcher({ regionPages: 100000, maxWindow: 16 });
  fault(p, 0);
  fault(p, 4);
  assert.deepEqual(fault(p, 8), along(12, 4, 4));
  assert.deepEqual(p.onPrefetchUsed(12), along(28, 4, 8));
  for (const q of along(16, 4, 3)) assert.deepEqual(p.onPrefetchUsed(q), []);
  assert.deepEqual(p.onPrefetchUsed(28), along(60, 4, 16));
  for (const q of along(32, 4, 7)) assert.deepEqual(p.onPrefetchUsed(q), []);
  assert.deepEqual(p.onPrefetchUsed(60), along(124, 4, 16));
});

test('stride follows negative strides and a thread that interleaves two strided walks', () => {
  const p = new StridePrefetcher({ regionPages: 100000, maxWindow: 64 });
  // Walk A goes down by 3 from 9000, walk B up by 11 from 100; one thread, alternating.
  fault(p, 9000);
  fault(p, 100);
  fault(p, 8997);
  fault(p, 111);
  assert.deepEqual(fault(p, 8994), along(8991, -3, 4));
  assert.deepEqual(fault(p, 122), along(133, 11, 4));
  assert.deepEqual(p.streamsOf(1), [[11, 4], [-3, 4]]);
});

test('stride ignores two faults at the same distance from different threads', () => {
  const p = new StridePrefetcher({ regionPages: 10000, maxWindow: 64 });
  fault(p, 0, 1);
  fault(p, 5, 2);
  assert.deepEqual(fault(p, 10, 3), []);
});
