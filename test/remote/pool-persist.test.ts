// The pool's placement record across a daemon restart (a new MemoryPool on the same state dir):
// pages acknowledged on substitutes are found there, a rendezvous holder that came back empty or
// with stale copies is never believed, a clean close leaves a snapshot, a region delete drops it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { MemoryPool, type PoolMember } from '../../daemon/remote/pool';
import type { RegionRef } from '../../daemon/remote/types';
import { MemStore } from './memstore';

const logger = pino({ level: 'silent' });
const region: RegionRef = { id: 'b3c9a7d2-0000-4000-8000-0000000000aa', pageSize: 4096 };
const PAGES = Array.from({ length: 512 }, (_, i) => i); // 32 groups

function page(p: number, version: number): Buffer {
  const b = Buffer.alloc(4096);
  for (let i = 0; i < 4096; i += 8) b.writeUInt32LE((p * 2654435761 + version) >>> 0, i);
  return b;
}

function cluster(t: { after(fn: () => void): void }, suspectAfter = 2) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-pool-state-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const stores = Array.from({ length: 3 }, (_, i) => new MemStore(`10.0.0.${i + 1}:7070`));
  const member = (s: MemStore): PoolMember => ({ id: s.id, weight: 1, store: s, health: async () => !s.down });
  const pool = (stateDir: string | null) => new MemoryPool(stores.map(member), { logger, replicas: 2, downAfterMs: 0, repairBytesPerSecond: 1e12, stateDir, suspectAfter });
  return { dir, stores, pool };
}

async function writeAll(pool: MemoryPool, version: number): Promise<void> {
  for (let i = 0; i < PAGES.length; i += 64) {
    const chunk = PAGES.slice(i, i + 64);
    await pool.write(region, chunk, Buffer.concat(chunk.map((p) => page(p, version))));
  }
}

/** Pages that do not read back as `version` (absent counts as wrong: it would be a zero page). */
async function wrongPages(pool: MemoryPool, version: number): Promise<number[]> {
  const got = await pool.read(region, PAGES);
  return PAGES.filter((p) => !got.present.get(p)?.equals(page(p, version)));
}

test('after a restart, pages acknowledged on substitutes are read there, not as absent from a holder that came back empty', async (t) => {
  const { dir, stores, pool } = cluster(t);
  const p1 = pool(dir);
  await writeAll(p1, 1);
  stores[0]!.down = true;
  await writeAll(p1, 2); // groups held by stores[0] go to a substitute
  // The substitutes' writes started a repair pass in p1; it gives up on the down server. A pass
  // still running at the "kill" would go on copying, journaling and discarding behind p2's back
  // (which a killed daemon cannot do): it failed this test about once in a full suite.
  for (let i = 0; i < 10_000 && p1.repairStatus().running; i++) await new Promise((r) => setImmediate(r));
  assert.equal(p1.repairStatus().running, false);
  // kill -9: p1 is dropped without close; stores[0] comes back empty (an in-memory server restarted).
  stores[0]!.down = false;
  stores[0]!.pages.clear();
  const p2 = pool(dir);
  assert.deepEqual(await wrongPages(p2, 2), []);
  // Without the record, the same cluster reads the empty server's "absent" as zero pages.
  assert.ok((await wrongPages(pool(null), 2)).length > 0, 'the scenario did not exercise substitutes');
  // Repair (the record says what stores[0] lacks) brings every page back to two copies.
  await p2.repair();
  assert.equal(p2.repairStatus().underReplicatedGroups, 0);
  for (const p of PAGES) assert.equal(stores.filter((s) => s.holds(region, p)).length >= 2, true, `page ${p}`);
  await p2.close();
  assert.deepEqual(fs.readdirSync(path.join(dir, 'placement')).sort(), [`${region.id}.1.log`, `${region.id}.snap`]);
  const p3 = pool(dir);
  stores[1]!.down = true; // any one server may go now
  assert.deepEqual(await wrongPages(p3, 2), []);
  stores[1]!.down = false;
  await p3.deleteRegion(region.id);
  assert.deepEqual(fs.readdirSync(path.join(dir, 'placement')), []);
  const p4 = pool(dir);
  assert.deepEqual((await p4.read(region, [0, 1])).absent.sort(), [0, 1]);
});

