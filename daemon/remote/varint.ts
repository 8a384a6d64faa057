// Protobuf varints for numbers up to 2^53, without BigInt or Long on the hot path.

/** Bytes a varint of v (0 <= v < 2^53) takes. */
export function varintSize(v: number): number {
  let n = 1;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Writes v at buf[at]; returns the offset after it. */
export function writeVarint(buf: Buffer, at: number, v: number): number {
  while (v > 0x7fffffff) {
    buf[at++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  while (v >= 128) {
    buf[at++] = (v & 0x7f) | 0x80;
    v >>>= 7;
  }
  buf[at++] = v;
  return at;
}

/**
 * `fail` of a cursor that needed bytes past the end of its buffer but within the message: the buffer
 * holds only the message's first bytes (see decodeRequestGathered); not an error in the message.
 */
export const NEED_MORE = 'need more bytes';

/**
 * A cursor over a message; `fail` holds why decoding stopped (null while it is fine). The message
 * ends at `end`; buf may hold fewer bytes (a prefix), and reading past them fails with NEED_MORE.
 */
export class Cursor {
  pos: number;
  fail: string | null = null;
  constructor(readonly buf: Buffer, pos: number, readonly end: number) {
    this.pos = pos;
  }

  /** Reads a varint; values at or above 2^53 (or truncated) set `fail` and return 0. */
  varint(): number {
    const buf = this.buf;
    let result = 0;
    let mul = 1;
    for (let i = 0; i < 8; i++) {
      if (this.pos >= this.end) {
        this.fail = 'truncated varint';
        return 0;
      }
      if (this.pos >= buf.length) {
        this.fail = NEED_MORE;
        return 0;
      }
      const b = buf[this.pos++]!;
      result += (b & 0x7f) * mul;
      if (b < 0x80) return result;
      mul *= 128;
    }
    this.fail = 'varint above 2^53';
    return 0;
  }

  /** Reads a length prefix and checks it fits; returns the end offset of the field. */
  lengthEnd(): number {
    const len = this.varint();
    if (this.fail !== null) return this.pos;
    if (len > this.end - this.pos) {
      this.fail = `field of ${len} bytes overruns the message`;
      return this.pos;
    }
    return this.pos + len;
  }

  /** Skips a field of an unknown number. */
  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        return;
      case 1:
        this.pos += 8;
        break;
      case 2:
        this.pos = this.lengthEnd();
        return;
      case 5:
        this.pos += 4;
        break;
      default:
        this.fail = `unsupported wire type ${wireType}`;
        return;
    }
    if (this.pos > this.end) this.fail = 'truncated fixed-size field';
  }

  /** Reads a repeated uint64 field into out: packed (wire type 2) or one element (wire type 0). */
  repeated(wireType: number, out: number[]): void {
    if (wireType === 0) {
      out.push(this.varint());
      return;
    }
    if (wireType !== 2) {
      this.fail = `wire type ${wireType} for a repeated uint64`;
      return;
    }
    const end = this.lengthEnd();
    while (this.fail === null && this.pos < end) out.push(this.varint());
    if (this.pos > end) this.fail = 'packed field overruns its length';
  }
}
