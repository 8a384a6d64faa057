// The pool's read fast path (one pass per batch, a group's server picked once, rendezvous orders
// remembered): batches in any order, pages whose latest copy is off their group's holders, and
// orders that must change when the pool's members do.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import pino from 'pino';
import { MemoryPool, type PoolMember } from '../../daemon/remote/pool';
import { rank } from '../../daemon/remote/placement';
import type { RegionRef } from '../../daemon/remote/types';
import { MemStore, readsOf } from './memstore';

const logger = pino({ level: 'silent' });
const region: RegionRef = { id: 'b3c9a7d2-0000-4000-8000-00000000000f', pageSize: 4096 };
const member = (s: MemStore): PoolMember => ({ id: s.id, weight: 1, store: s, health: async () => !s.down });

function page(p: number, version: number): Buffer {
  const b = Buffer.alloc(4096);
  for (let i = 0; i < 4096; i += 8) b.writeUInt32LE((p * 2654435761 + version) >>> 0, i);
  return b;
}

/** A fixed shuffle (every group visited several times, out of order). */
function shuffled(n: number): number[] {
  const out = Array.from({ length: n }, (_, i) => i);
  let x = 12345;
  for (let i = n - 1; i > 0; i--) {
    x = (x * 1103515245 + 12345) >>> 0;
    const j = x % (i + 1);
    [out[i], out[j]] = [out[j]!, out[i]!];
  }
  return out;
}

test('a batch in any order reads every page from a server with its latest version, never from a holder that missed it', async () => {
  const stores = Array.from({ length: 3 }, (_, i) => new MemStore(`10.0.1.${i + 1}:7070`));
  const pool = new MemoryPool(stores.map(member), { logger, replicas: 2, downAfterMs: 0, repairBytesPerSecond: 1e12 });
  try {
    const pages = Array.from({ length: 256 }, (_, p) => p);
    await pool.write(region, pages, Buffer.concat(pages.map((p) => page(p, 1))));
    // Every page of groups 2 and 5 rewritten while one of its holders refuses: that holder keeps v1.
    const rewritten = pages.filter((p) => (p >= 32 && p < 48) || (p >= 80 && p < 96));
    const groups = [2, 5];
    const stale = new Map(groups.map((g) => [g, stores.find((s) => s.holds(region, g * 16))!]));
    for (const s of stale.values()) s.refuseWrite = (ps) => ps.some((p) => stale.get(Math.floor(p / 16)) === s);
    for (const g of groups) await pool.write(region, rewritten.filter((p) => Math.floor(p / 16) === g), Buffer.concat(rewritten.filter((p) => Math.floor(p / 16) === g).map((p) => page(p, 2))));
    // (Still refusing: a repair copy would make that holder current again before the read.)
    for (const [g, s] of stale) assert.deepEqual(s.pages.get(`${region.id}/${g * 16}`), page(g * 16, 1), 'the refusing holder kept the old version');
    const readsBefore = readsOf(stores);
    const order = shuffled(256);
    const got = await pool.read(region, order);
    const reads = readsOf(stores) - readsBefore;
    assert.deepEqual(got.absent, []);
    assert.equal(got.present.size, 256);
    for (const p of pages) assert.deepEqual(got.present.get(p), page(p, rewritten.includes(p) ? 2 : 1), `page ${p}`);
    assert.ok(reads <= stores.length, `${reads} requests for one read`);
    // Pages never written, in the same batch as written ones and out of order: absent.
    const more = await pool.read(region, [300, 5, 299, 40, 1000]);
    assert.deepEqual(more.absent.sort((a, b) => a - b), [299, 300, 1000]);
    assert.deepEqual(more.present.get(5), page(5, 1));
    assert.deepEqual(more.present.get(40), page(40, 2));
  } finally {
    await pool.close();
  }
});

test('rendezvous orders a read remembered change when servers are added: new groups go to the new top R', async () => {
  const stores = Array.from({ length: 5 }, (_, i) => new MemStore(`10.0.2.${i + 1}:7070`));
  const pool = new MemoryPool(stores.slice(0, 2).map(member), { logger, replicas: 2, downAfterMs: 0, repairBytesPerSecond: 1e12 });
  try {
    const pages = Array.from({ length: 512 }, (_, p) => p); // 32 groups
    // Reads of never-written pages rank every group over the first two servers.
    assert.equal((await pool.read(region, pages)).absent.length, 512);
    for (const s of stores.slice(2)) pool.addMember(member(s));
    await pool.write(region, pages, Buffer.concat(pages.map((p) => page(p, 1))));
    const five = stores.map((s) => ({ id: s.id, weight: 1 }));
    let onNew = 0;
    for (const p of pages) {
      const want = rank(five, region.id, Math.floor(p / 16)).slice(0, 2);
      for (const s of stores) assert.equal(s.holds(region, p), want.includes(s.id), `page ${p} on ${s.id}`);
      if (want.some((id) => stores.slice(2).some((s) => s.id === id))) onNew++;
    }
    assert.ok(onNew > 0, 'no group ranks an added server in its top 2');
    // Removing one: its groups move to the next ranked, and reads follow them.
    await pool.removeMember(stores[4]!.id);
    stores[4]!.down = true;
    const got = await pool.read(region, pages);
    for (const p of pages) assert.deepEqual(got.present.get(p), page(p, 1), `page ${p}`);
  } finally {
    await pool.close();
  }
});
