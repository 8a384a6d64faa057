// Fd passing on SOCK_SEQPACKET sockets (the attach protocol's transport) and sd_notify.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fdpass, memfd, sdNotify, closeFd, NativeError, type SeqpacketEvent } from '../../daemon/native';

function tmp(t: { after: (fn: () => void) => void }): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fdpass-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function nextEvent(events: SeqpacketEvent[], type: SeqpacketEvent['type']): Promise<SeqpacketEvent> {
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 5000;
    const look = () => {
      const i = events.findIndex((e) => e.type === type);
      if (i >= 0) resolve(events.splice(i, 1)[0]!);
      else if (Date.now() > deadline) reject(new Error(`no ${type} event within 5 s`));
      else setTimeout(look, 2);
    };
    look();
  });
}

test('seqpacket: connect carries the peer credentials; messages carry payload and fds both ways', async (t) => {
  const sock = path.join(tmp(t), 'a.sock');
  const events: SeqpacketEvent[] = [];
  const server = fdpass.listen(sock, 0o660, (e) => events.push(e));
  t.after(() => server.close());
  assert.equal(fs.statSync(sock).mode & 0o777, 0o660);
  const client = fdpass.connect(sock);
  t.after(() => closeFd(client));
  const c = await nextEvent(events, 'connect');
  assert.deepEqual((c as Extract<SeqpacketEvent, { type: 'connect' }>).cred, { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
  assert.deepEqual(fdpass.peerCred(client), { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });

  // client → server with an fd: the server gets its own copy of the memfd.
  const fd = memfd.create('fdpass-test', 4096);
  memfd.pwrite(fd, Buffer.from('hello through SCM_RIGHTS'), 0);
  fdpass.send(client, Buffer.from('attach db'), [fd]);
  const m = (await nextEvent(events, 'message')) as Extract<SeqpacketEvent, { type: 'message' }>;
  assert.equal(m.payload.toString(), 'attach db');
  assert.equal(m.fds.length, 1);
  assert.notEqual(m.fds[0], fd);
  const back = Buffer.alloc(24);
  memfd.pread(m.fds[0]!, back, 0);
  assert.equal(back.toString(), 'hello through SCM_RIGHTS');
  closeFd(m.fds[0]!);

  // server → client with an fd.
  server.send(m.conn, Buffer.from('ok'), [fd]);
  const r = fdpass.recv(client, { timeoutMs: 2000 });
  assert.ok(r);
  assert.equal(r.payload.toString(), 'ok');
  assert.equal(r.fds.length, 1);
  closeFd(r.fds[0]!);
  closeFd(fd);

  // Nothing to read: recv times out with null.
  assert.equal(fdpass.recv(client, { timeoutMs: 10 }), null);
});

test('seqpacket: a closed client is reported; a closed server is reported to the client', async (t) => {
  const sock = path.join(tmp(t), 'b.sock');
  const events: SeqpacketEvent[] = [];
  const server = fdpass.listen(sock, 0o600, (e) => events.push(e));
  const a = fdpass.connect(sock);
  const ca = await nextEvent(events, 'connect');
  closeFd(a);
  const closed = await nextEvent(events, 'close');
  assert.equal(closed.conn, ca.conn);
  assert.throws(() => server.send(ca.conn, Buffer.from('x'), []), (e: unknown) => e instanceof NativeError && e.code === 'ENOTCONN');

  const b = fdpass.connect(sock);
  t.after(() => closeFd(b));
  await nextEvent(events, 'connect');
  server.close();
  assert.throws(() => fdpass.recv(b, { timeoutMs: 2000 }), { message: 'recvmsg: connection closed by peer (ECONNRESET)' });
  assert.throws(() => server.send(1, Buffer.from('x'), []), { message: 'the attach socket server is closed' });
  // close() removed the socket file.
  assert.throws(() => fdpass.connect(sock), (e: unknown) => e instanceof NativeError && e.code === 'ENOENT' && e.message === `connect ${sock}: No such file or directory (ENOENT)`);
});

test('seqpacket: too many fds or an oversized message is an error event, and the fds are not leaked', async (t) => {
  const sock = path.join(tmp(t), 'c.sock');
  const events: SeqpacketEvent[] = [];
  const server = fdpass.listen(sock, 0o600, (e) => events.push(e));
  t.after(() => server.close());
  const client = fdpass.connect(sock);
  t.after(() => closeFd(client));
  await nextEvent(events, 'connect');
  const before = fs.readdirSync('/proc/self/fd').length;
  fdpass.send(client, Buffer.alloc(70 * 1024), []);
  const e = (await nextEvent(events, 'error')) as Extract<SeqpacketEvent, { type: 'error' }>;
  assert.equal(e.error.code, 'EMSGSIZE');
  assert.match(e.error.message, /message over 64 KiB or more than 16 fds/);
  assert.equal(fs.readdirSync('/proc/self/fd').length, before);
});

test('seqpacket: bad arguments are refused with the value named', () => {
  assert.throws(() => fdpass.listen('', 0o600, () => {}), { message: 'Expected a unix socket path shorter than 108 bytes for path but received ""' });
  assert.throws(() => fdpass.listen('/tmp/x'.padEnd(120, 'x'), 0o600, () => {}), /Expected a unix socket path shorter than 108 bytes for path/);
  assert.throws(() => fdpass.listen('/tmp/x.sock', 0o600, null as unknown as () => void), { message: 'Expected a function for onEvent but received null' });
  assert.throws(() => fdpass.send(3, 'x' as unknown as Buffer), { message: 'Expected a Buffer for payload but received "x"' });
  assert.throws(() => fdpass.send(3, Buffer.alloc(1), [-2]), { message: 'Expected a file descriptor (an integer >= 0) for fds[] but received -2' });
  assert.throws(() => fdpass.connect('/nonexistent/farmem.sock'), { message: 'connect /nonexistent/farmem.sock: No such file or directory (ENOENT)' });
});

// A fake NOTIFY_SOCKET: a unix datagram socket served by a small python3 program that prints each
// datagram (and what each received fd points at) as a JSON line.
const RECEIVER = `
import socket, sys, os, json, array
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); print("ready", flush=True)
while True:
    fds = array.array("i")
    msg, anc, flags, addr = s.recvmsg(4096, socket.CMSG_SPACE(16 * fds.itemsize))
    for level, typ, data in anc:
        if level == socket.SOL_SOCKET and typ == socket.SCM_RIGHTS:
            fds.frombytes(data[:len(data) - (len(data) % fds.itemsize)])
    print(json.dumps({"state": msg.decode(), "fds": [os.readlink("/proc/self/fd/%d" % f) for f in fds]}), flush=True)
`;

function hasPython(): boolean {
  try {
    execFileSync('python3', ['-c', 'import socket'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

test('sd_notify: READY, STATUS, STOPPING, WATCHDOG and FDSTORE with an fd reach NOTIFY_SOCKET', { skip: hasPython() ? false : 'the fake NOTIFY_SOCKET receiver needs python3' }, async (t) => {
  const sock = path.join(tmp(t), 'notify.sock');
  const rx = spawn('python3', ['-c', RECEIVER, sock], { stdio: ['ignore', 'pipe', 'inherit'] });
  t.after(() => rx.kill('SIGKILL'));
  const lines: string[] = [];
  let buf = '';
  rx.stdout!.on('data', (d) => {
    buf += d;
    const parts = buf.split('\n');
    buf = parts.pop()!;
    lines.push(...parts);
  });
  const waitLines = async (n: number) => {
    for (let i = 0; i < 500 && lines.length < n; i++) await new Promise((r) => setTimeout(r, 10));
    assert.ok(lines.length >= n, `receiver printed ${lines.length} of ${n} lines`);
  };
  await waitLines(1);
  assert.equal(lines.shift(), 'ready');

  const saved = process.env.NOTIFY_SOCKET;
  t.after(() => (saved === undefined ? delete process.env.NOTIFY_SOCKET : (process.env.NOTIFY_SOCKET = saved)));
  delete process.env.NOTIFY_SOCKET;
  assert.equal(sdNotify('READY=1'), false);

  process.env.NOTIFY_SOCKET = sock;
  const fd = memfd.create('fdstore-region', 4096);
  t.after(() => closeFd(fd));
  assert.equal(sdNotify('READY=1\nSTATUS=serving 0 regions'), true);
  assert.equal(sdNotify('WATCHDOG=1'), true);
  assert.equal(sdNotify('FDSTORE=1\nFDNAME=region-db', [fd]), true);
  assert.equal(sdNotify('STOPPING=1'), true);
  await waitLines(4);
  const got = lines.map((l) => JSON.parse(l) as { state: string; fds: string[] });
  assert.deepEqual(got.map((g) => g.state), ['READY=1\nSTATUS=serving 0 regions', 'WATCHDOG=1', 'FDSTORE=1\nFDNAME=region-db', 'STOPPING=1']);
  assert.deepEqual(got[2]!.fds, ['/memfd:fdstore-region (deleted)']);

  process.env.NOTIFY_SOCKET = 'relative/path';
  assert.throws(() => sdNotify('READY=1'), { message: 'Expected an absolute path or @abstract name for NOTIFY_SOCKET but received "relative/path"' });
  assert.throws(() => sdNotify(''), { message: 'Expected a non-empty state string for state but received ""' });
});
