// Every bad input gets a clear status, the server keeps serving, and stored pages stay intact.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { MemoryServerClient } from '../../daemon/remote/client';
import { bytesStream, rawStream, randomPages, startServer } from './fixture';

test('per-request refusals: region id, page size, page size mismatch, no pages, index range, data length, too many pages', async (t) => {
  const { server } = await startServer(t, { maxMessageBytes: 1024 * 1024 });
  const s = rawStream(server.address);
  t.after(() => s.close());
  const good = randomPages(1, 4096);
  assert.equal((await s.send({ requestId: 1, region: 'r', pageSize: 4096, op: 'write', pages: [5], data: good })).written, 1);
  const cases: [Parameters<typeof s.send>[0], number, string][] = [
    [{ requestId: 2, region: 'bad region!', pageSize: 4096, op: 'read', pages: [1], data: null }, grpc.status.INVALID_ARGUMENT,
      'Expected a region id (1-128 characters of A-Z a-z 0-9 . _ -) for region but received "bad region!"'],
    [{ requestId: 3, region: '', pageSize: 4096, op: 'read', pages: [1], data: null }, grpc.status.INVALID_ARGUMENT,
      'Expected a region id (1-128 characters of A-Z a-z 0-9 . _ -) for region but received ""'],
    [{ requestId: 4, region: 'r', pageSize: 5000, op: 'read', pages: [1], data: null }, grpc.status.INVALID_ARGUMENT,
      'Expected a power of two from 4096 to 2097152 for page_size but received 5000'],
    [{ requestId: 5, region: 'r', pageSize: 8192, op: 'write', pages: [5], data: randomPages(1, 8192) }, grpc.status.INVALID_ARGUMENT,
      'Expected page_size 4096 (the page size of region "r") but received 8192'],
    [{ requestId: 6, region: 'r', pageSize: 4096, op: 'read', pages: [], data: null }, grpc.status.INVALID_ARGUMENT,
      'Expected at least one page index for pages but received none'],
    [{ requestId: 7, region: 'r', pageSize: 4096, op: 'read', pages: [2 ** 28], data: null }, grpc.status.OUT_OF_RANGE,
      'Expected page indexes below 268435456 (2^40 / page size 4096) for pages but received 268435456'],
    [{ requestId: 8, region: 'r', pageSize: 4096, op: 'write', pages: [5, 6], data: good }, grpc.status.INVALID_ARGUMENT,
      'Expected 8192 bytes (2 pages of 4096) for data but received 4096'],
    [{ requestId: 9, region: 'r', pageSize: 4096, op: 'read', pages: Array.from({ length: 300 }, (_, i) => i), data: null }, grpc.status.INVALID_ARGUMENT,
      'Expected at most 255 pages of 4096 bytes per request (max message 1048576 bytes) for pages but received 300'],
  ];
  for (const [req, code, message] of cases) {
    const r = await s.send(req);
    assert.deepEqual([r.code, r.message], [code, message], `request ${req.requestId}`);
    assert.equal(r.written, 0);
  }
  // the stream is still fine and page 5 is untouched
  const r = await s.send({ requestId: 10, region: 'r', pageSize: 4096, op: 'read', pages: [5], data: null });
  assert.equal(r.code, 0);
  assert.ok(r.data!.equals(good));
});

test('a malformed message ends its stream with INVALID_ARGUMENT; others go on', async (t) => {
  const { server, lines } = await startServer(t);
  const b = bytesStream(server.address);
  t.after(() => b.close());
  b.call.write(Buffer.from([0x08, 0x01, 0x12, 0x50, 0x61])); // region field claims 80 bytes, has 1
  const st = await b.status;
  assert.equal(st.code, grpc.status.INVALID_ARGUMENT);
  assert.equal(st.details, 'malformed PageRequest: field of 80 bytes overruns the message');
  assert.ok(lines.some((l) => l.msg === 'malformed PageRequest: ending the stream' && l.error === 'field of 80 bytes overruns the message'));
  const b2 = bytesStream(server.address);
  t.after(() => b2.close());
  b2.call.write(Buffer.from([0x08, 0x01])); // no op
  assert.equal((await b2.status).details, 'malformed PageRequest: no read or write op');
  const c = new MemoryServerClient({ address: server.address });
  t.after(() => c.close());
  await c.write({ id: 'ok', pageSize: 4096 }, [1], randomPages(1, 4096));
});

