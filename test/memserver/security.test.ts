// Mutual TLS and bearer tokens: refused calls get UNAUTHENTICATED with a log line; others are served.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { MemoryServerClient } from '../../daemon/remote/client';
import { PageStoreError } from '../../daemon/remote/types';
import { randomPages, startServer, tmpDir } from './fixture';
import { makeCerts, noOpenssl } from '../helpers/certs';

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
