// Eviction and write-back over the fake kernel: budgets, dirty pages never lost, stalls, sync, drain.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { page, PS, rng, Rig } from './rig';

test('eviction keeps the resident pages within the budget', async () => {
  const rig = new Rig({ pages: 64, budgetPages: 8, cacheBytes: null });
  const a = rig.attach();
  for (let p = 0; p < 64; p++) await rig.done(rig.read(a, p));
  assert.ok(rig.kernel.maxPresent(rig.memfd) <= 8, `at most 8 pages at once, saw ${rig.kernel.maxPresent(rig.memfd)}`);
  assert.ok(rig.stats().residentPages <= 8);
  assert.equal(rig.stats().residentPages, rig.kernel.presentCount(rig.memfd));
  assert.ok(rig.stats().evicted.clean >= 56);
});

test('a budget that holds the whole region evicts nothing (the watermarks apply only below the region size)', async () => {
  const rig = new Rig({ pages: 32, budgetPages: 32, cacheBytes: null });
  const a = rig.attach();
  for (let p = 0; p < 32; p++) await rig.done(rig.write(a, p, page(p)));
  await rig.settle();
  assert.equal(rig.stats().residentPages, 32);
  assert.equal(rig.stats().dirtyPages, 32);
  assert.deepEqual(rig.stats().evicted, { clean: 0, dirty: 0 });
  assert.equal(rig.stats().writeBack.pages, 0);
});

test('dirty pages are written back before the punch and read back exactly', async () => {
  const rig = new Rig({ pages: 32, budgetPages: 4, cacheBytes: null });
  const a = rig.attach();
  for (let p = 0; p < 32; p++) await rig.done(rig.write(a, p, page(p + 1)));
  assert.ok(rig.kernel.maxPresent(rig.memfd) <= 4);
  assert.ok(rig.stats().evicted.dirty >= 28);
  // Every punch of a dirty page came after the write-back of it: the store holds it.
  for (let p = 0; p < 32; p++) assert.deepEqual(await rig.done(rig.read(a, p)), page(p + 1), `page ${p}`);
  // The order for one page: protect, pread, (write), punch.
  const c = rig.kernel.calls;
  const i = c.indexOf(`protect ${a.uffd} 0`, c.indexOf(`zeropage ${a.uffd} 0`));
  assert.ok(i >= 0 && i < c.indexOf(`pread ${rig.memfd} 0`) && c.indexOf(`pread ${rig.memfd} 0`) < c.indexOf(`punch ${rig.memfd} 0`));
});

test('a page re-dirtied during its write-back is not punched, stays dirty, and its last write survives', async () => {
  const rig = new Rig({ pages: 8, cacheBytes: null });
  const a = rig.attach();
  await rig.done(rig.write(a, 0, page(1)));
  const release = rig.store.holdWrites();
  rig.pager.setBudget(rig.key, 0); // nothing to evict yet; start the write-back ourselves
  const wb = rig.pager.evictor.writeBack(rig.pager.region(rig.key), [0], 'evict');
  await rig.store.writeHeld();
  assert.ok(a.wp.has(0), 'protected during the write-back');
  await rig.write(a, 0, page(2)); // blocks in a WP fault, the pager re-dirties the page and lets it go
  release();
  await wb;
  await rig.settle();
  assert.equal(rig.kernel.present(rig.memfd, 0)![0], 2, 'not punched');
  assert.equal(rig.stats().dirtyPages, 1);
  assert.equal(rig.stats().evicted.dirty, 0);
  assert.deepEqual(rig.store.page(rig.regionId, 0), page(1));
  // It is written again later, with the new bytes.
  await rig.pager.sync(rig.key);
  assert.deepEqual(rig.store.page(rig.regionId, 0), page(2));
});

