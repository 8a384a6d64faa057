// The prefetcher hook: guesses ride in the fault's batch, go in directly when there is room, else
// wait in the cache; used and wasted guesses are reported back.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FaultInfo, Prefetcher } from '../../daemon/prefetch/types';
import { page, Rig } from './rig';

/** Guesses the next `n` pages after every fault, and records the feedback. */
class NextN implements Prefetcher {
  readonly name = 'next-n';
  readonly used: number[] = [];
  readonly wasted: number[] = [];
  readonly faults: FaultInfo[] = [];
  constructor(private readonly n: number) {}
  onFault(f: FaultInfo): number[] {
    this.faults.push(f);
    return Array.from({ length: this.n }, (_, i) => f.page + 1 + i);
  }
  onPrefetchUsed(p: number): void { this.used.push(p); }
  onPrefetchWasted(p: number): void { this.wasted.push(p); }
  reset(): void {}
}

test('guesses are fetched in the same read as the fault and installed directly when there is room', async () => {
  const pf = new NextN(3);
  const rig = new Rig({ pages: 32, prefetcher: pf });
  rig.store.data.set(rig.regionId, new Map([[0, page(1)], [1, page(2)], [2, page(3)], [3, page(4)]]));
  const a = rig.attach();
  assert.deepEqual(await rig.done(rig.read(a, 0)), page(1));
  assert.equal(rig.store.reads, 1);
  assert.equal(rig.store.readPages, 4);
  assert.equal(rig.stats().residentPages, 4);
  assert.equal(rig.stats().prefetch.issued, 3);
  // A write to a guessed page is the first sign it was used.
  await rig.done(rig.write(a, 2, Buffer.from([9])));
  assert.deepEqual(pf.used, [2]);
  assert.equal(pf.faults[0]!.hit, false);
  // Unused guesses are evicted first, and reported wasted.
  assert.equal(rig.pager.evictAll(rig.key), 3);
  assert.deepEqual(pf.wasted.sort(), [1, 3]);
  const s = rig.stats();
  assert.equal(s.prefetch.used, 1);
  assert.equal(s.prefetch.wasted, 2);
  assert.equal(s.prefetch.accuracy, 1 / 3);
});

test('without room under the budget, guesses wait in the cache; a hit there counts as used', async () => {
  const pf = new NextN(2);
  const rig = new Rig({ pages: 32, budgetPages: 2, prefetcher: pf });
  rig.store.data.set(rig.regionId, new Map([[5, page(5)], [6, page(6)], [7, page(7)]]));
  const a = rig.attach();
  await rig.done(rig.read(a, 5));
  assert.equal(rig.stats().residentPages, 1);
  assert.ok(rig.cache!.has(rig.key, 6) && rig.cache!.has(rig.key, 7));
  assert.deepEqual(await rig.done(rig.read(a, 6)), page(6));
  // 6 came from the cache (fault thread); the only new read is the next guess, 8 (7 is cached).
  assert.equal(rig.store.readPages, 4);
  assert.deepEqual(pf.used, [6]);
  assert.equal(pf.faults[1]!.hit, true);
  assert.equal(rig.stats().faults.cacheHit, 1);
  assert.equal(rig.stats().prefetch.coverage, 1 / 2);
});

test('a fault on a page whose guess is still in flight joins it and counts as used', async () => {
  const pf = new NextN(1);
  const rig = new Rig({ pages: 8, prefetcher: pf });
  rig.store.readDelayMs = 2;
  const a = rig.attach();
  const r0 = rig.read(a, 0);
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  const r1 = rig.read(a, 1);
  await rig.done(Promise.all([r0, r1]));
  assert.equal(rig.store.readPages, 3); // 0 + guess 1, then 2 guessed on the fault at 1
  assert.deepEqual(pf.used, [1]);
  assert.equal(rig.stats().faults.joined, 1);
});

test('pages a policy returns from a use are fetched too (its next window), not left as a hole', async () => {
  // Guesses page 1 on the first fault; when 1 is used, answers with the window 4..5.
  const faults: number[] = [];
  const pf: Prefetcher = {
    name: 'window-on-use',
    onFault: (f) => (faults.push(f.page), f.page === 0 ? [1] : []),
    onPrefetchUsed: (p) => (p === 1 ? [4, 5] : []),
    onPrefetchWasted: () => {},
    reset: () => {},
  };
  const rig = new Rig({ pages: 16, prefetcher: pf });
  rig.store.data.set(rig.regionId, new Map([[0, page(1)], [1, page(2)], [4, page(5)], [5, page(6)]]));
  const a = rig.attach();
  await rig.done(rig.read(a, 0));
  assert.equal(rig.store.readPages, 2);
  // A write to the guessed page 1 is its use: the window 4..5 goes out and lands without a fault.
  await rig.done(rig.write(a, 1, Buffer.from([9])));
  assert.equal(rig.store.readPages, 4);
  assert.equal(rig.stats().prefetch.issued, 3);
  assert.equal(rig.stats().residentPages, 4);
  assert.deepEqual(await rig.done(rig.read(a, 4)), page(5));
  assert.equal(rig.store.readPages, 4); // 4 was resident: no new read
  assert.deepEqual(faults, [0]);
});

