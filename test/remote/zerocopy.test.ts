// The client's write path sends page bytes from the caller's buffer (grpc-js patched in preframe.ts).
// What goes on the wire must still be the contract's message: a plain grpc-js server decoding with
// protobufjs's generated code sees every byte; a compressing channel, which the patch leaves alone,
// still gets whole messages; and an oversized write is refused alone, without failing the stream.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { MemoryServerClient } from '../../daemon/remote/client';
import { installClientZeroCopy } from '../../daemon/remote/preframe';
import { memoryServerService } from '../../daemon/remote/service';
import { PageStoreError } from '../../daemon/remote/types';
import { customCodec, encodeRequestSplit, generatedCodec, type PageRequestMsg, type PageResponseMsg } from '../../daemon/remote/wire';
import { randomPages, startServer } from '../memserver/fixture';
import { fakePagesServer } from './fake-pages-server';

/** A Pages server decoding requests with the generated (protobufjs) code; acknowledges every write. */
function generatedServer(t: { after(fn: () => void): void }) {
  return fakePagesServer(t, (m) => ({ requestId: m.requestId, code: 0, message: '', present: [], data: null, absent: [], written: m.pages.length, malformed: null }), {
    decodeRequest: generatedCodec.decodeRequest,
    serverOptions: { 'grpc.max_receive_message_length': 8 * 1024 * 1024 },
  });
}

test('writes sent from the caller\'s buffer arrive as the contract\'s message, every byte', async (t) => {
  assert.equal(installClientZeroCopy(), true, 'the grpc-js shape checks failed: the zero-copy path is not in use');
  const { address, received } = await generatedServer(t);
  const c = new MemoryServerClient({ address, streams: 2 });
  t.after(() => c.close());
  const sent: { pages: number[]; pageSize: number; data: Buffer; versions: number[] | null }[] = [
    { pages: [3], pageSize: 4096, data: randomPages(1, 4096), versions: null },
    { pages: Array.from({ length: 64 }, (_, i) => 1000 - i), pageSize: 4096, data: randomPages(64, 4096), versions: [Number.MAX_SAFE_INTEGER] },
    { pages: [2 ** 19 - 1], pageSize: 2 ** 21, data: randomPages(1, 2 ** 21), versions: null },
    { pages: [7, 8, 9], pageSize: 4096, data: randomPages(3, 4096), versions: [1, 2 ** 40, 3] },
  ];
  await Promise.all(sent.map((s, i) => c.write({ id: `region-${i}`, pageSize: s.pageSize }, s.pages, s.data, { versions: s.versions })));
  assert.equal(received.length, 4);
  for (const [i, s] of sent.entries()) {
    const got = received.find((m) => m.region === `region-${i}`)!;
    assert.deepEqual([got.op, got.pageSize, got.pages, got.versions], ['write', s.pageSize, s.pages, s.versions]);
    assert.ok(got.data!.equals(s.data), `page bytes of region-${i}`);
  }
});

test('a channel with message compression gets whole messages from the split serializer', async (t) => {
  const { address, received } = await generatedServer(t);
  const Client = grpc.makeGenericClientConstructor(memoryServerService(), 'farmem.v1.MemoryServer');
  const client = new Client(address, grpc.credentials.createInsecure(), { 'grpc.default_compression_algorithm': 2 /* gzip */ });
  t.after(() => client.close());
  const m = memoryServerService().Pages;
  const call = client.makeBidiStreamRequest(m.path, encodeRequestSplit, m.responseDeserialize, new grpc.Metadata(), {});
  const data = randomPages(16, 4096);
  const answered = new Promise<PageResponseMsg>((resolve, reject) => {
    call.on('data', resolve);
    call.on('error', reject);
  });
  call.write({ requestId: 7, region: 'gz', pageSize: 4096, op: 'write', pages: Array.from({ length: 16 }, (_, i) => i), data, malformed: null });
  assert.equal((await answered).written, 16);
  call.end();
  assert.ok(received[0]!.data!.equals(data));
});

test('an oversized write is refused alone, before it reaches the stream', async (t) => {
  const { server } = await startServer(t);
  const c = new MemoryServerClient({ address: server.address, maxMessageBytes: 64 * 1024 });
  t.after(() => c.close());
  const region = { id: 'big', pageSize: 4096 };
  await assert.rejects(c.write(region, Array.from({ length: 16 }, (_, i) => i), Buffer.alloc(16 * 4096)), (e: unknown) => {
    assert.ok(e instanceof PageStoreError);
    assert.deepEqual([e.kind, e.message], ['invalid', 'Expected at most 65120 bytes (max message 65536) for data but received 65536']);
    return true;
  });
  const data = randomPages(8, 4096);
  await c.write(region, [0, 1, 2, 3, 4, 5, 6, 7], data);
  const r = await c.read(region, [5]);
  assert.ok(r.present.get(5)!.equals(data.subarray(5 * 4096, 6 * 4096)));
});

test('the codec\'s own encoder stays self-contained (no tail) for other users', () => {
  const data = randomPages(2, 4096);
  const m: PageRequestMsg = { requestId: 1, region: 'r', pageSize: 4096, op: 'write', pages: [1, 2], data, malformed: null };
  const d = generatedCodec.decodeRequest(customCodec.encodeRequest(m));
  assert.ok(d.data!.equals(data));
});
