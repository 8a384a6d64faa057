// sd_notify against a fake service manager: a unix datagram socket the test binds and reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fdpass, memfd, sdNotify } from '../../daemon/native';

const nativeError = (code: string, message: string) => ({ name: 'NativeError', code, message });
const typeError = (message: string) => ({ name: 'TypeError', code: 'ERR_INVALID_ARG', message });

/** Sets NOTIFY_SOCKET for the duration of a test. */
function withNotifySocket(t: { after(fn: () => void): void }, value: string | undefined): void {
  const saved = process.env.NOTIFY_SOCKET;
  if (value === undefined) delete process.env.NOTIFY_SOCKET;
  else process.env.NOTIFY_SOCKET = value;
  t.after(() => {
    if (saved === undefined) delete process.env.NOTIFY_SOCKET;
    else process.env.NOTIFY_SOCKET = saved;
  });
}

function fakeManager(t: { after(fn: () => void): void }, name: string): number {
  const fd = fdpass.dgramBind(name);
  t.after(() => memfd.close(fd));
  return fd;
}

const nextState = (fd: number) => fdpass.recv(fd, { timeoutMs: 1000 });

test('READY, STATUS, WATCHDOG and STOPPING reach the socket named by NOTIFY_SOCKET', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-sdnotify-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  const sock = path.join(dir, 'notify');
  const manager = fakeManager(t, sock);
  withNotifySocket(t, sock);
  assert.equal(sdNotify.ready('serving 2 regions'), true);
  assert.equal(nextState(manager)?.payload.toString(), 'READY=1\nSTATUS=serving 2 regions');
  assert.equal(sdNotify.ready(), true);
  assert.equal(nextState(manager)?.payload.toString(), 'READY=1');
  assert.equal(sdNotify.status('draining'), true);
  assert.equal(nextState(manager)?.payload.toString(), 'STATUS=draining');
  assert.equal(sdNotify.watchdog(), true);
  assert.equal(nextState(manager)?.payload.toString(), 'WATCHDOG=1');
  assert.equal(sdNotify.stopping(), true);
  assert.equal(nextState(manager)?.payload.toString(), 'STOPPING=1');
  assert.equal(fdpass.recv(manager, { timeoutMs: 0 }), null);
});

test('FDSTORE=1 hands an fd over: the manager can read what the daemon wrote', (t) => {
  const name = `@farmem-test-notify-${crypto.randomBytes(6).toString('hex')}`;
  const manager = fakeManager(t, name);
  withNotifySocket(t, name);
  const region = memfd.create('farmem-fdstore', 4096);
  t.after(() => memfd.close(region));
  memfd.pwrite(region, Buffer.from('kept across restart'), 0);
  assert.equal(sdNotify.fdStore('region-db', [region]), true);
  const m = nextState(manager);
  assert.ok(m);
  assert.equal(m.payload.toString(), 'FDSTORE=1\nFDNAME=region-db');
  assert.equal(m.fds.length, 1);
  const b = Buffer.alloc(19);
  memfd.pread(m.fds[0]!, b, 0);
  memfd.close(m.fds[0]!);
  assert.equal(b.toString(), 'kept across restart');
  assert.equal(sdNotify.fdStoreRemove('region-db'), true);
  assert.deepEqual(nextState(manager), { payload: Buffer.from('FDSTOREREMOVE=1\nFDNAME=region-db'), fds: [] });
});

test('without NOTIFY_SOCKET nothing is sent and the result says so', (t) => {
  withNotifySocket(t, undefined);
  assert.equal(sdNotify.ready(), false);
  withNotifySocket(t, '');
  assert.equal(sdNotify.watchdog(), false);
});

test('errors: nobody listening, a bad NOTIFY_SOCKET, bad arguments', (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-sdnotify-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  withNotifySocket(t, path.join(dir, 'gone'));
  assert.throws(() => sdNotify.ready(), nativeError('ENOENT', 'sendmsg: No such file or directory (ENOENT)'));
  process.env.NOTIFY_SOCKET = 'vsock:2:1234';
  assert.throws(() => sdNotify.ready(), nativeError('EAFNOSUPPORT', 'sd_notify (NOTIFY_SOCKET is neither a path nor @abstract): Address family not supported by protocol (EAFNOSUPPORT)'));
  assert.throws(() => sdNotify.status('two\nlines'), typeError('Expected a string without newlines for status but received "two\\nlines"'));
  assert.throws(() => sdNotify.send(''), typeError('Expected a non-empty state for state but received ""'));
  assert.throws(() => sdNotify.send('READY=1', [-1]), typeError('Expected an array of at most 253 file descriptors for fds but received an array'));
  assert.throws(() => sdNotify.fdStore('has space', [0]), typeError('Expected an fd name of 1-255 letters, digits, "_.-" for name but received "has space"'));
  // ':' separates names in LISTEN_FDNAMES: systemd refuses it.
  assert.throws(() => sdNotify.fdStoreRemove('region:db'), typeError('Expected an fd name of 1-255 letters, digits, "_.-" for name but received "region:db"'));
});
