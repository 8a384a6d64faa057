// The page messages of farmem.v1.MemoryServer/Pages as plain objects, with two codecs behind one
// interface: protobufjs's generated one and a hand-written one that encodes into one pre-sized buffer
// and decodes `data` as a view of the received buffer (the page bytes are copied once, not twice).
// Both follow proto/farmem/v1/memory.proto, the contract; the bench case `memserver-codec` compares them.
// On the hot path the page bytes are not copied at all until the server's slabs: the client sends a
// write's head and the caller's buffer (encodeRequestSplit, preframe.ts), the server decodes the head
// and leaves the bytes in the chunks they arrived in (decodeRequestGathered, gather.ts).
// A write's optional page versions (WritePages field 3) are encoded before its page bytes, so they are
// part of that head on both paths; a reader from protobufjs (versions after the bytes) still decodes.
import { farmem } from '../../proto/gen/farmem';
import { preframed, withTail } from './preframe';
import { gatherFor, takeGathered } from './gather';
import { Cursor, NEED_MORE, varintSize, writeVarint } from './varint';

export interface PageRequestMsg {
  requestId: number;
  region: string;
  pageSize: number;
  op: 'read' | 'write';
  pages: number[];
  /** Writes: pages.length * pageSize bytes. */
  data: Buffer | null;
  /**
   * Writes: the pages' versions (below 2^53): empty/null/absent = unversioned, one = every page, or
   * one per page in the order of pages. On the wire before the page bytes (they stay the last field).
   */
  versions?: readonly number[] | null;
  /**
   * Decoded by the server from a gathered message (decodeRequestGathered): the page bytes as the
   * chunks they arrived in, in order, when they span several (data is then null). Absent otherwise.
   */
  dataParts?: Buffer[];
  /** Why the message could not be decoded (the other fields are then meaningless), or null. */
  malformed: string | null;
}

export interface PageResponseMsg {
  requestId: number;
  /** 0 = OK, else a gRPC status code for this request alone. */
  code: number;
  message: string;
  present: number[];
  data: Buffer | null;
  absent: number[];
  written: number;
  /** Reads: each present page's stored version, in the order of present (absent/empty: all 0). */
  versions?: number[] | null;
  /** Writes: pages not applied because the server held a newer version (counted in written). */
  superseded?: number;
  /**
   * Encoding side only: writes the `dataLength` bytes of `data` straight into the output (the server
   * copies pages from its slabs into the message, skipping an intermediate buffer).
   */
  fill?: ((out: Buffer, at: number) => void) | null;
  dataLength?: number;
  malformed: string | null;
}

export interface PageCodec {
  name: string;
  encodeRequest(m: PageRequestMsg): Buffer;
  decodeRequest(b: Buffer): PageRequestMsg;
  encodeResponse(m: PageResponseMsg): Buffer;
  decodeResponse(b: Buffer): PageResponseMsg;
}

function malformedRequest(why: string): PageRequestMsg {
  return { requestId: 0, region: '', pageSize: 0, op: 'read', pages: [], data: null, malformed: why };
}
function malformedResponse(why: string): PageResponseMsg {
  return { requestId: 0, code: 0, message: '', present: [], data: null, absent: [], written: 0, malformed: why };
}

function packedSize(values: readonly number[]): number {
  let n = 0;
  for (let i = 0; i < values.length; i++) n += varintSize(values[i]!);
  return n;
}
/** Size of a length-delimited field (tag + length + body) with a body of n bytes. */
function lenField(n: number): number {
  return 1 + varintSize(n) + n;
}
function writePacked(buf: Buffer, at: number, tag: number, values: readonly number[], size: number): number {
  buf[at++] = tag;
  at = writeVarint(buf, at, size);
  for (let i = 0; i < values.length; i++) at = writeVarint(buf, at, values[i]!);
  return at;
}

/**
 * The hand-written request encoder. With split (client only, after installClientZeroCopy()), a write's
 * page bytes, the last bytes on the wire, are not copied: the result is the message's head with m.data
 * attached as its tail (see preframe.ts), valid only for sending through the patched grpc-js.
 */
