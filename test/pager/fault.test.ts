// The fault path over the fake kernel: dedupe, batching, zero pages, dirty tracking, uffd outcomes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Pager } from '../../daemon/pager';
import { FakeKernel } from '../helpers/fake-native';
import { MemoryLog, page, PS, Rig } from './rig';

test('concurrent faults on one page share one fetch, also across attachments', async () => {
  const rig = new Rig();
  rig.store.data.set(rig.regionId, new Map([[3, page(0x33)]]));
  const a = rig.attach();
  const b = rig.attach();
  const got = await rig.done(Promise.all([rig.read(a, 3), rig.read(a, 3), rig.read(b, 3)]));
  for (const g of got) assert.deepEqual(g, page(0x33));
  assert.equal(rig.store.reads, 1);
  assert.equal(rig.store.readPages, 1);
  const s = rig.stats();
  assert.equal(s.faults.remote, 1);
  assert.equal(s.faults.joined, 2);
  assert.equal(s.residentPages, 1);
  assert.equal(s.dirtyPages, 0);
  assert.equal(s.remoteBytesIn, PS);
});

test('misses of one event batch go to the store in one read', async () => {
  const rig = new Rig();
  const a = rig.attach();
  await rig.done(Promise.all([0, 1, 2, 3, 4, 5, 6, 7].map((p) => rig.read(a, p))));
  assert.equal(rig.store.reads, 1);
  assert.equal(rig.store.readPages, 8);
});

test('a read of a never-written page installs zeros, write-protected and clean', async () => {
  const rig = new Rig();
  const a = rig.attach();
  assert.deepEqual(await rig.done(rig.read(a, 5)), page(0));
  const s = rig.stats();
  assert.equal(s.faults.zero, 1);
  assert.equal(s.dirtyPages, 0);
  assert.ok(a.wp.has(5), 'a read-installed zero page must be write-protected');
  // Its first write is seen.
  await rig.done(rig.write(a, 5, Buffer.from('x')));
  assert.equal(rig.stats().faults.wp, 1);
  assert.equal(rig.stats().dirtyPages, 1);
});

test('a write miss on a never-written page uses UFFDIO_ZEROPAGE and is dirty at once', async () => {
  const rig = new Rig();
  const a = rig.attach();
  const after = await rig.done(rig.write(a, 2, Buffer.from('hello')));
  assert.equal(after.subarray(0, 5).toString(), 'hello');
  assert.ok(rig.kernel.calls.includes(`zeropage ${a.uffd} 2`));
  const s = rig.stats();
  assert.equal(s.faults.zero, 1);
  assert.equal(s.faults.wp, 0);
  assert.equal(s.dirtyPages, 1);
});

test('a write miss on a stored page installs it unprotected and dirty: one round trip', async () => {
  const rig = new Rig();
  rig.store.data.set(rig.regionId, new Map([[1, page(0x11)]]));
  const a = rig.attach();
  const after = await rig.done(rig.write(a, 1, Buffer.from([0xff]), 10));
  assert.equal(after[10], 0xff);
  assert.equal(after[11], 0x11);
  assert.ok(!a.wp.has(1));
  assert.equal(rig.stats().faults.wp, 0);
  assert.equal(rig.stats().dirtyPages, 1);
});

test('a WP fault marks the page dirty and lifts the protection', async () => {
  const rig = new Rig();
  rig.store.data.set(rig.regionId, new Map([[4, page(0x44)]]));
  const a = rig.attach();
  await rig.done(rig.read(a, 4));
  assert.equal(rig.stats().dirtyPages, 0);
  assert.ok(a.wp.has(4));
  await rig.done(rig.write(a, 4, Buffer.from([1])));
  assert.equal(rig.stats().faults.wp, 1);
  assert.equal(rig.stats().dirtyPages, 1);
  assert.ok(!a.wp.has(4));
  assert.equal(rig.kernel.present(rig.memfd, 4)![0], 1);
});

test('a page installed through one attachment is write-protected in the others first', async () => {
  const rig = new Rig();
  rig.store.data.set(rig.regionId, new Map([[9, page(0x99)]]));
  const a = rig.attach();
  const b = rig.attach();
  b.wp.clear(); // as after a punch that dropped B's markers
  await rig.done(rig.read(a, 9));
  assert.ok(b.wp.has(9), 'B must be protected on the page');
  const protectB = rig.kernel.calls.indexOf(`protect ${b.uffd} 9`);
  const copyA = rig.kernel.calls.indexOf(`copy ${a.uffd} 9 wp`);
  assert.ok(protectB >= 0 && protectB < copyA, 'B is protected before the page exists');
  // B's write is seen as a WP fault, through B.
  await rig.done(rig.write(b, 9, Buffer.from([7])));
  assert.equal(rig.stats().dirtyPages, 1);
  assert.equal(rig.stats().faults.wp, 1);
  assert.deepEqual(await rig.done(rig.read(a, 9)), Buffer.concat([Buffer.from([7]), page(0x99).subarray(1)]));
});

