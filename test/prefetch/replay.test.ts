import { test } from 'node:test';
import assert from 'node:assert/strict';
import { crc32, parseRecording, planWarmup, ReplayRecorder, serializeRecording, type Recording } from '../../daemon/prefetch';
import { mulberry32 } from '../helpers/prefetch-sim';

/** A recording's bytes with the payload replaced and the header (length, checksum) made consistent. */
function withPayload(base: Buffer, payload: number[]): Buffer {
  const body = Buffer.from(payload);
  const out = Buffer.concat([base.subarray(0, 28), body]);
  out.writeUInt32LE(body.length, 20);
  out.writeUInt32LE(crc32(body), 24);
  return out;
}

test('the recorder keeps first touches in order, once each, up to its cap', () => {
  const r = new ReplayRecorder(100, 4096, 5);
  for (const p of [7, 3, 7, 99, 100, -1, 1.5, 3, 50, 51, 52]) r.record(p);
  assert.deepEqual(Array.from(r.recording().pages), [7, 3, 99, 50, 51]);
  assert.equal(r.size, 5);
  assert.equal(r.full, true);
  assert.equal(r.record(60), false);
});

test('a recording round-trips through its bytes, and a scan takes a few bytes', () => {
  const scan = new ReplayRecorder(1 << 20, 4096);
  for (let p = 1000; p < 1000 + 200000; p++) scan.record(p);
  for (let p = 500; p >= 0; p--) scan.record(p);
  const bytes = serializeRecording(scan.recording());
  assert.ok(bytes.length <= 28 + 12, `${bytes.length} bytes`);
  assert.deepEqual(parseRecording(bytes), scan.recording());

  const next = mulberry32(9);
  const random = new ReplayRecorder(1 << 18, 65536);
  for (let i = 0; i < 5000; i++) random.record(Math.floor(next() * (1 << 18)));
  const again = parseRecording(serializeRecording(random.recording()));
  assert.deepEqual(again, random.recording());
  assert.equal(again.pageSize, 65536);

  const empty: Recording = { pageSize: 4096, regionPages: 10, pages: new Uint32Array(0) };
  assert.deepEqual(parseRecording(serializeRecording(empty)), empty);
});

test('parseRecording rejects malformed bytes with a message that says what is wrong', () => {
  const good = serializeRecording({ pageSize: 4096, regionPages: 100, pages: Uint32Array.from([5, 6, 7, 2]) });
  const bad = (mutate: (b: Buffer) => Buffer | void) => {
    const b = Buffer.from(good);
    return mutate(b) ?? b;
  };
  const cases: Array<[Buffer, string]> = [
    [good.subarray(0, 10), 'Expected at least 28 bytes for replay recording but received 10 bytes'],
    [bad((b) => void b.write('ELF\x7f', 0, 'latin1')), 'Expected magic "FMRP" for replay recording but received "ELF\x7f"'],
    [bad((b) => void b.writeUInt8(2, 4)), 'Expected version 1 for replay recording but received version 2'],
    [bad((b) => void b.writeUInt32LE(3000, 8)), 'Expected a power-of-two page size for replay recording but received 3000'],
    [bad((b) => void b.writeUInt32LE(101, 16)), 'Expected at most 100 pages for replay recording but received 101 pages'],
    [good.subarray(0, good.length - 1), `Expected a payload of ${good.length - 28} bytes for replay recording but received ${good.length - 29} bytes`],
    [bad((b) => void (b[28] = b[28]! ^ 1)), `Expected payload checksum 0x${crc32(good.subarray(28)).toString(16).padStart(8, '0')} for replay recording but received 0x${crc32(Buffer.from([good[28]! ^ 1, ...good.subarray(29)])).toString(16).padStart(8, '0')}`],
    [bad((b) => void b.writeUInt32LE(5, 16)), 'Expected 5 pages for replay recording but received 4'],
    [bad((b) => void b.writeUInt32LE(3, 16)), 'Expected 3 pages for replay recording but received more'],
    // run start 120 (zigzag 240 = 0xf0 0x01), length 1
    [withPayload(good, [0xf0, 0x01, 0x00]), 'Expected page indexes below 100 for replay recording but received page 120'],
    // run 5..6, then a run that starts back at 5
    [withPayload(good, [10, 2, 1, 0]), 'Expected each page once for replay recording but received page 5 twice'],
    [withPayload(good, [10, 0x80]), 'Expected a complete varint for replay recording but received the end of the payload'],
    [withPayload(good, [0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01]), 'Expected a varint of at most 6 bytes for replay recording but received a longer one at payload byte 6'],
  ];
  for (const [bytes, message] of cases) assert.throws(() => parseRecording(bytes), { message });
  assert.throws(() => parseRecording(good.subarray(0, 3), 'state/db.replay'), {
    message: 'Expected at least 28 bytes for state/db.replay but received 3 bytes',
  });
});

test('planWarmup cuts the recording into batches in first-touch order', () => {
  const pages = Uint32Array.from({ length: 600 }, (_, i) => (i * 37) % 1000);
  const batches = planWarmup({ pageSize: 4096, regionPages: 1000, pages });
  assert.deepEqual(batches.map((b) => b.length), [256, 256, 88]);
  assert.deepEqual(batches.flat(), Array.from(pages));
  assert.deepEqual(planWarmup({ pageSize: 4096, regionPages: 1000, pages }, 500).map((b) => b.length), [500, 100]);
  assert.deepEqual(planWarmup({ pageSize: 4096, regionPages: 1, pages: new Uint32Array(0) }), []);
  assert.throws(() => planWarmup({ pageSize: 4096, regionPages: 1000, pages }, 0), {
    message: 'Expected a positive integer for batchPages but received 0',
  });
});
