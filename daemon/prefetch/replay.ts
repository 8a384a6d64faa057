// REAP-style replay (ASPLOS'21): record the order in which an attachment first touched its pages, keep
// it in the state dir, and on a later attach (or `farmem region warm`) fetch that working set in large
// batches before the process asks. This file is the recording, its on-disk form and the batch plan;
// installing the batches (UFFDIO_COPY with DONTWAKE, then one wake) is the pager's job.
//
// On disk (little-endian): "FMRP", version u8 = 1, 3 zero bytes, pageSize u32, regionPages u32,
// pages u32, payload length u32, CRC-32 of the payload u32, then the payload: runs of consecutive
// pages, ascending or descending, each as varint(zigzag(first − previous run's last page))
// varint(zigzag(last − first)). A scan, forward or backward, is one run: a sequential working set of a
// million pages takes a few bytes.

const MAGIC = 'FMRP';
export const REPLAY_VERSION = 1;
const HEADER = 28;
/** Pages recorded at most by default (4 GiB of 4 KiB pages): a recording should stay small. */
export const DEFAULT_REPLAY_CAP = 1 << 20;
export const DEFAULT_WARMUP_BATCH = 256;

export interface Recording {
  pageSize: number;
  regionPages: number;
  /** Page indexes in first-touch order, each once. */
  pages: Uint32Array;
}

export class ReplayRecorder {
  private readonly seen: Uint8Array;
  private order: Uint32Array;
  private count = 0;

  constructor(
    readonly regionPages: number,
    readonly pageSize: number,
    readonly cap = DEFAULT_REPLAY_CAP,
  ) {
    this.seen = new Uint8Array(Math.ceil(regionPages / 8));
    this.order = new Uint32Array(Math.min(cap, 1024));
  }

  /** Notes a touch of `page`; true when it was its first (and there was room to record it). */
  record(page: number): boolean {
    if (!Number.isInteger(page) || page < 0 || page >= this.regionPages) return false;
    const bit = 1 << (page & 7);
    if (this.seen[page >> 3]! & bit) return false;
    if (this.count >= this.cap) return false;
    this.seen[page >> 3]! |= bit;
    if (this.count === this.order.length) {
      const bigger = new Uint32Array(Math.min(this.cap, this.order.length * 2));
      bigger.set(this.order);
      this.order = bigger;
    }
    this.order[this.count++] = page;
    return true;
  }

  get size(): number {
    return this.count;
  }

  /** The cap was reached: later first touches are not recorded. */
  get full(): boolean {
    return this.count >= this.cap;
  }

  recording(): Recording {
    return { pageSize: this.pageSize, regionPages: this.regionPages, pages: this.order.slice(0, this.count) };
  }
}

export function serializeRecording(rec: Recording): Buffer {
  const payload: number[] = [];
  let prevEnd = 0;
  let i = 0;
  while (i < rec.pages.length) {
    const start = rec.pages[i]!;
    const next = rec.pages[i + 1];
    const dir = next === start - 1 ? -1 : 1;
    let len = 1;
    while (i + len < rec.pages.length && rec.pages[i + len] === start + dir * len) len++;
    writeVarint(payload, zigzag(start - prevEnd));
    writeVarint(payload, zigzag(dir * (len - 1)));
    prevEnd = start + dir * (len - 1);
    i += len;
  }
  const body = Buffer.from(payload);
  const out = Buffer.alloc(HEADER + body.length);
  out.write(MAGIC, 0, 'latin1');
  out.writeUInt8(REPLAY_VERSION, 4);
  out.writeUInt32LE(rec.pageSize, 8);
  out.writeUInt32LE(rec.regionPages, 12);
  out.writeUInt32LE(rec.pages.length, 16);
  out.writeUInt32LE(body.length, 20);
  out.writeUInt32LE(crc32(body), 24);
  body.copy(out, HEADER);
  return out;
}

