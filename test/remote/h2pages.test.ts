// The Pages stream over node:http2 (h2pages.ts, MemoryServerClient's default transport): the same
// bytes as through grpc-js against a real server; gRPC framing across and within DATA frames; what a
// compressed or oversized message, a trailers-only refusal and a bad address become.
import assert from 'node:assert/strict';
import http2 from 'node:http2';
import { test } from 'node:test';
import { MemoryServerClient } from '../../daemon/remote/client';
import { endpoint } from '../../daemon/remote/h2pages';
import { PageStoreError } from '../../daemon/remote/types';
import { customCodec, type PageRequestMsg, type PageResponseMsg } from '../../daemon/remote/wire';
import { randomPages, startServer } from '../memserver/fixture';

const region = { id: 'r', pageSize: 4096 };

async function fails(p: Promise<unknown>, kind: string, message: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof PageStoreError, String(e));
    assert.deepEqual([e.kind, e.message], [kind, message]);
    return true;
  });
}

/** gRPC frame: flag byte, 4-byte big-endian length, message. */
function frame(msg: Buffer, flag = 0): Buffer {
  const h = Buffer.alloc(5);
  h[0] = flag;
  h.writeUInt32BE(msg.length, 1);
  return Buffer.concat([h, msg]);
}

/**
 * A raw HTTP/2 server speaking just enough gRPC: every Pages request is handed to reply(req, stream),
 * which writes what it likes (split anywhere into DATA frames) and may end the stream.
 */
