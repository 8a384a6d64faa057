// Server side: a received message reaches its deserializer as the list of chunks it arrived in, not
// joined. Node's HTTP/2 hands a stream's bytes over in DATA frames of at most 16 KiB, and grpc-js's
// StreamDecoder joins them into one new buffer per message (a copy of every page byte, and a large
// allocation per request for the GC). The memory server copies page bytes from those chunks straight
// into its slabs instead.
//
// How: the patched StreamDecoder.write, for decoders of calls whose deserializer was registered with
// gatherFor(), passes grpc-js a 5-byte stand-in (flag + length, its own ArrayBuffer) for each large
// uncompressed message and keeps the chunks under that ArrayBuffer; grpc-js hands the deserializer a
// view of the stand-in, and the deserializer takes the chunks back with takeGathered(). Installed only
// when grpc-js's decoder looks as expected (1.14's shape); otherwise messages arrive joined, as before.
import { createRequire } from 'node:module';

/** Smaller messages are joined as before (cheaper than the bookkeeping). */
const GATHER_MIN_BYTES = 4096;

const gathered = new WeakMap<ArrayBufferLike, Buffer[]>();
const gatherers = new WeakSet<(b: Buffer) => unknown>();
let installed: boolean | null = null;

/** Marks a deserializer as taking gathered messages (see takeGathered); returns it. */
export function gatherFor<T>(deserialize: (b: Buffer) => T): (b: Buffer) => T {
  gatherers.add(deserialize);
  return deserialize;
}

/** In a registered deserializer: the chunks of the message b stands in for, or null when b is the message. */
export function takeGathered(b: Buffer): Buffer[] | null {
  if (b.length !== 0) return null;
  const parts = gathered.get(b.buffer);
  if (parts === undefined) return null;
  gathered.delete(b.buffer);
  return parts;
}

interface Decoder {
  gather?: boolean;
  maxReadMessageLength: number;
  readState: number;
  readCompressFlag: Buffer;
  readPartialSize: Buffer;
  readSizeRemaining: number;
  readMessageSize: number;
  readPartialMessage: Buffer[];
  readMessageRemaining: number;
}
interface ServerCall {
  decoder?: Decoder;
  handler?: { deserialize?: unknown };
}

// StreamDecoder's states (stream-decoder.js).
const NO_DATA = 0;
const READING_SIZE = 1;
const READING_MESSAGE = 2;

/** StreamDecoder.write with the join left out for large uncompressed messages (same states, same checks). */
function gatheringWrite(this: Decoder, data: Buffer): Buffer[] {
  let readHead = 0;
  let toRead: number;
  const result: Buffer[] = [];
  while (readHead < data.length) {
    switch (this.readState) {
      case NO_DATA:
        this.readCompressFlag = data.subarray(readHead, readHead + 1);
        readHead += 1;
        this.readState = READING_SIZE;
        this.readPartialSize.fill(0);
        this.readSizeRemaining = 4;
        this.readMessageSize = 0;
        this.readMessageRemaining = 0;
        this.readPartialMessage = [];
        break;
      case READING_SIZE:
        toRead = Math.min(data.length - readHead, this.readSizeRemaining);
        data.copy(this.readPartialSize, 4 - this.readSizeRemaining, readHead, readHead + toRead);
        this.readSizeRemaining -= toRead;
        readHead += toRead;
        if (this.readSizeRemaining === 0) {
          this.readMessageSize = this.readPartialSize.readUInt32BE(0);
          if (this.maxReadMessageLength !== -1 && this.readMessageSize > this.maxReadMessageLength) {
            throw new Error(`Received message larger than max (${this.readMessageSize} vs ${this.maxReadMessageLength})`);
          }
          this.readMessageRemaining = this.readMessageSize;
          if (this.readMessageRemaining > 0) this.readState = READING_MESSAGE;
          else {
            result.push(Buffer.concat([this.readCompressFlag, this.readPartialSize], 5));
            this.readState = NO_DATA;
          }
        }
        break;
      case READING_MESSAGE:
        toRead = Math.min(data.length - readHead, this.readMessageRemaining);
        this.readPartialMessage.push(data.subarray(readHead, readHead + toRead));
        this.readMessageRemaining -= toRead;
        readHead += toRead;
        if (this.readMessageRemaining === 0) {
          if (this.readMessageSize >= GATHER_MIN_BYTES && this.readCompressFlag[0] === 0) {
            const standIn = Buffer.allocUnsafeSlow(5);
            standIn[0] = 0;
            this.readPartialSize.copy(standIn, 1);
            gathered.set(standIn.buffer, this.readPartialMessage);
            result.push(standIn);
          } else {
            result.push(Buffer.concat([this.readCompressFlag, this.readPartialSize, ...this.readPartialMessage], this.readMessageSize + 5));
          }
          this.readPartialMessage = [];
          this.readState = NO_DATA;
        }
        break;
      default:
        throw new Error('Unexpected read state');
    }
  }
  return result;
}

/** Installs the patch; returns whether it is active. */
export function installServerGather(): boolean {
  if (installed !== null) return installed;
  installed = false;
  try {
    const req = createRequire(require.resolve('@grpc/grpc-js'));
    const sd = req('./stream-decoder') as { StreamDecoder?: { prototype: { write?: (this: Decoder, d: Buffer) => Buffer[] } } };
    const si = req('./server-interceptors') as { BaseServerInterceptingCall?: { prototype: { handleDataFrame?: (this: ServerCall, d: Buffer) => void; decompressMessage?: unknown } } };
    const dproto = sd.StreamDecoder?.prototype;
    const cproto = si.BaseServerInterceptingCall?.prototype;
    const origWrite = dproto?.write;
    const origFrame = cproto?.handleDataFrame;
    if (!dproto || !cproto || typeof origWrite !== 'function' || typeof origFrame !== 'function') return false;
    const src = String(origWrite);
    // The states and fields gatheringWrite relies on, and grpc-js taking the message as subarray(5).
    if (!['readPartialMessage', 'readMessageRemaining', 'readCompressFlag', 'Buffer.concat(framedMessageBuffers, this.readMessageSize + 5)'].every((s) => src.includes(s))) return false;
    if (!String(origFrame).includes('this.decoder.write(data)') || !String(cproto.decompressMessage).includes('message.subarray(5)')) return false;
    const probe = new (sd.StreamDecoder as unknown as new (max: number) => Decoder)(-1);
    if (probe.readState !== NO_DATA || !Array.isArray(probe.readPartialMessage)) return false;
    dproto.write = function (this: Decoder, data: Buffer): Buffer[] {
      return this.gather === true ? gatheringWrite.call(this, data) : origWrite.call(this, data);
    };
    cproto.handleDataFrame = function (this: ServerCall, data: Buffer): void {
      const d = this.decoder;
      if (d !== undefined && d.gather === undefined) d.gather = gatherers.has(this.handler?.deserialize as (b: Buffer) => unknown);
      return origFrame.call(this, data);
    };
    installed = true;
  } catch {
    installed = false;
  }
  return installed;
}
