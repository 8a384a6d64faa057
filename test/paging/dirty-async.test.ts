// Async dirty tracking (UFFD_FEATURE_WP_ASYNC + PAGEMAP_SCAN) on the real kernel: writes to pages
// already installed do not fault, `region sync` finds them by scanning the attached process's
// pagemap and writes every one back (a fresh daemon without the memfd reads them all from the
// memory server), kill -9 of the daemon leaves every page of the memfd dirty, and everything that
// would evict an async region is refused with the reason.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { asyncDirtyTrackingUnavailable } from '../helpers/env';
import { farmem, tempDir } from '../helpers/farmemd';
import { cli, fmattach, nodeWriter, runOk, startDaemon, startMemserver, until, type Daemon, type Run } from './rig';

const skip = asyncDirtyTrackingUnavailable() ?? false;
const PAGES = 1024;

interface Shown {
  dirtyTracking: string;
  stats: { dirtyTracking: string; dirtyTrackingNote: string; dirtyPages: number; residentPages: number; writtenBackPages: number; evictedPages: number; faults: { writeProtect: number } };
}

function shown(d: Daemon, name: string): Shown {
  return JSON.parse(cli(d, ['region', 'show', name, '--json'])) as Shown;
}

/** fmattach reading PAGES pages (installed write-protected, clean), then writing them all; it waits before `verify`. */
async function readThenWrite(t: TestContext, d: Daemon, region: string, seed: number, pages = PAGES, first = 0): Promise<Run> {
  const run = fmattach(t, d.attachSocket, ['--region', region, '--pages', String(pages), '--first', String(first), '--op', 'read,write,verify', '--seed', String(seed), '--pattern', 'random:3', '--pause']);
  for (const op of ['read', 'write', 'verify']) {
    await run.line((l) => l.ready === op);
    if (op !== 'verify') run.child.stdin!.write('go\n');
  }
  assert.deepEqual(run.lines.filter((l) => l.op !== undefined).map((l) => l.op), ['read', 'write']);
  return run;
}

function attachedAs(d: Daemon, region: string): unknown[] {
  return d.lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith(`region "${region}": pid `) && l.msg.endsWith(' attached')).map((l) => l.dirtyTracking);
}

test('async: writes raise no fault, region sync finds them by PAGEMAP_SCAN, and a fresh daemon reads every byte back from the server', { skip }, async (t) => {
  const ms = await startMemserver(t);
  const dir = tempDir('async');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  const d1 = await startDaemon(t, [ms.address], dir);
  cli(d1, ['region', 'create', 'as', '--size', '16MiB', '--dirty-tracking', 'async', '--prefetch', 'none']);
  cli(d1, ['region', 'create', 'sy', '--size', '16MiB', '--dirty-tracking', 'wp', '--prefetch', 'none']);
  await until('the async log line', () => d1.lines.some((l) => l.msg === 'region "as" tracks dirty pages asynchronously (WP_ASYNC + PAGEMAP_SCAN): it is never evicted, not even under the daemon-wide cap (its pages count toward the cap)'));

  const a = await readThenWrite(t, d1, 'as', 61);
  const w = await readThenWrite(t, d1, 'sy', 62);
  assert.deepEqual([attachedAs(d1, 'as'), attachedAs(d1, 'sy')], [['async'], ['wp']]);
  const before = shown(d1, 'as');
  assert.equal(before.dirtyTracking, 'async');
  assert.equal(before.stats.dirtyTracking, 'async');
  // No fault told the async region of the writes; show's pagemap scan found them.
  assert.deepEqual([before.stats.faults.writeProtect, before.stats.dirtyPages, before.stats.residentPages], [0, PAGES, PAGES]);
  // The wp region (unchanged): one WP fault per written page, each page dirty at once.
  const wp = shown(d1, 'sy').stats;
  assert.deepEqual([wp.dirtyTracking, wp.faults.writeProtect, wp.dirtyPages], ['wp', PAGES, PAGES]);

  // Sync while the writer is still attached: the scan finds every written page.
  assert.equal(cli(d1, ['region', 'sync', 'as']).trim(), `sync "as": ${PAGES} pages (4.0 MiB): synced: ${PAGES} dirty page(s) written back and made durable`);
  const after = shown(d1, 'as').stats;
  assert.deepEqual([after.writtenBackPages, after.dirtyPages, after.faults.writeProtect], [PAGES, 0, 0]);
  // Nothing written since: a second sync finds nothing (the scan re-protected what it reported).
  assert.equal(cli(d1, ['region', 'sync', 'as']).trim(), 'sync "as": 0 pages (0): synced: 0 dirty page(s) written back and made durable');

  a.child.stdin!.write('go\n');
  w.child.stdin!.write('go\n');
  assert.deepEqual(await Promise.all([a.done, w.done]), [0, 0], a.stderr() + w.stderr());
  assert.equal(a.lines.find((l) => l.op === 'verify')!.mismatches, 0);
  // The writer detached (its pagemap scanned once more) and exited: kill -9 loses the daemon's memfd,
  // so what the next daemon serves can only come from the memory server.
  assert.equal(await d1.stop('SIGKILL'), 'SIGKILL');
  const d2 = await startDaemon(t, [ms.address], dir);
  const v = await runOk(t, d2.attachSocket, ['--region', 'as', '--pages', String(PAGES), '--op', 'verify', '--seed', '61']);
  assert.equal(v[0]!.mismatches, 0);
  const fresh = JSON.parse(cli(d2, ['region', 'show', 'as', '--json'])) as { stats: { faults: { remote: number; zero: number } } };
  assert.deepEqual([fresh.stats.faults.remote, fresh.stats.faults.zero], [PAGES, 0]);
});

