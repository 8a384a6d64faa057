// The pool's placement, replication, failover and repair over in-memory stores that can be killed,
// partitioned or wiped. (Across real hosts, the multi-host tests drive the same code over gRPC.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { MemoryPool, type PoolMember } from '../../daemon/remote/pool';
import { rank } from '../../daemon/remote/placement';
import { PageStoreError, type RegionRef } from '../../daemon/remote/types';
import { MemStore, readsOf } from './memstore';

const logger = pino({ level: 'silent' });
const region: RegionRef = { id: 'b3c9a7d2-0000-4000-8000-000000000001', pageSize: 4096 };

function setup(n: number, replicas: number | null = 2) {
  const stores = Array.from({ length: n }, (_, i) => new MemStore(`10.0.0.${i + 1}:7070`));
  const member = (s: MemStore): PoolMember => ({ id: s.id, weight: 1, store: s, health: async () => !s.down });
  const pool = new MemoryPool(stores.map(member), { logger, replicas, downAfterMs: 0, repairBytesPerSecond: 1e12 });
  return { stores, pool, member };
}

function page(p: number, version: number): Buffer {
  const b = Buffer.alloc(4096);
  for (let i = 0; i < 4096; i += 8) b.writeUInt32LE((p * 2654435761 + version) >>> 0, i);
  return b;
}

async function writeAll(pool: MemoryPool, pages: number[], version: number): Promise<void> {
  for (let i = 0; i < pages.length; i += 64) {
    const chunk = pages.slice(i, i + 64);
    await pool.write(region, chunk, Buffer.concat(chunk.map((p) => page(p, version))));
  }
}

async function verifyAll(pool: MemoryPool, pages: number[], version: (p: number) => number): Promise<void> {
  const got = await pool.read(region, pages);
  assert.deepEqual(got.absent, []);
  for (const p of pages) assert.ok(got.present.get(p)!.equals(page(p, version(p))), `page ${p} has the wrong bytes`);
}

function copies(stores: MemStore[], p: number): number {
  return stores.filter((s) => s.holds(region, p)).length;
}

test('placement: rendezvous order is stable and adding a server moves only the groups it now ranks first', () => {
  const three = ['a:1', 'b:1', 'c:1'].map((id) => ({ id, weight: 1 }));
  const four = [...three, { id: 'd:1', weight: 1 }];
  let moved = 0;
  for (let g = 0; g < 2000; g++) {
    const before = rank(three, 'r', g);
    const after = rank(four, 'r', g);
    assert.deepEqual(rank(three, 'r', g), before);
    if (after[0] !== before[0]) {
      moved++;
      assert.equal(after[0], 'd:1', 'a group moved to a server other than the new one');
    }
    assert.deepEqual(after.filter((s) => s !== 'd:1'), before, 'the relative order of old servers changed');
  }
  // ~1/4 of groups should move to the newcomer.
  assert.ok(moved > 350 && moved < 650, `moved ${moved} of 2000`);
});

test('placement: weights shift the share of first places', () => {
  const c = [{ id: 'a', weight: 3 }, { id: 'b', weight: 1 }];
  let a = 0;
  for (let g = 0; g < 4000; g++) if (rank(c, 'r', g)[0] === 'a') a++;
  assert.ok(a > 2700 && a < 3300, `a ranked first ${a} of 4000 times`);
});

test('writes go to R replicas and reads return the bytes; absent pages come back absent', async () => {
  const { stores, pool } = setup(3);
  const pages = Array.from({ length: 300 }, (_, i) => i);
  await writeAll(pool, pages, 1);
  for (const p of pages) assert.equal(copies(stores, p), 2, `page ${p}`);
  await verifyAll(pool, pages, () => 1);
  const got = await pool.read(region, [5000, 5001]);
  assert.deepEqual(got.absent.sort(), [5000, 5001]);
  assert.equal(got.present.size, 0);
});