test('a writer blocked in a WP fault during write-back resumes after the punch with the saved bytes', async () => {
  const rig = new Rig({ pages: 8, cacheBytes: null });
  const a = rig.attach();
  await rig.done(rig.write(a, 0, page(1)));
  const release = rig.store.holdWrites();
  const wb = rig.pager.evictor.writeBack(rig.pager.region(rig.key), [0], 'evict');
  await rig.store.writeHeld();
  // The fault is raised but its event has not reached the pager when the ack comes.
  rig.thread.remove(a.attachment);
  let resumed = false;
  const w = rig.write(a, 0, Buffer.from([9])).then((b) => ((resumed = true), b));
  release();
  await wb;
  assert.equal(rig.kernel.present(rig.memfd, 0), null, 'punched');
  assert.equal(resumed, false, 'the writer retried and faults MISSING now');
  rig.thread.add({ attachment: a.attachment, uffd: a.uffd, pidfd: null, region: rig.key, start: a.base, length: a.length, pageSize: PS, writeProtect: true });
  const after = await rig.done(w); // woken by the post-punch wake, faults MISSING, gets the saved bytes
  assert.equal(after[0], 9);
  assert.deepEqual(after.subarray(1), page(1).subarray(1));
});

test('a store refusing writes stalls eviction with one log line and a stat, and loses nothing', async () => {
  const rig = new Rig({ pages: 16, budgetPages: 4, cacheBytes: null });
  const a = rig.attach();
  for (let p = 0; p < 4; p++) await rig.done(rig.write(a, p, page(p + 1)));
  rig.store.refuseWrites = true;
  const blocked = rig.write(a, 4, page(5)); // over budget: waits for a write-back that cannot finish
  for (let i = 0; i < 20; i++) await new Promise((resolve) => setTimeout(resolve, 2));
  const msg = 'write-back stalled: dirty pages stay resident and are retried until a memory server acknowledges them';
  assert.equal(rig.log.count(msg), 1);
  assert.equal(rig.stats().writeBack.stalled, true);
  assert.equal(rig.stats().writeBack.stalls, 1);
  for (let p = 0; p < 4; p++) assert.equal(rig.kernel.present(rig.memfd, p)![0], p + 1, `page ${p} still resident`);
  assert.ok(rig.store.writes > 1, 'retried');
  rig.store.refuseWrites = false;
  await rig.done(blocked);
  assert.equal(rig.log.count('write-back resumed'), 1);
  assert.equal(rig.stats().writeBack.stalled, false);
  for (let p = 0; p < 5; p++) assert.equal((await rig.done(rig.read(a, p)))[0], p + 1);
});

test('sync writes back every dirty page, leaves them resident and clean, then syncs the store', async () => {
  const rig = new Rig({ pages: 100, cacheBytes: null, pager: { writeBatchPages: 8 } });
  const a = rig.attach();
  for (let p = 0; p < 40; p++) await rig.done(rig.write(a, p, page(p)));
  const progress: number[] = [];
  await rig.pager.sync(rig.key, (p) => progress.push(p.done));
  assert.equal(rig.stats().dirtyPages, 0);
  assert.equal(rig.stats().residentPages, 40);
  assert.equal(rig.store.syncs, 1);
  assert.equal(progress[0], 0);
  assert.equal(progress.at(-1), 40);
  for (let p = 0; p < 40; p++) assert.deepEqual(rig.store.page(rig.regionId, p), page(p));
  assert.ok(a.wp.has(7), 'clean again: protected');
  // The next write is seen again.
  await rig.done(rig.write(a, 7, page(0x77)));
  assert.equal(rig.stats().dirtyPages, 1);
});

test('a process whose mapping is gone (ENOENT: exiting, or it unmapped the region) is torn down; the sync goes on', async () => {
  const rig = new Rig({ pages: 16, cacheBytes: null });
  const a = rig.attach();
  const b = rig.attach();
  for (let p = 0; p < 4; p++) await rig.done(rig.write(a, p, page(p + 1)));
  rig.kernel.inject('writeProtect', 'ENOENT', b.uffd);
  await rig.pager.sync(rig.key);
  assert.deepEqual(rig.gone, [b.attachment]);
  for (let p = 0; p < 4; p++) assert.deepEqual(rig.store.page(rig.regionId, p), page(p + 1));
  assert.equal(rig.stats().dirtyPages, 0);
});

