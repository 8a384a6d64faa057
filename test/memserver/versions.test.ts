// Page versions on the memory server: a write with a lower version than the stored one is acknowledged
// but not applied (superseded), equal versions rewrite, unversioned writes (old clients) always apply,
// and the rule survives kill -9 and a restart from the data dir, and journal compaction.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryServerClient } from '../../daemon/remote/client';
import { PageStoreError } from '../../daemon/remote/types';
import { generatedCodec } from '../../daemon/remote/wire';
import { afterCompaction, bytesStream, randomPages, rawStream, spawnServer, startServer, tmpDir } from './fixture';

const PS = 4096;
const V = 1_790_000_000_000_000; // a version as the daemon's clock makes them (µs since 1970)

function pageOf(b: Buffer, i: number): Buffer {
  return b.subarray(i * PS, (i + 1) * PS);
}

test('a write with a lower version than the stored one is acknowledged as superseded and leaves the newer bytes', async (t) => {
  const { server } = await startServer(t);
  const s = rawStream(server.address);
  t.after(() => s.close());
  const region = 'versions';
  const newer = randomPages(2, PS);
  const older = randomPages(2, PS);
  const w1 = await s.send({ requestId: 1, region, pageSize: PS, op: 'write', pages: [10, 11], data: newer, versions: [V] });
  assert.deepEqual([w1.code, w1.written, w1.superseded], [0, 2, 0]);
  const w2 = await s.send({ requestId: 2, region, pageSize: PS, op: 'write', pages: [10, 11], data: older, versions: [V - 1] });
  assert.deepEqual([w2.code, w2.written, w2.superseded], [0, 2, 2], 'acknowledged (the server holds a newer copy), not applied');
  const r = await s.send({ requestId: 3, region, pageSize: PS, op: 'read', pages: [10, 11], data: null });
  assert.ok(r.data!.equals(newer), 'the read returns the newer bytes');
  assert.deepEqual(r.versions, [V, V]);

  // Per-page versions: only the pages whose stored version is higher are skipped; equal rewrites.
  const mixed = randomPages(3, PS);
  const w3 = await s.send({ requestId: 4, region, pageSize: PS, op: 'write', pages: [10, 11, 12], data: mixed, versions: [V, V - 5, 7] });
  assert.deepEqual([w3.written, w3.superseded], [3, 1]);
  const r2 = await s.send({ requestId: 5, region, pageSize: PS, op: 'read', pages: [12, 11, 10, 99], data: null });
  assert.deepEqual([r2.present, r2.absent, r2.versions], [[12, 11, 10], [99], [7, V, V]]);
  assert.ok(r2.data!.equals(Buffer.concat([pageOf(mixed, 2), pageOf(newer, 1), pageOf(mixed, 0)])));

  const sc = new MemoryServerClient({ address: server.address });
  t.after(() => sc.close());
  const stats = await sc.stats();
  assert.match(stats.metricsText, /farmem_memserver_pages_superseded_total 3\n/);
  assert.equal(stats.pagesWrittenTotal, 2 + 2);
});

test('versions through the client: a superseded write resolves (not a failure), and reads return versions when asked', async (t) => {
  const { server } = await startServer(t);
  const c = new MemoryServerClient({ address: server.address });
  t.after(() => c.close());
  const region = { id: 'client-versions', pageSize: PS };
  const newer = randomPages(64, PS);
  const pages = Array.from({ length: 64 }, (_, i) => i * 5);
  await c.write(region, pages, newer, { versions: [V + 64] });
  await c.write(region, pages, randomPages(64, PS), { versions: [V] }); // resolves: superseded is acknowledged
  const r = await c.read(region, pages, { versions: true });
  pages.forEach((p, i) => assert.ok(r.present.get(p)!.equals(pageOf(newer, i)), `page ${p}`));
  assert.deepEqual([...r.versions!.values()], pages.map(() => V + 64));
  assert.equal((await c.read(region, pages)).versions, undefined, 'no versions unless asked');
  await assert.rejects(c.write(region, [1, 2, 3], randomPages(3, PS), { versions: [1, 2] }), (e: unknown) => {
    assert.ok(e instanceof PageStoreError);
    assert.equal(e.kind, 'invalid');
    assert.equal(e.message, 'Expected no version, one, or one per page (3) for versions but received 2');
    return true;
  });
});

