// Adding a fourth memory server across hosts: the pool (MemoryServerClients over gRPC to servers in
// their own network namespaces) moves onto the newcomer exactly the groups that now rank it among
// their top R, by repair, frees the copies the moved groups left behind, and loses nothing —
// driven at the pool, and through a running farmemd (`farmem servers add`, while a workload
// writes), kept across a restart, then removed again (left holding nothing).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import pino from 'pino';
import { netnsUnavailable } from '../helpers/netns';
import { MemoryServerClient } from '../../daemon/remote';
import { MemoryPool, type PoolMember } from '../../daemon/remote/pool';
import { rank } from '../../daemon/remote/placement';
import { Cluster, type ServerJson } from './fixture';

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
  // The holder each moved group left discarded its copy (Discard, after the move was recorded):
  // every server holds exactly the groups that rank it among their top two.
  const after = await Promise.all([0, 1, 2].map((i) => c.pagesOn(i, region.id)));
  assert.equal(after.reduce((a, b) => a + b, 0), 2 * PAGES - moved * 16);
  for (const i of [0, 1, 2]) {
    let mine = 0;
    for (let g = 0; g < PAGES / 16; g++) if (rank(four, region.id, g).slice(0, 2).includes(c.address(i))) mine++;
    assert.equal(after[i], mine * 16, `pages left on server ${i}`);
  }
  assert.equal(st.discardedPages, moved * 16);
  const got = await pool.read(region, Array.from({ length: PAGES }, (_, i) => i));
  assert.deepEqual(got.absent, []);
  for (let p = 0; p < PAGES; p++) assert.ok(got.present.get(p)!.equals(data.subarray(p * 4096, (p + 1) * 4096)), `page ${p}`);
  // Reads of moved groups are served by the newcomer too: stop one old server and read again.
  await c.killServer(0);
  const again = await pool.read(region, Array.from({ length: PAGES }, (_, i) => i));
  for (let p = 0; p < PAGES; p++) assert.ok(again.present.get(p)!.equals(data.subarray(p * 4096, (p + 1) * 4096)), `page ${p} after server 0 died`);
});

