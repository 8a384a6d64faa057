// `farmem servers add|remove` through the control socket of an in-process daemon: who may, what is
// refused (each whole message), and what is kept in the state dir for the next start. (Moving page
// groups between real servers is tested across hosts: test/multihost/add-server.test.ts.)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { ControlError } from '../../client/control';
import { ServerChangesFile, applyServerChanges } from '../../daemon/server-changes';
import { farmemAsync, startInProcess, type InProcess } from './inproc';
import { makeCerts, noOpenssl } from '../helpers/certs';

let p: InProcess;
let changes: ServerChangesFile;
before(async () => {
  p = await startInProcess();
  changes = new ServerChangesFile(path.join(p.dir, 'state'));
  p.daemon.useServerChanges(changes);
});
after(() => p.close());

const root = { pid: process.pid, uid: 0, gid: 0, groups: [] };
const user = { pid: process.pid, uid: 1000, gid: 1000, groups: [] };

async function rejects(fn: () => Promise<unknown>, code: string, message: string): Promise<void> {
  await assert.rejects(fn, (e: unknown) => {
    assert.ok(e instanceof ControlError, String(e));
    assert.equal(e.message, message);
    assert.equal(e.code, code);
    return true;
  });
}

async function refused(fn: () => Promise<unknown>, message: string): Promise<void> {
  await assert.rejects(fn, { message });
}

test('root adds a server: it is listed, and kept (with its token file, not the token) for the next start', async () => {
  const token = path.join(p.dir, 'token');
  fs.writeFileSync(token, 'secret\n');
  const s = await p.client.addServer('127.0.0.2:7071', 3, token);
  assert.equal(s.address, '127.0.0.2:7071');
  assert.equal(s.weight, 3);
  assert.equal(s.state, 'down'); // nothing listens there: added all the same
  assert.ok((await p.client.listServers()).some((x) => x.address === '127.0.0.2:7071'));
  const kept = changes.load();
  assert.deepEqual(kept, { added: [{ address: '127.0.0.2:7071', weight: 3, tokenFile: token, tls: null }], removed: [], draining: [] });
  assert.doesNotMatch(fs.readFileSync(changes.file, 'utf8'), /secret/);
  const next = applyServerChanges([{ address: '127.0.0.1:1', weight: 1, token: null, tls: null, embedded: false }], kept, changes.file);
  assert.deepEqual(next.map((x) => [x.address, x.weight, x.token]), [['127.0.0.1:1', 1, null], ['127.0.0.2:7071', 3, 'secret']]);
  assert.ok(p.lines.some((l) => l.msg === 'memory server 127.0.0.2:7071 added' && l.weight === 3));
});

test('adding is refused with the whole message: not root, bad address, weight, token file, a duplicate', async () => {
  await refused(() => p.daemon.addMemoryServer(user, { address: '127.0.0.3:1', weight: 1, tokenFile: null }), 'add memory server 127.0.0.3:1: permission denied: only root may change the memory servers');
  await refused(() => p.daemon.addMemoryServer(root, { address: 'nope', weight: 1, tokenFile: null }), 'add memory server: Expected host:port or unix:PATH for address but received "nope"');
  await refused(() => p.daemon.addMemoryServer(root, { address: '127.0.0.3:1', weight: 0, tokenFile: null }), 'add memory server 127.0.0.3:1: Expected an integer weight >= 1 for weight but received 0');
  await refused(() => p.daemon.addMemoryServer(root, { address: '127.0.0.3:1', weight: 1, tokenFile: 'token' }), 'add memory server 127.0.0.3:1: Expected an absolute path for token file but received "token"');
  await refused(() => p.daemon.addMemoryServer(root, { address: '127.0.0.3:1', weight: 1, tokenFile: '/nonexistent/token' }), 'add memory server 127.0.0.3:1: ENOENT: cannot read /nonexistent/token');
  await rejects(() => p.client.addServer('127.0.0.1:1', 1, null), 'ALREADY_EXISTS', 'add memory server 127.0.0.1:1: it is already one of the memory servers');
  await rejects(() => p.client.addServer('bad address', 1, null), 'INVALID_ARGUMENT', 'add memory server: Expected host:port or unix:PATH for address but received "bad address"');
});

