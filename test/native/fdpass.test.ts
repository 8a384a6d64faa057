// Seqpacket fd passing: the main-loop server, the blocking client calls, and their error paths.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addon, fdpass, memfd, type SeqpacketEvent, type SeqpacketServer } from '../../daemon/native';

const nativeError = (code: string, message: string) => ({ name: 'NativeError', code, message });
const typeError = (message: string) => ({ name: 'TypeError', code: 'ERR_INVALID_ARG', message });

/** Events from a server, awaited one at a time. */
class Events {
  private queue: SeqpacketEvent[] = [];
  private waiter: (() => void) | null = null;
  readonly push = (e: SeqpacketEvent): void => {
    this.queue.push(e);
    this.waiter?.();
  };
  async next(): Promise<SeqpacketEvent> {
    const deadline = Date.now() + 5000;
    while (this.queue.length === 0) {
      if (Date.now() > deadline) throw new Error('no seqpacket event within 5 s');
      await new Promise<void>((r) => {
        this.waiter = r;
        setTimeout(r, 50);
      });
      this.waiter = null;
    }
    return this.queue.shift()!;
  }
}

function tmpdir(t: { after(fn: () => void): void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-fdpass-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  return dir;
}

function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

test('connect, message with fds both ways, peer credentials, hang-up', async (t) => {
  const sock = path.join(tmpdir(t), 'ctl.sock');
  const events = new Events();
  const server = fdpass.listen(sock, 0o660, events.push);
  t.after(() => server.close());
  assert.equal(fs.statSync(sock).mode & 0o777, 0o660);

  const client = fdpass.connect(sock);
  const connected = await events.next();
  assert.equal(connected.type, 'connect');
  if (connected.type !== 'connect') return;
  assert.deepEqual(connected.cred, { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
  assert.deepEqual(fdpass.peerCred(client), { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });

  const region = memfd.create('farmem-fdpass', 4096);
  memfd.pwrite(region, Buffer.from('region bytes'), 0);
  fdpass.send(client, Buffer.from('attach db'), [region]);
  const msg = await events.next();
  assert.equal(msg.type, 'message');
  if (msg.type !== 'message') return;
  assert.equal(msg.conn, connected.conn);
  assert.equal(msg.payload.toString(), 'attach db');
  assert.equal(msg.fds.length, 1);
  assert.notEqual(msg.fds[0], region);
  const seen = Buffer.alloc(12);
  memfd.pread(msg.fds[0]!, seen, 0);
  assert.equal(seen.toString(), 'region bytes');

  server.send(msg.conn, Buffer.from('ok'), [msg.fds[0]!]);
  const reply = fdpass.recv(client, { timeoutMs: 5000 });
  assert.ok(reply);
  assert.equal(reply.payload.toString(), 'ok');
  assert.equal(reply.fds.length, 1);
  const flags = parseInt(/flags:\s+([0-7]+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${reply.fds[0]}`, 'utf8'))![1]!, 8);
  assert.equal(flags & 0o2000000, 0o2000000); // received fds are close-on-exec
  for (const fd of [region, msg.fds[0]!, reply.fds[0]!]) memfd.close(fd);

  memfd.close(client);
  assert.deepEqual(await events.next(), { type: 'close', conn: msg.conn });
  assert.throws(() => server.send(msg.conn, Buffer.from('late')), nativeError('EBADF', 'sendmsg: Bad file descriptor (EBADF)'));
});

test('a message larger than the server takes is dropped with its fds and reported', async (t) => {
  const sock = path.join(tmpdir(t), 'big.sock');
  const events = new Events();
  const server = fdpass.listen(sock, 0o600, events.push);
  t.after(() => server.close());
  const client = fdpass.connect(sock);
  t.after(() => memfd.close(client));
  const conn = (await events.next()).conn;
  const a = memfd.create('a', 0);
  const b = memfd.create('b', 0);
  const before = openFds();
  fdpass.send(client, Buffer.alloc(70 * 1024), [a, b]);
  const e = await events.next();
  assert.equal(e.type, 'error');
  if (e.type !== 'error') return;
  assert.equal(e.conn, conn);
  assert.equal(e.error.name, 'NativeError');
  assert.equal(e.error.code, 'EMSGSIZE');
  assert.equal(e.error.message, 'recvmsg (message over 64 KiB or 16 fds, dropped): Message too long (EMSGSIZE)');
  assert.equal(openFds(), before); // the two fds that came with it were closed
  // The connection still works.
  fdpass.send(client, Buffer.from('small'));
  const m = await events.next();
  assert.equal(m.type === 'message' && m.payload.toString(), 'small');
  memfd.close(a);
  memfd.close(b);
});

test('client recv: timeout is null, too many fds is EMSGSIZE, hang-up is ECONNRESET', async (t) => {
  const sock = path.join(tmpdir(t), 'recv.sock');
  const events = new Events();
  const server = fdpass.listen(sock, 0o600, events.push);
  t.after(() => server.close());
  const client = fdpass.connect(sock);
  t.after(() => memfd.close(client));
  const conn = (await events.next()).conn;
  assert.equal(fdpass.recv(client, { timeoutMs: 0 }), null);
  const a = memfd.create('a', 0);
  const before = openFds();
  server.send(conn, Buffer.from('two'), [a, a]);
  assert.throws(
    () => fdpass.recv(client, { maxFds: 1, timeoutMs: 1000 }),
    nativeError('EMSGSIZE', 'recvmsg (message larger than maxPayload or maxFds, dropped): Message too long (EMSGSIZE)'),
  );
  assert.equal(openFds(), before);
  server.send(conn, Buffer.from('0123456789'));
  assert.throws(() => fdpass.recv(client, { maxPayload: 4, timeoutMs: 1000 }), nativeError('EMSGSIZE', 'recvmsg (message larger than maxPayload or maxFds, dropped): Message too long (EMSGSIZE)'));
  server.closeConnection(conn);
  assert.throws(() => fdpass.recv(client, { timeoutMs: 1000 }), nativeError('ECONNRESET', 'recvmsg (peer closed): Connection reset by peer (ECONNRESET)'));
  memfd.close(a);
});

test('listen replaces a stale socket file, removes it on close; abstract names work', async (t) => {
  const sock = path.join(tmpdir(t), 'stale.sock');
  memfd.close(fdpass.dgramBind(sock)); // leaves a socket file nobody listens on
  assert.ok(fs.statSync(sock).isSocket());
  const events = new Events();
  const server: SeqpacketServer = fdpass.listen(sock, 0o600, events.push);
  const c = fdpass.connect(sock);
  assert.equal((await events.next()).type, 'connect');
  server.close();
  server.close(); // idempotent
  assert.equal(fs.existsSync(sock), false);
  assert.throws(() => fdpass.recv(c, { timeoutMs: 1000 }), nativeError('ECONNRESET', 'recvmsg (peer closed): Connection reset by peer (ECONNRESET)'));
  memfd.close(c);
  assert.throws(() => fdpass.connect(sock), nativeError('ENOENT', `connect ${sock}: No such file or directory (ENOENT)`));

  const name = `@farmem-test-${crypto.randomBytes(6).toString('hex')}`;
  const abstract = fdpass.listen(name, 0o600, events.push);
  t.after(() => abstract.close());
  const c2 = fdpass.connect(name);
  t.after(() => memfd.close(c2));
  assert.equal((await events.next()).type, 'connect');
});

test('an exception in the event handler goes to uncaughtException; the server keeps serving', () => {
  const native = path.join(__dirname, '..', '..', 'daemon', 'native.js');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-fdpass-'));
  try {
    const script = `const { fdpass, memfd } = require(${JSON.stringify(native)});
      const seen = [];
      process.on('uncaughtException', (e) => seen.push('uncaught: ' + e.message));
      const server = fdpass.listen(${JSON.stringify(path.join(dir, 's.sock'))}, 0o600, (e) => {
        seen.push(e.type);
        if (e.type === 'message') throw new Error('handler broke on ' + e.payload);
        if (e.type === 'close') { server.close(); console.log(JSON.stringify(seen)); }
      });
      const c = fdpass.connect(${JSON.stringify(path.join(dir, 's.sock'))});
      fdpass.send(c, Buffer.from('one'));
      setTimeout(() => { fdpass.send(c, Buffer.from('two')); setTimeout(() => memfd.close(c), 20); }, 20);`;
    const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), ['connect', 'message', 'uncaught: handler broke on one', 'message', 'uncaught: handler broke on two', 'close']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  }
});

test('system and argument errors', (t) => {
  const dir = tmpdir(t);
  assert.throws(() => fdpass.listen(path.join(dir, 'no', 'such', 'dir.sock'), 0o600, () => {}), nativeError('ENOENT', `bind ${path.join(dir, 'no', 'such', 'dir.sock')}: No such file or directory (ENOENT)`));
  assert.throws(() => fdpass.connect(path.join(dir, 'x'.repeat(120))), nativeError('ENAMETOOLONG', `connect ${path.join(dir, 'x'.repeat(120))}: File name too long (ENAMETOOLONG)`));
  const notSocket = memfd.create('not-a-socket', 0);
  t.after(() => memfd.close(notSocket));
  assert.throws(() => fdpass.peerCred(notSocket), nativeError('ENOTSOCK', 'getsockopt SO_PEERCRED: Socket operation on non-socket (ENOTSOCK)'));
  assert.throws(() => fdpass.send(notSocket, Buffer.from('x')), nativeError('ENOTSOCK', 'sendmsg: Socket operation on non-socket (ENOTSOCK)'));
  assert.throws(() => fdpass.recv(999_999, { timeoutMs: 0 }), nativeError('EBADF', 'poll: Bad file descriptor (EBADF)'));

  assert.throws(() => fdpass.listen('', 0o600, () => {}), typeError('Expected a non-empty socket path for path but received ""'));
  assert.throws(() => fdpass.listen('/x', 0o10000, () => {}), typeError('Expected an integer from 0 to 4095 for mode but received 4096'));
  assert.throws(() => fdpass.listen('/x', 0o600, 'f' as unknown as () => void), typeError('Expected a function for onEvent but received "f"'));
  assert.throws(() => fdpass.send(3, 'x' as unknown as Buffer), typeError('Expected a non-empty Buffer (an empty message reads as a hang-up) for payload but received "x"'));
  assert.throws(() => fdpass.send(3, Buffer.alloc(0)), typeError('Expected a non-empty Buffer (an empty message reads as a hang-up) for payload but received a Buffer of 0 bytes'));
  assert.throws(() => fdpass.send(3, Buffer.alloc(1), [1, -2]), typeError('Expected an array of at most 16 file descriptors for fds but received an array'));
  assert.throws(() => fdpass.send(3, Buffer.alloc(1), Array(17).fill(0)), typeError('Expected an array of at most 16 file descriptors for fds but received an array'));
  assert.throws(() => fdpass.recv(3, { timeoutMs: -2 }), typeError('Expected an integer from -1 to 2147483647 for timeoutMs but received -2'));
  assert.throws(() => fdpass.recv(3, { maxFds: 300 }), typeError('Expected an integer from 0 to 253 for maxFds but received 300'));
  assert.throws(() => addon().sendFds(3, Buffer.alloc(1), [1.5]), typeError('Expected an array of fds for fds but received an array'));
  assert.throws(() => addon().seqpacketListen('/x', 0o600, null as unknown as () => void), typeError('Expected a function for onEvent but received null'));
});