test('a dead replica: reads fail over, writes go to the next server, repair restores R copies', async () => {
  const { stores, pool } = setup(3);
  const pages = Array.from({ length: 256 }, (_, i) => i);
  await writeAll(pool, pages, 1);
  stores[0]!.down = true;
  await verifyAll(pool, pages, () => 1); // failover, no error
  await writeAll(pool, pages.filter((p) => p % 3 === 0), 2); // substitutes take writes
  await verifyAll(pool, pages, (p) => (p % 3 === 0 ? 2 : 1)); // newest versions, before any repair
  assert.ok(pool.repairStatus().underReplicatedGroups > 0);
  await pool.checkHealth(); // declares stores[0] down (downAfterMs 0)
  await pool.checkHealth();
  assert.equal(pool.servers().find((s) => s.id === stores[0]!.id)!.state, 'down');
  await pool.repair();
  assert.equal(pool.repairStatus().underReplicatedGroups, 0);
  const live = stores.slice(1);
  for (const p of pages) assert.equal(copies(live, p), 2, `page ${p} has ${copies(live, p)} live copies`);
  await verifyAll(pool, pages, (p) => (p % 3 === 0 ? 2 : 1));
  // Every live copy is the newest version.
  for (const p of pages) for (const s of live) if (s.holds(region, p)) assert.ok(s.pages.get(`${region.id}/${p}`)!.equals(page(p, p % 3 === 0 ? 2 : 1)));
});

test('a server restarted empty is refilled, and its "absent" answers are never believed', async () => {
  const { stores, pool } = setup(3);
  const pages = Array.from({ length: 128 }, (_, i) => i);
  await writeAll(pool, pages, 7);
  stores[1]!.pages.clear(); // restarted without a data dir
  await verifyAll(pool, pages, () => 7); // other replica answers for written pages
  pool.serverLostData(stores[1]!.id);
  await pool.repair();
  for (const p of pages) assert.equal(copies(stores, p), 2);
  assert.equal(pool.repairStatus().underReplicatedGroups, 0);
});

test('fewer live servers than R: the write fails (never acknowledged with fewer copies) and nothing is lost', async () => {
  const { stores, pool } = setup(2);
  await writeAll(pool, [1, 2, 3], 1);
  stores[0]!.down = true;
  await assert.rejects(pool.write(region, [1], page(1, 2)), (e: unknown) => e instanceof PageStoreError && /1 of 2 replicas acknowledged/.test(e.message));
  stores[0]!.down = false;
  await writeAll(pool, [1], 2);
  await verifyAll(pool, [1, 2, 3], (p) => (p === 1 ? 2 : 1));
});

test('adding a fourth server moves groups onto it by repair without losing any', async () => {
  const { stores, pool, member } = setup(3);
  const pages = Array.from({ length: 1024 }, (_, i) => i);
  await writeAll(pool, pages, 3);
  const d = new MemStore('10.0.0.4:7070');
  pool.addMember(member(d));
  await pool.repair();
  const all = [...stores, d];
  assert.ok(d.pages.size > 0, 'the new server received no groups');
  await verifyAll(pool, pages, () => 3);
  for (const p of pages) assert.ok(copies(all, p) >= 2);
});

test('sync tolerates a dead replica when every page is synced elsewhere, and fails when some page is not', async () => {
  const { stores, pool } = setup(3);
  const pages = Array.from({ length: 256 }, (_, i) => i);
  await writeAll(pool, pages, 1);
  stores[0]!.down = true; // dead, not yet declared down
  await pool.sync(region);
  stores[1]!.down = true; // now some groups have both copies on dead servers
  await assert.rejects(pool.sync(region), { message: `${stores[0]!.id}: connection refused` });
});

