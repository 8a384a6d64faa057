// The systemd units: systemd's own checker on a staged install, the hardening score, and the
// properties farmem depends on (notify, watchdog, fd store, capabilities, syscalls it must keep).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { deployDir, install, run, systemdToolsUnavailable, tempDir } from './helpers';

const skip = systemdToolsUnavailable() ?? false;
const units = ['farmemd.service', 'farmem-memserver.service'] as const;

/** Key → every value assigned to it in [Service] (and [Unit], [Install]), in order. */
function parseUnit(text: string): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith('[')) continue;
    const eq = line.indexOf('=');
    const k = line.slice(0, eq);
    m.set(k, [...(m.get(k) ?? []), line.slice(eq + 1)]);
  }
  return m;
}
function one(u: Map<string, string[]>, key: string): string {
  const v = u.get(key);
  assert.ok(v !== undefined && v.length === 1, `expected exactly one ${key}= but found ${JSON.stringify(v)}`);
  return v[0]!;
}

/** Copies the staged unit so ExecStart runs the staged wrapper (verify checks that it exists). */
function stagedForVerify(root: string, dir: string, unit: string, mutate: (s: string) => string = (s) => s): string {
  const text = fs.readFileSync(path.join(root, 'usr/local/lib/systemd/system', unit), 'utf8');
  const out = path.join(dir, unit);
  fs.writeFileSync(out, mutate(text.replace(/^ExecStart=\/usr\/local\/bin\//m, `ExecStart=${root}/usr/local/bin/`)));
  return out;
}

test('systemd-analyze verify accepts both units as installed, and catches a bad value', { skip }, (t) => {
  const root = tempDir(t, 'verify-root');
  const dir = tempDir(t, 'verify');
  install(['--root', root, '--no-enable']);
  for (const unit of units) {
    const r = run('systemd-analyze', ['verify', stagedForVerify(root, dir, unit)]);
    assert.equal(r.stderr, '', `${unit}: systemd-analyze verify complained`);
    assert.equal(r.status, 0);
  }
  // The check itself must see problems: verify exits 0 on unknown values, so the test reads stderr.
  const bad = stagedForVerify(root, dir, 'farmemd.service', (s) => s.replace('ProtectSystem=strict', 'ProtectSystem=stricter'));
  const r = run('systemd-analyze', ['verify', bad]);
  assert.match(r.stderr, /farmemd\.service:\d+: Failed to parse protect system value, ignoring: stricter/);
});

test('systemd-analyze security rates both units OK (farmemd <= 3.0, memory server <= 2.0)', { skip }, (t) => {
  const dir = tempDir(t, 'security');
  for (const [unit, threshold] of [['farmemd.service', 30], ['farmem-memserver.service', 20]] as const) {
    const file = path.join(dir, unit);
    fs.copyFileSync(path.join(deployDir, unit), file);
    const r = run('systemd-analyze', ['security', '--offline=yes', `--threshold=${threshold}`, '--no-pager', file]);
    const score = /Overall exposure level for \S+: ([\d.]+)/.exec(r.stdout);
    t.diagnostic(`${unit}: exposure ${score?.[1] ?? '?'}`);
    assert.equal(r.status, 0, `${unit} exposure ${score?.[1]} is above ${threshold / 10}\n${r.stdout}`);
  }
});

test('farmemd.service: notify with watchdog, fd store, only CAP_SYS_PTRACE, the socket and directories', () => {
  const u = parseUnit(fs.readFileSync(path.join(deployDir, 'farmemd.service'), 'utf8'));
  assert.equal(one(u, 'Type'), 'notify');
  assert.equal(one(u, 'NotifyAccess'), 'main');
  assert.match(one(u, 'WatchdogSec'), /^\d+s$/);
  assert.equal(one(u, 'Restart'), 'on-failure');
  assert.equal(one(u, 'User'), 'farmem');
  assert.equal(one(u, 'Group'), 'farmem');
  assert.equal(one(u, 'AmbientCapabilities'), 'CAP_SYS_PTRACE');
  assert.equal(one(u, 'CapabilityBoundingSet'), 'CAP_SYS_PTRACE');
  assert.equal(one(u, 'NoNewPrivileges'), 'yes');
  assert.ok(Number(one(u, 'FileDescriptorStoreMax')) >= 1024);
  assert.equal(one(u, 'RuntimeDirectory'), 'farmem');
  assert.equal(one(u, 'StateDirectory'), 'farmem');
  assert.equal(one(u, 'ConfigurationDirectory'), 'farmem');
  assert.equal(one(u, 'KillMode'), 'mixed');
  assert.equal(one(u, 'ExecStart'), '/usr/local/bin/farmemd --config /etc/farmem/farmemd.toml --socket /run/farmem/farmemd.sock --state-dir /var/lib/farmem');
  assert.equal(one(u, 'ExecReload'), '/bin/kill -HUP $MAINPID'); // SIGHUP re-reads the config
  assert.equal(one(u, 'TimeoutStopSec'), '10min');
  assert.equal(one(u, 'DeviceAllow'), '/dev/userfaultfd rw');
  // V8's JIT needs W+X memory; PrivateUsers would make CAP_SYS_PTRACE useless on other processes.
  for (const k of ['MemoryDenyWriteExecute', 'PrivateUsers', 'PrivateDevices', 'ProtectProc']) assert.equal(u.get(k), undefined, k);
  assert.match(one(u, 'After'), /\bfarmem-memserver\.service\b/);
});

test('farmem-memserver.service: its own user, no capabilities, its own state directory', () => {
  const u = parseUnit(fs.readFileSync(path.join(deployDir, 'farmem-memserver.service'), 'utf8'));
  assert.equal(one(u, 'Type'), 'notify');
  assert.equal(one(u, 'NotifyAccess'), 'main');
  assert.match(one(u, 'WatchdogSec'), /^\d+s$/);
  assert.equal(one(u, 'Restart'), 'on-failure');
  assert.equal(one(u, 'User'), 'farmem-memserver');
  assert.equal(one(u, 'CapabilityBoundingSet'), '');
  assert.equal(one(u, 'AmbientCapabilities'), '');
  assert.equal(one(u, 'StateDirectory'), 'farmem-memserver');
  assert.equal(one(u, 'ExecStart'), '/usr/local/bin/farmem-memserver --config /etc/farmem/farmem-memserver.toml --data-dir /var/lib/farmem-memserver');
  assert.equal(u.get('MemoryDenyWriteExecute'), undefined);
});

/** group → members, from `systemd-analyze syscall-filter` (members may be @groups). */
function syscallGroups(): Map<string, string[]> {
  const out = run('systemd-analyze', ['syscall-filter', '--no-pager']).stdout;
  const groups = new Map<string, string[]>();
  let cur: string[] | null = null;
  for (const line of out.split('\n')) {
    if (/^@\S+$/.test(line)) groups.set(line, (cur = []));
    else if (cur !== null && /^\s+[@\w]/.test(line)) cur.push(line.trim());
    else if (line.trim() === '') cur = null;
  }
  return groups;
}
function expand(groups: Map<string, string[]>, names: string[]): Set<string> {
  const out = new Set<string>();
  const add = (n: string): void => {
    if (!n.startsWith('@')) return void out.add(n);
    const g = groups.get(n);
    if (g === undefined) throw new Error(`Expected a syscall group known to systemd for SystemCallFilter but received ${n}`);
    g.forEach(add);
  };
  names.forEach(add);
  return out;
}
/** The syscalls a unit's SystemCallFilter= lines allow (one allow list, then deny lists). */
function allowedSyscalls(unit: string, groups: Map<string, string[]>): Set<string> {
  const filters = parseUnit(fs.readFileSync(path.join(deployDir, unit), 'utf8')).get('SystemCallFilter') ?? [];
  const [allow, ...deny] = filters;
  assert.ok(allow !== undefined && !allow.startsWith('~'), `${unit}: first SystemCallFilter= must be an allow list`);
  const allowed = expand(groups, allow.split(/\s+/));
  for (const d of deny) {
    assert.ok(d.startsWith('~'), `${unit}: later SystemCallFilter= lines must be deny lists`);
    for (const s of expand(groups, d.slice(1).split(/\s+/))) allowed.delete(s);
  }
  return allowed;
}

test('the syscall filters keep what farmem calls and drop what it must not', { skip }, () => {
  const groups = syscallGroups();
  const common = ['ioctl', 'mmap', 'munmap', 'futex', 'clone3', 'epoll_wait', 'epoll_ctl', 'eventfd2', 'socket', 'bind', 'listen',
    'accept4', 'connect', 'sendmsg', 'recvmsg', 'pread64', 'pwrite64', 'fsync', 'fdatasync', 'openat', 'getrandom'];
  const d = allowedSyscalls('farmemd.service', groups);
  for (const s of [...common, 'userfaultfd', 'memfd_create', 'fallocate', 'lseek', 'mincore', 'pidfd_open',
    'process_madvise', 'sched_setaffinity', 'sched_getaffinity', 'madvise']) {
    assert.ok(d.has(s), `farmemd.service must allow ${s}`);
  }
  // pidfd_getfd: the daemon never takes fds out of processes (they re-attach and send them).
  for (const s of ['ptrace', 'pidfd_getfd', 'process_vm_readv', 'process_vm_writev', 'init_module', 'mount', 'setuid']) assert.ok(!d.has(s), `farmemd.service must not allow ${s}`);
  const m = allowedSyscalls('farmem-memserver.service', groups);
  for (const s of common) assert.ok(m.has(s), `farmem-memserver.service must allow ${s}`);
  for (const s of ['userfaultfd', 'pidfd_getfd', 'ptrace', 'setrlimit', 'mount']) assert.ok(!m.has(s), `farmem-memserver.service must not allow ${s}`);
});
