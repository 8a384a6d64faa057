// A deleted region stays deleted on the memory server: a late write (one that timed out at the daemon
// before the delete and still reaches the server after it) is acknowledged as superseded and not
// applied, so it cannot recreate pages that nobody would free. The rule holds also when the server had
// none of the region's pages, after kill -9 and a restart from the data dir, and through journal
// compaction; it lapses after TOMBSTONE_MS, and at most MAX_TOMBSTONES ids are kept.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_TOMBSTONES, SlabStore, TOMBSTONE_MS } from '../../daemon/memserver/slabs';
import { MemoryServerClient } from '../../daemon/remote/client';
import { afterCompaction, randomPages, rawStream, spawnServer, startServer, tmpDir } from './fixture';

const PS = 4096;

test('a write to a deleted region is acknowledged as superseded and stores nothing', async (t) => {
  const { server } = await startServer(t);
  const s = rawStream(server.address);
  t.after(() => s.close());
  const c = new MemoryServerClient({ address: server.address });
  t.after(() => c.close());
  const region = { id: 'gone-late', pageSize: PS };
  await c.write(region, [1, 2, 3], randomPages(3, PS));
  const before = (await c.stats()).usedBytes;
  await c.deleteRegion(region.id);
  const late = await s.send({ requestId: 1, region: region.id, pageSize: PS, op: 'write', pages: [1, 2, 3], data: randomPages(3, PS), versions: [] });
  assert.deepEqual([late.code, late.written, late.superseded], [0, 3, 3], 'acknowledged (the writer must not retry), not applied');
  const r = await c.read(region, [1, 2, 3]);
  assert.deepEqual([r.present.size, r.absent], [0, [1, 2, 3]]);
  const stats = await c.stats();
  assert.equal(stats.usedBytes, before - 3 * PS);
  assert.match(stats.metricsText, /farmem_memserver_pages_superseded_total 3\n/);

  // A server that held none of the region's pages (NOT_FOUND to the delete) refuses its late writes too.
  await c.deleteRegion('never-here'); // NOT_FOUND on the wire, which the client takes as done
  await c.write({ id: 'never-here', pageSize: PS }, [7], randomPages(1, PS));
  assert.deepEqual((await c.read({ id: 'never-here', pageSize: PS }, [7])).absent, [7]);

  // Other regions are not affected.
  const other = randomPages(1, PS);
  await c.write({ id: 'alive', pageSize: PS }, [7], other);
  assert.ok((await c.read({ id: 'alive', pageSize: PS }, [7])).present.get(7)!.equals(other));
});

test('a deleted region id lapses after TOMBSTONE_MS, and at most MAX_TOMBSTONES ids are kept', () => {
  const store = new SlabStore(1 << 20);
  const now = Date.now();
  store.deleteRegion('old', now - TOMBSTONE_MS - 1);
  store.deleteRegion('recent', now - TOMBSTONE_MS + 60_000);
  assert.equal(store.isDeleted('old', now), false);
  assert.equal(store.isDeleted('recent', now), true);
  assert.equal(store.write('old', PS, [0], randomPages(1, PS)), null);
  assert.equal(store.lastSuperseded, 0, 'a write long after the delete applies');
  assert.deepEqual(store.read('old', [0]).present, [0]);
  assert.deepEqual(store.deletedRegions(now), ['recent']);

  const many = new SlabStore(1 << 20);
  for (let i = 0; i <= MAX_TOMBSTONES; i++) many.deleteRegion(`r${i}`, now);
  assert.equal(many.deletedRegions(now).length, MAX_TOMBSTONES);
  assert.equal(many.isDeleted('r0', now), false, 'the oldest went first');
  assert.equal(many.isDeleted(`r${MAX_TOMBSTONES}`, now), true);
});

test('a deleted region stays deleted after kill -9 and a restart, and through journal compaction', async (t) => {
  const dir = tmpDir(t);
  const region = { id: 'gone-durable', pageSize: PS };
  const first = await spawnServer(t, ['--data-dir', dir, '--capacity', '64MiB']);
  const c1 = new MemoryServerClient({ address: first.address });
  await c1.write(region, [1, 2], randomPages(2, PS));
  await c1.deleteRegion(region.id);
  await c1.write({ id: 'kept', pageSize: PS }, [1], randomPages(1, PS));
  await c1.sync({ id: 'kept', pageSize: PS });
  first.child.kill('SIGKILL');
  await new Promise((r) => first.child.once('exit', r));
  await c1.close();

  const second = await spawnServer(t, ['--data-dir', dir, '--capacity', '64MiB']);
  const c2 = new MemoryServerClient({ address: second.address });
  await c2.write(region, [1, 2], randomPages(2, PS));
  assert.deepEqual((await c2.read(region, [1, 2])).absent, [1, 2], 'replayed from the journal');
  await c2.close();
  second.child.kill('SIGTERM');
  await new Promise((r) => second.child.once('exit', r));

  // Compaction rewrites the journal from the live pages: the deleted id goes with them.
  const c = await afterCompaction(t, dir, 64 * 1024, async (w) => {
    for (let i = 0; i < 8; i++) await w.write({ id: 'churn', pageSize: PS }, [0, 1, 2, 3], randomPages(4, PS));
    await w.sync({ id: 'churn', pageSize: PS });
  });
  await c.write(region, [3], randomPages(1, PS));
  assert.deepEqual((await c.read(region, [3])).absent, [3]);
  assert.equal((await c.read({ id: 'kept', pageSize: PS }, [1])).present.size, 1);
});
