// Old copies are freed after a move: when a group's placement changes (a server added, removed, or a
// fallback used while a holder was down and given back once it returned), the servers that no longer
// hold it discard its pages — only after the new placement is durable, so a crash at any discard
// leaves every page readable from what the journal says.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { MemoryPool, type PoolMember } from '../../daemon/remote/pool';
import { rank } from '../../daemon/remote/placement';
import { PageStoreError, type RegionRef } from '../../daemon/remote/types';
import { MemStore } from './memstore';

const logger = pino({ level: 'silent' });
const region: RegionRef = { id: 'c0ffee00-0000-4000-8000-0000000000d1', pageSize: 4096 };
const PAGES = Array.from({ length: 1024 }, (_, i) => i); // 64 groups of 16

function page(p: number, version: number): Buffer {
  const b = Buffer.alloc(4096);
  for (let i = 0; i < 4096; i += 8) b.writeUInt32LE((p * 2654435761 + version) >>> 0, i);
  return b;
}

const member = (s: MemStore): PoolMember => ({ id: s.id, weight: 1, store: s, health: async () => !s.down });
const stores = (n: number, from = 1) => Array.from({ length: n }, (_, i) => new MemStore(`10.0.1.${i + from}:7070`));
const groupsOf = (s: MemStore) => new Set([...s.pages.keys()].map((k) => Math.floor(Number(k.split('/')[1]) / 16)));

async function writeAll(pool: MemoryPool, version: number): Promise<void> {
  for (let i = 0; i < PAGES.length; i += 128) {
    const chunk = PAGES.slice(i, i + 128);
    await pool.write(region, chunk, Buffer.concat(chunk.map((p) => page(p, version))));
  }
}

async function wrongPages(pool: MemoryPool, version: number): Promise<number[]> {
  const got = await pool.read(region, PAGES);
  return PAGES.filter((p) => !got.present.get(p)?.equals(page(p, version)));
}

/** Each server holds exactly the groups that rank it among their top `r` of `servers`. */
function assertPlaced(all: MemStore[], servers: MemStore[], r: number): void {
  const cands = servers.map((s) => ({ id: s.id, weight: 1 }));
  for (const s of all) {
    const want = new Set<number>();
    if (servers.includes(s)) for (let g = 0; g < PAGES.length / 16; g++) if (rank(cands, region.id, g).slice(0, r).includes(s.id)) want.add(g);
    assert.deepEqual([...groupsOf(s)].sort((a, b) => a - b), [...want].sort((a, b) => a - b), `groups on ${s.id}`);
    assert.equal(s.pages.size, want.size * 16, `pages on ${s.id}`);
  }
}

test('adding a server: the holder each moved group left frees its pages; every page reads back', async () => {
  const three = stores(3);
  const pool = new MemoryPool(three.map(member), { logger, replicas: 2, repairBytesPerSecond: 1e12 });
  await writeAll(pool, 1);
  const d = new MemStore('10.0.1.4:7070');
  pool.addMember(member(d));
  await pool.repair();
  const all = [...three, d];
  assertPlaced(all, all, 2);
  const moved = groupsOf(d).size;
  assert.ok(moved > 0 && moved < 64, `moved ${moved}`);
  const st = pool.repairStatus();
  assert.equal(st.discardedPages, moved * 16);
  assert.equal(st.discardsPending, 0);
  assert.equal(three.reduce((n, s) => n + s.discarded, 0), moved * 16);
  // Per server (farmem servers): what each one freed, and nothing owed.
  for (const s of all) assert.deepEqual(pool.servers().filter((x) => x.id === s.id).map((x) => [x.discardedPages, x.discardsPending]), [[s.discarded, 0]], s.id);
  assert.deepEqual(await wrongPages(pool, 1), []);
  await pool.close();
});

test('removing a server: its groups move to the next ranked and it is left holding nothing', async () => {
  const four = stores(4);
  const pool = new MemoryPool(four.map(member), { logger, replicas: 2, repairBytesPerSecond: 1e12 });
  await writeAll(pool, 1);
  await pool.removeMember(four[3]!.id);
  assert.equal(pool.servers().length, 3);
  assertPlaced(four, four.slice(0, 3), 2);
  assert.deepEqual(await wrongPages(pool, 1), []);
  await pool.close();
});