test('async: two processes share a region; each one\'s writes are found in its own pagemap, and nothing more', { skip }, async (t) => {
  const ms = await startMemserver(t);
  const dir = tempDir('async2');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  const d1 = await startDaemon(t, [ms.address], dir);
  cli(d1, ['region', 'create', 'a2', '--size', '16MiB', '--dirty-tracking', 'async', '--prefetch', 'none']);
  const half = PAGES / 2;
  const synced = (n: number) => `sync "a2": ${n} pages (${n * 4 / 1024}.0 MiB): synced: ${n} dirty page(s) written back and made durable`;
  const a = await readThenWrite(t, d1, 'a2', 66, half, 0);
  // No fault told the daemon of these writes: show scans the pagemap, so its count is current.
  assert.equal(shown(d1, 'a2').stats.dirtyPages, half);
  assert.equal(cli(d1, ['region', 'sync', 'a2']).trim(), synced(half));
  // B maps the region after A's pages are in the memfd (and clean): arming its fresh mapping marks
  // none of them, so the next sync writes B's pages only.
  const b = await readThenWrite(t, d1, 'a2', 67, half, half);
  assert.deepEqual(attachedAs(d1, 'a2'), ['async', 'async']);
  assert.equal(cli(d1, ['region', 'sync', 'a2']).trim(), synced(half));
  assert.equal(shown(d1, 'a2').stats.faults.writeProtect, 0);
  a.child.stdin!.write('go\n');
  b.child.stdin!.write('go\n');
  assert.deepEqual(await Promise.all([a.done, b.done]), [0, 0], a.stderr() + b.stderr());
  assert.equal(await d1.stop('SIGKILL'), 'SIGKILL');
  const d2 = await startDaemon(t, [ms.address], dir);
  const va = await runOk(t, d2.attachSocket, ['--region', 'a2', '--pages', String(half), '--op', 'verify', '--seed', '66']);
  const vb = await runOk(t, d2.attachSocket, ['--region', 'a2', '--pages', String(half), '--first', String(half), '--op', 'verify', '--seed', '67']);
  assert.deepEqual([va[0]!.mismatches, vb[0]!.mismatches], [0, 0]);
});

