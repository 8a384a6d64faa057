// Requests reach the memory server's decoder as the chunks they arrived in (gather.ts): decoding them
// must give exactly what decoding the joined message gives, wherever the chunks are cut, and the slab
// store must copy pages that straddle chunks whole.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import { SlabStore } from '../../daemon/memserver/slabs';
import { installServerGather } from '../../daemon/remote/gather';
import { customCodec, decodeRequestGathered, generatedCodec, type PageRequestMsg } from '../../daemon/remote/wire';
import { randomPages } from './fixture';

interface Decoder {
  gather?: boolean;
  write(b: Buffer): Buffer[];
}
const { StreamDecoder } = createRequire(require.resolve('@grpc/grpc-js'))('./stream-decoder') as { StreamDecoder: new (max: number) => Decoder };

function framed(msg: Buffer, compressed = 0): Buffer {
  const f = Buffer.alloc(msg.length + 5);
  f[0] = compressed;
  f.writeUInt32BE(msg.length, 1);
  msg.copy(f, 5);
  return f;
}

/** Feeds bytes to a gathering decoder in chunks of the given sizes (cycled); returns what it passes on. */
function feed(bytes: Buffer, sizes: number[]): Buffer[] {
  const d = new StreamDecoder(-1);
  d.gather = true;
  const out: Buffer[] = [];
  for (let at = 0, i = 0; at < bytes.length; i++) {
    const n = sizes[i % sizes.length]!;
    out.push(...d.write(Buffer.from(bytes.subarray(at, at + n))));
    at += n;
  }
  return out;
}

function bytesOf(m: PageRequestMsg): Buffer | null {
  return m.dataParts ? Buffer.concat(m.dataParts) : m.data;
}

function sameAsJoined(msg: Buffer, sizes: number[], what: string): PageRequestMsg {
  const [got, ...rest] = feed(framed(msg), sizes);
  assert.equal(rest.length, 0);
  const m = decodeRequestGathered(got!.subarray(5));
  const want = customCodec.decodeRequest(msg);
  assert.deepEqual({ ...m, data: bytesOf(m), dataParts: undefined }, { ...want, dataParts: undefined }, what);
  return m;
}

test('the gathering decoder is installed on this grpc-js', () => {
  assert.equal(installServerGather(), true, 'the grpc-js shape checks failed: requests are joined with a copy');
});

test('gathered write requests decode as the joined message does, wherever the chunks are cut', () => {
  installServerGather();
  const pages = Array.from({ length: 64 }, (_, i) => 5000 - 3 * i);
  const msg = customCodec.encodeRequest({ requestId: 77, region: 'gathered', pageSize: 4096, op: 'write', pages, data: randomPages(64, 4096), malformed: null });
  // Versions (one per page) sit in the head, before the page bytes: decoded from the prefix too.
  const versions = pages.map((p) => 1_790_000_000_000_000 + p);
  const versioned = customCodec.encodeRequest({ requestId: 78, region: 'gathered', pageSize: 4096, op: 'write', pages, data: randomPages(64, 4096), versions, malformed: null });
  for (const m0 of [msg, versioned]) {
    for (const sizes of [[16384], [36, 16384], [1, 2, 3, 4093], [m0.length + 5], [7000, 16384, 9]]) {
      const m = sameAsJoined(m0, sizes, `chunks ${sizes.join(',')}`);
      if (sizes[0] !== m0.length + 5) assert.ok(m.dataParts !== undefined && m.dataParts.length > 1, `page bytes left in their chunks (${sizes.join(',')})`);
      assert.deepEqual(m.versions, m0 === msg ? null : versions);
    }
  }
  // A head longer than the decoded prefix (4096 pages' indexes), and a field after the page bytes:
  // both need bytes past the prefix and are decoded from the joined message.
  const many = Array.from({ length: 4096 }, (_, i) => i * 1000);
  const long = customCodec.encodeRequest({ requestId: 1, region: 'long', pageSize: 4096, op: 'write', pages: many, data: randomPages(4096, 4096), malformed: null });
  sameAsJoined(long, [16384], 'long head');
  const trailing = Buffer.concat([msg, Buffer.from([0x48, 0x01])]); // field 9 (unknown), varint 1
  sameAsJoined(trailing, [16384], 'field after the page bytes');
  // protobufjs writes WritePages' fields in number order: versions (3) after the page bytes (2).
  const generated = generatedCodec.encodeRequest({ requestId: 79, region: 'gen', pageSize: 4096, op: 'write', pages, data: randomPages(64, 4096), versions, malformed: null });
  assert.deepEqual(sameAsJoined(generated, [16384], 'versions after the page bytes').versions, versions);
  // Small messages (reads) are joined as before.
  const read = customCodec.encodeRequest({ requestId: 2, region: 'r', pageSize: 4096, op: 'read', pages: [1, 2, 3], data: null, malformed: null });
  const [joined] = feed(framed(read), [3]);
  assert.equal(joined!.length, read.length + 5);
});

test('malformed gathered messages are named as the joined ones are', () => {
  installServerGather();
  const msg = customCodec.encodeRequest({ requestId: 3, region: 'bad', pageSize: 4096, op: 'write', pages: [1, 2], data: randomPages(2, 4096), malformed: null });
  // The write op's length claims one byte more than the message has.
  const lenAt = msg.indexOf(0x2a, 1) + 1;
  const bad = Buffer.from(msg);
  bad[lenAt]! += 1;
  const m = sameAsJoined(bad, [1000], 'overrun');
  assert.equal(m.malformed, 'field of 8200 bytes overruns the message');
  const cut = msg.subarray(0, msg.length - 10); // page bytes cut short
  assert.equal(sameAsJoined(cut, [16384], 'cut').malformed, 'field of 8199 bytes overruns the message');
});

test('compressed messages are joined for grpc-js to inflate', () => {
  installServerGather();
  const body = Buffer.alloc(10000, 1);
  const [out] = feed(framed(body, 1), [4096]);
  assert.equal(out!.length, body.length + 5);
  assert.equal(out![0], 1);
});

test('the slab store copies pages that straddle chunks whole', () => {
  const store = new SlabStore(1024 * 1024);
  const data = randomPages(5, 4096);
  const parts = [data.subarray(0, 100), data.subarray(100, 100), data.subarray(100, 9000), data.subarray(9000, 20480)];
  assert.equal(store.write('s', 4096, [9, 3, 7, 1, 5], parts), null);
  [9, 3, 7, 1, 5].forEach((p, i) => assert.ok(store.view('s', p)!.equals(data.subarray(i * 4096, (i + 1) * 4096)), `page ${p}`));
});
