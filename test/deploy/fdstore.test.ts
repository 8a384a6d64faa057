// systemd's fd store, with this test as the service manager (a datagram socket named by
// NOTIFY_SOCKET): farmemd stores each region memfd (FDSTORE=1), and takes it back from LISTEN_FDS
// after a crash. The case it exists for: farmemd is killed -9 after the process that wrote the
// pages exited, so nothing but the store holds the only copy of pages never written back.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fdpass, memfd } from '../../daemon/native';
import { takeListenFds } from '../../daemon/lifecycle/fdstore';
import { userfaultfdUnavailable } from '../helpers/env';
import { startFarmemd, tempDir, type Farmemd } from '../helpers/farmemd';
import { cli, fmattach, runOk, show, startMemserver, until, type Daemon } from '../paging/rig';

const skip = userfaultfdUnavailable() ?? false;
const PAGES = 1024;

interface Manager {
  path: string;
  /** Every message so far, with the fds that came with it (the test closes them). */
  got: Array<{ text: string; fds: number[] }>;
  /** Reads what has arrived; returns the messages not seen by earlier calls. */
  poll(): Array<{ text: string; fds: number[] }>;
}

function manager(t: TestContext, dir: string): Manager {
  const p = path.join(dir, 'notify');
  const sock = fdpass.dgramBind(p);
  const m: Manager = {
    path: p,
    got: [],
    poll() {
      const fresh: Array<{ text: string; fds: number[] }> = [];
      for (let r = fdpass.recv(sock, { timeoutMs: 0 }); r !== null; r = fdpass.recv(sock, { timeoutMs: 0 })) fresh.push({ text: r.payload.toString(), fds: r.fds });
      m.got.push(...fresh);
      return fresh;
    },
  };
  t.after(() => {
    m.poll();
    for (const x of m.got) for (const fd of x.fds) closeQuietly(fd);
    memfd.close(sock);
  });
  return m;
}

function closeQuietly(fd: number): void {
  try {
    memfd.close(fd);
  } catch {
    /* already closed */
  }
}

async function daemon(t: TestContext, dir: string, servers: string[], notify: string, listenFds: Array<{ fd: number; name: string }> = []): Promise<Daemon> {
  const attachSocket = path.join(dir, 'attach.sock');
  const f: Farmemd = await startFarmemd({ dir, servers, args: ['--attach-socket', attachSocket, '--cache-size', '1MiB'], env: { NOTIFY_SOCKET: notify }, listenFds });
  t.after(() => f.stop('SIGKILL'));
  return { ...f, attachSocket };
}

const regionId = (d: Daemon, name: string) => (JSON.parse(cli(d, ['region', 'show', name, '--json'])) as { id: string }).id;

/** O_CLOEXEC as /proc/PID/fdinfo/FD shows it (flags, octal). */
function cloexec(pid: number, fd: number): boolean {
  const flags = /^flags:\s+(\d+)$/m.exec(fs.readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))![1]!;
  return (parseInt(flags, 8) & 0o2000000) !== 0;
}

/**
 * Writes PAGES pages with fmattach (which exits), checks they are dirty and only in the memfd,
 * kills farmemd -9, and returns the memfd the manager got in FDSTORE=1 (now its only holder).
 */
