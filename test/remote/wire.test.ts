// The hand-written page codec agrees with the generated one (the .proto is the contract) both ways.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { customCodec, generatedCodec, type PageRequestMsg, type PageResponseMsg } from '../../daemon/remote/wire';

const big = 2 ** 40 / 4096 - 1;

test('requests encode and decode the same with both codecs', () => {
  const reqs: PageRequestMsg[] = [
    { requestId: 1, region: 'r-1', pageSize: 4096, op: 'read', pages: [0, 1, 300, big], data: null, malformed: null },
    { requestId: 2 ** 40, region: 'ü', pageSize: 2 ** 21, op: 'write', pages: [5], data: Buffer.alloc(2 ** 21, 7), malformed: null },
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
  const r: PageResponseMsg = { requestId: 9, code: 0, message: '', present: [4, 2], data, absent: [7], written: 0, malformed: null };
  const filled: PageResponseMsg = { ...r, data: null, fill: (out, at) => data.copy(out, at), dataLength: 8192 };
  for (const enc of [customCodec, generatedCodec]) {
    for (const dec of [customCodec, generatedCodec]) {
      for (const m of [r, filled]) {
        const d = dec.decodeResponse(enc.encodeResponse(m));
        assert.deepEqual({ ...d, data: Buffer.from(d.data!) }, r, `${enc.name} → ${dec.name}`);
      }
    }
  }
  const refused: PageResponseMsg = { requestId: 3, code: 8, message: 'full', present: [], data: null, absent: [], written: 0, malformed: null };
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