test('a fallback copy made while a holder was down is freed when the holder returns; the down holder\'s stale copy is not', async () => {
  const three = stores(3);
  const pool = new MemoryPool(three.map(member), { logger, replicas: 2, downAfterMs: 0, repairBytesPerSecond: 1e12 });
  await writeAll(pool, 1);
  const [a] = three as [MemStore, MemStore, MemStore];
  a.down = true;
  await writeAll(pool, 2); // a misses these: substitutes take them
  await pool.checkHealth();
  await pool.checkHealth();
  await pool.repair(); // groups of a go to the third server; a cannot be told to discard yet
  assert.ok(pool.repairStatus().discardsPending > 0);
  // Per server (farmem servers): the groups owed are all on the down one.
  const owed = (s: MemStore) => pool.servers().find((x) => x.id === s.id)!.discardsPending;
  assert.equal(owed(a), pool.repairStatus().discardsPending);
  assert.equal(owed(three[1]!) + owed(three[2]!), 0);
  assert.deepEqual(await wrongPages(pool, 2), []);
  a.down = false;
  await pool.checkHealth(); // back: its groups move back to it (copied, version 2)
  await pool.repair();
  assertPlaced(three, three, 2);
  assert.equal(pool.repairStatus().discardsPending, 0);
  assert.deepEqual(await wrongPages(pool, 2), []);
  for (const p of PAGES) for (const s of three) if (s.holds(region, p)) assert.ok(s.pages.get(`${region.id}/${p}`)!.equals(page(p, 2)), `page ${p} on ${s.id}`);
  await pool.close();
});

test('a crash at any discard loses nothing: the journal already names the new holders', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-pool-discard-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const three = stores(3);
  const d = new MemStore('10.0.1.4:7070');
  const all = [...three, d];
  // R=1: a group has one copy, so a discard before its move is recorded would lose it for good.
  const pool = new MemoryPool(three.map(member), { logger, replicas: 1, repairBytesPerSecond: 1e12, stateDir: path.join(dir, 'live') });
  await writeAll(pool, 1);
  // At every discard: the state dir and the servers as a crash right after it would leave them.
  const crashes: Array<{ stateDir: string; pages: Map<string, Map<string, Buffer>> }> = [];
  for (const s of three) {
    s.beforeDiscard = (pages) => {
      const at = path.join(dir, `crash-${crashes.length}`);
      fs.cpSync(path.join(dir, 'live'), at, { recursive: true });
      const held = new Map(all.map((x) => [x.id, new Map(x.pages)]));
      for (const p of pages) held.get(s.id)!.delete(`${region.id}/${p}`);
      crashes.push({ stateDir: at, pages: held });
    };
  }
  pool.addMember(member(d));
  await pool.repair();
  assert.ok(crashes.length > 0 && crashes.length === groupsOf(d).size, `${crashes.length} discards`);
  for (const [i, c] of crashes.entries()) {
    const revived = all.map((s) => Object.assign(new MemStore(s.id), { pages: c.pages.get(s.id)! }));
    const p2 = new MemoryPool(revived.map(member), { logger, replicas: 1, repairBytesPerSecond: 1e12, stateDir: c.stateDir });
    assert.deepEqual(await wrongPages(p2, 1), [], `after a crash at discard ${i}`);
    await p2.close();
  }
  await pool.close();
});

test('a read that was on its way to the old holder when the group moved (and was discarded there) is answered by the new holder', async () => {
  const [a, b] = stores(2, 20) as [MemStore, MemStore];
  const pool = new MemoryPool([a, b].map(member), { logger, replicas: 1, repairBytesPerSecond: 1e12 });
  const group0 = Array.from({ length: 16 }, (_, i) => i);
  await pool.write(region, group0, Buffer.concat(group0.map((p) => page(p, 5))));
  const [oldId] = rank([a, b].map((s) => ({ id: s.id, weight: 1 })), region.id, 0);
  const old = oldId === a.id ? a : b;
  assert.equal(old.pages.size, 16);
  // The old holder fails the read's first (coalesced) request, and holds its retry until the move is done.
  let calls = 0;
  let release!: () => void;
  const gate = new Promise<void>((res) => (release = res));
  const read = old.read.bind(old);
  old.read = async (r, pages) => {
    calls++;
    if (calls === 1) throw new PageStoreError('unavailable', `${old.id}: connection reset`, old.id);
    if (calls === 2) await gate;
    return read(r, pages);
  };
  const reading = pool.read(region, group0);
  while (calls < 2) await new Promise((r) => setImmediate(r));
  await pool.removeMember(old.id); // copies from the old holder (call 3), records, discards there
  assert.equal(old.pages.size, 0);
  release();
  const got = await reading; // the held retry finds nothing on the old holder: asked the new one
  assert.deepEqual(got.absent, []);
  for (const p of group0) assert.ok(got.present.get(p)!.equals(page(p, 5)), `page ${p}`);
  await pool.close();
});