test('a changed instance id (the server restarted) makes the pool refill that server', async () => {
  const { stores } = setup(3);
  const ids = new Map(stores.map((s) => [s.id, 'run-1']));
  const members = stores.map((s): PoolMember => ({ id: s.id, weight: 1, store: s, health: async () => !s.down, instance: async () => ids.get(s.id)! }));
  const p = new MemoryPool(members, { logger, replicas: 2, downAfterMs: 0, repairBytesPerSecond: 1e12 });
  const pages = Array.from({ length: 256 }, (_, i) => i);
  for (let i = 0; i < pages.length; i += 64) {
    const chunk = pages.slice(i, i + 64);
    await p.write(region, chunk, Buffer.concat(chunk.map((x) => page(x, 5))));
  }
  await p.checkHealth();
  const held = stores[2]!.pages.size;
  assert.ok(held > 0);
  assert.equal(p.servers()[2]!.instanceId, 'run-1');
  stores[2]!.pages.clear();
  ids.set(stores[2]!.id, 'run-2');
  await p.checkHealth();
  await p.repair();
  assert.equal(p.repairStatus().restartsDetected, 1);
  assert.equal(p.servers()[2]!.instanceId, 'run-2');
  assert.equal(stores[2]!.pages.size, held);
  for (const x of pages) assert.equal(copies(stores, x), 2);
  assert.equal(p.repairStatus().underReplicatedGroups, 0);
});

test('a durable server that restarted keeping its pages, the only copy (R=1): its pages still read', async () => {
  // One server, one copy (R=1), with a data dir: it was stopped and started again, keeping every page.
  const store = new MemStore('10.0.0.1:7070');
  let run = 'run-1';
  const m: PoolMember = { id: store.id, weight: 1, store, health: async () => true, instance: async () => run };
  const p = new MemoryPool([m], { logger, replicas: 1, downAfterMs: 0, repairBytesPerSecond: 1e12 });
  const pages = Array.from({ length: 128 }, (_, i) => i);
  await writeAll(p, pages, 3);
  await p.checkHealth();
  run = 'run-2';
  await p.checkHealth();
  assert.equal(p.repairStatus().restartsDetected, 1);
  await verifyAll(p, pages, () => 3);
});

test('a durable server that restarted without its latest writes: every page is back to two copies, reads right', async () => {
  const { stores } = setup(3);
  const runs = new Map(stores.map((s) => [s.id, 'run-1']));
  const members = stores.map((s): PoolMember => ({ id: s.id, weight: 1, store: s, health: async () => true, instance: async () => runs.get(s.id)! }));
  const p = new MemoryPool(members, { logger, replicas: 2, downAfterMs: 0, repairBytesPerSecond: 1e12 });
  const pages = Array.from({ length: 256 }, (_, i) => i);
  await writeAll(p, pages, 4);
  await p.checkHealth();
  // Killed before its journal had the last writes: it comes back without some of its pages.
  const victim = stores[1]!;
  const lost = [...victim.pages.keys()].filter((_, i) => i % 3 === 0);
  assert.ok(lost.length > 0);
  for (const k of lost) victim.pages.delete(k);
  runs.set(victim.id, 'run-2');
  await p.checkHealth();
  for (let i = 0; i < 500 && pages.some((x) => copies(stores, x) < 2); i++) await new Promise((r) => setTimeout(r, 5));
  for (const x of pages) assert.equal(copies(stores, x), 2, `page ${x}`);
  await verifyAll(p, pages, () => 4);
  assert.equal(p.repairStatus().underReplicatedGroups, 0);
});

test('a write racing the repair copy of its group is never overwritten by the older copy', async () => {
  const { stores, pool } = setup(3);
  const pages = Array.from({ length: 16 }, (_, i) => i); // one group
  await writeAll(pool, pages, 1);
  const holders = stores.filter((s) => s.holds(region, 0));
  const target = stores.find((s) => !s.holds(region, 0))!;
  holders[0]!.down = true;
  // The target's first write (repair's copy of version 1) is held until a newer write was issued.
  let release!: () => void;
  const gate = new Promise<void>((res) => (release = res));
  const write = target.write.bind(target);
  let first = true;
  target.write = async (rg, ps, data) => {
    if (first) {
      first = false;
      await gate;
    }
    return write(rg, ps, data);
  };
  await pool.checkHealth();
  await pool.checkHealth(); // holders[0] down: repair copies to the target, held at the gate
  const repaired = pool.repair();
  await new Promise((res) => setImmediate(res));
  const newer = writeAll(pool, pages, 2);
  await new Promise((res) => setImmediate(res));
  release();
  await Promise.all([repaired, newer]);
  await pool.repair();
  await verifyAll(pool, pages, () => 2);
  for (const s of [holders[1]!, target]) for (const p of pages) assert.ok(s.pages.get(`${region.id}/${p}`)!.equals(page(p, 2)), `${s.id} page ${p}`);
});