test('EEXIST (filled another way while the fault waited) wakes the faulting thread', async () => {
  const rig = new Rig();
  rig.store.readDelayMs = 5;
  rig.store.data.set(rig.regionId, new Map([[6, page(0x66)]]));
  const a = rig.attach();
  const r = rig.read(a, 6);
  await new Promise((resolve) => setImmediate(resolve));
  rig.kernel.fillBehind(rig.memfd, 6, page(0x66));
  assert.deepEqual(await rig.done(r), page(0x66));
  assert.equal(rig.stats().residentPages, 1);
});

test('EAGAIN is retried until the copy goes through', async () => {
  const rig = new Rig();
  rig.store.data.set(rig.regionId, new Map([[2, page(0x22)]]));
  const a = rig.attach();
  rig.kernel.inject('copy', 'again');
  rig.kernel.inject('copy', 'again');
  assert.deepEqual(await rig.done(rig.read(a, 2)), page(0x22));
  assert.equal(rig.stats().faults.remote, 1);
});

test('ESRCH tears the attachment down, not an error; the other attachments go on', async () => {
  const rig = new Rig();
  rig.store.data.set(rig.regionId, new Map([[1, page(1)]]));
  const a = rig.attach();
  const b = rig.attach();
  rig.store.readDelayMs = 2;
  const ra = rig.read(a, 1).catch((e: Error) => e.message);
  const rb = rig.read(b, 1);
  await new Promise((resolve) => setImmediate(resolve));
  await new Promise((resolve) => setImmediate(resolve));
  rig.kernel.kill(a);
  assert.deepEqual(await rig.done(rb), page(1));
  assert.equal(await ra, 'killed');
  assert.deepEqual(rig.gone, [a.attachment]);
  assert.equal(rig.stats().attachments, 1);
  assert.equal(rig.log.lines.filter((l) => l.level === 'error').length, 0);
  assert.equal(rig.log.count('attachment gone'), 1);
});

test('a gone event from the fault thread detaches', async () => {
  const rig = new Rig();
  const a = rig.attach();
  rig.thread.gone(a);
  await rig.settle();
  assert.equal(rig.stats().attachments, 0);
  assert.deepEqual(rig.gone, [a.attachment]);
});

test('cache hits answered by the fault thread are accounted: resident, dirty on a write, removed from the cache', async () => {
  const rig = new Rig();
  const a = rig.attach();
  rig.cache!.put(rig.key, 3, page(0x30));
  rig.cache!.put(rig.key, 4, page(0x40));
  assert.deepEqual(await rig.done(rig.read(a, 3)), page(0x30));
  await rig.done(rig.write(a, 4, Buffer.from([9])));
  const s = rig.stats();
  assert.equal(s.faults.cacheHit, 2);
  assert.equal(s.residentPages, 2);
  assert.equal(s.dirtyPages, 1);
  assert.equal(rig.store.reads, 0);
  assert.equal(rig.cache!.has(rig.key, 3), false, 'a resident page must not stay in the cache');
  assert.equal(rig.cache!.has(rig.key, 4), false);
});

test('store errors are retried with backoff; the process gets the right bytes', async () => {
  const rig = new Rig();
  rig.store.data.set(rig.regionId, new Map([[8, page(0x88)]]));
  rig.store.failNextReads = 3;
  const a = rig.attach();
  assert.deepEqual(await rig.done(rig.read(a, 8)), page(0x88));
  assert.equal(rig.store.reads, 4);
  assert.equal(rig.stats().readStalls, 1);
  assert.equal(rig.stats().unavailable, false);
});

test('a short page from the store is refused and read again, never installed', async () => {
  const rig = new Rig();
  rig.store.data.set(rig.regionId, new Map([[8, page(0x88)]]));
  rig.store.corruptNextReads = 1;
  const a = rig.attach();
  assert.deepEqual(await rig.done(rig.read(a, 8)), page(0x88));
  assert.equal(rig.store.reads, 2);
});