test('a server back from a partition with stale copies is not read for pages rewritten while it was away, even after a restart', async (t) => {
  const { dir, stores, pool } = cluster(t);
  const p1 = pool(dir);
  await writeAll(p1, 1);
  const away = stores[2]!;
  const staleCount = away.pages.size;
  assert.ok(staleCount > 0);
  away.down = true; // partitioned: keeps its version-1 copies
  await writeAll(p1, 2);
  away.down = false; // the partition heals
  assert.deepEqual(await wrongPages(p1, 2), []);
  const p2 = pool(dir); // and farmemd restarted meanwhile
  assert.deepEqual(await wrongPages(p2, 2), []);
  // Without the record, the stale copies are read.
  assert.ok((await wrongPages(pool(null), 2)).length > 0, 'the scenario did not leave stale copies');
  // Repair rewrites the stale copies on the groups it ranks; only then is it read again.
  await p2.repair();
  for (const [k, b] of away.pages) {
    const p = Number(k.split('/')[1]);
    if (b.equals(page(p, 1))) {
      // A stale copy left behind must belong to a group no longer placed on it.
      stores.forEach((s) => s !== away && (s.down = true));
      const got = await p2.read(region, [p]).catch(() => null);
      stores.forEach((s) => (s.down = false));
      assert.equal(got?.present.get(p)?.equals(page(p, 1)) ?? false, false, `page ${p} was read stale from ${away.id}`);
    }
  }
  assert.deepEqual(await wrongPages(p2, 2), []);
});

test('a write that failed on a server mid-partition never makes its old copy current', async (t) => {
  // (Not made suspect by its failures: suspect servers take writes last, and page 1 must land on it.)
  const { dir, stores, pool } = cluster(t, 1000);
  const p1 = pool(dir);
  await writeAll(p1, 1);
  const away = stores.find((s) => s.holds(region, 0))!;
  const others = stores.filter((s) => s !== away);
  // Writes of page 0 fail on `away` (lost in the partition; repair's copies too), the rest get through.
  away.refuseWrite = (ps) => ps.includes(0);
  await p1.write(region, [0], page(0, 2));
  // A later write of another page of the group lands on `away`: page 0 stays off it.
  await p1.write(region, [1], page(1, 2));
  assert.ok(away.pages.get(`${region.id}/1`)!.equals(page(1, 2)));
  await p1.repair().catch(() => undefined);
  assert.ok(away.pages.get(`${region.id}/0`)!.equals(page(0, 1)), 'away should still hold the old page 0');
  for (const p of [p1, pool(dir)]) {
    others.forEach((s) => (s.down = true));
    await assert.rejects(p.read(region, [0]), /no replica could answer/);
    assert.ok((await p.read(region, [1])).present.get(1)!.equals(page(1, 2)));
    others.forEach((s) => (s.down = false));
    assert.ok((await p.read(region, [0])).present.get(0)!.equals(page(0, 2)));
  }
  // Once repair could rewrite it there, `away` is a holder of page 0 again.
  away.refuseWrite = null;
  const p2 = pool(dir);
  await p2.repair();
  others.forEach((s) => (s.down = true));
  const got = await p2.read(region, [0]).catch(() => null);
  others.forEach((s) => (s.down = false));
  if (got !== null) assert.ok(got.present.get(0)!.equals(page(0, 2)));
  assert.ok(away.pages.get(`${region.id}/0`)!.equals(page(0, 2)) || !(await p2.read(region, [0])).present.get(0)!.equals(page(0, 1)));
});

test('a server that restarted empty while farmemd was down is noticed (its last instance id is kept) and refilled', async (t) => {
  const { dir, stores } = cluster(t);
  const ids = new Map(stores.map((s) => [s.id, 'run-1']));
  const pool = () =>
    new MemoryPool(
      stores.map((s): PoolMember => ({ id: s.id, weight: 1, store: s, health: async () => !s.down, instance: async () => ids.get(s.id)! })),
      { logger, replicas: 2, downAfterMs: 0, repairBytesPerSecond: 1e12, stateDir: dir },
    );
  const p1 = pool();
  await writeAll(p1, 1);
  await p1.checkHealth();
  assert.deepEqual(JSON.parse(fs.readFileSync(path.join(dir, 'instances.json'), 'utf8')), Object.fromEntries(ids));
  await p1.close();
  const held = stores[0]!.pages.size;
  stores[0]!.pages.clear();
  ids.set(stores[0]!.id, 'run-2');
  const p2 = pool();
  await p2.read(region, [0]); // loads the region's record
  await p2.checkHealth();
  await p2.repair();
  assert.equal(p2.repairStatus().restartsDetected, 1);
  assert.equal(stores[0]!.pages.size, held);
  assert.equal(JSON.parse(fs.readFileSync(path.join(dir, 'instances.json'), 'utf8'))[stores[0]!.id], 'run-2');
  assert.deepEqual(await wrongPages(p2, 1), []);
});

test('rewrites of written pages on their usual holders add nothing to the journal (steady state costs no fsync)', async (t) => {
  const { dir, pool } = cluster(t);
  const p = pool(dir);
  await writeAll(p, 1);
  const log = path.join(dir, 'placement', `${region.id}.0.log`);
  const size = fs.statSync(log).size;
  assert.ok(size > 0);
  await writeAll(p, 2);
  assert.equal(fs.statSync(log).size, size);
  await p.write(region, [PAGES.length], page(PAGES.length, 1)); // a page never written: recorded
  assert.ok(fs.statSync(log).size > size);
  assert.deepEqual(await wrongPages(pool(dir), 2), []);
});
