// Crash safety on the real kernel: farmemd killed with SIGKILL in the middle of a write run, SIGTERM
// draining dirty pages, and a memory server at capacity. The memory server is an external child
// so that it outlives farmemd (the embedded one dies with it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { userfaultfdUnavailable } from '../helpers/env';
import { tempDir } from '../helpers/farmemd';
import { cli, fmattach, nodeWriter, runOk, show, startDaemon, startMemserver, stateDir, until } from './rig';

const skip = userfaultfdUnavailable() ?? false;

test('kill -9 of farmemd mid-write: fmattach blocks, reattaches to the restarted daemon, and no byte is lost', { skip }, async (t) => {
  const ms = await startMemserver(t);
  const dir = stateDir(t, 'crash');
  const d1 = await startDaemon(t, [ms.address], dir);
  cli(d1, ['region', 'create', 'k9', '--size', '64MiB', '--resident', '1MiB']);
  const run = fmattach(t, d1.attachSocket, ['--region', 'k9', '--pages', '8192', '--op', 'write', '--seed', '41', '--pattern', 'random:7', '--pause']);
  await run.line((l) => l.ready === 'write');
  run.child.stdin!.write('go\n');
  // Crash once part of the run went to the memory server and part is only in the memfd.
  await until('write-backs before the crash', () => show(d1, 'k9').writtenBackPages >= 200);
  assert.equal(await d1.stop('SIGKILL'), 'SIGKILL');
  assert.equal(run.lines.some((l) => l.op === 'write'), false, 'the run finished before the crash: nothing was tested');
  await until('libfarmem to notice', () => run.stderr().includes('lost farmemd'));

  const d2 = await startDaemon(t, [ms.address], dir);
  assert.equal(await run.done, 0, run.stderr());
  assert.equal(run.lines.find((l) => l.op === 'write')!.mismatches, 0);
  assert.match(run.stderr(), /libfarmem: region "k9": reattached to farmemd \(attachment \d+\)/);
  assert.ok(d2.lines.some((l) => /^region "k9": adopted the memfd of re-attaching pid \d+$/.test(String(l.msg))), 'the new daemon did not adopt the memfd');
  const v = await runOk(t, d2.attachSocket, ['--region', 'k9', '--pages', '8192', '--op', 'verify', '--seed', '41']);
  assert.equal(v[0]!.mismatches, 0);
});

test('kill -9 of farmemd while a Node process writes through the Node API: it reattaches on its own and no byte is lost', { skip }, async (t) => {
  const ms = await startMemserver(t);
  const dir = stateDir(t, 'crashnode');
  const d1 = await startDaemon(t, [ms.address], dir);
  cli(d1, ['region', 'create', 'nk', '--size', '32MiB', '--resident', '1MiB']);
  const run = nodeWriter(t, d1.attachSocket, 'nk', 4096, 43);
  await run.line((l) => l.ready === true);
  run.child.stdin!.write('go\n');
  await until('write-backs before the crash', () => show(d1, 'nk').writtenBackPages >= 200);
  assert.equal(await d1.stop('SIGKILL'), 'SIGKILL');
  assert.equal(run.lines.some((l) => l.written !== undefined), false, 'the run finished before the crash: nothing was tested');

  const d2 = await startDaemon(t, [ms.address], dir);
  assert.equal(await run.done, 0, run.stderr());
  assert.deepEqual(run.lines.find((l) => l.written !== undefined), { written: 4096, mismatches: 0 });
  assert.match(run.stderr(), /reattached to farmemd \(attachment \d+\)/);
  const v = await runOk(t, d2.attachSocket, ['--region', 'nk', '--pages', '4096', '--op', 'verify', '--seed', '43']);
  assert.equal(v[0]!.mismatches, 0);
});

test('SIGTERM writes every dirty page back before exiting 0; a fresh farmemd reads them all from the server', { skip }, async (t) => {
  const ms = await startMemserver(t);
  const dir = stateDir(t, 'drain');
  const d1 = await startDaemon(t, [ms.address], dir);
  cli(d1, ['region', 'create', 'dr', '--size', '16MiB', '--resident', '8MiB', '--prefetch', 'none']);
  // The app exits first: the daemon's memfd is then the only copy of the 1024 dirty pages.
  await runOk(t, d1.attachSocket, ['--region', 'dr', '--pages', '1024', '--op', 'write', '--seed', '51']);
  const before = show(d1, 'dr');
  assert.equal(before.dirtyPages, 1024);
  assert.equal(before.writtenBackPages, 0);
  assert.equal(await d1.stop('SIGTERM'), 0);
  assert.ok(d1.lines.some((l) => l.msg === 'drained: 1024 dirty page(s) written back' && l.pages === 1024), JSON.stringify(d1.lines.slice(-5)));

  const d2 = await startDaemon(t, [ms.address], dir);
  const v = await runOk(t, d2.attachSocket, ['--region', 'dr', '--pages', '1024', '--op', 'verify', '--seed', '51']);
  assert.equal(v[0]!.mismatches, 0);
  const after = JSON.parse(cli(d2, ['region', 'show', 'dr', '--json'])) as { stats: { faults: { remote: number; zero: number } } };
  assert.deepEqual([after.stats.faults.remote, after.stats.faults.zero], [1024, 0]);
});

test('a memory server at capacity stalls write-back (log line, region show), drops nothing, and resumes when it has room', { skip }, async (t) => {
  const data = tempDir('msdata');
  t.after(() => fs.rmSync(data, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  const small = await startMemserver(t, { capacity: '1MiB', dataDir: data });
  const d = await startDaemon(t, [small.address]);
  cli(d, ['region', 'create', 'cap', '--size', '16MiB', '--resident', '1MiB']);
  const run = fmattach(t, d.attachSocket, ['--region', 'cap', '--pages', '1024', '--op', 'write', '--seed', '61', '--pattern', 'random:3']);
  await until('the stall', () => show(d, 'cap').writeBackStalled === true);
  await until('the stall log line', () => d.lines.some((l) => String(l.msg).startsWith('write-back stalled')));
  const line = d.lines.find((l) => String(l.msg).startsWith('write-back stalled'));
  assert.equal(line?.msg, 'write-back stalled: dirty pages stay resident and are retried until a memory server acknowledges them');
  assert.match(String(line?.reason), /capacity/);
  const s = show(d, 'cap');
  assert.ok(s.writeBackStalls! >= 1);
  assert.ok(s.dirtyPages > 0);
  assert.match(cli(d, ['region', 'show', 'cap']), /^write-back: +stalled: a memory server does not acknowledge writes; dirty pages stay resident \(\d+ stall\(s\) so far\)$/m);
  assert.equal(run.child.exitCode, null, 'the writer finished although write-back was stalled');

  // The same server, restarted with room: the journal keeps what it had acknowledged.
  await small.stop();
  await startMemserver(t, { listen: small.address, capacity: '64MiB', dataDir: data });
  assert.equal(await run.done, 0, run.stderr());
  assert.equal(run.lines[0]!.mismatches, 0);
  await until('write-back resumed', () => d.lines.some((l) => l.msg === 'write-back resumed'));
  assert.equal(show(d, 'cap').writeBackStalled, false);
  const v = await runOk(t, d.attachSocket, ['--region', 'cap', '--pages', '1024', '--op', 'verify', '--seed', '61']);
  assert.equal(v[0]!.mismatches, 0);
});
