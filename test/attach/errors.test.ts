// Refusals: every one names the region (or the pid before a region is known) and the reason; bad
// packets and wrong fds are refused and every received fd is closed.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { decodeDaemonMessage, encodeClientMessage, type ClientMessage, type DaemonMessage } from '../../daemon/attach/protocol';
import { fdpass, memfd, uffd } from '../../daemon/native';
import { rootUnavailable, userfaultfdUnavailable } from '../helpers/env';
import { fmattach, nodeChild, openFds, setup, until } from './fixture';
import { regionSpec } from './host';

const skip = userfaultfdUnavailable() ?? false;
const PS = 4096;
const ATTACH: ClientMessage = { kind: 'attach', protocolVersion: 1, region: 'db', wantWriteProtect: false, reattach: null };

// The server runs on this process's main loop: the raw client must never block it, so it polls.
async function recvSoon(fd: number): Promise<{ payload: Buffer; fds: number[] }> {
  for (let i = 0; i < 2000; i++) {
    const r = fdpass.recv(fd, { timeoutMs: 0 });
    if (r) return r;
    await new Promise((res) => setTimeout(res, 5));
  }
  throw new Error('no reply from the attach server');
}

/** One raw exchange as a (misbehaving) client. */
async function exchange(fd: number, payload: Buffer, fds: number[] = []): Promise<{ msg: DaemonMessage; fds: number[] }> {
  fdpass.send(fd, payload, fds);
  const r = await recvSoon(fd);
  return { msg: decodeDaemonMessage(r.payload), fds: r.fds };
}

/** true once the daemon has hung up (false if it sends anything instead). */
async function hungUp(fd: number): Promise<boolean> {
  try {
    await recvSoon(fd);
    return false;
  } catch (e) {
    return (e as { code?: string }).code === 'ECONNRESET';
  }
}

test('unknown region and ACL refusals name the region and the reason', { skip }, async (t) => {
  const env = setup();
  t.after(() => env.cleanup());
  env.host.addRegion(regionSpec('db', 16 * PS));
  const n = await nodeChild(env.sock, ['error', 'nope']).done;
  assert.deepEqual(JSON.parse(n.stdout), { error: 'attach "nope": not found', code: 'NOT_FOUND' });
  const c = await fmattach(env.sock, ['--region', 'nope', '--pages', '1']).done;
  assert.equal(c.code, 2);
  assert.equal(c.stderr, 'fmattach: attach "nope": not found (errno ENOENT)\n');
  const missing = `${env.dir}/missing.sock`;
  const m = await nodeChild(missing, ['error', 'db']).done;
  assert.deepEqual(JSON.parse(m.stdout), { error: `attach "db": connect ${missing}: ENOENT`, code: 'ENOENT' });
});

test('a uid that does not own the region is refused', { skip: rootUnavailable() ?? skip }, async (t) => {
  const env = setup();
  t.after(() => env.cleanup());
  env.host.addRegion(regionSpec('db', 16 * PS));
  const c = await fmattach(env.sock, ['--region', 'db', '--pages', '1'], { uid: 65534 }).done;
  assert.equal(c.code, 2, c.stderr);
  assert.equal(c.stderr, 'fmattach: attach "db": uid 65534 may not attach it (owner uid 0, mode 0600) (errno EACCES)\n');
});

