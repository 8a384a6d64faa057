// farmemd killed (kill -9) and restarted on its state dir while the pool is degraded: the placement
// record (which pages were written, which servers took them when a replica was down, which copies
// are stale) must come back with it. Three memory servers in their own network namespaces, R=2.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { netnsUnavailable } from '../helpers/netns';
import { Cluster, type ServerJson } from './fixture';

const PAGES = 4096; // 16 MiB of 4 KiB pages; the region may keep 4 MiB resident
const skip = netnsUnavailable() ?? false;

async function setup(t: { after(fn: () => Promise<void>): void }): Promise<{ c: Cluster; id: string }> {
  const c = new Cluster();
  t.after(() => c.cleanup());
  await c.createHosts(3);
  await c.startDaemon([0, 1, 2]);
  const r = c.cli(['region', 'create', 'rs', '--size', '16MiB', '--resident', '4MiB', '--replicas', '2']) as { id: string };
  return { c, id: r.id };
}

async function runOp(c: Cluster, op: string, seed: number): Promise<Record<string, unknown>> {
  const run = c.fmattach(['--region', 'rs', '--pages', String(PAGES), '--op', op, '--seed', String(seed), '--pattern', 'random:3']);
  const done = await run.done;
  assert.equal(done.code, 0, done.stderr);
  return run.lines.find((l) => l.op === op)!;
}

async function verify(c: Cluster, seed: number, what: string): Promise<void> {
  const v = await runOp(c, 'verify', seed);
  assert.equal(v.mismatches, 0, `${what}: ${JSON.stringify(v)}`);
}

const repaired = (s: ServerJson[]) => s.every((x) => x.pool !== null && x.pool.underReplicatedGroups === 0 && !x.pool.repairing);
const state = (c: Cluster, i: number) => (s: ServerJson[]) => s.find((x) => x.address === c.address(i))!.pool?.state;

test('kill -9 of farmemd after write-backs went to substitutes (a server down): the restarted daemon finds every page, also once that server is back empty', { skip }, async (t) => {
  const { c, id } = await setup(t);
  await c.killServer(0);
  // Write with the region evicting (4× its budget): groups placed on server 0 go to a substitute.
  const run = c.fmattach(['--region', 'rs', '--pages', String(PAGES), '--op', 'write,verify', '--seed', '61', '--pattern', 'random:3', '--pause']);
  await run.next('ready');
  run.child.stdin!.write('\n');
  for (let i = 0; i < 600 && run.lines.filter((l) => 'ready' in l).length < 2; i++) await new Promise((r) => setTimeout(r, 100));
  assert.equal(run.lines.filter((l) => 'ready' in l).length, 2, `write did not finish: ${JSON.stringify(run.lines)}`);
  const shown = c.cli(['region', 'show', 'rs']) as { stats: { writtenBackPages: number } };
  assert.ok(shown.stats.writtenBackPages >= PAGES / 2, `only ${shown.stats.writtenBackPages} page(s) were written back`);
  // The process keeps its memfd (the resident pages); the evicted ones are only on the servers.
  await c.killDaemon();
  await c.startDaemon([0, 1, 2]);
  run.child.stdin!.write('\n'); // verify: reattaches to the new daemon and reads the evicted pages back
  const done = await run.done;
  assert.equal(done.code, 0, done.stderr);
  const v = run.lines.find((l) => l.op === 'verify')!;
  assert.equal(v.mismatches, 0, JSON.stringify(v));
  c.cliText(['region', 'sync', 'rs']);
  c.cliText(['region', 'evict', 'rs']);
  await verify(c, 61, 'every page from the servers, server 0 still down');
  // Server 0 comes back empty: it ranks first for some groups, yet it is never asked for pages it lacks.
  await c.startServer(0);
  await c.until((s) => state(c, 0)(s) === 'up', 'server 0 up again');
  await verify(c, 61, 'server 0 back empty');
  await c.until(repaired, 'every group back to two copies');
  const counts = await Promise.all([0, 1, 2].map((i) => c.pagesOn(i, id)));
  assert.ok(counts[0]! > 0, `server 0 was not refilled: ${JSON.stringify(counts)}`);
  assert.ok(counts.reduce((a, b) => a + b, 0) >= 2 * PAGES, JSON.stringify(counts));
  c.cliText(['region', 'evict', 'rs']);
  await verify(c, 61, 'after repair');
});

test('a server back from a partition with stale copies is not read for pages rewritten while it was away, across a kill -9 of farmemd', { skip }, async (t) => {
  const { c, id } = await setup(t);
  await runOp(c, 'write', 71);
  c.cliText(['region', 'sync', 'rs']);
  c.cliText(['region', 'evict', 'rs']);
  const stale = await c.pagesOn(2, id);
  assert.ok(stale > 0);
  // Server 2 is cut off; every page is rewritten (new bytes) and written back elsewhere.
  c.hosts.setLink(c.host[2]!, false);
  await runOp(c, 'write', 72);
  c.cliText(['region', 'sync', 'rs']);
  c.cliText(['region', 'evict', 'rs']);
  await c.killDaemon();
  // The partition heals while farmemd is down: server 2 answers again, with its old (seed 71) pages.
  c.hosts.setLink(c.host[2]!, true);
  assert.equal(await c.pagesOn(2, id), stale);
  await c.startDaemon([0, 1, 2]);
  await verify(c, 72, 'right after the restart');
  await c.until((s) => state(c, 2)(s) === 'up' && repaired(s), 'server 2 up and its groups rewritten');
  c.cliText(['region', 'evict', 'rs']);
  await verify(c, 72, 'after repair');
});