test('an oversized message gets RESOURCE_EXHAUSTED', async (t) => {
  const { server } = await startServer(t, { maxMessageBytes: 256 * 1024 });
  const s = rawStream(server.address);
  t.after(() => s.close());
  s.call.write({ requestId: 1, region: 'r', pageSize: 4096, op: 'write', pages: Array.from({ length: 100 }, (_, i) => i), data: randomPages(100, 4096), malformed: null });
  const st = await s.status;
  assert.equal(st.code, grpc.status.RESOURCE_EXHAUSTED);
  assert.match(st.details, /^Received message larger than max \(\d+ vs 262144\)$/);
  assert.equal(server.usedBytes, 0);
});

test('a client vanishing mid-stream harms nothing', async (t) => {
  const { server, lines } = await startServer(t);
  const keep = randomPages(4, 4096);
  const c = new MemoryServerClient({ address: server.address });
  t.after(() => c.close());
  await c.write({ id: 'keep', pageSize: 4096 }, [0, 1, 2, 3], keep);
  const s = rawStream(server.address);
  for (let i = 0; i < 50; i++) s.call.write({ requestId: i, region: 'gone', pageSize: 4096, op: 'write', pages: [i], data: randomPages(1, 4096), malformed: null });
  await s.send({ requestId: 1000, region: 'gone', pageSize: 4096, op: 'read', pages: [0], data: null });
  s.call.cancel();
  s.client.close();
  for (let i = 0; i < 50 && !lines.some((l) => l.msg === 'page stream ended early'); i++) await new Promise((r) => setTimeout(r, 20));
  assert.ok(lines.some((l) => l.msg === 'page stream ended early' && l.reason === 'cancelled'), JSON.stringify(lines));
  const r = await c.read({ id: 'keep', pageSize: 4096 }, [0, 1, 2, 3]);
  for (let i = 0; i < 4; i++) assert.ok(r.present.get(i)!.equals(keep.subarray(i * 4096, (i + 1) * 4096)));
  assert.equal((await c.read({ id: 'gone', pageSize: 4096 }, Array.from({ length: 50 }, (_, i) => i))).absent.length, 0);
});

test('a client that never reads its responses makes the server stop reading that stream (bounded memory); others are served', async (t) => {
  const bufferBytes = 1024 * 1024;
  const { server } = await startServer(t, { streamBufferBytes: bufferBytes, windowBytes: 1024 * 1024 });
  const c = new MemoryServerClient({ address: server.address });
  t.after(() => c.close());
  const pages = Array.from({ length: 64 }, (_, i) => i);
  await c.write({ id: 'slow', pageSize: 4096 }, pages, randomPages(64, 4096));
  const s = rawStream(server.address, { channel: { 'grpc-node.flow_control_window': 1024 * 1024 } });
  t.after(() => s.close());
  s.call.pause(); // never read
  const sent = 400; // 400 × 256 KiB = 100 MiB of responses
  for (let i = 0; i < sent; i++) s.call.write({ requestId: i, region: 'slow', pageSize: 4096, op: 'read', pages, data: null, malformed: null });
  // wait until the server has stopped taking requests from this stream
  let last = -1;
  for (let i = 0; i < 100; i++) {
    await new Promise((r) => setTimeout(r, 100));
    const now = server.metrics.readsTotal;
    if (now === last) break;
    last = now;
  }
  const served = server.metrics.readsTotal;
  // at most: the stream buffer, both HTTP/2 windows, and the socket buffers worth of responses
  assert.ok(served < sent / 2, `served ${served} of ${sent} while the client read nothing`);
  assert.ok(server.metrics.pauses >= 1, 'the stream was paused');
  const other = await c.read({ id: 'slow', pageSize: 4096 }, [1]);
  assert.equal(other.present.size, 1);
  // once the client reads, every response arrives, intact
  const done = new Promise<void>((resolve) => s.call.on('data', () => s.responses.size === sent && resolve()));
  s.call.resume();
  await done;
  for (const r of s.responses.values()) assert.equal(r.data!.length, 64 * 4096);
});