test('guesses past the in-flight bound go back to the policy as dropped, so a later fault on one asks again', async () => {
  const pf = new NextN(4);
  const rig = new Rig({ pages: 32, prefetcher: pf, pager: { maxPrefetchInFlight: 2 } });
  const a = rig.attach();
  await rig.done(rig.read(a, 0));
  // 1 and 2 went out; 3 and 4 did not fit and were handed back.
  assert.equal(rig.stats().prefetch.issued, 2);
  assert.equal(rig.store.readPages, 3);
  assert.deepEqual(pf.wasted, [3, 4]);
  assert.equal(rig.stats().prefetch.wasted, 0); // never fetched: not counted as waste
});

test('guesses the page cache holds are installed from it when there is room: no fault, no read', async () => {
  // Guesses nothing while off; then the next three pages after every fault.
  let on = false;
  const faults: FaultInfo[] = [];
  const pf: Prefetcher = {
    name: 'next-3-when-on',
    onFault: (f) => (faults.push(f), on ? [f.page + 1, f.page + 2, f.page + 3] : []),
    onPrefetchUsed: () => [],
    onPrefetchWasted: () => {},
    reset: () => {},
  };
  const rig = new Rig({ pages: 16, prefetcher: pf });
  rig.store.data.set(rig.regionId, new Map([0, 1, 2, 3, 4].map((p) => [p, page(10 + p)])));
  const a = rig.attach();
  for (let p = 0; p <= 4; p++) await rig.done(rig.read(a, p));
  assert.equal(rig.store.readPages, 5);
  // Evicted clean: the bytes go to the cache as victims.
  assert.equal(rig.pager.evictAll(rig.key), 5);
  assert.ok([0, 1, 2, 3, 4].every((p) => rig.cache!.has(rig.key, p)));
  on = true;
  faults.length = 0;
  // 0 is a cache hit (served by the fault thread); its guesses 1..3 come out of the cache into the region.
  assert.deepEqual(await rig.done(rig.read(a, 0)), page(10));
  assert.equal(rig.stats().residentPages, 4);
  assert.ok(![1, 2, 3].some((p) => rig.cache!.has(rig.key, p)), 'installed guesses leave the cache');
  for (let p = 1; p <= 3; p++) assert.deepEqual(await rig.done(rig.read(a, p)), page(10 + p));
  assert.deepEqual(faults.map((f) => f.page), [0], 'pages 1..3 were touched without a fault');
  assert.equal(rig.stats().faults.cacheHit, 1);
  assert.equal(rig.store.readPages, 5, 'nothing was read from the store');
  assert.equal(rig.stats().prefetch.issued, 3);
  // Without room under the budget they stay in the cache for the fault thread (covered above).
});

test('guesses of a read that failed go back to the policy as dropped, so it can ask for them again', async () => {
  const pf = new NextN(2);
  const rig = new Rig({ pages: 32, prefetcher: pf });
  rig.store.data.set(rig.regionId, new Map([[0, page(1)], [1, page(2)], [2, page(3)]]));
  rig.store.failNextReads = 1;
  const a = rig.attach();
  // The fault's read (0, and the guesses 1 and 2 with it) fails once; 0 is retried, the guesses dropped.
  assert.deepEqual(await rig.done(rig.read(a, 0)), page(1));
  assert.deepEqual(pf.wasted.sort(), [1, 2]);
  assert.equal(rig.stats().prefetch.wasted, 0); // never fetched: not counted as waste
  assert.deepEqual(await rig.done(rig.read(a, 1)), page(2));
});

test('without room under the budget, no more guesses go out than half the cache holds; the rest go back as dropped', async () => {
  // The cache holds 8 pages: guesses that can only be staged there are capped at 4 on the way, or they
  // would push each other out before the process gets to them.
  const pf = new NextN(10);
  const rig = new Rig({ pages: 64, budgetPages: 1, cacheBytes: 8 * 4096, prefetcher: pf });
  const a = rig.attach();
  await rig.done(rig.read(a, 0));
  assert.equal(rig.stats().prefetch.issued, 4);
  assert.deepEqual(pf.wasted.sort((x, y) => x - y), [5, 6, 7, 8, 9, 10]);
  assert.equal(rig.stats().prefetch.wasted, 0); // never fetched: not counted as waste
  assert.ok([1, 2, 3, 4].every((p) => rig.cache!.has(rig.key, p)), 'the four went to the cache');
});
