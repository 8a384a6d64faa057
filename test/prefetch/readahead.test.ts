import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ReadaheadPrefetcher } from '../../daemon/prefetch';
import type { Prefetcher } from '../../daemon/prefetch/types';

/** Drives a forward scan from `start`, reporting every use; returns the size of each window sent. */
function windows(p: ReadaheadPrefetcher, start: number, count: number): number[] {
  const sizes: number[] = [];
  const note = (pages: number[]) => {
    if (pages.length > 0) sizes.push(pages.length);
  };
  note(p.onFault({ page: start, hit: false, tid: 1, write: false }));
  note(p.onFault({ page: start + 1, hit: false, tid: 1, write: false }));
  for (let q = start + 2; q < start + count; q++) note(p.onPrefetchUsed(q));
  return sizes;
}

/** sizes starts with `ramp`, and every later window is the last of the ramp. */
function assertRamp(sizes: number[], ramp: number[]): void {
  assert.deepEqual(sizes.slice(0, ramp.length), ramp);
  const top = ramp[ramp.length - 1]!;
  assert.ok(sizes.length > ramp.length && sizes.slice(ramp.length).every((w) => w === top), sizes.join(','));
}

test('readahead grows its window from 64 KiB to 4 MiB as the stream uses it', () => {
  const p = new ReadaheadPrefetcher({ regionPages: 1 << 20, maxWindow: 4096 });
  assert.equal(p.minWindow, 16);
  assert.equal(p.maxRamp, 1024);
  assertRamp(windows(p, 0, 5000), [16, 32, 64, 128, 256, 512, 1024]);
});

test('readahead windows are in pages of the region: 2 MiB pages ramp from 1 to 2', () => {
  const huge = new ReadaheadPrefetcher({ regionPages: 1000, maxWindow: 64, pageSize: 2 << 20 });
  assert.deepEqual([huge.minWindow, huge.maxRamp], [1, 2]);
  assertRamp(windows(huge, 0, 12), [1, 2]);
  const big = new ReadaheadPrefetcher({ regionPages: 1000, maxWindow: 4096, pageSize: 65536 });
  assert.deepEqual([big.minWindow, big.maxRamp], [1, 64]);
});

test('readahead never asks for more than maxWindow at once', () => {
  const p = new ReadaheadPrefetcher({ regionPages: 1 << 20, maxWindow: 64 });
  const sizes = windows(p, 0, 1000);
  assertRamp(sizes, [16, 32, 64]);
  // Always ahead of the scan, by at most two windows.
  const sent = sizes.reduce((a, b) => a + b, 0);
  assert.ok(sent >= 998 && sent <= 998 + 128, String(sent));
});

test('readahead follows a backward scan', () => {
  const p = new ReadaheadPrefetcher({ regionPages: 1000, maxWindow: 64 });
  assert.deepEqual(p.onFault({ page: 500, hit: false, tid: 1, write: false }), []);
  const w = p.onFault({ page: 499, hit: false, tid: 1, write: false });
  assert.deepEqual(w, Array.from({ length: 16 }, (_, i) => 498 - i));
  assert.deepEqual(p.streamsOf(1), [[-1, 16]]);
});

test('a fault past the window (uses never reported) grows the window and restarts from there', () => {
  const p = new ReadaheadPrefetcher({ regionPages: 1000, maxWindow: 64 });
  p.onFault({ page: 0, hit: false, tid: 1, write: false });
  assert.deepEqual(p.onFault({ page: 1, hit: false, tid: 1, write: false }), Array.from({ length: 16 }, (_, i) => 2 + i));
  // The process read 2..17 without a word from the pager and faults on 18, the stream's front.
  assert.deepEqual(p.onFault({ page: 18, hit: false, tid: 1, write: false }), Array.from({ length: 32 }, (_, i) => 19 + i));
});

test('a fault that continues no stream starts a new one at the smallest window; one thread keeps several', () => {
  const p = new ReadaheadPrefetcher({ regionPages: 100000, maxWindow: 64 });
  windows(p, 0, 200);
  assert.deepEqual(p.streamsOf(1), [[1, 64]]);
  // The same thread starts a second scan elsewhere: a new cursor, the first one is kept.
  p.onFault({ page: 50000, hit: false, tid: 1, write: false });
  assert.equal(p.onFault({ page: 50001, hit: false, tid: 1, write: false }).length, 16);
  assert.deepEqual(p.streamsOf(1), [[1, 16], [1, 64]]);
  // Another thread has streams of its own.
  assert.deepEqual(p.streamsOf(2), []);
});

test('a fault inside the window (guesses dropped before use) asks again for what was lost, and resets the window', () => {
  const p = new ReadaheadPrefetcher({ regionPages: 1000, maxWindow: 64 });
  p.onFault({ page: 0, hit: false, tid: 1, write: false });
  p.onFault({ page: 1, hit: false, tid: 1, write: false }); // asks for 2..17
  assert.equal(p.onPrefetchUsed(2)?.length, 32); // asks for 18..49, window 32
  assert.deepEqual(p.onPrefetchUsed(3), []);
  for (const q of [5, 6, 7, 8]) p.onPrefetchWasted(q);
  assert.deepEqual(p.streamsOf(1), [[1, 16]]);
  // 4 is still an outstanding guess: a fault on it is a use, and nothing was lost before it.
  assert.deepEqual(p.onFault({ page: 4, hit: false, tid: 1, write: false }), []);
  // A fault on the lost page 5 asks again for the lost ones after it (9..17 are still outstanding).
  assert.deepEqual(p.onFault({ page: 5, hit: false, tid: 1, write: false }), [6, 7, 8]);
});

test('readaheadMaxWindow caps readahead alone; readahead (and auto running it) marks its windows', async () => {
  const { AutoPrefetcher, StridePrefetcher, createPrefetcher } = await import('../../daemon/prefetch');
  const p = new ReadaheadPrefetcher({ regionPages: 1 << 20, maxWindow: 64, readaheadMaxWindow: 256 });
  assertRamp(windows(p, 0, 8192), [16, 32, 64, 128, 256]);
  assert.equal(p.windowMarkers(), true);
  const stride: Prefetcher = new StridePrefetcher({ regionPages: 1000, maxWindow: 64, readaheadMaxWindow: 256 });
  assert.equal(stride.windowMarkers, undefined);
  const auto = new AutoPrefetcher({ regionPages: 1 << 20, maxWindow: 64, readaheadMaxWindow: 256 });
  assert.equal(auto.windowMarkers(), false); // none chosen yet
  for (let q = 0; q < 512 && auto.current() !== 'readahead'; q++) auto.onFault({ page: q, hit: false, tid: 1, write: false });
  assert.equal(auto.current(), 'readahead');
  assert.equal(auto.windowMarkers(), true);
  assert.throws(() => createPrefetcher('readahead', { regionPages: 100, maxWindow: 8, readaheadMaxWindow: 0 }), {
    message: 'Expected a positive integer below 2^32 for readaheadMaxWindow but received 0',
  });
});