test('old clients: an unversioned write always applies (and leaves the page unversioned)', async (t) => {
  const { server } = await startServer(t);
  const s = rawStream(server.address);
  t.after(() => s.close());
  const region = 'old-client';
  await s.send({ requestId: 1, region, pageSize: PS, op: 'write', pages: [1], data: randomPages(1, PS), versions: [V] });
  // Encoded by protobufjs from a message without the versions field: what a client older than versions sends.
  const legacy = randomPages(1, PS);
  const b = bytesStream(server.address);
  t.after(() => b.close());
  const ack = new Promise<Buffer>((resolve) => b.call.on('data', resolve));
  b.call.write(generatedCodec.encodeRequest({ requestId: 2, region, pageSize: PS, op: 'write', pages: [1], data: legacy, malformed: null }));
  const resp = generatedCodec.decodeResponse(await ack);
  assert.deepEqual([resp.code, resp.written, resp.superseded], [0, 1, 0]);
  const r = await s.send({ requestId: 3, region, pageSize: PS, op: 'read', pages: [1], data: null });
  assert.ok(r.data!.equals(legacy), 'the unversioned write applied over the versioned page');
  assert.equal(r.versions, null, 'unversioned pages carry no versions on the wire');
  // Now unversioned, any versioned write applies again.
  const next = randomPages(1, PS);
  const w = await s.send({ requestId: 4, region, pageSize: PS, op: 'write', pages: [1], data: next, versions: [1] });
  assert.equal(w.superseded, 0);
  assert.ok((await s.send({ requestId: 5, region, pageSize: PS, op: 'read', pages: [1], data: null })).data!.equals(next));
});

test('bad versions are refused per request, with the whole message', async (t) => {
  const { server } = await startServer(t);
  const s = rawStream(server.address);
  t.after(() => s.close());
  const count = await s.send({ requestId: 1, region: 'bad', pageSize: PS, op: 'write', pages: [1, 2, 3], data: randomPages(3, PS), versions: [1, 2] });
  assert.deepEqual([count.code, count.message], [3, 'Expected no version, one, or one per page (3) for versions but received 2']);
  const big = await s.send({ requestId: 2, region: 'bad', pageSize: PS, op: 'write', pages: [1], data: randomPages(1, PS), versions: [2 ** 53] });
  assert.deepEqual([big.code, big.message], [3, `Expected versions below 2^53 for versions but received ${2 ** 53}`]);
  // Nothing was stored by either.
  assert.deepEqual((await s.send({ requestId: 3, region: 'bad', pageSize: PS, op: 'read', pages: [1], data: null })).absent, [1]);
});

test('after kill -9 and a restart from the data dir, a stale write is still refused', async (t) => {
  const dir = tmpDir(t);
  const region = { id: 'durable-versions', pageSize: PS };
  const pages = Array.from({ length: 16 }, (_, i) => i);
  const newer = randomPages(16, PS);
  const first = await spawnServer(t, ['--data-dir', dir, '--capacity', '64MiB']);
  const c1 = new MemoryServerClient({ address: first.address });
  await c1.write(region, pages, randomPages(16, PS), { versions: [V] });
  await c1.write(region, pages, newer, { versions: pages.map((p) => V + 100 + p) }); // per-page versions
  await c1.write(region, pages, randomPages(16, PS), { versions: [V + 50] }); // superseded at once
  await c1.sync(region);
  first.child.kill('SIGKILL');
  await new Promise((r) => first.child.once('exit', r));
  await c1.close();

  const second = await spawnServer(t, ['--data-dir', dir, '--capacity', '64MiB']);
  const c2 = new MemoryServerClient({ address: second.address });
  t.after(() => c2.close());
  const before = await c2.read(region, pages, { versions: true });
  pages.forEach((p, i) => assert.ok(before.present.get(p)!.equals(pageOf(newer, i)), `page ${p} after the restart`));
  assert.deepEqual([...before.versions!.values()], pages.map((p) => V + 100 + p), 'versions replayed from the journal');
  await c2.write(region, pages, randomPages(16, PS), { versions: [V + 99] }); // below every stored version
  const after = await c2.read(region, pages);
  pages.forEach((p, i) => assert.ok(after.present.get(p)!.equals(pageOf(newer, i)), `page ${p}: the stale write was refused`));
  second.child.kill('SIGTERM');
  await new Promise((r) => second.child.once('exit', r));
});

test('journal compaction keeps the versions', async (t) => {
  const dir = tmpDir(t);
  const region = { id: 'compact-versions', pageSize: PS };
  const pages = Array.from({ length: 16 }, (_, i) => i);
  let last = randomPages(16, PS);
  const c = await afterCompaction(t, dir, 128 * 1024, async (w) => {
    for (let i = 0; i < 20; i++) {
      last = randomPages(16, PS);
      await w.write(region, pages, last, { versions: [V + i] });
    }
    await w.sync(region);
  });
  await c.write(region, pages, randomPages(16, PS), { versions: [V + 18] });
  const r = await c.read(region, pages, { versions: true });
  pages.forEach((p, i) => assert.ok(r.present.get(p)!.equals(pageOf(last, i)), `page ${p}`));
  assert.deepEqual([...r.versions!.values()], pages.map(() => V + 19));
});