function encodeRequest(m: PageRequestMsg, split: boolean, framed = false): Buffer {
  const regionLen = Buffer.byteLength(m.region);
  const pagesSize = packedSize(m.pages);
  const dataLen = m.data === null ? 0 : m.data.length;
  const versions = m.op === 'write' && m.versions ? m.versions : null;
  const versionsSize = versions !== null && versions.length > 0 ? packedSize(versions) : 0;
  let body = lenField(pagesSize);
  if (m.op === 'write') body += lenField(dataLen);
  if (versionsSize > 0) body += lenField(versionsSize);
  const total = 1 + varintSize(m.requestId) + lenField(regionLen) + 1 + varintSize(m.pageSize) + lenField(body);
  const tail = split && m.op === 'write' && m.data !== null && dataLen > 0 ? m.data : null;
  const headLen = tail === null ? total : total - dataLen;
  let buf: Buffer;
  let at = 0;
  if (framed) {
    // gRPC's frame header first: uncompressed, the whole message's length (head + tail).
    buf = Buffer.allocUnsafe(5 + headLen);
    buf[at++] = 0;
    buf.writeUInt32BE(total, at);
    at += 4;
  } else {
    buf = tail === null ? Buffer.allocUnsafe(total) : withTail(headLen, tail);
  }
  buf[at++] = 0x08;
  at = writeVarint(buf, at, m.requestId);
  buf[at++] = 0x12;
  at = writeVarint(buf, at, regionLen);
  at += buf.write(m.region, at, 'utf8');
  buf[at++] = 0x18;
  at = writeVarint(buf, at, m.pageSize);
  buf[at++] = m.op === 'read' ? 0x22 : 0x2a;
  at = writeVarint(buf, at, body);
  at = writePacked(buf, at, 0x0a, m.pages, pagesSize);
  if (versionsSize > 0) at = writePacked(buf, at, 0x1a, versions!, versionsSize);
  if (m.op === 'write') {
    buf[at++] = 0x12;
    at = writeVarint(buf, at, dataLen);
    if (m.data !== null && tail === null) at += m.data.copy(buf, at);
  }
  return buf;
}

/**
 * For a client that frames messages itself (h2pages.ts): the gRPC frame header (5 bytes) and the
 * message up to a write's page bytes; those follow on the wire from m.data itself, uncopied.
 */
export function encodeRequestFramed(m: PageRequestMsg): Buffer {
  return encodeRequest(m, true, true);
}

/** Client serializer for the patched grpc-js: writes' page bytes are sent from the caller's buffer. */
export function encodeRequestSplit(m: PageRequestMsg): Buffer {
  return encodeRequest(m, true);
}

/** The views of parts (concatenated, in order) covering bytes [start, end). */
function slicesOf(parts: readonly Buffer[], start: number, end: number): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const p of parts) {
    const from = Math.max(start, at);
    const to = Math.min(end, at + p.length);
    if (from < to) out.push(p.subarray(from - at, to - at));
    at += p.length;
    if (at >= end) break;
  }
  return out;
}

/**
 * Decodes a request of `total` bytes from b, which holds all of them or (with parts) only the first
 * ones; then a write's page bytes beyond b are taken from parts without copying (dataParts). Anything
 * else beyond b fails with NEED_MORE.
 */
function decodeRequestIn(b: Buffer, total: number, parts: readonly Buffer[] | null): PageRequestMsg {
  const c = new Cursor(b, 0, total);
  const m: PageRequestMsg = { requestId: 0, region: '', pageSize: 0, op: 'read', pages: [], data: null, versions: null, malformed: null };
  let sawOp = false;
  while (c.fail === null && c.pos < c.end) {
    const tag = c.varint();
    if (c.fail !== null) break;
    const field = Math.floor(tag / 8);
    const wt = tag & 7;
    if (field === 1 && wt === 0) m.requestId = c.varint();
    else if (field === 2 && wt === 2) {
      const end = c.lengthEnd();
      if (end > b.length) c.fail = NEED_MORE;
      else m.region = b.toString('utf8', c.pos, end);
      c.pos = end;
    } else if (field === 3 && wt === 0) m.pageSize = c.varint();
    else if ((field === 4 || field === 5) && wt === 2) {
      // proto3 oneof: the last one on the wire wins.
      sawOp = true;
      m.op = field === 4 ? 'read' : 'write';
      m.pages = [];
      m.data = field === 5 ? Buffer.alloc(0) : null;
      m.versions = null;
      delete m.dataParts;
      const end = c.lengthEnd();
      const inner = new Cursor(b, c.pos, end);
      while (inner.fail === null && inner.pos < end) {
        const t = inner.varint();
        if (inner.fail !== null) break;
        const f = Math.floor(t / 8);
        if (f === 1) inner.repeated(t & 7, m.pages);
        else if (f === 3 && field === 5) inner.repeated(t & 7, (m.versions ??= []) as number[]);
        else if (f === 2 && field === 5 && (t & 7) === 2) {
          const dEnd = inner.lengthEnd();
          if (inner.fail !== null) break;
          if (dEnd <= b.length) {
            m.data = b.subarray(inner.pos, dEnd);
            delete m.dataParts;
          } else {
            m.data = null;
            m.dataParts = slicesOf(parts!, inner.pos, dEnd);
          }
          inner.pos = dEnd;
        } else inner.skip(t & 7);
      }
      if (inner.fail !== null) c.fail = inner.fail;
      c.pos = end;
    } else c.skip(wt);
  }
  if (c.fail === null && c.pos > c.end) c.fail = 'field overruns the message';
  if (c.fail === NEED_MORE) return malformedRequest(NEED_MORE);
  if (c.fail !== null) return malformedRequest(c.fail);
  if (!sawOp) return malformedRequest('no read or write op');
  return m;
}

