// Guesses nobody waits for (replay warm-up, readahead windows) are installed in runs: one UFFDIO_COPY
// per run of contiguous pages, write-protected and DONTWAKE, then one wake over the batch; a page
// the process already has is never overwritten; the budget bounds what goes in directly.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { page, PS, Rig } from './rig';

/** Counts the copy and wake ioctls the pager makes, with their lengths in pages and modes. */
function spy(rig: Rig) {
  const copies: { first: number; pages: number; wp: boolean; dontWake: boolean }[] = [];
  const wakes: { first: number; pages: number }[] = [];
  const k = rig.kernel;
  const copy = k.copy.bind(k);
  const wake = k.wake.bind(k);
  let base = 0n;
  k.copy = (uffd, dst, data, wp, dontWake) => {
    copies.push({ first: Number((dst - base) / BigInt(PS)), pages: data.length / PS, wp, dontWake });
    return copy(uffd, dst, data, wp, dontWake);
  };
  k.wake = (uffd, start, length) => {
    wakes.push({ first: Number((start - base) / BigInt(PS)), pages: length / PS });
    wake(uffd, start, length);
  };
  return { copies, wakes, setBase: (b: bigint) => (base = b) };
}

test('a warm-up batch goes in as one copy per contiguous run, DONTWAKE, then one wake', async () => {
  const rig = new Rig({ pages: 32 });
  const data = new Map<number, Buffer>();
  for (const p of [2, 3, 4, 5, 9, 10]) data.set(p, page(p));
  rig.store.data.set(rig.regionId, data);
  const s = spy(rig);
  const a = rig.attach();
  s.setBase(a.base);
  // First-touch order, not sorted: the runs are found anyway. Page 11 was never written (zeros).
  assert.equal(await rig.pager.warm(rig.key, [10, 9, 5, 4, 3, 2, 11]), 7);
  await rig.settle();
  assert.deepEqual(s.copies, [
    { first: 2, pages: 4, wp: true, dontWake: true },
    { first: 9, pages: 3, wp: true, dontWake: true },
  ]);
  assert.deepEqual(s.wakes, [{ first: 2, pages: 10 }]);
  assert.equal(rig.stats().residentPages, 7);
  assert.equal(rig.stats().prefetch.issued, 7);
  // The process reads them without a fault; the bytes are the store's.
  for (const p of [2, 3, 4, 5, 9, 10]) assert.deepEqual(await rig.done(rig.read(a, p)), page(p));
  assert.deepEqual(await rig.done(rig.read(a, 11)), page(0));
  const f = rig.stats().faults;
  assert.equal(f.remote + f.zero + f.cacheHit, 0);
  // Installed write-protected: a write is still seen (a WP fault) and counts as a use.
  await rig.done(rig.write(a, 4, Buffer.from([7])));
  assert.equal(rig.stats().faults.wp, 1);
  assert.equal(rig.stats().prefetch.used, 1);
});

test('a page the process already has is never overwritten: EEXIST in a run skips it and goes on', async () => {
  const rig = new Rig({ pages: 16 });
  rig.store.data.set(rig.regionId, new Map([0, 1, 2, 3, 4, 5].map((p) => [p, page(p)])));
  const s = spy(rig);
  const a = rig.attach();
  s.setBase(a.base);
  // Filled another way while the read was out (the pager does not know it is there).
  rig.kernel.fillBehind(rig.memfd, 3, page(0xee));
  assert.equal(await rig.pager.warm(rig.key, [0, 1, 2, 3, 4, 5]), 6);
  await rig.settle();
  assert.deepEqual(s.copies.map((c) => [c.first, c.pages]), [[0, 6], [4, 2]]);
  assert.deepEqual(await rig.done(rig.read(a, 3)), page(0xee));
  for (const p of [0, 1, 2, 4, 5]) assert.deepEqual(await rig.done(rig.read(a, p)), page(p));
  assert.equal(rig.stats().residentPages, 6);
});

test('the budget bounds the direct installs; the rest of a warm-up waits in the cache', async () => {
  // Budget 16 pages: guesses go in directly up to the low watermark, the rest are staged.
  const rig = new Rig({ pages: 64, budgetPages: 16 });
  rig.store.data.set(rig.regionId, new Map(Array.from({ length: 32 }, (_, p) => [p, page(p + 1)])));
  const a = rig.attach();
  await rig.pager.warm(rig.key, Array.from({ length: 32 }, (_, p) => p));
  await rig.settle();
  const resident = rig.stats().residentPages;
  assert.ok(resident > 0 && resident <= 16, `resident ${resident}`);
  let cached = 0;
  for (let p = 0; p < 32; p++) if (rig.cache!.has(rig.key, p)) cached++;
  assert.equal(resident + cached, 32);
  for (let p = 0; p < 32; p++) assert.deepEqual(await rig.done(rig.read(a, p)), page(p + 1));
});

