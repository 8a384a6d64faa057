// MemoryServerClient against real servers and deliberately misbehaving ones: typed errors, deadlines,
// corrupt answers never returned as data, bounded in-flight bytes, reconnect after an outage.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { MemoryServerClient } from '../../daemon/remote/client';
import { PageViews } from '../../daemon/remote/page-views';
import { PageStoreError } from '../../daemon/remote/types';
import type { PageRequestMsg, PageResponseMsg } from '../../daemon/remote/wire';
import { randomPages, startServer, tmpDir } from '../memserver/fixture';
import { fakePagesServer } from './fake-pages-server';

const ok = (req: PageRequestMsg, over: Partial<PageResponseMsg>): PageResponseMsg => ({
  requestId: req.requestId, code: 0, message: '', present: [], data: null, absent: [], written: 0, malformed: null, ...over,
});

async function fails(p: Promise<unknown>, kind: string, message: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof PageStoreError, String(e));
    assert.deepEqual([e.kind, e.message], [kind, message]);
    return true;
  });
}

const region = { id: 'r', pageSize: 4096 };

test('a server that never answers: deadline', async (t) => {
  const f = await fakePagesServer(t, () => null);
  const c = new MemoryServerClient({ address: f.address });
  t.after(() => c.close());
  await fails(c.read(region, [1], { deadlineMs: 150 }), 'deadline', `read 1 page of region "r" on ${f.address}: deadline of 150 ms exceeded`);
});

test('answers of the wrong shape are corrupt and never returned as data', async (t) => {
  const page = randomPages(1, 4096);
  const f = await fakePagesServer(t, (req) => {
    if (req.op === 'write') return ok(req, { written: req.pages.length - 1 });
    if (req.pages[0] === 1) return ok(req, { present: req.pages, data: page }); // 2 asked, 1 page of bytes
    if (req.pages[0] === 2) return ok(req, { present: [99], data: page }); // not asked
    if (req.pages[0] === 3) return ok(req, { present: [3], absent: [4, 5] }); // too many answers, no bytes
    if (req.pages[0] === 5) return ok(req, { present: [5, 6], data: Buffer.concat([page, page]), versions: [1] }); // a version short
    if (req.pages[0] === 8) return ok(req, { present: [8, 9, 8], data: Buffer.concat([page, page, page]) }); // 9 asked twice, 8 answered twice
    if (req.pages[0] === 10) return ok(req, { present: req.pages, data: Buffer.concat([page, page]) }); // asked twice, answered twice, in order
    return Buffer.from([0x08, 0x01, 0x2a, 0x40]); // bytes field overruns the message
  });
  const c = new MemoryServerClient({ address: f.address });
  t.after(() => c.close());
  const a = f.address;
  await fails(c.read(region, [1, 2]), 'corrupt', `read 2 pages of region "r" on ${a}: corrupt response: sent 4096 bytes for 2 pages of 4096`);
  await fails(c.read(region, [2]), 'corrupt', `read 1 page of region "r" on ${a}: corrupt response: answered page 99, which was not asked or came twice`);
  await fails(c.read(region, [3, 4]), 'corrupt', `read 2 pages of region "r" on ${a}: corrupt response: answered 1 present + 2 absent pages for 2 asked`);
  await fails(c.read(region, [5, 6]), 'corrupt', `read 2 pages of region "r" on ${a}: corrupt response: sent 1 versions for 2 present pages`);
  await fails(c.read(region, [8, 9, 9]), 'corrupt', `read 3 pages of region "r" on ${a}: corrupt response: answered page 8, which was not asked or came twice`);
  await fails(c.read(region, [10, 10]), 'corrupt', `read 2 pages of region "r" on ${a}: corrupt response: answered page 10, which was not asked or came twice`);
  await fails(c.write(region, [1, 2], randomPages(2, 4096)), 'corrupt', `write 2 pages of region "r" on ${a}: corrupt response: server acknowledged 1 pages, expected 2`);
  await fails(c.read(region, [7]), 'corrupt', `read 1 page of region "r" on ${a}: page stream to ${a}: malformed PageResponse: field of 64 bytes overruns the message`);
});

test('per-request refusals and local checks come back as invalid', async (t) => {
  const { server } = await startServer(t);
  const c = new MemoryServerClient({ address: server.address });
  t.after(() => c.close());
  const a = server.address;
  await fails(c.read(region, [2 ** 30]), 'invalid', `read 1 page of region "r" on ${a}: Expected page indexes below 268435456 (2^40 / page size 4096) for pages but received 1073741824`);
  await fails(c.write(region, [1], Buffer.alloc(100)), 'invalid', 'Expected 4096 bytes (1 pages of 4096) for data but received 100');
});