/** Reads a recording back; throws `Expected ... for <name> but received ...` on anything malformed. */
export function parseRecording(buf: Buffer, name = 'replay recording'): Recording {
  const fail = (what: string, got: string): never => {
    throw new Error(`Expected ${what} for ${name} but received ${got}`);
  };
  if (buf.length < HEADER) fail(`at least ${HEADER} bytes`, `${buf.length} bytes`);
  const magic = buf.toString('latin1', 0, 4);
  if (magic !== MAGIC) fail(`magic "${MAGIC}"`, JSON.stringify(magic));
  const version = buf.readUInt8(4);
  if (version !== REPLAY_VERSION) fail(`version ${REPLAY_VERSION}`, `version ${version}`);
  const pageSize = buf.readUInt32LE(8);
  if (pageSize === 0 || (pageSize & (pageSize - 1)) !== 0) fail('a power-of-two page size', String(pageSize));
  const regionPages = buf.readUInt32LE(12);
  const count = buf.readUInt32LE(16);
  if (count > regionPages) fail(`at most ${regionPages} pages`, `${count} pages`);
  const length = buf.readUInt32LE(20);
  if (length !== buf.length - HEADER) fail(`a payload of ${length} bytes`, `${buf.length - HEADER} bytes`);
  const body = buf.subarray(HEADER);
  const sum = crc32(body);
  if (sum !== buf.readUInt32LE(24)) fail(`payload checksum ${hex(buf.readUInt32LE(24))}`, hex(sum));

  const pages = new Uint32Array(count);
  const seen = new Uint8Array(Math.ceil(regionPages / 8));
  const at = { pos: 0 };
  let n = 0;
  let prevEnd = 0;
  while (at.pos < body.length) {
    const start = prevEnd + unzigzag(readVarint(body, at, fail));
    const extent = unzigzag(readVarint(body, at, fail));
    const dir = extent < 0 ? -1 : 1;
    const len = Math.abs(extent) + 1;
    if (n + len > count) fail(`${count} pages`, 'more');
    for (let i = 0, p = start; i < len; i++, p += dir) {
      if (p < 0 || p >= regionPages) fail(`page indexes below ${regionPages}`, `page ${p}`);
      if (seen[p >> 3]! & (1 << (p & 7))) fail('each page once', `page ${p} twice`);
      seen[p >> 3]! |= 1 << (p & 7);
      pages[n++] = p;
    }
    prevEnd = start + extent;
  }
  if (n !== count) fail(`${count} pages`, `${n}`);
  return { pageSize, regionPages, pages };
}

/** The recording in first-touch order, cut into batches of at most `batchPages` pages. */
export function planWarmup(rec: Recording, batchPages = DEFAULT_WARMUP_BATCH): number[][] {
  if (!Number.isInteger(batchPages) || batchPages < 1) {
    throw new Error(`Expected a positive integer for batchPages but received ${batchPages}`);
  }
  const out: number[][] = [];
  for (let i = 0; i < rec.pages.length; i += batchPages) out.push(Array.from(rec.pages.subarray(i, i + batchPages)));
  return out;
}

function zigzag(n: number): number {
  return n >= 0 ? n * 2 : -n * 2 - 1;
}

function unzigzag(n: number): number {
  return n % 2 === 0 ? n / 2 : -(n + 1) / 2;
}

function writeVarint(out: number[], n: number): void {
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
}

function readVarint(buf: Buffer, at: { pos: number }, fail: (what: string, got: string) => never): number {
  let n = 0;
  let scale = 1;
  for (let i = 0; i < 6; i++) {
    if (at.pos >= buf.length) fail('a complete varint', 'the end of the payload');
    const b = buf[at.pos++]!;
    n += (b & 0x7f) * scale;
    if ((b & 0x80) === 0) return n;
    scale *= 0x80;
  }
  return fail('a varint of at most 6 bytes', `a longer one at payload byte ${at.pos}`);
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[i] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE), as zlib computes it (Node 20 has no zlib.crc32 yet). */
export function crc32(buf: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < buf.length; i++) c = CRC_TABLE[(c ^ buf[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function hex(n: number): string {
  return '0x' + n.toString(16).padStart(8, '0');
}
