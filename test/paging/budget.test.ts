// Paging under a resident budget on the real kernel: fmattach (libfarmem) writes random pages over a
// region four times its budget, through a real farmemd with a 1 MiB page cache and a real memory
// server; every page must read back right after many eviction and write-back cycles.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { userfaultfdUnavailable } from '../helpers/env';
import { execFileSync } from 'node:child_process';
import { cli, FARMEM, runOk, show, startDaemon, startMemserver, fmattach } from './rig';

const skip = userfaultfdUnavailable() ?? false;
const PAGES = 2048; // 8 MiB over a 2 MiB budget

test('random writes over 4x the resident budget verify after many evictions and write-backs', { skip }, async (t) => {
  const ms = await startMemserver(t);
  const d = await startDaemon(t, [ms.address]);
  cli(d, ['region', 'create', 'big', '--size', '16MiB', '--resident', '2MiB']);
  const lines = await runOk(t, d.attachSocket, ['--region', 'big', '--pages', String(PAGES), '--op', 'write,verify,write,verify', '--seed', '11', '--pattern', 'random:4']);
  assert.deepEqual(lines.map((l) => [l.op, l.mismatches]), [['write', 0], ['verify', 0], ['write', 0], ['verify', 0]]);
  // A fresh process (so no page is still mapped from the writer's run) in another order.
  const again = await runOk(t, d.attachSocket, ['--region', 'big', '--pages', String(PAGES), '--op', 'verify', '--seed', '11', '--pattern', 'reverse']);
  assert.equal(again[0]!.mismatches, 0);
  const s = show(d, 'big');
  assert.ok(s.residentPages <= 512, `resident ${s.residentPages} pages over a 512-page budget`);
  assert.ok(s.writtenBackPages >= 2 * (PAGES - 512), `written back ${s.writtenBackPages}`);
  assert.ok(s.evictedPages >= 4 * (PAGES - 512), `evicted ${s.evictedPages}`);
});

test('a process after one that left pages in the memfd: its writes are tracked, no write-protect fault storm, every byte right', { skip }, async (t) => {
  // The first writer's last cache-hit installs can reach the pager after its exit was seen; those
  // pages are in the memfd all the same. The pager once dropped that news, and the next process's
  // write-protect faults on such a page were answered with a wake forever (millions of faults).
  const ms = await startMemserver(t);
  const d = await startDaemon(t, [ms.address]);
  cli(d, ['region', 'create', 'seq', '--size', '16MiB', '--resident', '4MiB']);
  await runOk(t, d.attachSocket, ['--region', 'seq', '--pages', '4096', '--op', 'write', '--seed', '91', '--pattern', 'random:5']);
  const second = fmattach(t, d.attachSocket, ['--region', 'seq', '--pages', '4096', '--op', 'write,verify', '--seed', '92', '--pattern', 'random:5']);
  let timer: NodeJS.Timeout | undefined;
  const bounded = await Promise.race([second.done, new Promise<'stuck'>((res) => (timer = setTimeout(() => res('stuck'), 90_000)))]);
  clearTimeout(timer);
  const wp = show(d, 'seq').faults.writeProtect;
  assert.notEqual(bounded, 'stuck', `the second writer made no progress in 90 s (${wp} write-protect faults so far)`);
  assert.equal(bounded, 0, second.stderr());
  assert.deepEqual(second.lines.map((l) => [l.op, l.mismatches]), [['write', 0], ['verify', 0]]);
  assert.ok(wp <= 3 * 4096, `${wp} write-protect faults for 4096 written pages`);
});

