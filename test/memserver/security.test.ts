// Mutual TLS and bearer tokens: refused calls get UNAUTHENTICATED with a log line; others are served.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { MemoryServerClient } from '../../daemon/remote/client';
import { PageStoreError } from '../../daemon/remote/types';
import { randomPages, startServer, tmpDir } from './fixture';

const noOpenssl = spawnSync('openssl', ['version']).status === 0 ? false : 'needs the openssl CLI to make test certificates';

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

/** A CA, a server cert for localhost/127.0.0.1, a client cert from that CA and one from a rogue CA. */
function makeCerts(dir: string): void {
  for (const ca of ['ca', 'rogue']) {
    openssl(dir, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${ca}.key`, '-out', `${ca}.pem`, '-days', '2', '-subj', `/CN=farmem test ${ca}`);
  }
  const sign = (name: string, ca: string, ext: string) => {
    openssl(dir, 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    require('node:fs').writeFileSync(path.join(dir, `${name}.ext`), ext);
    openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
  };
  sign('server', 'ca', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  sign('client', 'ca', 'extendedKeyUsage=clientAuth\n');
  sign('intruder', 'rogue', 'extendedKeyUsage=clientAuth\n');
}

async function refused(p: Promise<unknown>, message: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof PageStoreError);
    assert.equal(e.kind, 'unauthenticated');
    assert.equal(e.message, message);
    return true;
  });
}

test('a token is required on every call; wrong or missing ones are refused and logged', async (t) => {
  const { server, lines } = await startServer(t, { token: 's3cret' });
  const region = { id: 'r', pageSize: 4096 };
  const good = new MemoryServerClient({ address: server.address, token: 's3cret' });
  const none = new MemoryServerClient({ address: server.address });
  const wrong = new MemoryServerClient({ address: server.address, token: 'guess' });
  t.after(() => Promise.all([good, none, wrong].map((c) => c.close())));
  await good.write(region, [1], randomPages(1, 4096));
  const a = server.address;
  await refused(none.read(region, [1]), `read 1 page of region "r" on ${a}: page stream on ${a}: UNAUTHENTICATED: farmem-memserver: missing authorization metadata (Bearer token)`);
  await refused(wrong.write(region, [2], randomPages(1, 4096)), `write 1 page of region "r" on ${a}: page stream on ${a}: UNAUTHENTICATED: farmem-memserver: wrong bearer token`);
  await refused(wrong.sync(region), `sync region "r" on ${a}: UNAUTHENTICATED: farmem-memserver: wrong bearer token`);
  await refused(none.stats(), `stats on ${a}: UNAUTHENTICATED: farmem-memserver: missing authorization metadata (Bearer token)`);
  await refused(none.deleteRegion('r'), `delete region "r" on ${a}: UNAUTHENTICATED: farmem-memserver: missing authorization metadata (Bearer token)`);
  const logged = lines.filter((l) => l.msg === 'refused unauthenticated call');
  assert.deepEqual(logged.map((l) => [l.method, l.reason]), [
    ['Pages', 'missing authorization metadata (Bearer token)'],
    ['Pages', 'wrong bearer token'],
    ['Sync', 'wrong bearer token'],
    ['Stats', 'missing authorization metadata (Bearer token)'],
    ['DeleteRegion', 'missing authorization metadata (Bearer token)'],
  ]);
  // still serving the good client, and nothing refused was stored
  assert.deepEqual((await good.read(region, [1, 2])).absent, [2]);
  assert.equal(await good.health(), 'SERVING');
});

test('mutual TLS: only clients with a certificate signed by the configured CA are served', { skip: noOpenssl }, async (t) => {
  const dir = tmpDir(t);
  makeCerts(dir);
  const f = (n: string) => path.join(dir, n);
  const { server, lines } = await startServer(t, { tls: { cert: f('server.pem'), key: f('server.key'), ca: f('ca.pem') } });
  const a = server.address;
  const region = { id: 'tls', pageSize: 4096 };
  const good = new MemoryServerClient({ address: a, tls: { ca: f('ca.pem'), cert: f('client.pem'), key: f('client.key') } });
  const rogue = new MemoryServerClient({ address: a, tls: { ca: f('ca.pem'), cert: f('intruder.pem'), key: f('intruder.key') } });
  t.after(() => Promise.all([good.close(), rogue.close()]));
  const data = randomPages(3, 4096);
  await good.write(region, [0, 1, 2], data);
  assert.ok((await good.read(region, [2])).present.get(2)!.equals(data.subarray(8192)));
  await refused(rogue.read(region, [0]), `read 1 page of region "tls" on ${a}: page stream on ${a}: UNAUTHENTICATED: farmem-memserver: no client certificate signed by the configured CA`);
  await refused(rogue.stats(), `stats on ${a}: UNAUTHENTICATED: farmem-memserver: no client certificate signed by the configured CA`);
  assert.equal(lines.filter((l) => l.msg === 'refused unauthenticated call').length, 2);
  // a plaintext client cannot talk to it at all
  const plain = new MemoryServerClient({ address: a, deadlineMs: 3000 });
  t.after(() => plain.close());
  await assert.rejects(plain.read(region, [0]), (e: unknown) => e instanceof PageStoreError && e.kind === 'unavailable');
  assert.equal((await good.stats()).usedBytes, 3 * 4096);
});