test('no store answering: the fault waits, the daemon logs once, and it completes when a store is back', async () => {
  const rig = new Rig({ pager: { unavailableAfterMs: 5 } });
  rig.store.data.set(rig.regionId, new Map([[0, page(0xaa)]]));
  rig.store.down = true;
  const a = rig.attach();
  let finished = false;
  const r = rig.read(a, 0).then((b) => ((finished = true), b));
  while (rig.log.count('no memory server answers: faulting processes wait until one does') === 0) {
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(finished, false);
  assert.equal(rig.stats().unavailable, true);
  assert.equal(rig.log.count('no memory server answers: faulting processes wait until one does'), 1);
  rig.store.down = false;
  assert.deepEqual(await rig.done(r), page(0xaa));
  assert.equal(rig.log.count('memory servers answer again'), 1);
});

test('onUnavailable sigbus: after the timeout the faulting thread gets SIGBUS (UFFDIO_POISON)', async () => {
  const rig = new Rig({ onUnavailable: 'sigbus', pager: { unavailableAfterMs: 5 } });
  rig.store.down = true;
  const a = rig.attach();
  const err = await rig.read(a, 0).then(() => 'resumed', (e: Error) => e.message);
  assert.equal(err, 'SIGBUS');
  assert.equal(rig.stats().poisoned, 1);
  assert.equal(rig.log.count('no memory server answers: faulting threads get SIGBUS (region created with onUnavailable=sigbus)'), 1);
  await rig.settle();
  // Another mapping is not poisoned: once the store is back it reads the page.
  rig.store.down = false;
  const b = rig.attach();
  assert.deepEqual(await rig.done(rig.read(b, 0)), page(0));
});

test('onUnavailable sigbus on a page evicted while write-protected: the uffd-wp marker is cleared so the poison lands', async () => {
  const rig = new Rig({ onUnavailable: 'sigbus', cacheBytes: null, pager: { unavailableAfterMs: 5 } }); // no victim cache: the page must come from the store
  rig.kernel.punchKeepsMarkers = true; // like shmem: a punched write-protected pte leaves a marker
  const a = rig.attach();
  await rig.done(rig.write(a, 3, Buffer.from([9])));
  await rig.pager.sync(rig.key);
  assert.equal(rig.pager.evictAll(rig.key), 1);
  assert.ok(a.wp.has(3), 'the marker outlives the punch');
  rig.store.down = true;
  const err = await rig.read(a, 3).then(() => 'resumed', (e: Error) => e.message);
  assert.equal(err, 'SIGBUS');
  assert.equal(rig.stats().poisoned, 1);
  await rig.settle();
  rig.store.down = false;
  const b = rig.attach();
  assert.deepEqual(await rig.done(rig.read(b, 3)), Buffer.concat([Buffer.from([9]), page(0).subarray(1)]));
});

test('onUnavailable sigbus without UFFDIO_POISON in the addon falls back to waiting, and says so', async () => {
  const rig = new Rig({ onUnavailable: 'sigbus', pager: { unavailableAfterMs: 2 } });
  rig.kernel.poison = null;
  rig.store.down = true;
  const a = rig.attach();
  const r = rig.read(a, 0);
  const msg = 'no memory server answers: faulting processes wait (onUnavailable=sigbus needs UFFDIO_POISON, which this addon lacks)';
  while (rig.log.count(msg) === 0) await new Promise((resolve) => setTimeout(resolve, 2));
  rig.store.down = false;
  assert.deepEqual(await rig.done(r), page(0));
});

test('an attachment without write-protect makes every page dirty', async () => {
  const rig = new Rig();
  rig.store.data.set(rig.regionId, new Map([[1, page(1)]]));
  const a = rig.attach();
  await rig.done(rig.read(a, 1));
  assert.equal(rig.stats().dirtyPages, 0);
  const b = rig.attach({ writeProtect: false });
  assert.equal(rig.stats().dirtyPages, 1);
  await rig.done(rig.read(b, 2));
  assert.equal(rig.stats().dirtyPages, 2);
  assert.equal(rig.log.count('attachment without write-protect: every resident page of the region counts as dirty and the region cannot be evicted while it is attached'), 1);
});

test('re-adopting a memfd that holds data takes its pages as resident and dirty', () => {
  const kernel = new FakeKernel(PS);
  const memfd = kernel.createMemfd(8 * PS);
  kernel.fillBehind(memfd, 2, page(2));
  kernel.fillBehind(memfd, 5, page(5));
  const pager = new Pager({ ops: kernel, cache: null, log: new MemoryLog() });
  pager.addRegion({ key: 1, name: 'r', ref: { id: 'x', pageSize: PS }, sizeBytes: 8 * PS, residentBytes: 0, onUnavailable: 'wait', memfd, store: null as never, prefetcher: null });
  assert.equal(pager.stats(1).residentPages, 2);
  assert.equal(pager.stats(1).dirtyPages, 2);
});

test('bad keys and ids are refused with a clear message', () => {
  const rig = new Rig();
  assert.throws(() => rig.pager.stats(99), { message: 'Expected a known region key but received 99' });
  assert.throws(() => rig.pager.addRegion({ key: rig.key, name: 'dup', ref: { id: 'y', pageSize: PS }, sizeBytes: PS, residentBytes: 0, onUnavailable: 'wait', memfd: rig.memfd, store: rig.store, prefetcher: null }),
    { message: 'Expected an unused region key for region "dup" but received 7' });
  const a = rig.attach();
  assert.throws(() => rig.pager.attach({ attachment: a.attachment, region: rig.key, uffd: a.uffd, pid: 1, base: a.base, length: a.length, writeProtect: true }),
    { message: 'Expected an unused attachment id for region "test" but received 1' });
  assert.throws(() => new Pager({ ops: rig.kernel, cache: null, log: rig.log, lowWatermark: 0.99, highWatermark: 0.5 }),
    { message: 'Expected 0 < lowWatermark <= highWatermark <= 1 for the evictor but received 0.99 and 0.5' });
});