test('async: kill -9 of farmemd after unscanned writes: the reattached memfd counts every page dirty, and sync saves them all', { skip }, async (t) => {
  const ms = await startMemserver(t);
  const dir = tempDir('asynck9');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  const d1 = await startDaemon(t, [ms.address], dir);
  cli(d1, ['region', 'create', 'ak', '--size', '16MiB', '--dirty-tracking', 'async', '--prefetch', 'none']);
  const run = await readThenWrite(t, d1, 'ak', 63);
  assert.equal(await d1.stop('SIGKILL'), 'SIGKILL');
  await until('libfarmem to notice', () => run.stderr().includes('lost farmemd'));
  const d2 = await startDaemon(t, [ms.address], dir);
  await until('the reattach', () => /reattached to farmemd/.test(run.stderr()));
  assert.ok(d2.lines.some((l) => /^region "ak": adopted the memfd of re-attaching pid \d+$/.test(String(l.msg))));
  assert.deepEqual(attachedAs(d2, 'ak'), ['async']);
  assert.equal(shown(d2, 'ak').stats.dirtyPages, PAGES);
  assert.equal(cli(d2, ['region', 'sync', 'ak']).trim(), `sync "ak": ${PAGES} pages (4.0 MiB): synced: ${PAGES} dirty page(s) written back and made durable`);
  run.child.stdin!.write('go\n');
  assert.equal(await run.done, 0, run.stderr());
  assert.equal(run.lines.find((l) => l.op === 'verify')!.mismatches, 0);
  assert.equal(await d2.stop('SIGKILL'), 'SIGKILL');
  const d3 = await startDaemon(t, [ms.address], dir);
  const v = await runOk(t, d3.attachSocket, ['--region', 'ak', '--pages', String(PAGES), '--op', 'verify', '--seed', '63']);
  assert.equal(v[0]!.mismatches, 0);
});

test('async: the Node attach API negotiates WP_ASYNC, and SIGTERM drains what it wrote', { skip }, async (t) => {
  const ms = await startMemserver(t);
  const dir = tempDir('asyncnode');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  const d1 = await startDaemon(t, [ms.address], dir);
  cli(d1, ['region', 'create', 'an', '--size', '8MiB', '--dirty-tracking', 'auto', '--prefetch', 'none']);
  assert.equal(shown(d1, 'an').stats.dirtyTracking, 'async');
  const run = nodeWriter(t, d1.attachSocket, 'an', 512, 64);
  await run.line((l) => l.ready === true);
  assert.deepEqual(attachedAs(d1, 'an'), ['async']);
  run.child.stdin!.write('go\n');
  assert.equal(await run.done, 0, run.stderr());
  assert.deepEqual(run.lines.find((l) => l.written !== undefined), { written: 512, mismatches: 0 });
  assert.equal(await d1.stop('SIGTERM'), 0);
  assert.ok(d1.lines.some((l) => l.msg === 'drained: 512 dirty page(s) written back'), JSON.stringify(d1.lines.slice(-5)));
  const d2 = await startDaemon(t, [ms.address], dir);
  const v = await runOk(t, d2.attachSocket, ['--region', 'an', '--pages', '512', '--op', 'verify', '--seed', '64']);
  assert.equal(v[0]!.mismatches, 0);
});