test('TLS files: kept as paths (a file from before TLS existed reads as no TLS), refused with the whole message when unusable', { skip: noOpenssl }, async () => {
  const dir = path.join(p.dir, 'tls');
  fs.mkdirSync(dir, { recursive: true });
  makeCerts(dir);
  const pem = (n: string) => path.join(dir, n);
  const tls = { ca: pem('ca.pem'), cert: pem('client.pem'), key: pem('client.key'), serverName: 'mem.example' };
  const s = await p.client.addServer('127.0.0.2:7072', 1, null, tls);
  assert.equal(s.tls, true);
  const kept = changes.load().added.find((a) => a.address === '127.0.0.2:7072');
  assert.deepEqual(kept, { address: '127.0.0.2:7072', weight: 1, tokenFile: null, tls });
  const next = applyServerChanges([], { added: [kept!, { address: '127.0.0.2:7073', weight: 1, tokenFile: null }], removed: [], draining: [] }, changes.file);
  assert.deepEqual(next.map((x) => x.tls), [tls, null]);
  fs.writeFileSync(path.join(dir, 'plain.txt'), 'hello');
  const op = 'add memory server 127.0.0.3:1';
  const add = (t: Partial<typeof tls>) => p.daemon.addMemoryServer(root, { address: '127.0.0.3:1', weight: 1, tokenFile: null, tls: { ca: null, cert: null, key: null, serverName: null, ...t } });
  await refused(() => add({ ca: 'ca.pem' }), `${op}: Expected an absolute path for ca_file but received "ca.pem"`);
  await refused(() => add({ ca: '/nonexistent/ca.pem' }), `${op}: Expected a readable file for ca_file but received "/nonexistent/ca.pem" (ENOENT)`);
  await refused(() => add({ ca: path.join(dir, 'plain.txt') }), `${op}: Expected a PEM file (-----BEGIN ...) for ca_file but received ${JSON.stringify(path.join(dir, 'plain.txt'))}`);
  await refused(() => add({ cert: tls.cert }), `${op}: Expected both cert_file and key_file (a client certificate and its key) but received only cert_file`);
  await refused(() => add({ cert: tls.cert, key: pem('intruder.key') }), `${op}: Expected PEM files TLS accepts for cert_file, key_file but received files it refuses: error:05800074:x509 certificate routines::key values mismatch`);
  await rejects(() => p.client.addServer('127.0.0.3:1', 1, null, { ...tls, key: null }), 'INVALID_ARGUMENT', `${op}: Expected both cert_file and key_file (a client certificate and its key) but received only cert_file`);
  assert.ok(!p.daemon.servers.some((x) => x.address === '127.0.0.3:1'));
  // Leave the daemon as the next tests expect it.
  p.daemon.servers.splice(p.daemon.servers.findIndex((x) => x.address === '127.0.0.2:7072'), 1);
  const c = changes.load();
  changes.save({ ...c, added: c.added.filter((a) => a.address !== '127.0.0.2:7072') });
});

test('removing is refused with the whole message: not root, unknown, embedded, named by a region, the only one', async () => {
  await refused(() => p.daemon.removeMemoryServer(user, '127.0.0.1:1'), 'remove memory server 127.0.0.1:1: permission denied: only root may change the memory servers');
  await rejects(() => p.client.removeServer('127.0.0.9:9'), 'NOT_FOUND', 'remove memory server 127.0.0.9:9: it is not one of the memory servers (see farmem servers)');
  p.daemon.addServer({ address: '127.0.0.5:5', weight: 1, token: null, tls: null, embedded: true });
  await refused(() => p.daemon.removeMemoryServer(root, '127.0.0.5:5'), 'remove memory server 127.0.0.5:5: it is the embedded memory server (turn it off with embedded_server.enabled = false)');
  p.daemon.servers.splice(p.daemon.servers.findIndex((s) => s.address === '127.0.0.5:5'), 1);
  await p.daemon.createRegion(root, { name: 'pinned', sizeBytes: 1 << 20, pageSize: 4096, residentBytes: null, servers: ['127.0.0.1:1'], replicas: null, prefetch: null, onUnavailable: null, ownerUid: null, ownerGid: null, mode: null });
  await rejects(() => p.client.removeServer('127.0.0.1:1'), 'FAILED_PRECONDITION', 'remove memory server 127.0.0.1:1: region "pinned" names it in its server list');
  await p.daemon.deleteRegion(root, 'pinned');
  const only = p.daemon.servers.filter((s) => s.address !== '127.0.0.1:1');
  for (const s of only) p.daemon.servers.splice(p.daemon.servers.indexOf(s), 1);
  try {
    await rejects(() => p.client.removeServer('127.0.0.1:1'), 'FAILED_PRECONDITION', 'remove memory server 127.0.0.1:1: it is the only memory server: add another first');
  } finally {
    p.daemon.servers.push(...only);
  }
});

test('a removed server is forgotten once drained, and kept forgotten (configured: removed; added: dropped)', async () => {
  await p.client.addServer('127.0.0.4:7074', 1, null);
  await p.client.removeServer('127.0.0.4:7074');
  await p.client.removeServer('127.0.0.1:1');
  for (let i = 0; i < 100 && p.daemon.servers.some((s) => s.address === '127.0.0.4:7074' || s.address === '127.0.0.1:1'); i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual((await p.client.listServers()).map((s) => s.address), ['127.0.0.2:7071']);
  const kept = changes.load();
  assert.deepEqual(kept.removed, ['127.0.0.1:1']);
  assert.deepEqual(kept.draining, []);
  assert.deepEqual(kept.added.map((a) => a.address), ['127.0.0.2:7071']);
  assert.deepEqual(applyServerChanges([{ address: '127.0.0.1:1', weight: 1, token: null, tls: null, embedded: false }], kept, changes.file).map((s) => s.address), ['127.0.0.2:7071']);
});

test('farmem servers add|remove: usage errors exit 2, refusals exit 1, with the message', async () => {
  let r = await farmemAsync(p.socket, ['servers', 'add', '127.0.0.6:6', '--weight', '0']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /Expected an integer from 1 to 1000 for --weight but received "0"/);
  r = await farmemAsync(p.socket, ['servers', 'add', 'nope']);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /add memory server: Expected host:port or unix:PATH for address but received "nope"/);
  r = await farmemAsync(p.socket, ['servers', 'remove', '127.0.0.9:9']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /remove memory server 127\.0\.0\.9:9: it is not one of the memory servers \(see farmem servers\)/);
  r = await farmemAsync(p.socket, ['servers', 'add', '127.0.0.7:7', '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal((JSON.parse(r.stdout) as { address: string }).address, '127.0.0.7:7');
  r = await farmemAsync(p.socket, ['servers', 'remove', '127.0.0.7:7']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'removed memory server 127.0.0.7:7: its groups are on the other servers\n');
});