/** Bytes of a message's start decoded in place; a longer head than this is joined first. */
const PREFIX_BYTES = 4096;

/**
 * The memory server's request deserializer: like customCodec.decodeRequest, and for a message that
 * arrives gathered (see gather.ts) it decodes the head from the first chunk(s) and leaves the page
 * bytes in the chunks (dataParts), so they are copied once, into the slabs.
 */
export const decodeRequestGathered = gatherFor((b: Buffer): PageRequestMsg => {
  const parts = takeGathered(b);
  if (parts === null) return decodeRequestIn(b, b.length, null);
  let total = 0;
  for (const p of parts) total += p.length;
  const want = Math.min(total, PREFIX_BYTES);
  const prefix = parts[0]!.length >= want ? parts[0]! : Buffer.concat(parts, want);
  const m = decodeRequestIn(prefix, total, parts);
  if (m.malformed !== NEED_MORE) return m;
  // Fields beyond the prefix other than the page bytes (a long head, or fields after the bytes).
  return decodeRequestIn(Buffer.concat(parts, total), total, null);
});

export const customCodec: PageCodec = {
  name: 'custom',
  encodeRequest(m) {
    return encodeRequest(m, false);
  },

  decodeRequest(b) {
    return decodeRequestIn(b, b.length, null);
  },

  encodeResponse(m) {
    const msgLen = m.message.length === 0 ? 0 : Buffer.byteLength(m.message);
    const presentSize = packedSize(m.present);
    const absentSize = packedSize(m.absent);
    const dataLen = m.fill ? m.dataLength ?? 0 : m.data === null ? 0 : m.data.length;
    let total = 1 + varintSize(m.requestId);
    if (m.code !== 0) total += 1 + varintSize(m.code);
    if (msgLen > 0) total += lenField(msgLen);
    if (m.present.length > 0) total += lenField(presentSize);
    if (dataLen > 0) total += lenField(dataLen);
    if (m.absent.length > 0) total += lenField(absentSize);
    if (m.written !== 0) total += 1 + varintSize(m.written);
    const versions = m.versions && m.versions.length > 0 ? m.versions : null;
    const versionsSize = versions === null ? 0 : packedSize(versions);
    if (versions !== null) total += lenField(versionsSize);
    const superseded = m.superseded ?? 0;
    if (superseded !== 0) total += 1 + varintSize(superseded);
    const buf = preframed(total);
    let at = 0;
    buf[at++] = 0x08;
    at = writeVarint(buf, at, m.requestId);
    if (m.code !== 0) {
      buf[at++] = 0x10;
      at = writeVarint(buf, at, m.code);
    }
    if (msgLen > 0) {
      buf[at++] = 0x1a;
      at = writeVarint(buf, at, msgLen);
      at += buf.write(m.message, at, 'utf8');
    }
    if (m.present.length > 0) at = writePacked(buf, at, 0x22, m.present, presentSize);
    if (dataLen > 0) {
      buf[at++] = 0x2a;
      at = writeVarint(buf, at, dataLen);
      if (m.fill) m.fill(buf, at);
      else m.data!.copy(buf, at);
      at += dataLen;
    }
    if (m.absent.length > 0) at = writePacked(buf, at, 0x32, m.absent, absentSize);
    if (m.written !== 0) {
      buf[at++] = 0x38;
      at = writeVarint(buf, at, m.written);
    }
    if (versions !== null) at = writePacked(buf, at, 0x52, versions, versionsSize);
    if (superseded !== 0) {
      buf[at++] = 0x58;
      at = writeVarint(buf, at, superseded);
    }
    return buf;
  },

  decodeResponse(b) {
    const c = new Cursor(b, 0, b.length);
    const m: PageResponseMsg = { requestId: 0, code: 0, message: '', present: [], data: null, absent: [], written: 0, versions: null, superseded: 0, malformed: null };
    while (c.fail === null && c.pos < c.end) {
      const tag = c.varint();
      if (c.fail !== null) break;
      const field = Math.floor(tag / 8);
      const wt = tag & 7;
      if (field === 1 && wt === 0) m.requestId = c.varint();
      else if (field === 2 && wt === 0) m.code = c.varint();
      else if (field === 3 && wt === 2) {
        const end = c.lengthEnd();
        m.message = b.toString('utf8', c.pos, end);
        c.pos = end;
      } else if (field === 4) c.repeated(wt, m.present);
      else if (field === 5 && wt === 2) {
        const end = c.lengthEnd();
        m.data = b.subarray(c.pos, end);
        c.pos = end;
      } else if (field === 6) c.repeated(wt, m.absent);
      else if (field === 7 && wt === 0) m.written = c.varint();
      else if (field === 10) c.repeated(wt, (m.versions ??= []));
      else if (field === 11 && wt === 0) m.superseded = c.varint();
      else c.skip(wt);
    }
    if (c.fail === null && c.pos > c.end) c.fail = 'field overruns the message';
    if (c.fail !== null) return malformedResponse(c.fail);
    return m;
  },
};