test('two processes write disjoint pages of one region concurrently, then each verifies the other\'s', { skip }, async (t) => {
  const ms = await startMemserver(t);
  const d = await startDaemon(t, [ms.address]);
  cli(d, ['region', 'create', 'shared', '--size', '16MiB', '--resident', '2MiB']);
  const half = String(PAGES / 2);
  const a = fmattach(t, d.attachSocket, ['--region', 'shared', '--pages', half, '--first', '0', '--op', 'write', '--seed', '21', '--pattern', 'random:1']);
  const b = fmattach(t, d.attachSocket, ['--region', 'shared', '--pages', half, '--first', half, '--op', 'write', '--seed', '22', '--pattern', 'random:2']);
  assert.deepEqual(await Promise.all([a.done, b.done]), [0, 0], a.stderr() + b.stderr());
  const va = fmattach(t, d.attachSocket, ['--region', 'shared', '--pages', half, '--first', half, '--op', 'verify', '--seed', '22', '--pattern', 'random:5']);
  const vb = fmattach(t, d.attachSocket, ['--region', 'shared', '--pages', half, '--first', '0', '--op', 'verify', '--seed', '21', '--pattern', 'random:6']);
  assert.deepEqual(await Promise.all([va.done, vb.done]), [0, 0], va.stderr() + vb.stderr());
  assert.deepEqual([va.lines[0]!.mismatches, vb.lines[0]!.mismatches], [0, 0]);
  const s = show(d, 'shared');
  assert.ok(s.writtenBackPages >= PAGES - 512, `written back ${s.writtenBackPages}`);
});

test('region sync writes every dirty page back; region evict then drops them all and they read back', { skip }, async (t) => {
  const ms = await startMemserver(t);
  const d = await startDaemon(t, [ms.address]);
  cli(d, ['region', 'create', 'ops', '--size', '16MiB', '--resident', '8MiB', '--prefetch', 'none']);
  await runOk(t, d.attachSocket, ['--region', 'ops', '--pages', '1024', '--op', 'write', '--seed', '31']);
  const before = show(d, 'ops');
  assert.equal(before.dirtyPages, 1024);
  assert.equal(before.writtenBackPages, 0);
  assert.equal(cli(d, ['region', 'sync', 'ops']).trim(), 'sync "ops": 1024 pages (4.0 MiB): synced: 1024 dirty page(s) written back and made durable');
  const synced = show(d, 'ops');
  assert.equal(synced.dirtyPages, 0);
  assert.equal(synced.writtenBackPages, 1024);
  assert.equal(synced.residentPages, 1024);
  assert.equal(cli(d, ['region', 'evict', 'ops']).trim(), 'evict "ops": 1024 pages (4.0 MiB): dropped 1024 clean page(s)');
  assert.equal(show(d, 'ops').residentPages, 0);
  const v = await runOk(t, d.attachSocket, ['--region', 'ops', '--pages', '1024', '--op', 'verify', '--seed', '31']);
  assert.equal(v[0]!.mismatches, 0);
});

test('region sync on a terminal draws a progress bar that ends at every dirty page', { skip }, async (t) => {
  const ms = await startMemserver(t);
  const d = await startDaemon(t, [ms.address]);
  cli(d, ['region', 'create', 'bar', '--size', '64MiB', '--resident', '64MiB', '--prefetch', 'none']);
  await runOk(t, d.attachSocket, ['--region', 'bar', '--pages', '8192', '--op', 'write', '--seed', '71']);
  // script(1) gives the CLI a pseudo-terminal (the bar is drawn only there) and copies it to stdout.
  const cmd = [process.execPath, FARMEM, '--socket', d.socket, 'region', 'sync', 'bar'].map((a) => `'${a}'`).join(' ');
  const out = execFileSync('script', ['-qec', cmd, '/dev/null'], { encoding: 'utf8', env: { ...process.env, FARMEM_SOCKET: '' } });
  const frames = out.split('\r').filter((f) => f.startsWith('sync bar ['));
  assert.ok(frames.length >= 2, JSON.stringify(out));
  assert.equal(frames.at(-1)!.split('\n')[0], `sync bar [${'#'.repeat(30)}] 100% 8192/8192 pages`);
  assert.match(out, /sync "bar": 8192 pages \(32\.0 MiB\): synced: 8192 dirty page\(s\) written back and made durable/);
  assert.equal(show(d, 'bar').dirtyPages, 0);
});
