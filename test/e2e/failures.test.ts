// farmemd end to end when things go wrong: refused attaches, a process killed while its fault
// waits on a hung memory server, and a memory server that stops answering and comes back.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

import { rootUnavailable, userfaultfdUnavailable } from '../helpers/env';
import { workloadBin } from '../helpers/pattern';
import { fmattach, start, until } from '../attach/fixture';
import { cli, cliJson, farmemd, memoryServer, regionStats, stallProxy, writeBackAndDrop, type Daemon } from './fixture';

const skip = userfaultfdUnavailable() ?? false;

function c(d: Daemon, args: string[]) {
  return fmattach(d.attachSocket, args);
}

/** Runs a command as uid and gid 65534 with no supplementary groups (nobody:nogroup). */
function asNobody(cmd: string, args: string[]) {
  return start('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', cmd, ...args]);
}

/** The pid's thread is blocked in a userfaultfd fault (its wchan). */
function inFault(pid: number): boolean {
  try {
    return fs.readFileSync(`/proc/${pid}/wchan`, 'utf8') === 'handle_userfault';
  } catch {
    return false;
  }
}

test('refused attaches say which region and why', { skip: userfaultfdUnavailable() ?? rootUnavailable() ?? false }, async (t) => {
  const ms = await memoryServer(t);
  const d = await farmemd(t, ms.address);
  assert.equal((await cli(d, ['region', 'create', 'priv', '--size', '1MiB', '--mode', '600'])).code, 0);

  const acl = await asNobody(workloadBin('fmattach'), ['--socket', d.attachSocket, '--region', 'priv', '--pages', '1']).done;
  assert.equal(acl.code, 2);
  assert.equal(acl.stderr, 'fmattach: attach "priv": permission denied: uid 65534 is neither its owner (uid 0) nor in its group (gid 0), and mode 0600 gives others no read and write (errno EACCES)\n');

  const node = await asNobody(process.execPath, [path.join(__dirname, '..', 'attach', 'child.js'), d.attachSocket, 'error', 'priv']).done;
  assert.deepEqual(JSON.parse(node.stdout), { error: 'attach "priv": permission denied: uid 65534 is neither its owner (uid 0) nor in its group (gid 0), and mode 0600 gives others no read and write', code: 'PERMISSION_DENIED' });

  const unknown = await c(d, ['--region', 'nope', '--pages', '1']).done;
  assert.equal(unknown.code, 2);
  assert.equal(unknown.stderr, 'fmattach: attach "nope": not found (errno ENOENT)\n');

  for (const bad of ['Bad Name', 'a'.repeat(64)]) {
    const r = await c(d, ['--region', bad, '--pages', '1']).done;
    assert.equal(r.code, 2);
    assert.equal(r.stderr, `fmattach: attach "${bad}": Expected 1 to 63 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit, for region name but received "${bad}" (errno EINVAL)\n`);
  }

  // The daemon still serves: root (and the owner) may attach.
  const ok = await c(d, ['--region', 'priv', '--pages', '4', '--op', 'write,verify', '--seed', '3']).done;
  assert.equal(ok.code, 0, ok.stderr);
});

test('a memory server that hangs: a process killed mid-fault is torn down; one that waits completes with the right bytes', { skip }, async (t) => {
  const ms = await memoryServer(t);
  const proxy = await stallProxy(t, ms.address);
  const d = await farmemd(t, proxy.address);
  assert.equal((await cli(d, ['region', 'create', 'hang', '--size', '4MiB', '--prefetch', 'none'])).code, 0);
  const w = await c(d, ['--region', 'hang', '--pages', '1024', '--op', 'write', '--seed', '31']).done;
  assert.equal(w.code, 0, w.stderr);
  await writeBackAndDrop(d, 'hang');

  // 1. A process whose fault waits on the hung server is SIGKILLed.
  proxy.stall();
  const victim = c(d, ['--region', 'hang', '--pages', '1024', '--op', 'verify', '--seed', '31']);
  // Evicted pages may wait in the 1 MiB cache; the first one that is not there is read from the
  // server and the process blocks in its fault (wchan handle_userfault) until the read answers.
  const pid = victim.child.pid!;
  await until(() => inFault(pid), `pid ${pid} to block in a page fault`);
  assert.deepEqual((await regionStats(d, 'hang')).attachments.map((a) => a.pid), [pid]);
  assert.ok(inFault(pid), 'still blocked: its read waits on the stalled memory server');
  victim.child.kill('SIGKILL');
  const killed = await victim.done;
  assert.equal(killed.signal, 'SIGKILL');
  await d.waitLog((l) => l.pid === pid && typeof l.msg === 'string' && l.msg.includes('detached'), `pid ${pid} detached`);
  assert.deepEqual((await regionStats(d, 'hang')).attachments, []);

  // 2. Another process faults while the server still hangs: it waits (it has not exited), then
  // completes with the right bytes once the server answers again.
  const waiter = c(d, ['--region', 'hang', '--pages', '1024', '--op', 'verify', '--seed', '31']);
  let exited = false;
  void waiter.done.then(() => (exited = true));
  await until(() => inFault(waiter.child.pid!), 'the second process to block in a page fault');
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(exited, false, 'the faulting process waits while no memory server answers');
  assert.ok(inFault(waiter.child.pid!));
  proxy.resume();
  const v = await waiter.done;
  assert.equal(v.code, 0, v.stderr);
  assert.equal(JSON.parse(v.stdout).mismatches, 0);
  assert.equal(JSON.parse(v.stdout).checksum, JSON.parse(w.stdout).checksum);
  assert.equal(d.child.exitCode, null, 'farmemd is still running');
});