async function rawServer(t: { after(fn: () => unknown): void }, reply: (req: PageRequestMsg, s: http2.ServerHttp2Stream) => void): Promise<string> {
  const server = http2.createServer();
  server.on('stream', (s, headers) => {
    if (headers['authorization'] === undefined && headers[':path'] === '/farmem.v1.MemoryServer/Pages' && headers['x-refuse'] === undefined) {
      let buf = Buffer.alloc(0);
      s.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      s.on('wantTrailers', () => s.sendTrailers({ 'grpc-status': '0' }));
      s.on('data', (c: Buffer) => {
        buf = Buffer.concat([buf, c]);
        while (buf.length >= 5 && buf.length >= 5 + buf.readUInt32BE(1)) {
          const n = buf.readUInt32BE(1);
          reply(customCodec.decodeRequest(buf.subarray(5, 5 + n)), s);
          buf = buf.subarray(5 + n);
        }
      });
      s.on('error', () => undefined);
      return;
    }
    // A trailers-only refusal, as grpc servers send for an unauthenticated call.
    s.respond({ ':status': 200, 'content-type': 'application/grpc', 'grpc-status': '16', 'grpc-message': encodeURIComponent('no token, 100% refused') }, { endStream: true });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise<void>((resolve) => {
    server.close(() => resolve());
    // close() waits for sessions: end them.
    for (const s of sessions) s.destroy();
  }));
  const sessions: http2.ServerHttp2Session[] = [];
  server.on('session', (s) => sessions.push(s));
  return `127.0.0.1:${(server.address() as { port: number }).port}`;
}

const answer = (req: PageRequestMsg, data: Buffer): Buffer => {
  const r: PageResponseMsg = { requestId: req.requestId, code: 0, message: '', present: req.pages, data, absent: [], written: 0, malformed: null };
  return customCodec.encodeResponse(r);
};

test('h2 and grpc-js transports carry the same pages to and from a real server', async (t) => {
  const { server } = await startServer(t);
  const h2 = new MemoryServerClient({ address: server.address, pagesTransport: 'h2' });
  const gj = new MemoryServerClient({ address: server.address, pagesTransport: 'grpc-js' });
  t.after(() => Promise.all([h2.close(), gj.close()]));
  const data = randomPages(128, 4096);
  const pages = Array.from({ length: 64 }, (_, i) => i * 3);
  await h2.write(region, pages, data.subarray(0, 64 * 4096));
  await gj.write(region, pages.map((p) => p + 1), data.subarray(64 * 4096));
  const both = [...pages, ...pages.map((p) => p + 1)];
  for (const c of [h2, gj]) {
    const r = await c.read(region, [...both, 2]);
    assert.deepEqual(r.absent, [2]);
    both.forEach((p, i) => assert.ok(r.present.get(p)!.equals(data.subarray(i * 4096, (i + 1) * 4096)), `page ${p}`));
  }
});

test('messages split across DATA frames, and several in one frame, all arrive whole', async (t) => {
  const pages = randomPages(3, 4096);
  const address = await rawServer(t, (req, s) => {
    const i = req.pages[0]!;
    const msg = frame(answer(req, pages.subarray(i * 4096, (i + 1) * 4096)));
    if (i === 0) {
      // byte by byte through the 5-byte header, then uneven pieces
      for (let k = 0; k < 7; k++) s.write(msg.subarray(k, k + 1));
      s.write(msg.subarray(7, 1000));
      s.write(msg.subarray(1000));
    } else s.write(msg);
  });
  const c = new MemoryServerClient({ address, pagesTransport: 'h2' });
  t.after(() => c.close());
  const [a, b, d] = await Promise.all([c.read(region, [0]), c.read(region, [1]), c.read(region, [2])]);
  assert.ok(a.present.get(0)!.equals(pages.subarray(0, 4096)));
  assert.ok(b.present.get(1)!.equals(pages.subarray(4096, 8192)));
  assert.ok(d.present.get(2)!.equals(pages.subarray(8192)));
});

test('a compressed or oversized message ends the stream with its status; a trailers-only refusal is named', async (t) => {
  const address = await rawServer(t, (req, s) => {
    if (req.pages[0] === 1) s.write(frame(answer(req, Buffer.alloc(4096)), 1));
    else s.write(frame(answer(req, Buffer.alloc(4096 * 4))));
  });
  const c = new MemoryServerClient({ address, maxMessageBytes: 8192, pagesTransport: 'h2' });
  t.after(() => c.close());
  await fails(c.read(region, [1]), 'internal', `read 1 page of region "r" on ${address}: page stream on ${address}: INTERNAL: Received a compressed message, but no message encoding was negotiated`);
  // grpc-js loses the reason (its filter rejects with a plain Error); the client still says INTERNAL.
  const gj = new MemoryServerClient({ address, pagesTransport: 'grpc-js' });
  t.after(() => gj.close());
  await fails(
    gj.read(region, [1]),
    'internal',
    `read 1 page of region "r" on ${address}: page stream on ${address}: INTERNAL: the call ended without a gRPC status (grpc-js dropped the reason; one known cause: a compressed message the client did not negotiate)`,
  );
  const big = c.read(region, [4, 5, 6, 7], { deadlineMs: 2000 });
  await fails(big, 'exhausted', `read 4 pages of region "r" on ${address}: page stream on ${address}: RESOURCE_EXHAUSTED: Received message larger than max (16396 vs. 8192)`);
  const refused = new MemoryServerClient({ address, token: 'x', pagesTransport: 'h2' });
  t.after(() => refused.close());
  await fails(refused.read(region, [1]), 'unauthenticated', `read 1 page of region "r" on ${address}: page stream on ${address}: UNAUTHENTICATED: no token, 100% refused`);
});

test('addresses: grpc-js forms are understood, anything else is refused with the address named', () => {
  assert.deepEqual(endpoint('127.0.0.1:7070'), { host: '127.0.0.1', port: 7070 });
  assert.deepEqual(endpoint('[::1]:80'), { host: '::1', port: 80 });
  assert.deepEqual(endpoint('dns:///mem1:7070'), { host: 'mem1', port: 7070 });
  assert.deepEqual(endpoint('mem1'), { host: 'mem1', port: 443 });
  assert.deepEqual(endpoint('unix:///run/ms.sock'), { path: '/run/ms.sock' });
  assert.deepEqual(endpoint('unix:/run/ms.sock'), { path: '/run/ms.sock' });
  assert.throws(() => endpoint('a:b:c'), { message: 'Expected host:port or unix:path for address but received a:b:c' });
});
