// Adding a fourth memory server across hosts: the pool (MemoryServerClients over gRPC to servers in
// their own network namespaces) moves onto the newcomer exactly the groups that now rank it among
// their top R, by repair, and loses nothing.
//
// Why at the pool and not through farmemd: farmemd has no runtime "add server" (its server list is
// read at start), and restarting it with a fourth server is NOT a safe way to add one: the pool's
// placement record (which groups were written, and where substitutes took them) lives in memory,
// so after a restart a group that now ranks the newcomer first is read from the newcomer, which
// answers "absent", and a written page would read as zeros. Adding servers to a running daemon
// needs a control call that ends in MemoryPool.addMember — which is what this test drives.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import pino from 'pino';
import { netnsUnavailable } from '../helpers/netns';
import { MemoryServerClient } from '../../daemon/remote';
import { MemoryPool, type PoolMember } from '../../daemon/remote/pool';
import { rank } from '../../daemon/remote/placement';
import { Cluster } from './fixture';

const logger = pino({ level: 'silent' });
const skip = netnsUnavailable() ?? false;

test('a fourth server added to a running pool receives exactly the groups that now rank it in their top two', { skip }, async (t) => {
  const c = new Cluster();
  t.after(() => c.cleanup());
  c.host = c.hosts.create(4);
  for (const i of [0, 1, 2]) await c.startServer(i);
  const clients: MemoryServerClient[] = [];
  const member = (i: number): PoolMember => {
    const client = new MemoryServerClient({ address: c.address(i), token: null, tls: null, logger });
    clients.push(client);
    return { id: c.address(i), weight: 1, store: client, health: async () => (await client.health()) === 'SERVING', instance: async () => (await client.stats()).instanceId };
  };
  const pool = new MemoryPool([0, 1, 2].map(member), { logger, replicas: 2, repairBytesPerSecond: 1e12 });
  t.after(() => pool.close());
  const region = { id: crypto.randomUUID(), pageSize: 4096 };
  const PAGES = 2048; // 128 groups of 16 pages
  const data = crypto.randomBytes(PAGES * 4096);
  for (let i = 0; i < PAGES; i += 256) {
    await pool.write(region, Array.from({ length: 256 }, (_, j) => i + j), data.subarray(i * 4096, (i + 256) * 4096));
  }
  const before = await Promise.all([0, 1, 2].map((i) => c.pagesOn(i, region.id)));
  assert.equal(before.reduce((a, b) => a + b, 0), 2 * PAGES);

  await c.startServer(3);
  pool.addMember(member(3));
  await pool.repair();

  // Expected: groups whose top two among four servers include the newcomer.
  const four = [0, 1, 2, 3].map((i) => ({ id: c.address(i), weight: 1 }));
  let moved = 0;
  for (let g = 0; g < PAGES / 16; g++) if (rank(four, region.id, g).slice(0, 2).includes(c.address(3))) moved++;
  assert.ok(moved > 0 && moved < PAGES / 16, `moved ${moved} groups`);
  assert.equal(await c.pagesOn(3, region.id), moved * 16);
  const st = pool.repairStatus();
  assert.equal(st.underReplicatedGroups, 0);
  assert.equal(st.repairedGroups, moved);
  assert.equal(st.copiedBytes, moved * 16 * 4096); // nothing else was copied
  // Old servers keep what they held (their copies of moved groups are no longer read).
  assert.deepEqual(await Promise.all([0, 1, 2].map((i) => c.pagesOn(i, region.id))), before);
  const got = await pool.read(region, Array.from({ length: PAGES }, (_, i) => i));
  assert.deepEqual(got.absent, []);
  for (let p = 0; p < PAGES; p++) assert.ok(got.present.get(p)!.equals(data.subarray(p * 4096, (p + 1) * 4096)), `page ${p}`);
  // Reads of moved groups are served by the newcomer too: stop one old server and read again.
  await c.killServer(0);
  const again = await pool.read(region, Array.from({ length: PAGES }, (_, i) => i));
  for (let p = 0; p < PAGES; p++) assert.ok(again.present.get(p)!.equals(data.subarray(p * 4096, (p + 1) * 4096)), `page ${p} after server 0 died`);
});