test('evictAll drops every clean page now and leaves dirty ones', async () => {
  const rig = new Rig({ pages: 16 });
  const a = rig.attach();
  for (let p = 0; p < 6; p++) await rig.done(rig.read(a, p));
  await rig.done(rig.write(a, 6, page(6)));
  assert.equal(rig.pager.evictAll(rig.key), 6);
  assert.equal(rig.stats().residentPages, 1);
  assert.equal(rig.kernel.presentCount(rig.memfd), 1);
  // Victims wait in the cache: reading them again costs no remote read.
  const reads = rig.store.reads;
  await rig.done(rig.read(a, 3));
  assert.equal(rig.store.reads, reads);
  assert.equal(rig.stats().faults.cacheHit, 1);
});

test('drain writes back all dirty pages of all regions', async () => {
  const rig = new Rig({ pages: 16 });
  const a = rig.attach();
  for (let p = 0; p < 10; p++) await rig.done(rig.write(a, p, page(p + 100)));
  const res = await rig.pager.drain(10_000);
  assert.deepEqual(res, { complete: true, dirtyLeft: 0 });
  for (let p = 0; p < 10; p++) assert.deepEqual(rig.store.page(rig.regionId, p), page(p + 100));
  assert.equal(rig.log.count('drained: 10 dirty page(s) written back'), 1);
});

test('drain skips clean regions: it asks no memory server anything', async () => {
  const rig = new Rig({ pages: 16 });
  const a = rig.attach();
  await rig.done(rig.read(a, 1));
  const syncs = rig.store.syncs;
  assert.deepEqual(await rig.pager.drain(10_000), { complete: true, dirtyLeft: 0 });
  assert.equal(rig.store.syncs, syncs);
  assert.equal(rig.log.count('drained: 0 dirty page(s) written back'), 1);
});

test('drain gives up at its timeout and says how many dirty pages are left', async () => {
  const rig = new Rig({ pages: 16 });
  const a = rig.attach();
  for (let p = 0; p < 3; p++) await rig.done(rig.write(a, p, page(p)));
  rig.store.refuseWrites = true;
  const res = await rig.pager.drain(20);
  assert.equal(res.complete, false);
  assert.equal(res.dirtyLeft, 0 + rig.stats().dirtyPages);
  assert.equal(rig.log.count('drain timed out: dirty pages were not all written back'), 1);
  rig.store.refuseWrites = false;
  await rig.settle();
});

test('two attachments: a dirty page is protected in both before write-back, and both are woken after the punch', async () => {
  const rig = new Rig({ pages: 8, cacheBytes: null });
  const a = rig.attach();
  const b = rig.attach();
  await rig.done(rig.write(a, 0, page(1)));
  await rig.done(rig.write(b, 0, Buffer.from([2]))); // B writes too: unprotected in both
  assert.ok(!a.wp.has(0) && !b.wp.has(0));
  await rig.pager.evictor.writeBack(rig.pager.region(rig.key), [0], 'evict');
  const c = rig.kernel.calls;
  const pread = c.lastIndexOf(`pread ${rig.memfd} 0`);
  assert.ok(c.lastIndexOf(`protect ${a.uffd} 0`) < pread && c.lastIndexOf(`protect ${b.uffd} 0`) < pread);
  assert.equal(rig.kernel.present(rig.memfd, 0), null);
  const expect = Buffer.concat([Buffer.from([2]), page(1).subarray(1)]);
  assert.deepEqual(await rig.done(rig.read(b, 0)), expect);
  assert.deepEqual(await rig.done(rig.read(a, 0)), expect);
});

test('two attachments: pages staged in the cache are protected in both, so a cache hit through one leaves the other protected', async () => {
  const rig = new Rig({ pages: 8 });
  const a = rig.attach();
  const b = rig.attach();
  await rig.done(rig.read(a, 1));
  rig.pager.evictAll(rig.key); // punch drops markers (fake kernel); the victim goes to the cache
  assert.ok(a.wp.has(1) && b.wp.has(1), 'markers re-armed before the cache put');
  await rig.done(rig.read(a, 1)); // installed by the fault thread from the cache, protected in A
  await rig.done(rig.write(b, 1, Buffer.from([5])));
  assert.equal(rig.stats().dirtyPages, 1, "B's write was seen");
});