test('a discard the old holder fails is retried by the next repair pass', async () => {
  const three = stores(3, 30);
  const pool = new MemoryPool(three.map(member), { logger, replicas: 2, repairBytesPerSecond: 1e12 });
  await writeAll(pool, 1);
  for (const s of three) {
    s.beforeDiscard = () => {
      throw new PageStoreError('internal', `${s.id}: disk full`, s.id);
    };
  }
  const d = new MemStore('10.0.1.33:7070');
  pool.addMember(member(d));
  await pool.repair();
  const moved = groupsOf(d).size;
  assert.ok(moved > 0);
  assert.equal(pool.repairStatus().discardsPending, moved);
  assert.equal(three.reduce((n, s) => n + s.pages.size, 0), 2 * PAGES.length); // nothing freed yet
  assert.deepEqual(await wrongPages(pool, 1), []);
  for (const s of three) s.beforeDiscard = null;
  await pool.repair();
  assert.equal(pool.repairStatus().discardsPending, 0);
  assert.equal(pool.repairStatus().discardedPages, moved * 16);
  assertPlaced([...three, d], [...three, d], 2);
  assert.deepEqual(await wrongPages(pool, 1), []);
  await pool.close();
});

test('discards still pending when the daemon stops (old holder failing them) are sent by the restarted daemon', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-pool-discard-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const three = stores(3, 40);
  const d = new MemStore('10.0.1.44:7070');
  const opts = { logger, replicas: 2, repairBytesPerSecond: 1e12 };
  const pool = new MemoryPool(three.map(member), { ...opts, stateDir: path.join(dir, 'live') });
  await writeAll(pool, 1);
  for (const s of three) {
    s.beforeDiscard = () => {
      throw new PageStoreError('unavailable', `${s.id}: connection reset`, s.id);
    };
  }
  pool.addMember(member(d));
  await pool.repair();
  const moved = groupsOf(d).size;
  assert.ok(moved > 0);
  assert.equal(pool.repairStatus().discardsPending, moved);
  // kill -9 now (the state dir as it is: the log), and a clean stop (the snapshot close writes).
  fs.cpSync(path.join(dir, 'live'), path.join(dir, 'crash'), { recursive: true });
  await pool.close();
  for (const s of three) s.beforeDiscard = null;
  for (const stateDir of [path.join(dir, 'crash'), path.join(dir, 'live')]) {
    const all = [...three, d].map((s) => Object.assign(new MemStore(s.id), { pages: new Map(s.pages) }));
    const p2 = new MemoryPool(all.map(member), { ...opts, stateDir });
    assert.deepEqual(await wrongPages(p2, 1), []); // (loads the region: its repair pass runs)
    await p2.repair();
    assert.equal(p2.repairStatus().discardsPending, 0, stateDir);
    assert.equal(p2.repairStatus().discardedPages, moved * 16, stateDir);
    assertPlaced(all, all, 2);
    assert.deepEqual(await wrongPages(p2, 1), []);
    await p2.close();
  }
});

test('a write that fails frees what it left on a server that holds none of its pages; the old bytes still read back', async () => {
  const three = stores(3);
  const pool = new MemoryPool(three.map(member), { logger, replicas: 2, repairBytesPerSecond: 1e12 });
  await writeAll(pool, 1);
  // A group whose holders are two of the three: the third is the only substitute.
  const cands = three.map((s) => ({ id: s.id, weight: 1 }));
  const g = 5;
  const [a, b] = rank(cands, region.id, g).slice(0, 2).map((id) => three.find((s) => s.id === id)!);
  const c = three.find((s) => s !== a && s !== b)!;
  const pages = PAGES.slice(g * 16, g * 16 + 16);
  assert.ok(pages.every((p) => !c.holds(region, p)));
  // Both holders time out on this write; the substitute takes it: 1 of 2 replicas, the write fails.
  const inGroup = (ps: readonly number[]) => ps.some((p) => pages.includes(p));
  a!.refuseWrite = inGroup;
  b!.refuseWrite = inGroup;
  await assert.rejects(pool.write(region, pages, Buffer.concat(pages.map((p) => page(p, 2)))), /1 of 2 replicas acknowledged/);
  assert.equal(c.writes > 0, true, 'the substitute took the write');
  assert.deepEqual(pages.filter((p) => c.holds(region, p)), [], 'nothing of the failed write is left on the substitute');
  assert.equal(c.discarded, 16);
  assert.equal(pool.repairStatus().discardedPages, 16);
  assert.equal(pool.servers().find((x) => x.id === c.id)!.discardedPages, 16);
  assert.deepEqual(await wrongPages(pool, 1), []);
  // The retry, once the holders answer, lands where the placement says.
  a!.refuseWrite = null;
  b!.refuseWrite = null;
  await pool.write(region, pages, Buffer.concat(pages.map((p) => page(p, 2))));
  const got = await pool.read(region, pages);
  assert.ok(pages.every((p) => got.present.get(p)!.equals(page(p, 2))));
  assert.ok(pages.every((p) => a!.holds(region, p) && b!.holds(region, p) && !c.holds(region, p)));
  await pool.close();
});