/** protobufjs decodes 64-bit fields as Long when the long package is present. */
export function toNum(v: number | { toNumber(): number } | null | undefined): number {
  return v === null || v === undefined ? 0 : typeof v === 'number' ? v : v.toNumber();
}

function asBuffer(u: Uint8Array): Buffer {
  return Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength);
}

/** protobufjs's generated classes; kept to measure against and as a reference decoder in tests. */
export const generatedCodec: PageCodec = {
  name: 'generated',
  encodeRequest(m) {
    const pages = { pages: m.pages };
    const msg = m.op === 'read'
      ? { requestId: m.requestId, region: m.region, pageSize: m.pageSize, read: pages }
      : { requestId: m.requestId, region: m.region, pageSize: m.pageSize, write: { pages: m.pages, data: m.data ?? Buffer.alloc(0), versions: m.versions ? [...m.versions] : [] } };
    return asBuffer(farmem.v1.PageRequest.encode(msg).finish());
  },
  decodeRequest(b) {
    try {
      const d = farmem.v1.PageRequest.decode(b);
      if (d.op === undefined) return malformedRequest('no read or write op');
      const w = d.op === 'write' ? d.write! : null;
      return {
        requestId: toNum(d.requestId), region: d.region, pageSize: d.pageSize, op: d.op,
        pages: ((w ?? d.read)!.pages ?? []).map(toNum),
        data: w === null ? null : asBuffer(w.data ?? Buffer.alloc(0)),
        versions: w === null || !w.versions || w.versions.length === 0 ? null : w.versions.map(toNum),
        malformed: null,
      };
    } catch (e) {
      return malformedRequest(e instanceof Error ? e.message : String(e));
    }
  },
  encodeResponse(m) {
    let data = m.data;
    if (m.fill) {
      data = Buffer.allocUnsafe(m.dataLength ?? 0);
      m.fill(data, 0);
    }
    return asBuffer(farmem.v1.PageResponse.encode({
      requestId: m.requestId, code: m.code, message: m.message, present: m.present,
      data: data ?? Buffer.alloc(0), absent: m.absent, written: m.written, versions: m.versions ?? [], superseded: m.superseded ?? 0,
    }).finish());
  },
  decodeResponse(b) {
    try {
      const d = farmem.v1.PageResponse.decode(b);
      return {
        requestId: toNum(d.requestId), code: d.code, message: d.message, present: d.present.map(toNum),
        data: d.data.length === 0 ? null : asBuffer(d.data), absent: d.absent.map(toNum), written: d.written,
        versions: d.versions.length === 0 ? null : d.versions.map(toNum), superseded: d.superseded, malformed: null,
      };
    } catch (e) {
      return malformedResponse(e instanceof Error ? e.message : String(e));
    }
  },
};
