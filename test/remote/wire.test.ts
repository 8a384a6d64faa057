// The hand-written page codec agrees with the generated one (the .proto is the contract) both ways.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { customCodec, generatedCodec, type PageRequestMsg, type PageResponseMsg } from '../../daemon/remote/wire';

const big = 2 ** 40 / 4096 - 1;
/** The largest version a JS number holds exactly (the wire allows up to 2^53 - 1). */
const topVersion = Number.MAX_SAFE_INTEGER;

test('requests encode and decode the same with both codecs', () => {
  const reqs: PageRequestMsg[] = [
    { requestId: 1, region: 'r-1', pageSize: 4096, op: 'read', pages: [0, 1, 300, big], data: null, versions: null, malformed: null },
    { requestId: 2 ** 40, region: 'ü', pageSize: 2 ** 21, op: 'write', pages: [5], data: Buffer.alloc(2 ** 21, 7), versions: null, malformed: null },
    // one version for the whole write (a write-back), and one per page (a repair copy)
    { requestId: 3, region: 'v', pageSize: 4096, op: 'write', pages: [9, 8], data: Buffer.alloc(8192, 1), versions: [1_790_000_000_000_000], malformed: null },
    { requestId: 4, region: 'v', pageSize: 4096, op: 'write', pages: [1, 2, 3], data: Buffer.alloc(3 * 4096, 2), versions: [topVersion, 0, 127], malformed: null },
  ];
  for (const r of reqs) {
    for (const [enc, dec] of [[customCodec, generatedCodec], [generatedCodec, customCodec], [customCodec, customCodec]] as const) {
      const d = dec.decodeRequest(enc.encodeRequest(r));
      assert.deepEqual({ ...d, data: d.data === null ? null : Buffer.from(d.data) }, r, `${enc.name} → ${dec.name}`);
    }
  }
});

test('responses encode and decode the same with both codecs, fill writes straight into the message', () => {
  const data = Buffer.alloc(8192, 3);
  const r: PageResponseMsg = { requestId: 9, code: 0, message: '', present: [4, 2], data, absent: [7], written: 0, versions: null, superseded: 0, malformed: null };
  const filled: PageResponseMsg = { ...r, data: null, fill: (out, at) => data.copy(out, at), dataLength: 8192 };
  const versioned: PageResponseMsg = { ...r, versions: [topVersion, 5] };
  const versionedFill: PageResponseMsg = { ...filled, versions: [topVersion, 5] };
  for (const enc of [customCodec, generatedCodec]) {
    for (const dec of [customCodec, generatedCodec]) {
      for (const [m, want] of [[r, r], [filled, r], [versioned, versioned], [versionedFill, versioned]] as const) {
        const d = dec.decodeResponse(enc.encodeResponse(m));
        assert.deepEqual({ ...d, data: Buffer.from(d.data!) }, want, `${enc.name} → ${dec.name}`);
      }
      // A write answered as partly superseded.
      const ack: PageResponseMsg = { requestId: 10, code: 0, message: '', present: [], data: null, absent: [], written: 64, versions: null, superseded: 3, malformed: null };
      assert.deepEqual(dec.decodeResponse(enc.encodeResponse(ack)), ack, `superseded ${enc.name} → ${dec.name}`);
    }
  }
  // An old server's response (no versions, no superseded) decodes as unversioned.
  const old = Buffer.from([0x08, 0x01, 0x38, 0x02]);
  assert.deepEqual([customCodec.decodeResponse(old).versions, customCodec.decodeResponse(old).superseded, customCodec.decodeResponse(old).written], [null, 0, 2]);
  const refused: PageResponseMsg = { requestId: 3, code: 8, message: 'full', present: [], data: null, absent: [], written: 0, versions: null, superseded: 0, malformed: null };
  assert.deepEqual(customCodec.decodeResponse(generatedCodec.encodeResponse(refused)), refused);
});

test('the custom decoder names what is malformed and accepts unpacked repeated fields', () => {
  assert.equal(customCodec.decodeRequest(Buffer.from([0x08])).malformed, 'truncated varint');
  assert.equal(customCodec.decodeRequest(Buffer.from([0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])).malformed, 'varint above 2^53');
  assert.equal(customCodec.decodeRequest(Buffer.from([0x0f])).malformed, 'unsupported wire type 7');
  assert.equal(customCodec.decodeRequest(Buffer.from([0x22, 0x03, 0x0a, 0x05, 0x01])).malformed, 'field of 5 bytes overruns the message');
  // ReadPages with pages 3 and 4 unpacked (wire type 0), plus an unknown field 9
  const d = customCodec.decodeRequest(Buffer.from([0x08, 0x05, 0x48, 0x01, 0x22, 0x04, 0x08, 0x03, 0x08, 0x04]));
  assert.deepEqual([d.malformed, d.requestId, d.op, d.pages], [null, 5, 'read', [3, 4]]);
});

test('versions go before the page bytes, so the split (zero-copy) head carries them', () => {
  const data = Buffer.alloc(2 * 4096, 9);
  const m: PageRequestMsg = { requestId: 7, region: 'split', pageSize: 4096, op: 'write', pages: [1, 2], data, versions: [42, 43], malformed: null };
  const whole = customCodec.encodeRequest(m);
  // The page bytes are the message's last bytes; the versions field (3, packed: 0x1a) is in the head.
  assert.ok(whole.subarray(whole.length - data.length).equals(data));
  const head = whole.subarray(0, whole.length - data.length);
  assert.ok(head.includes(Buffer.from([0x1a, 0x02, 42, 43])), 'packed versions in the head');
  // Unversioned writes are byte-for-byte what they were before versions existed.
  const plain = customCodec.encodeRequest({ ...m, versions: null });
  assert.deepEqual(customCodec.encodeRequest({ ...m, versions: [] }), plain);
  assert.equal(plain.length, whole.length - 4);
  assert.deepEqual(customCodec.decodeRequest(whole).versions, [42, 43]);
  assert.equal(customCodec.decodeRequest(plain).versions, null);
  // An unversioned write from a writer older than versions decodes with no versions (applied as before).
  assert.equal(generatedCodec.decodeRequest(plain).versions, null);
});