test('a memory server that goes away and comes back: the faulting process waits, then gets the right bytes', { skip }, async (t) => {
  const ms = await memoryServer(t);
  const proxy = await stallProxy(t, ms.address);
  const d = await farmemd(t, proxy.address);
  assert.equal((await cli(d, ['region', 'create', 'gone', '--size', '4MiB', '--prefetch', 'none'])).code, 0);
  const w = await c(d, ['--region', 'gone', '--pages', '1024', '--op', 'write', '--seed', '41']).done;
  assert.equal(w.code, 0, w.stderr);
  await writeBackAndDrop(d, 'gone');

  proxy.goDown();
  const waiter = c(d, ['--region', 'gone', '--pages', '1024', '--op', 'verify', '--seed', '41']);
  let exited = false;
  void waiter.done.then(() => (exited = true));
  await until(() => inFault(waiter.child.pid!), 'the process to block in a page fault');
  await until(() => proxy.refused > 0, 'farmemd to try the memory server again');
  assert.equal(exited, false, 'the faulting process waits while the memory server is gone');
  assert.ok(inFault(waiter.child.pid!));
  proxy.comeBack();
  const v = await waiter.done;
  assert.equal(v.code, 0, v.stderr);
  assert.equal(JSON.parse(v.stdout).mismatches, 0);
  assert.equal(JSON.parse(v.stdout).checksum, JSON.parse(w.stdout).checksum);
});

test('a region created with --on-unavailable sigbus: after fault.unavailable_timeout the faulting process gets SIGBUS', { skip }, async (t) => {
  const ms = await memoryServer(t);
  const proxy = await stallProxy(t, ms.address);
  const d = await farmemd(t, proxy.address, { config: '[fault]\nunavailable_timeout = "1s"\n' });
  assert.equal((await cli(d, ['region', 'create', 'strict', '--size', '8MiB', '--prefetch', 'none', '--on-unavailable', 'sigbus'])).code, 0);
  const w = await c(d, ['--region', 'strict', '--pages', '2048', '--op', 'write', '--seed', '43']).done;
  assert.equal(w.code, 0, w.stderr);
  await writeBackAndDrop(d, 'strict'); // the 1 MiB cache keeps only a quarter of it

  proxy.goDown();
  const started = Date.now();
  const r = await c(d, ['--region', 'strict', '--pages', '2048', '--op', 'verify', '--seed', '43']).done;
  assert.equal(r.signal, 'SIGBUS', `exit ${r.code}, stderr ${r.stderr}`);
  assert.ok(Date.now() - started >= 900, 'SIGBUS came before the configured timeout');
  // The daemon is fine, and once the server is back (its health check passed: within
  // unavailable_timeout from then a fault is answered) a new process reads every byte.
  proxy.comeBack();
  for (let i = 0; (await cliJson<{ state: string }[]>(d, ['servers']))[0]!.state !== 'up'; i++) {
    assert.ok(i < 200, 'the server is not up again after 20 s');
    await new Promise((r) => setTimeout(r, 100));
  }
  const v = await c(d, ['--region', 'strict', '--pages', '2048', '--op', 'verify', '--seed', '43']).done;
  assert.equal(v.code, 0, v.stderr);
  assert.equal(JSON.parse(v.stdout).mismatches, 0);
  assert.equal(d.child.exitCode, null, 'farmemd is still running');
});
