// Failover across hosts: three memory servers in their own network namespaces, farmemd and the
// workload in the root namespace, a region 4× its resident budget with R=2. A server is killed
// (kill -9), partitioned (link down), or restarted empty; every page must verify, and repair must
// bring every group back to two copies (farmem servers --json, and each server's own page count).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsUnavailable } from '../helpers/netns';
import { Cluster, type ServerJson } from './fixture';

const PAGES = 4096; // 16 MiB of 4 KiB pages
const skip = netnsUnavailable() ?? false;

async function setup(t: { after(fn: () => Promise<void>): void }): Promise<{ c: Cluster; id: string }> {
  const c = new Cluster();
  t.after(() => c.cleanup());
  await c.createHosts(3);
  await c.startDaemon([0, 1, 2]);
  const r = c.cli(['region', 'create', 'mh', '--size', '16MiB', '--resident', '4MiB', '--replicas', '2']) as { id: string; replicas: number };
  assert.equal(r.replicas, 2);
  return { c, id: r.id };
}

/** Runs write then verify; `fault` runs once the write op has started (mid-run). */
async function writeVerify(c: Cluster, seed: number, fault: () => Promise<void>): Promise<{ verifyNs: number }> {
  const run = c.fmattach(['--region', 'mh', '--pages', String(PAGES), '--op', 'write,verify', '--seed', String(seed), '--pattern', 'random:3', '--pause']);
  await run.next('ready');
  run.child.stdin!.write('\n');
  await new Promise((r) => setTimeout(r, 50));
  await fault();
  const ready = await waitReady(run, 'verify');
  assert.equal(ready.ready, 'verify');
  run.child.stdin!.write('\n');
  const done = await run.done;
  assert.equal(done.code, 0, done.stderr);
  const [w, v] = run.lines.filter((l) => 'op' in l);
  assert.equal(w!.op, 'write');
  assert.equal(v!.op, 'verify');
  assert.equal(v!.mismatches, 0);
  assert.equal(v!.checksum, w!.checksum);
  return { verifyNs: Number(v!.ns) };
}