test('a fault that waits on a warm-up page is served by the demand path, and the others still go in as a run', async () => {
  const rig = new Rig({ pages: 16 });
  rig.store.data.set(rig.regionId, new Map([0, 1, 2, 3, 4, 5, 6, 7].map((p) => [p, page(p + 10)])));
  // The read answers only once the fault has joined it.
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const read = rig.store.read.bind(rig.store);
  rig.store.read = async (region, pages) => {
    await gate;
    return read(region, pages);
  };
  const s = spy(rig);
  const a = rig.attach();
  s.setBase(a.base);
  const warm = rig.pager.warm(rig.key, [0, 1, 2, 3, 4, 5, 6, 7]);
  const r5 = rig.read(a, 5);
  for (let i = 0; rig.stats().faults.joined === 0; i++) {
    assert.ok(i < 10_000, 'the fault never joined the warm-up read');
    await new Promise((resolve) => setImmediate(resolve));
  }
  release();
  await warm;
  assert.deepEqual(await rig.done(r5), page(15));
  assert.deepEqual(s.copies.filter((c) => c.dontWake).map((c) => [c.first, c.pages]), [[0, 5], [6, 2]]);
  for (let p = 0; p < 8; p++) assert.deepEqual(await rig.done(rig.read(a, p)), page(p + 10));
});

test('the first page of a large window is held back: its touch faults, is served at once, and asks for the next window', async () => {
  const faults: { page: number; hit: boolean }[] = [];
  const rig = new Rig({
    pages: 128,
    prefetcher: {
      name: 'windows',
      // A miss at p asks for the 32 pages after it; a hit at the start of a window asks for the next 32.
      onFault: (f) => {
        faults.push({ page: f.page, hit: f.hit });
        return f.page === 0 ? Array.from({ length: 32 }, (_, i) => 1 + i) : f.page === 1 ? Array.from({ length: 32 }, (_, i) => 33 + i) : [];
      },
      onPrefetchUsed: () => [],
      onPrefetchWasted: () => {},
      reset: () => {},
      windowMarkers: () => true,
    },
  });
  rig.store.data.set(rig.regionId, new Map(Array.from({ length: 65 }, (_, p) => [p, page(p + 1)])));
  const a = rig.attach();
  assert.deepEqual(await rig.done(rig.read(a, 0)), page(1));
  // 0 and 2..32 are in; 1 waits in the pager.
  assert.equal(rig.stats().residentPages, 32);
  assert.equal(rig.kernel.present(rig.memfd, 1), null);
  const reads = rig.store.reads;
  assert.deepEqual(await rig.done(rig.read(a, 1)), page(2));
  assert.deepEqual(faults.slice(0, 2), [{ page: 0, hit: false }, { page: 1, hit: true }]);
  assert.equal(rig.stats().faults.cacheHit, 1);
  assert.equal(rig.stats().prefetch.used, 1);
  // Its touch sent for the next window (33 is held back in turn).
  assert.equal(rig.store.reads, reads + 1);
  assert.equal(rig.stats().residentPages, 33 + 31);
  for (let p = 2; p < 65; p++) assert.deepEqual(await rig.done(rig.read(a, p)), page(p + 1));
  assert.equal(rig.stats().faults.remote, 1);
});

test('a policy whose windows do not start with their trigger gets them installed whole', async () => {
  const rig = new Rig({
    pages: 64,
    prefetcher: {
      name: 'plain',
      onFault: (f) => (f.page === 0 ? Array.from({ length: 32 }, (_, i) => 1 + i) : []),
      onPrefetchUsed: () => [],
      onPrefetchWasted: () => {},
      reset: () => {},
    },
  });
  rig.store.data.set(rig.regionId, new Map(Array.from({ length: 33 }, (_, p) => [p, page(p + 1)])));
  const a = rig.attach();
  await rig.done(rig.read(a, 0));
  assert.equal(rig.stats().residentPages, 33);
  assert.deepEqual(rig.kernel.present(rig.memfd, 1), page(2));
});

test('a run that came in one message is installed straight from that message, no copy in JS', async () => {
  const rig = new Rig({ pages: 32 });
  rig.store.oneMessage = true;
  const data = new Map<number, Buffer>();
  for (let p = 0; p < 12; p++) data.set(p, page(p));
  rig.store.data.set(rig.regionId, data);
  const sources: ArrayBufferLike[] = [];
  const k = rig.kernel;
  const copy = k.copy.bind(k);
  k.copy = (uffd, dst, bytes, wp, dontWake) => {
    sources.push(bytes.buffer);
    return copy(uffd, dst, bytes, wp, dontWake);
  };
  const a = rig.attach();
  assert.equal(await rig.pager.warm(rig.key, [2, 3, 4, 5]), 4);
  await rig.settle();
  assert.equal(rig.store.messages.length, 1);
  assert.deepEqual(sources, [rig.store.messages[0]!.buffer]);
  // Another answer, another message: its run is a view of that one (separate buffers, as in the
  // first test here, are joined by one copy in JS: still one ioctl per run).
  assert.equal(await rig.pager.warm(rig.key, [6, 7]), 2);
  await rig.settle();
  assert.equal(sources.length, 2);
  assert.equal(sources[1], rig.store.messages[1]!.buffer);
  for (let p = 2; p < 8; p++) assert.deepEqual(await rig.done(rig.read(a, p)), page(p));
});