async function writeThenCrash(t: TestContext, tag: string): Promise<{ dir: string; ms: { address: string }; mgr: Manager; id: string; stored: number }> {
  const ms = await startMemserver(t);
  const dir = tempDir(tag);
  t.after(() => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  const mgr = manager(t, dir);
  const d1 = await daemon(t, dir, [ms.address], mgr.path);
  // A budget far above what is written: nothing is evicted, so nothing is written back.
  cli(d1, ['region', 'create', 'kept', '--size', '16MiB', '--resident', '16MiB', '--prefetch', 'none']);
  const id = regionId(d1, 'kept');
  await runOk(t, d1.attachSocket, ['--region', 'kept', '--pages', String(PAGES), '--op', 'write', '--seed', '61', '--pattern', 'random:3']);
  // Write faults reach the pager's counts in batches: wait for all of them (bounded).
  await until('every written page counted dirty', () => show(d1, 'kept').dirtyPages === PAGES);
  assert.equal(show(d1, 'kept').writtenBackPages, 0);
  assert.equal(await d1.stop('SIGKILL'), 'SIGKILL');
  const stores = mgr.poll().filter((m) => m.text.startsWith('FDSTORE=1'));
  assert.deepEqual(stores.map((m) => [m.text, m.fds.length]), [[`FDSTORE=1\nFDNAME=region-${id}`, 1]]);
  const stored = stores[0]!.fds[0]!;
  // The pages are in that memfd and nowhere else now.
  const bytes = memfd.dataRanges(stored).reduce((n, r) => n + r.length, 0);
  assert.equal(bytes, PAGES * 4096);
  return { dir, ms, mgr, id, stored };
}

test('kill -9 of farmemd after the writer exited: the memfd comes back from the fd store and every page reaches the memory server', { skip }, async (t) => {
  const { dir, ms, mgr, id, stored } = await writeThenCrash(t, 'fdstore');
  const d2 = await daemon(t, dir, [ms.address], mgr.path, [{ fd: stored, name: `region-${id}` }]);
  const line = d2.lines.find((l) => l.regionId === id && String(l.msg).includes('fd store'));
  assert.equal(line?.msg, `region "kept": adopted its memfd from the systemd fd store: ${PAGES} dirty page(s) to write back`);
  assert.deepEqual([line.dirtyPages, line.residentPages, line.fd], [PAGES, PAGES, 3]);
  assert.ok(d2.lines.some((l) => l.msg === 'fd store: 1 fd(s) passed by the service manager'));
  // Kept as fd 3, close-on-exec (so nothing farmemd runs inherits it), and stored again (systemd
  // drops the duplicate of an fd it already holds).
  assert.match(fs.readlinkSync(`/proc/${d2.child.pid}/fd/3`), /^\/memfd:farmem:kept \(deleted\)$/);
  assert.equal(cloexec(d2.child.pid!, 3), true);
  assert.deepEqual(mgr.poll().filter((m) => m.text.startsWith('FDSTORE')).map((m) => m.text), [`FDSTORE=1\nFDNAME=region-${id}`]);
  assert.equal(show(d2, 'kept').dirtyPages, PAGES);

  // Written back and made durable; then a daemon with an empty page cache and no fd store must
  // fetch every page from the memory server.
  cli(d2, ['region', 'sync', 'kept']);
  const s = show(d2, 'kept');
  assert.deepEqual([s.writtenBackPages, s.dirtyPages], [PAGES, 0]);
  assert.equal(await d2.stop('SIGKILL'), 'SIGKILL');
  mgr.poll();
  const d3 = await daemon(t, dir, [ms.address], mgr.path);
  const v = await runOk(t, d3.attachSocket, ['--region', 'kept', '--pages', String(PAGES), '--op', 'verify', '--seed', '61', '--pattern', 'random:3']);
  assert.equal(v[0]!.mismatches, 0);
  const after = JSON.parse(cli(d3, ['region', 'show', 'kept', '--json'])) as { stats: { faults: { remote: number; zero: number } } };
  assert.deepEqual([after.stats.faults.remote, after.stats.faults.zero], [PAGES, 0]);

  // Deleting the region drops its memfd from the store.
  mgr.poll();
  cli(d3, ['region', 'delete', 'kept']);
  assert.deepEqual(mgr.poll().map((m) => m.text).filter((x) => x.startsWith('FDSTORE')), [`FDSTOREREMOVE=1\nFDNAME=region-${id}`]);
});

test('a process still attached across the crash reattaches and joins the memfd the fd store gave back', { skip }, async (t) => {
  const ms = await startMemserver(t);
  const dir = tempDir('fdjoin');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  const mgr = manager(t, dir);
  const d1 = await daemon(t, dir, [ms.address], mgr.path);
  cli(d1, ['region', 'create', 'live', '--size', '16MiB', '--resident', '16MiB', '--prefetch', 'none']);
  const id = regionId(d1, 'live');
  const run = fmattach(t, d1.attachSocket, ['--region', 'live', '--pages', String(PAGES), '--op', 'write,verify', '--seed', '62', '--pause']);
  await run.line((l) => l.ready === 'write');
  run.child.stdin!.write('go\n');
  await run.line((l) => l.ready === 'verify');
  assert.equal(await d1.stop('SIGKILL'), 'SIGKILL');
  const stored = mgr.poll().find((m) => m.text === `FDSTORE=1\nFDNAME=region-${id}`)!.fds[0]!;
  await until('libfarmem to notice', () => run.stderr().includes('lost farmemd'));

  const d2 = await daemon(t, dir, [ms.address], mgr.path, [{ fd: stored, name: `region-${id}` }]);
  await until('the reattach', () => /reattached to farmemd \(attachment \d+\)/.test(run.stderr()));
  run.child.stdin!.write('go\n');
  assert.equal(await run.done, 0, run.stderr());
  assert.equal(run.lines.find((l) => l.op === 'verify')!.mismatches, 0);
  // Same file: the region kept the memfd from the store (fd 3), no second adoption.
  assert.ok(d2.lines.some((l) => l.msg === `region "live": adopted its memfd from the systemd fd store: ${PAGES} dirty page(s) to write back`));
  assert.equal(d2.lines.some((l) => String(l.msg).includes('adopted the memfd of re-attaching pid')), false);
  assert.ok(d2.lines.some((l) => l.msg === `region "live": pid ${run.child.pid} attached` && l.reattach === true));
  assert.match(fs.readlinkSync(`/proc/${d2.child.pid}/fd/3`), /^\/memfd:farmem:live \(deleted\)$/);
  cli(d2, ['region', 'sync', 'live']);
  assert.deepEqual([show(d2, 'live').writtenBackPages, show(d2, 'live').dirtyPages], [PAGES, 0]);
});

test('the same crash without the fd store loses the pages (what the store is for)', { skip }, async (t) => {
  const { dir, ms, mgr, stored } = await writeThenCrash(t, 'fdlost');
  // A service manager that kept nothing (and the manager's cleanup must not close the number again).
  memfd.close(stored);
  for (const m of mgr.got) m.fds = m.fds.filter((fd) => fd !== stored);
  const d2 = await daemon(t, dir, [ms.address], mgr.path);
  assert.equal(d2.lines.some((l) => String(l.msg).includes('adopted its memfd')), false);
  assert.equal(show(d2, 'kept').dirtyPages, 0);
  const r = fmattach(t, d2.attachSocket, ['--region', 'kept', '--pages', String(PAGES), '--op', 'verify', '--seed', '61', '--pattern', 'random:3']);
  assert.equal(await r.done, 1, r.stderr());
  assert.equal(r.lines[0]!.mismatches, PAGES);
});

test('fds the daemon cannot use are refused, closed and removed from the store; the region gets a fresh memfd', { skip }, async (t) => {
  const dir = tempDir('fdrefuse');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  const mgr = manager(t, dir);
  const d1 = await daemon(t, dir, ['127.0.0.1:1'], mgr.path);
  cli(d1, ['region', 'create', 'r1', '--size', '2MiB']);
  const id = regionId(d1, 'r1');
  await d1.stop('SIGKILL');
  mgr.poll();

  const unknown = crypto.randomUUID();
  const fds = [memfd.create('a', 4096), memfd.create('b', 1024 * 1024), memfd.create('c', 4096), fs.openSync(path.join(dir, 'plain'), 'w')];
  t.after(() => fds.forEach(closeQuietly));
  const names = [`region-${unknown}`, `region-${id}`, 'other', `region-${id}`];
  const d2 = await daemon(t, dir, ['127.0.0.1:1'], mgr.path, fds.map((fd, i) => ({ fd, name: names[i]! })));
  const refused = d2.lines.filter((l) => String(l.msg).startsWith('fd store: refused')).map((l) => l.msg);
  assert.deepEqual(refused, [
    `fd store: refused fd 3 "region-${unknown}": no region with id ${unknown} in the registry (deleted while farmemd was down?); closed it and removed "region-${unknown}" from the store`,
    `fd store: refused fd 4 "region-${id}": region "r1": the memfd is 1048576 bytes, the region 2097152; closed it and removed "region-${id}" from the store`,
    `fd store: refused fd 5 "other": the name is not region-<region id>; closed it and removed "other" from the store`,
    `fd store: refused fd 6 "region-${id}": region "r1": it is not a memfd but ${path.join(dir, 'plain')}; closed it and removed "region-${id}" from the store`,
  ]);
  // Every refused fd is closed; the region has a new memfd, stored under its name after the removals.
  const open = fs.readdirSync(`/proc/${d2.child.pid}/fd`).map((fd) => {
    try {
      return fs.readlinkSync(`/proc/${d2.child.pid}/fd/${fd}`);
    } catch {
      return ''; // closed meanwhile
    }
  });
  for (const target of ['/memfd:a (deleted)', '/memfd:b (deleted)', '/memfd:c (deleted)', path.join(dir, 'plain')]) assert.equal(open.includes(target), false, `${target} still open in farmemd`);
  assert.ok(open.includes('/memfd:farmem:r1 (deleted)'), 'no fresh memfd for r1');
  assert.deepEqual(
    mgr.poll().filter((m) => m.text.startsWith('FDSTORE')).map((m) => m.text),
    [
      `FDSTOREREMOVE=1\nFDNAME=region-${unknown}`,
      `FDSTOREREMOVE=1\nFDNAME=region-${id}`,
      'FDSTOREREMOVE=1\nFDNAME=other',
      `FDSTOREREMOVE=1\nFDNAME=region-${id}`,
      `FDSTORE=1\nFDNAME=region-${id}`,
    ],
  );
  assert.equal(d2.lines.some((l) => String(l.msg).includes('adopted its memfd')), false);
});

test('two memfds for one region: the first is adopted with the pages it holds, the second refused', { skip }, async (t) => {
  const dir = tempDir('fddup');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  const mgr = manager(t, dir);
  const d1 = await daemon(t, dir, ['127.0.0.1:1'], mgr.path);
  cli(d1, ['region', 'create', 'r2', '--size', '2MiB']);
  const id = regionId(d1, 'r2');
  await d1.stop('SIGKILL');
  mgr.poll();

  const first = memfd.create('first', 2 * 1024 * 1024);
  const second = memfd.create('second', 2 * 1024 * 1024);
  t.after(() => [first, second].forEach(closeQuietly));
  // Pages 0 and 5 hold data: they are what the adopted memfd brings back.
  memfd.pwrite(first, Buffer.alloc(4096, 1), 0);
  memfd.pwrite(first, Buffer.alloc(4096, 2), 5 * 4096);
  const name = `region-${id}`;
  const d2 = await daemon(t, dir, ['127.0.0.1:1'], mgr.path, [{ fd: first, name }, { fd: second, name }]);
  assert.deepEqual(
    d2.lines.filter((l) => String(l.msg).includes('fd store:') || String(l.msg).includes('adopted')).map((l) => l.msg),
    [
      'fd store: 2 fd(s) passed by the service manager',
      `fd store: refused fd 4 "${name}": region "r2": a second memfd for the same region; closed it and removed "${name}" from the store`,
      'region "r2": adopted its memfd from the systemd fd store: 2 dirty page(s) to write back',
    ],
  );
  assert.match(fs.readlinkSync(`/proc/${d2.child.pid}/fd/3`), /^\/memfd:first \(deleted\)$/);
  // Removed by name (both copies), then the adopted one stored again.
  assert.deepEqual(mgr.poll().filter((m) => m.text.startsWith('FDSTORE')).map((m) => m.text), [`FDSTOREREMOVE=1\nFDNAME=${name}`, `FDSTORE=1\nFDNAME=${name}`]);
  assert.deepEqual([show(d2, 'r2').residentPages, show(d2, 'r2').dirtyPages], [2, 2]);
});

test('takeListenFds: fds from 3 with their names, only for our pid, and the variables are unset', () => {
  const env: NodeJS.ProcessEnv = { LISTEN_PID: '4242', LISTEN_FDS: '2', LISTEN_FDNAMES: 'region-a:region-b', KEEP: '1' };
  assert.deepEqual(takeListenFds(env, 4242), { fds: [{ fd: 3, name: 'region-a' }, { fd: 4, name: 'region-b' }], ignored: null });
  assert.deepEqual(env, { KEEP: '1' });
  assert.deepEqual(takeListenFds({ LISTEN_PID: '4242', LISTEN_FDS: '1' }, 4242), { fds: [{ fd: 3, name: 'unknown' }], ignored: null });
  assert.deepEqual(takeListenFds({}, 4242), { fds: [], ignored: null });
  const other: NodeJS.ProcessEnv = { LISTEN_PID: '1', LISTEN_FDS: '1' };
  assert.deepEqual(takeListenFds(other, 4242), { fds: [], ignored: 'LISTEN_PID=1 is not this process (4242)' });
  assert.deepEqual(other, {});
  assert.deepEqual(takeListenFds({ LISTEN_FDS: '1' }, 4242), { fds: [], ignored: 'LISTEN_PID=(unset) is not this process (4242)' });
  assert.deepEqual(takeListenFds({ LISTEN_PID: '4242', LISTEN_FDS: 'x' }, 4242), { fds: [], ignored: 'Expected a count of fds for LISTEN_FDS but received "x"' });
  assert.deepEqual(takeListenFds({ LISTEN_PID: '4242', LISTEN_FDS: '2', LISTEN_FDNAMES: 'a' }, 4242), { fds: [], ignored: 'LISTEN_FDNAMES has 1 name(s) for LISTEN_FDS=2' });
});