test('in-flight bytes are bounded: further requests wait', async (t) => {
  const f = await fakePagesServer(t, () => null);
  const c = new MemoryServerClient({ address: f.address, maxInFlightBytes: 2 * 4096 });
  t.after(() => c.close());
  const all = Array.from({ length: 6 }, (_, i) => c.read(region, [i], { deadlineMs: 300 }).catch((e: PageStoreError) => e.kind));
  await new Promise((r) => setTimeout(r, 150));
  assert.equal(f.received.length, 2);
  const kinds = await Promise.all(all);
  assert.deepEqual(kinds, ['deadline', 'deadline', 'deadline', 'deadline', 'deadline', 'deadline']);
  assert.ok(f.received.length >= 2 && f.received.length <= 6);
});

test('unavailable while the server is down, served again after it comes back (backoff)', async (t) => {
  const first = await startServer(t);
  const port = first.server.address.split(':')[1]!;
  await first.server.stop();
  const c = new MemoryServerClient({ address: `127.0.0.1:${port}`, backoffInitialMs: 20, backoffMaxMs: 200 });
  t.after(() => c.close());
  await assert.rejects(c.read(region, [1], { deadlineMs: 2000 }), (e: unknown) => e instanceof PageStoreError && e.kind === 'unavailable' && e.server === `127.0.0.1:${port}`);
  const { server } = await startServer(t, { listen: `127.0.0.1:${port}` });
  const data = randomPages(1, 4096);
  let done = false;
  for (let i = 0; i < 100 && !done; i++) {
    try {
      await c.write(region, [1], data, { deadlineMs: 1000 });
      done = true;
    } catch (e) {
      assert.equal((e as PageStoreError).kind, 'unavailable');
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  assert.ok(done, 'reconnected');
  assert.ok((await c.read(region, [1])).present.get(1)!.equals(data));
  assert.equal(server.usedBytes, 4096);
});

test('unix socket addresses, several streams and connections, health and stats', async (t) => {
  const dir = tmpDir(t);
  const address = `unix:${path.join(dir, 'ms.sock')}`;
  const { server } = await startServer(t, { listen: address });
  assert.equal(server.address, address);
  const c = new MemoryServerClient({ address, streams: 4, connections: 2 });
  t.after(() => c.close());
  const data = randomPages(256, 4096);
  await Promise.all(Array.from({ length: 16 }, (_, i) => c.write(region, Array.from({ length: 16 }, (_, j) => i * 16 + j), data.subarray(i * 65536, (i + 1) * 65536))));
  const r = await c.read(region, Array.from({ length: 256 }, (_, i) => i));
  // A consecutive read comes back as views made on demand; any other as a plain Map: the same bytes.
  assert.ok(r.present instanceof PageViews);
  for (let i = 0; i < 256; i++) assert.ok(r.present.get(i)!.equals(data.subarray(i * 4096, (i + 1) * 4096)));
  assert.ok(r.present.span(10, 20)!.equals(data.subarray(10 * 4096, 30 * 4096)));
  assert.equal(await c.health(), 'SERVING');
  assert.equal(await c.health('farmem.v1.MemoryServer'), 'SERVING');
  const s = await c.stats();
  assert.deepEqual([s.pagesWrittenTotal, s.pagesReadTotal, s.writesTotal, s.readsTotal], [256, 256, 16, 1]);
  assert.match(s.instanceId, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.equal((await c.stats()).instanceId, s.instanceId);
  const scattered = await c.read(region, [5, 3, 200]);
  assert.equal(scattered.present instanceof PageViews, false);
  for (const p of [5, 3, 200]) assert.ok(scattered.present.get(p)!.equals(data.subarray(p * 4096, (p + 1) * 4096)));
  // Fresh connections (after failed health checks) serve the same pages; the instance is the same.
  c.resetConnections();
  const again = await c.read(region, [0, 255]);
  assert.ok(again.present.get(255)!.equals(data.subarray(255 * 4096)));
  assert.equal(await c.health(), 'SERVING');
  assert.equal((await c.stats()).instanceId, s.instanceId);
  await c.close();
  await fails(c.read(region, [1]), 'unavailable', `read region "r" on ${address}: client closed`);
});