async function waitReady(run: ReturnType<Cluster['fmattach']>, op: string): Promise<Record<string, unknown>> {
  for (let i = 0; i < 200; i++) {
    const r = run.lines.filter((l) => 'ready' in l);
    if (r.length >= 2) return r[1]!;
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error(`fmattach never got ready for ${op}: ${JSON.stringify(run.lines)}`);
}

/** Writes every dirty page back, drops the resident ones, and verifies from the servers alone. */
function flushAndVerify(c: Cluster, seed: number): Promise<void> {
  c.cliText(['region', 'sync', 'mh']);
  c.cliText(['region', 'evict', 'mh']);
  return verifyOnly(c, seed);
}

async function verifyOnly(c: Cluster, seed: number): Promise<void> {
  const run = c.fmattach(['--region', 'mh', '--pages', String(PAGES), '--op', 'verify', '--seed', String(seed), '--pattern', 'random:3']);
  const done = await run.done;
  assert.equal(done.code, 0, done.stderr);
  assert.equal(run.lines[0]!.mismatches, 0);
}

const repaired = (s: ServerJson[]) => s.every((x) => x.pool !== null && x.pool.underReplicatedGroups === 0 && !x.pool.repairing);

test('kill -9 of one of three servers mid-run: every page verifies, repair restores two copies on the survivors', { skip }, async (t) => {
  const { c, id } = await setup(t);
  await writeVerify(c, 21, () => c.killServer(0));
  await flushAndVerify(c, 21);
  const dead = c.address(0);
  const s = await c.until((s) => s.find((x) => x.address === dead)!.pool?.state === 'down' && repaired(s), 'server 0 down and every group repaired');
  // (Pages rewritten after the kill went to substitutes: repair copies only what they did not cover.)
  assert.equal(s.find((x) => x.address === dead)!.state, 'down');
  // Two servers left, R=2: each must hold every page.
  assert.equal(await c.pagesOn(1, id), PAGES);
  assert.equal(await c.pagesOn(2, id), PAGES);
  // The table shows the pool view too.
  const table = c.cliText(['servers']);
  assert.match(table, /^ADDRESS\s+STATE\s+POOL\s+LATENCY\s+FAILS\s+UNDER-REPL\s+PENDING\s+REPAIRED\s+COPIED\s/);
  assert.match(table, new RegExp(`${dead.replace(/\./g, '\\.')}\\s+down\\s+down\\s`));
  await verifyOnly(c, 21);
  // Prometheus: the pool state per server and the repair progress.
  const text = await c.metrics();
  assert.match(text, new RegExp(`^farmem_pool_server_state\\{server="${dead}",state="down"\\} 1$`, 'm'));
  assert.match(text, new RegExp(`^farmem_pool_server_state\\{server="${c.address(1)}",state="up"\\} 1$`, 'm'));
  assert.match(text, new RegExp(`^farmem_pool_server_latency_seconds\\{server="${c.address(1)}"\\} [0-9.e-]+$`, 'm'));
  assert.match(text, /^farmem_repair_under_replicated_groups 0$/m);
  assert.match(text, /^farmem_repair_copied_bytes_total \d+$/m);
});

test('a partition (link down) of one server mid-run: reads fail over, repair restores two copies, the server rejoins', { skip }, async (t) => {
  const { c, id } = await setup(t);
  const t0 = Date.now();
  const phase = (what: string) => t.diagnostic(`${what} at ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const cut = c.host[2]!;
  const { verifyNs } = await writeVerify(c, 33, async () => c.hosts.setLink(cut, false));
  t.diagnostic(`verify of ${PAGES} pages with one replica partitioned took ${(verifyNs / 1e6).toFixed(0)} ms`);
  phase('write+verify done');
  await flushAndVerify(c, 33);
  phase('sync+evict+verify done');
  const gone = c.address(2);
  await c.until((s) => s.find((x) => x.address === gone)!.pool?.state === 'down' && repaired(s), 'partitioned server down and every group repaired');
  phase('declared down and repaired');
  assert.equal(await c.pagesOn(0, id), PAGES);
  assert.equal(await c.pagesOn(1, id), PAGES);
  // Healing the partition: the server is up again and gets its groups back.
  const before = await (async () => { c.hosts.setLink(cut, true); return c.serversJson().find((x) => x.address === gone)!.pool!.repairedGroups; })();
  await c.until((s) => s.find((x) => x.address === gone)!.pool?.state === 'up' && repaired(s) && s[0]!.pool!.repairedGroups > before, 'partitioned server up and refilled');
  phase('rejoined and refilled');
  assert.ok((await c.pagesOn(2, id)) > 0);
  c.cliText(['region', 'evict', 'mh']);
  await verifyOnly(c, 33);
});

test('a server restarted empty is detected by its new instance id and refilled to its share', { skip }, async (t) => {
  const { c, id } = await setup(t);
  await writeVerify(c, 45, async () => undefined);
  c.cliText(['region', 'sync', 'mh']);
  const counts = await Promise.all([0, 1, 2].map((i) => c.pagesOn(i, id)));
  // R=2 with no failure: every page on exactly two servers.
  assert.equal(counts.reduce((a, b) => a + b, 0), 2 * PAGES, JSON.stringify(counts));
  const first = (await c.until((s) => s.every((x) => x.pool !== null && x.pool.instanceId !== ''), 'instance ids seen')).find((x) => x.address === c.address(1))!.pool!.instanceId;
  await c.killServer(1);
  await c.startServer(1);
  assert.equal(await c.pagesOn(1, id), 0);
  const s = await c.until((s) => {
    const p = s.find((x) => x.address === c.address(1))!.pool!;
    return p.instanceId !== first && p.restartsDetected >= 1 && repaired(s);
  }, 'the restart seen and the server refilled');
  const p1 = s.find((x) => x.address === c.address(1))!.pool!;
  assert.equal(p1.state, 'up');
  assert.ok(p1.repairedGroups > 0, JSON.stringify(p1));
  assert.ok(p1.copiedBytes >= counts[1]! * 4096, JSON.stringify(p1));
  assert.equal(await c.pagesOn(1, id), counts[1]);
  c.cliText(['region', 'evict', 'mh']);
  await verifyOnly(c, 45);
});
