// libfarmem's hand-written C codec and protobufjs (the daemon's) agree on every byte, both ways.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';

import { decodeClientMessage, decodeDaemonMessage, encodeClientMessage, encodeDaemonMessage } from '../../daemon/attach/protocol';

const bin = path.join(__dirname, '..', '..', '..', 'build', 'libfarmem', 'codec_check');
const c = (...args: string[]): string => execFileSync(bin, args, { encoding: 'utf8' }).trim();
const token = Buffer.from('00112233445566778899aabbccddeeff', 'hex');

test('client messages: C encodes what protobufjs decodes, byte for byte', () => {
  const attach = { kind: 'attach', protocolVersion: 1, region: 'db-1.x', wantWriteProtect: true, reattach: { regionId: '6f1c5a0e-0000-4000-8000-000000000001', token } } as const;
  const hex = c('encode-client', 'attach', 'version=1', 'region=db-1.x', 'wp=1', `region_id=${attach.reattach.regionId}`, `token=${token.toString('hex')}`);
  assert.equal(hex, encodeClientMessage(attach).toString('hex'));
  assert.deepEqual(decodeClientMessage(Buffer.from(hex, 'hex')), attach);

  const reg = { kind: 'register', address: 0x7f12_3456_7000, length: 1 << 30, uffdFeatures: 0x1121, writeProtect: true, userModeOnly: true } as const;
  const rhex = c('encode-client', 'register', `address=${reg.address}`, `length=${reg.length}`, `features=${reg.uffdFeatures}`, 'wp=1', 'umo=1');
  assert.equal(rhex, encodeClientMessage(reg).toString('hex'));
  assert.deepEqual(decodeClientMessage(Buffer.from(rhex, 'hex')), reg);

  assert.equal(c('encode-client', 'detach'), encodeClientMessage({ kind: 'detach' }).toString('hex'));
  // C decodes what the TS client encodes.
  assert.deepEqual(JSON.parse(c('decode-client', encodeClientMessage(reg).toString('hex'))), {
    kind: 'register', address: String(reg.address), length: String(reg.length), features: String(reg.uffdFeatures), wp: 1, umo: 1,
  });
  assert.deepEqual(JSON.parse(c('decode-client', encodeClientMessage({ ...attach, reattach: null, wantWriteProtect: false }).toString('hex'))), {
    kind: 'attach', version: 1, region: 'db-1.x', wp: 0, reattach: 0, region_id: '', token: '',
  });
});

test('daemon messages: C decodes what the daemon encodes, and encodes the same bytes', () => {
  const reply = {
    kind: 'attach_reply', code: 'OK', message: '', regionId: 'r-1', sizeBytes: 2 ** 40, pageSize: 2 << 20, writeProtect: true,
    wpAsync: false, onUnavailable: 'sigbus', attachmentId: 2 ** 33 + 5, token,
  } as const;
  const hex = encodeDaemonMessage(reply).toString('hex');
  assert.deepEqual(JSON.parse(c('decode-daemon', hex)), {
    kind: 'attach_reply', code: 0, message: '', region_id: 'r-1', size: String(2 ** 40), page_size: 2 << 20, wp: 1, wp_async: 0, on_unavailable: 1,
    attachment_id: String(2 ** 33 + 5), token: token.toString('hex'),
  });
  assert.equal(c('encode-daemon', 'attach_reply', 'region_id=r-1', `size=${2 ** 40}`, `page_size=${2 << 20}`, 'wp=1', 'on_unavailable=1', `attachment_id=${2 ** 33 + 5}`, `token=${token.toString('hex')}`), hex);

  // Async dirty tracking (field 10): both sides agree, and the C client sees the flag.
  const asyncHex = encodeDaemonMessage({ ...reply, wpAsync: true }).toString('hex');
  assert.equal(JSON.parse(c('decode-daemon', asyncHex)).wp_async, 1);
  assert.equal(c('encode-daemon', 'attach_reply', 'region_id=r-1', `size=${2 ** 40}`, `page_size=${2 << 20}`, 'wp=1', 'wp_async=1', 'on_unavailable=1', `attachment_id=${2 ** 33 + 5}`, `token=${token.toString('hex')}`), asyncHex);
  assert.deepEqual(decodeDaemonMessage(Buffer.from(asyncHex, 'hex')), { ...reply, wpAsync: true });

  const refusal = { kind: 'register_reply', code: 'PERMISSION_DENIED', message: 'region "db": uid 7 may not attach it "quoted"\\', attachmentId: 0 } as const;
  const rhex = encodeDaemonMessage(refusal).toString('hex');
  assert.deepEqual(JSON.parse(c('decode-daemon', rhex)), { kind: 'register_reply', code: 7, message: refusal.message, attachment_id: '0' });
  assert.deepEqual(decodeDaemonMessage(Buffer.from(c('encode-daemon', 'register_reply', 'code=7', `message=${refusal.message}`), 'hex')), refusal);
});

test('the C decoder refuses malformed packets with a reason, and skips unknown fields', () => {
  const bad = (hex: string): string => {
    const r = spawnSync(bin, ['decode-daemon', hex], { encoding: 'utf8' });
    assert.equal(r.status, 1);
    return r.stdout.trim();
  };
  assert.equal(bad(''), 'error: no message in the packet');
  assert.equal(bad('0a05'), 'error: truncated length-delimited field');
  assert.equal(bad('0aff'), 'error: truncated length-delimited field');
  assert.equal(bad('0f'), 'error: unsupported wire type');
  assert.equal(bad('0802'), 'error: field has the wrong wire type');
  assert.equal(bad('1801'), 'error: no message in the packet');
  assert.equal(bad('0a02' + '0880'), 'error: malformed varint');
  assert.equal(bad('0a03' + '120100'), 'error: string too long or containing NUL');
  // An unknown field (number 15, varint) inside AttachReply is skipped, as protobuf requires.
  assert.deepEqual(JSON.parse(c('decode-daemon', '0a04' + '7801' + '2801')).page_size, 1);
});