test('async refusals: no resident budget, no resize to one, no evict; auto picks wp where the region can be evicted', { skip }, async (t) => {
  const ms = await startMemserver(t);
  const d = await startDaemon(t, [ms.address]);
  const why = 'async write-protect cannot block a write between the read-back and the hole punch of an eviction, so that write would be lost; use --dirty-tracking wp (or auto) for a region with a resident budget';
  let r = farmem(d.socket, ['region', 'create', 'bad', '--size', '4MiB', '--resident', '1MiB', '--dirty-tracking', 'async']);
  assert.equal(r.stderr, `farmem: create region "bad": Expected no resident budget (0) for a region with dirty tracking async but received 1MiB: ${why}\n`);
  assert.equal(r.status, 2); // bad input, as every INVALID_ARGUMENT
  cli(d, ['region', 'create', 'az', '--size', '4MiB', '--dirty-tracking', 'async']);
  r = farmem(d.socket, ['region', 'resize', 'az', '--resident', '1MiB']);
  assert.equal(r.stderr, `farmem: resize region "az": Expected no resident budget (0) for a region with dirty tracking async but received 1MiB: ${why}\n`);
  assert.equal(r.status, 2);
  r = farmem(d.socket, ['region', 'evict', 'az']);
  assert.equal(r.stderr, 'farmem: evict region "az": the region tracks dirty pages asynchronously (dirty tracking async) and is never evicted: async write-protect cannot block a write between the read-back and the hole punch, so that write would be lost\n');
  assert.equal(r.status, 1);
  const az = cli(d, ['region', 'show', 'az']);
  assert.match(az, /^dirty tracking:\s+async: never evicted; its pages count toward the daemon-wide cap; dirty pages are found by a pagemap scan \(show, sync, drain\)$/m);
  assert.match(az, /^dirty pages:\s+0$/m);
  r = farmem(d.socket, ['region', 'create', 'odd', '--size', '4MiB', '--dirty-tracking', 'sometimes']);
  assert.equal(r.stderr, "error: option '--dirty-tracking <how>' argument 'sometimes' is invalid. Allowed choices are wp, async, auto.\n(run with --help for usage)\n");
  assert.equal(r.status, 2);

  // auto: wp with a budget, async without one.
  cli(d, ['region', 'create', 'ab', '--size', '4MiB', '--resident', '1MiB', '--dirty-tracking', 'auto']);
  assert.match(cli(d, ['region', 'show', 'ab']), /^dirty tracking:\s+auto \(now wp\): a region with a resident budget is evicted, which needs write-protect faults$/m);
  cli(d, ['region', 'create', 'au', '--size', '4MiB', '--dirty-tracking', 'auto']);
  assert.match(cli(d, ['region', 'show', 'au']), /^dirty tracking:\s+auto \(now async\): never evicted/m);
  // ...and a budget for it waits until no process tracks it asynchronously.
  const run = fmattach(t, d.attachSocket, ['--region', 'au', '--pages', '16', '--op', 'write', '--pause']);
  await run.line((l) => l.ready === 'write');
  r = farmem(d.socket, ['region', 'resize', 'au', '--resident', '1MiB']);
  assert.equal(r.stderr, `farmem: resize region "au": 1 process(es) attached with async dirty tracking (pid ${run.child.pid}); a resident budget needs write-protect faults, as an async write between the read-back and the hole punch of an eviction would be lost: detach them first\n`);
  assert.equal(r.status, 1);
  run.child.stdin!.write('go\n');
  assert.equal(await run.done, 0, run.stderr());
  await until('the detach', () => (JSON.parse(cli(d, ['region', 'show', 'au', '--json'])) as { stats: { attachments: unknown[] } }).stats.attachments.length === 0);
  cli(d, ['region', 'resize', 'au', '--resident', '1MiB']);
  assert.match(cli(d, ['region', 'show', 'au']), /^dirty tracking:\s+auto \(now wp\): a region with a resident budget is evicted/m);
});

test('auto never picks async under a daemon-wide resident cap; explicit async counts toward it but is not evicted', { skip }, async (t) => {
  const ms = await startMemserver(t);
  const d = await startDaemon(t, [ms.address], undefined, ['--resident-cap', '1MiB']);
  cli(d, ['region', 'create', 'capauto', '--size', '4MiB', '--dirty-tracking', 'auto']);
  assert.match(cli(d, ['region', 'show', 'capauto']), /^dirty tracking:\s+auto \(now wp\): the daemon-wide resident cap may evict it, which needs write-protect faults$/m);
  cli(d, ['region', 'create', 'capasync', '--size', '4MiB', '--dirty-tracking', 'async', '--prefetch', 'none']);
  // 512 pages (2 MiB) over a 1 MiB cap: nothing of the async region may go.
  await runOk(t, d.attachSocket, ['--region', 'capasync', '--pages', '512', '--op', 'write,verify', '--seed', '65']);
  const s = shown(d, 'capasync').stats;
  assert.deepEqual([s.dirtyTracking, s.residentPages, s.evictedPages], ['async', 512, 0]);
  await until('the over-cap log line', () => d.lines.some((l) => l.msg === 'over budget and nothing can be evicted: installing anyway' && l.region === 'capasync'));
});