test('model check: random writes over a region 4x its budget, two attachments, many eviction cycles: nothing lost', async () => {
  for (const seed of [1, 2, 3]) {
    const rand = rng(seed);
    const pages = 48;
    const rig = new Rig({ pages, budgetPages: 12, cacheBytes: seed === 2 ? null : 6 * PS, pager: { writeBatchPages: 4, maxWritesInFlight: 2 } });
    const atts = [rig.attach(), rig.attach()];
    const model = new Map<number, Buffer>();
    const expected = (p: number) => model.get(p) ?? page(0);
    const burst = new Set<number>();
    const late: Promise<void>[] = [];
    let redirtied = 0;
    const access = (p: number, step: number, write: boolean): Promise<void> => {
        const m = atts[Math.floor(rand() * atts.length)]!;
        if (write) {
          const off = Math.floor(rand() * (PS - 8));
          const data = Buffer.alloc(8);
          data.writeUInt32LE(step, 0);
          data.writeUInt32LE(p, 4);
          const next = Buffer.from(expected(p));
          data.copy(next, off);
          model.set(p, next);
          return rig.write(m, p, data, off).then((got) => assert.deepEqual(got, next, `seed ${seed} step ${step} write page ${p}`));
        }
        const want = expected(p);
        return rig.read(m, p).then((got) => assert.deepEqual(got, want, `seed ${seed} step ${step} read page ${p}`));
    };
    // The adversary: while a page's write-back is out, write it again (a re-dirty), sometimes.
    rig.store.onWrite = (written) => {
      const p = written[Math.floor(rand() * written.length)]!;
      if (rand() < 0.5 || burst.has(p)) return;
      burst.add(p);
      redirtied++;
      const w = access(p, 1_000_000 + redirtied, true).finally(() => burst.delete(p));
      late.push(w);
      // Half the time the ack waits for the write (a re-dirty seen before the ack), else it races it.
      return rand() < 0.5 ? w : undefined;
    };
    for (let step = 0; step < 400; step++) {
      rig.store.writeDelayMs = rand() < 0.2 ? 1 : 0;
      // A burst of accesses to distinct pages, concurrently.
      burst.clear();
      const n = 1 + Math.floor(rand() * 4);
      while (burst.size < n) burst.add(Math.floor(rand() * pages));
      const ops = [...burst].map((p) => access(p, step, rand() < 0.5));
      const r = rand();
      if (r < 0.03) rig.pager.evictAll(rig.key);
      else if (r < 0.05) ops.push(rig.pager.sync(rig.key).then(() => undefined));
      await rig.done(Promise.all(ops));
      await rig.done(Promise.all(late.splice(0)));
      assert.ok(rig.stats().residentPages <= 12, `seed ${seed} step ${step}: ${rig.stats().residentPages} resident over a budget of 12`);
    }
    rig.store.onWrite = null;
    assert.equal(rig.stats().writeBack.stalls, 0, 'the store never refused a write');
    assert.ok(redirtied > 20, `the adversary re-dirtied pages during write-back (seed ${seed}): ${redirtied}`);
    if (rig.cache === null) assert.ok(rig.kernel.maxPresent(rig.memfd) <= 12);
    const s = rig.stats();
    assert.ok(s.evicted.dirty > 50 && s.evicted.clean > 20, `many eviction cycles (seed ${seed}): ${JSON.stringify(s.evicted)}`);
    for (let p = 0; p < pages; p++) {
      assert.deepEqual(await rig.done(rig.read(atts[p % 2]!, p)), expected(p), `seed ${seed} final page ${p}`);
    }
    // After a drain the store alone holds every byte.
    await rig.pager.drain(10_000);
    for (const [p, b] of model) {
      const stored = rig.store.page(rig.regionId, p);
      const resident = rig.kernel.present(rig.memfd, p);
      assert.deepEqual(stored ?? resident, b, `seed ${seed} stored page ${p}`);
      if (stored !== null) assert.deepEqual(stored, b);
    }
  }
});