test('farmem servers add: a fourth host joins a running farmemd mid-workload, gets exactly the groups that now rank it, is kept across a restart, and is drained by remove', { skip }, async (t) => {
  const PAGES = 4096; // 256 groups of 16 pages; the region may keep 1/4 resident
  const c = new Cluster();
  t.after(() => c.cleanup());
  c.host = c.hosts.create(4);
  for (const i of [0, 1, 2]) await c.startServer(i);
  await c.startDaemon([0, 1, 2]);
  const { id } = c.cli(['region', 'create', 'grow', '--size', '16MiB', '--resident', '4MiB', '--replicas', '2']) as { id: string };
  const op = async (o: string, seed: number) => {
    const run = c.fmattach(['--region', 'grow', '--pages', String(PAGES), '--op', o, '--seed', String(seed), '--pattern', 'random:3']);
    const done = await run.done;
    assert.equal(done.code, 0, done.stderr);
    const l = run.lines.find((x) => x.op === o)!;
    if (o === 'verify') assert.equal(l.mismatches, 0, JSON.stringify(l));
  };
  await op('write', 91);
  c.cliText(['region', 'sync', 'grow']);
  const before = await Promise.all([0, 1, 2].map((i) => c.pagesOn(i, id)));
  // (A page the pattern leaves all zero may never be written back.)
  const sum = before.reduce((a, b) => a + b, 0);
  assert.ok(sum % 2 === 0 && sum >= 2 * PAGES - 16, JSON.stringify(before));
  const unwritten = PAGES - sum / 2;

  // A workload rewrites every page while the fourth server is added.
  const run = c.fmattach(['--region', 'grow', '--pages', String(PAGES), '--op', 'write,verify', '--seed', '92', '--pattern', 'random:3', '--pause']);
  await run.next('ready');
  run.child.stdin!.write('\n');
  await c.startServer(3);
  const added = c.cli(['servers', 'add', c.address(3)]) as ServerJson;
  assert.equal(added.address, c.address(3));
  for (let i = 0; i < 600 && run.lines.filter((l) => 'ready' in l).length < 2; i++) await new Promise((r) => setTimeout(r, 100));
  run.child.stdin!.write('\n');
  const done = await run.done;
  assert.equal(done.code, 0, done.stderr);
  assert.equal(run.lines.find((l) => l.op === 'verify')!.mismatches, 0);
  c.cliText(['region', 'sync', 'grow']);
  const settled = (s: ServerJson[]) => s.length === 4 && s.every((x) => x.pool !== null && x.pool.state === 'up' && x.pool.underReplicatedGroups === 0 && x.pool.pendingGroups === 0 && !x.pool.repairing);
  await c.until(settled, 'the newcomer up and every move done');

  const four = [0, 1, 2, 3].map((i) => ({ id: c.address(i), weight: 1 }));
  let moved = 0;
  for (let g = 0; g < PAGES / 16; g++) if (rank(four, id, g).slice(0, 2).includes(c.address(3))) moved++;
  assert.ok(moved > 0 && moved < PAGES / 16, `moved ${moved} groups`);
  // Only the groups that now rank it are on it (every page of each: written before or after the move).
  const on3 = await c.pagesOn(3, id);
  assert.ok(on3 <= moved * 16 && on3 >= moved * 16 - unwritten, `${on3} pages on the newcomer, ${moved} groups rank it`);
  // Two copies of each page in all, not three: the old copies of the moved groups were discarded.
  const total = (await Promise.all([0, 1, 2, 3].map((i) => c.pagesOn(i, id)))).reduce((a, b) => a + b, 0);
  assert.ok(total <= 2 * PAGES && total >= 2 * (PAGES - unwritten) - 32, `${total} pages stored for ${PAGES} pages`);
  const table = c.cliText(['servers']);
  assert.match(table, /^ADDRESS\s+STATE\s+POOL\s+LATENCY\s+FAILS\s+UNDER-REPL\s+PENDING\s+REPAIRED\s+COPIED\s+DISCARDED\s/);
  assert.match(await c.metrics(), /^farmem_repair_pending_groups 0$/m);
  const discarded = Number(/^farmem_repair_discarded_pages_total (\d+)$/m.exec(await c.metrics())?.[1]);
  assert.ok(discarded > 0, `${discarded} pages discarded`);
  // `farmem servers` says who freed them: the three the moved groups left, not the newcomer.
  const freed = c.serversJson().map((s) => [s.address, s.pool!.discardedPages, s.pool!.discardsPending] as const);
  assert.equal(freed.reduce((n, [, p]) => n + p, 0), discarded, JSON.stringify(freed));
  assert.ok(freed.every(([a, p, owed]) => owed === 0 && (a === c.address(3) ? p === 0 : true)), JSON.stringify(freed));
  c.cliText(['region', 'evict', 'grow']);
  await op('verify', 92);

  // A restart with only the three configured servers keeps the fourth (and where every group is).
  await c.killDaemon();
  await c.startDaemon([0, 1, 2]);
  assert.deepEqual(c.serversJson().map((s) => s.address).sort(), [0, 1, 2, 3].map((i) => c.address(i)).sort());
  await c.killServer(0); // any one host may go: both copies of every group are where the record says
  await op('verify', 92);
  await c.startServer(0);
  await c.until((s) => s.length === 4 && s.every((x) => x.pool?.state === 'up') && s.every((x) => x.pool!.underReplicatedGroups === 0 && !x.pool!.repairing), 'server 0 back and refilled');

  // Removing it moves its groups back to the servers ranked next; then it is forgotten, also after a restart.
  const removed = c.cli(['servers', 'remove', c.address(3)]) as ServerJson & { removed: boolean };
  assert.equal(removed.removed, true);
  assert.deepEqual(c.serversJson().map((s) => s.address).sort(), [0, 1, 2].map((i) => c.address(i)).sort());
  assert.equal(await c.pagesOn(3, id), 0); // every group it held moved away and was discarded there
  await c.killServer(3);
  await op('verify', 92);
  await c.killDaemon();
  await c.startDaemon([0, 1, 2]);
  assert.equal(c.serversJson().length, 3);
  await op('verify', 92);
});