test('invalid writes are refused with the sizes named', async () => {
  const { pool } = setup(2);
  await assert.rejects(pool.write(region, [1, 2], Buffer.alloc(4096)), { message: `write ${region.id}: Expected 8192 bytes for data but received 4096` });
  await assert.rejects(pool.read({ id: region.id, pageSize: 8192 }, [1]), {
    message: `region ${region.id}: Expected page size 4096 but received 8192`,
  });
});

test('a read spanning many groups asks each server once; a failing one is settled group by group elsewhere', async () => {
  const { stores, pool } = setup(3);
  const pages = Array.from({ length: 256 }, (_, p) => p); // 16 groups of 64 KiB
  await pool.write(region, pages, Buffer.concat(pages.map((p) => page(p, 1))));
  const readsBefore = readsOf(stores);
  let got = await pool.read(region, pages);
  assert.equal(got.present.size, 256);
  for (const p of pages) assert.deepEqual(got.present.get(p), page(p, 1));
  const reads = readsOf(stores) - readsBefore;
  assert.ok(reads <= stores.length, `${reads} requests for one read`);
  // A server that dies: its share is read again from the other replica of each of its groups.
  stores[0]!.down = true;
  got = await pool.read(region, pages);
  assert.equal(got.present.size, 256);
  for (const p of pages) assert.deepEqual(got.present.get(p), page(p, 1));
});

test('removing a server moves its groups to the servers ranked next, then forgets it; nothing is lost', async () => {
  const { stores, pool } = setup(4);
  const pages = Array.from({ length: 1024 }, (_, i) => i);
  await writeAll(pool, pages, 1);
  const gone = stores[1]!;
  const held = gone.pages.size;
  assert.ok(held > 0);
  const drained = pool.removeMember(gone.id);
  assert.equal(pool.servers().find((s) => s.id === gone.id)!.draining, true);
  await drained;
  assert.deepEqual(pool.servers().map((s) => s.id), [stores[0]!.id, stores[2]!.id, stores[3]!.id]);
  assert.equal(pool.repairStatus().pendingGroups, 0);
  assert.equal(pool.repairStatus().copiedBytes, held * 4096); // exactly its pages moved
  const three = [0, 2, 3].map((i) => ({ id: stores[i]!.id, weight: 1 }));
  for (const p of pages) {
    const want = rank(three, region.id, Math.floor(p / 16)).slice(0, 2);
    for (const s of stores) if (want.includes(s.id)) assert.ok(s.holds(region, p), `page ${p} is not on ${s.id}`);
  }
  const writes = gone.writes;
  await writeAll(pool, pages, 2);
  assert.equal(gone.writes, writes, 'a removed server was written');
  gone.down = true;
  await verifyAll(pool, pages, () => 2);
});

test('removing a server that is not in the pool, or the last one, is refused', async () => {
  const { stores, pool } = setup(2);
  await assert.rejects(pool.removeMember('10.9.9.9:7070'), { message: 'memory server 10.9.9.9:7070 is not in the pool' });
  await writeAll(pool, [0, 1], 1);
  await pool.removeMember(stores[0]!.id);
  await assert.rejects(pool.removeMember(stores[1]!.id), { message: `memory server ${stores[1]!.id} is the last one of the pool: add another before removing it` });
  await verifyAll(pool, [0, 1], () => 1);
});