test('malformed messages and wrong fds are refused with clear errors, and no fd leaks', { skip }, async (t) => {
  const env = setup();
  t.after(() => env.cleanup());
  const r = env.host.addRegion(regionSpec('db', 16 * PS));
  const before = openFds();
  const cases: { send: () => Buffer; fds?: () => number[]; code: string; message: string; after?: ClientMessage }[] = [
    { send: () => Buffer.from([0xff, 0xff, 0xff]), code: 'INVALID_ARGUMENT', message: `malformed AttachClientMessage: index out of range: 3 + 1 > 3` },
    { send: () => Buffer.from([0x08, 0x01]), code: 'INVALID_ARGUMENT', message: `AttachClientMessage carries no message` },
    { send: () => encodeClientMessage({ ...ATTACH, region: '' }), code: 'INVALID_ARGUMENT', message: 'Expected a region name of 1 to 255 bytes for AttachRequest.region but received ""' },
    { send: () => encodeClientMessage({ ...ATTACH, protocolVersion: 2 }), code: 'UNIMPLEMENTED', message: 'protocol version 2 is not supported (farmemd speaks 1)' },
    { send: () => encodeClientMessage(ATTACH), fds: () => [memfd.create('stray', PS)], code: 'INVALID_ARGUMENT', message: 'AttachRequest carries no fd, but this one carried a memfd' },
    {
      send: () => encodeClientMessage({ ...ATTACH, reattach: { regionId: r.spec.id, token: Buffer.alloc(16) } }),
      fds: () => [uffd.open().fd],
      code: 'INVALID_ARGUMENT',
      message: 'a reattach AttachRequest carries the region\'s memfd, but this one carried a userfaultfd',
    },
    { send: () => encodeClientMessage({ kind: 'register', address: 0x10000, length: PS, uffdFeatures: 0, writeProtect: false, userModeOnly: false }), code: 'INVALID_ARGUMENT', message: `unexpected RegisterRequest (send AttachRequest first and wait for its reply)` },
  ];
  for (const c of cases) {
    const fd = fdpass.connect(env.sock);
    const ours = c.fds?.() ?? [];
    const got = await exchange(fd, c.send(), ours);
    for (const x of ours) memfd.close(x); // our copies; the daemon must have closed its own
    assert.deepEqual({ code: got.msg.code, message: got.msg.message }, { code: c.code, message: c.message });
    assert.equal(got.msg.kind, 'attach_reply');
    assert.ok(await hungUp(fd), 'the daemon hangs up after a refusal');
    memfd.close(fd);
  }

  // After a good AttachRequest: wrong RegisterRequests.
  const reg = (over: Partial<ClientMessage & { kind: 'register' }>): Buffer =>
    encodeClientMessage({ kind: 'register', address: 0x10000, length: 16 * PS, uffdFeatures: 0x120, writeProtect: false, userModeOnly: false, ...over });
  const regCases: { send: () => Buffer; fds: () => number[]; message: string }[] = [
    { send: () => reg({}), fds: () => [], message: 'RegisterRequest carries exactly one fd (the userfaultfd), but this one carried 0' },
    { send: () => reg({}), fds: () => [memfd.create('stray', PS)], message: 'RegisterRequest carries a userfaultfd, but this one carried a memfd' },
    { send: () => reg({}), fds: () => [uffd.open().fd, uffd.open().fd], message: 'RegisterRequest carries exactly one fd (the userfaultfd), but this one carried 2' },
    { send: () => reg({ length: PS }), fds: () => [uffd.open().fd], message: `Expected the region's size (${16 * PS}) for RegisterRequest.length but received ${PS}` },
    { send: () => reg({ address: 0x10001 }), fds: () => [uffd.open().fd], message: 'Expected a page-aligned address for RegisterRequest.address but received 0x10001' },
    { send: () => reg({ uffdFeatures: 0x122 }), fds: () => [uffd.open().fd], message: 'uffd features EVENT_FORK are not supported (see proto/farmem/v1/attach.proto)' },
    { send: () => reg({ uffdFeatures: 0x100 }), fds: () => [uffd.open().fd], message: 'the userfaultfd lacks UFFD_FEATURE_MISSING_SHMEM' },
    // MISSING_SHMEM|THREAD_ID|WP_HUGETLBFS_SHMEM|PAGEFAULT_FLAG_WP|WP_ASYNC on a region that did not ask for async.
    { send: () => reg({ uffdFeatures: 0x120 | 0x1000 | 0x1 | 0x8000, writeProtect: true }), fds: () => [uffd.open().fd], message: 'uffd feature WP_ASYNC was not asked for (AttachReply.wp_async): the region tracks dirty pages with write-protect faults' },
    { send: () => reg({}), fds: () => [uffd.open().fd], message: 'RegisterRequest: 0x10000 is not mapped from the region\'s memfd' },
  ];
  for (const c of regCases) {
    const fd = fdpass.connect(env.sock);
    const a = await exchange(fd, encodeClientMessage(ATTACH));
    assert.equal(a.msg.code, 'OK');
    assert.equal(a.fds.length, 1);
    memfd.close(a.fds[0]);
    const ours = c.fds();
    const got = await exchange(fd, c.send(), ours);
    for (const x of ours) memfd.close(x);
    assert.deepEqual({ kind: got.msg.kind, code: got.msg.code, message: got.msg.message }, { kind: 'register_reply', code: 'INVALID_ARGUMENT', message: c.message });
    assert.ok(await hungUp(fd));
    memfd.close(fd);
  }
  await until(() => env.server.stats().connections === 0, 'every connection to end');
  assert.deepEqual(openFds(), before, 'no fd leaked');
  assert.equal(env.host.registered.length, 0);
});

test('a client dying mid-attach, a stalled handshake, and too many connections', { skip }, async (t) => {
  const env = setup({ handshakeTimeoutMs: 300, maxConnections: 2 });
  t.after(() => env.cleanup());
  env.host.addRegion(regionSpec('db', 16 * PS));
  const before = openFds();

  const n = await nodeChild(env.sock, ['die-mid', 'db']).done;
  assert.equal(n.code, 0, n.stderr);
  assert.deepEqual(JSON.parse(n.stdout), { fds: 1 });
  await until(() => env.server.stats().connections === 0, 'the dead client\'s connection to end');
  assert.equal(env.host.registered.length, 0);

  // Killed while attached: the attachment ends with reason 'closed'.
  const run = fmattach(env.sock, ['--region', 'db', '--pages', '4', '--op', 'write', '--pause']);
  await run.line((l) => l === '{"ready":"write"}');
  run.child.kill('SIGKILL');
  await run.done;
  await until(() => env.host.detached.length === 1, 'the killed attachment to end');
  assert.deepEqual(env.host.detached.map((d) => d.reason), ['closed']);

  const a = fdpass.connect(env.sock);
  const b = fdpass.connect(env.sock);
  const c = fdpass.connect(env.sock);
  const over = await recvSoon(c);
  const m = decodeDaemonMessage(over.payload);
  assert.deepEqual({ code: m.code, message: m.message }, { code: 'UNAVAILABLE', message: 'farmemd: too many attach connections (2); retry later' });
  const stalled = await recvSoon(a);
  const s = decodeDaemonMessage(stalled.payload);
  assert.deepEqual({ code: s.code, message: s.message }, { code: 'UNAVAILABLE', message: `attach not completed within 300 ms` });
  for (const fd of [a, b, c]) memfd.close(fd);
  await until(() => env.server.stats().connections === 0, 'the stalled connections to end');
  assert.deepEqual(openFds(), before, 'no fd leaked');
});
