// Fewer copies of page bytes through grpc-js. grpc-js frames every outgoing message by allocating
// length + 5 bytes and copying the serialized message in (the server in serializeMessage, the client
// in the compression filter's IdentityHandler). A serializer here can instead reserve those 5 bytes in
// front of its own buffer (preframed()), and the patched methods fill the header in place.
//
// The client goes one step further for writes: the serializer returns only the message's head (every
// field before the page bytes, which are last on the wire) and names the caller's page buffer as its
// tail (withTail()); the patched Http2SubchannelCall writes head and tail corked, as one writev, so the
// page bytes go from the caller's buffer to the socket without any copy in JS. The caller's buffer
// must therefore stay unchanged until the request is answered (MemoryServerClient.write awaits that).
//
// Each patch is installed only when grpc-js's methods look as expected (1.14's shape); otherwise
// everything works as before, with the copies.
import { createRequire } from 'node:module';

const framed = new WeakMap<Buffer, Buffer>();
/** Message (head) → the bytes that follow it on the wire, not copied into it. */
const tails = new WeakMap<Buffer, Buffer>();
/** Framed head (what the compression filter hands down) → its tail. */
const framedTails = new WeakMap<Buffer, Buffer>();
let installed: boolean | null = null;
let clientInstalled: boolean | null = null;

function grpcRequire(): NodeJS.Require {
  return createRequire(require.resolve('@grpc/grpc-js'));
}

/** A buffer for a message of n bytes with room for the gRPC frame header in front of it. */
export function preframed(n: number): Buffer {
  if (!installed) return Buffer.allocUnsafe(n);
  return reserve(n);
}

function reserve(n: number): Buffer {
  const whole = Buffer.allocUnsafe(n + 5);
  const msg = whole.subarray(5);
  framed.set(msg, whole);
  return msg;
}

/**
 * Client side, once installClientZeroCopy() returned true: a buffer for the first n bytes of a message
 * whose remaining bytes are `tail`, sent after it without being copied.
 */
export function withTail(n: number, tail: Buffer): Buffer {
  const head = reserve(n);
  tails.set(head, tail);
  return head;
}

function frameHeader(whole: Buffer, length: number): void {
  whole[0] = 0;
  whole.writeUInt32BE(length, 1);
}

interface CallProto {
  serializeMessage(this: { handler: { serialize(v: unknown): Buffer } }, value: unknown): Buffer;
}

/** Installs the server-side fast path; returns whether it is active. */
export function installServerPreframe(): boolean {
  if (installed !== null) return installed;
  installed = false;
  try {
    const mod = grpcRequire()('./server-interceptors') as { BaseServerInterceptingCall?: { prototype: CallProto } };
    const proto = mod.BaseServerInterceptingCall?.prototype;
    if (!proto || typeof proto.serializeMessage !== 'function' || proto.serializeMessage.length !== 1) return false;
    proto.serializeMessage = function (value: unknown): Buffer {
      const msg = this.handler.serialize(value);
      const whole = framed.get(msg);
      if (whole !== undefined) {
        framed.delete(msg);
        frameHeader(whole, msg.length);
        return whole;
      }
      const out = Buffer.allocUnsafe(msg.length + 5);
      frameHeader(out, msg.length);
      msg.copy(out, 5);
      return out;
    };
    installed = true;
  } catch {
    installed = false;
  }
  return installed;
}

type WriteMessage = (this: unknown, message: Buffer, compress: boolean) => Promise<Buffer>;
interface SubchannelCallLike {
  http2Stream: { cork(): void; uncork(): void; write(b: Buffer): boolean };
}
type SendMessageWithContext = (this: SubchannelCallLike, context: unknown, message: Buffer) => void;

/**
 * Installs the client-side fast path (framing in place, page bytes as an uncopied tail); returns
 * whether it is active. Only for channels without message compression (ours never set it): a compressing
 * handler is not patched and gets the whole message, copied together, instead.
 */
export function installClientZeroCopy(): boolean {
  if (clientInstalled !== null) return clientInstalled;
  clientInstalled = false;
  try {
    const req = grpcRequire();
    const cf = req('./compression-filter') as { CompressionFilter?: { new (o: object, s: object): { sendCompression?: object }; prototype: { sendMessage?: unknown } } };
    const sc = req('./subchannel-call') as { Http2SubchannelCall?: { prototype: { sendMessageWithContext?: SendMessageWithContext } } };
    if (typeof cf.CompressionFilter !== 'function' || !sc.Http2SubchannelCall) return false;
    const filter = new cf.CompressionFilter({}, {});
    const identity = filter.sendCompression ? (Object.getPrototypeOf(filter.sendCompression) as { writeMessage?: WriteMessage }) : null;
    const origWrite = identity?.writeMessage;
    const sendSrc = String(cf.CompressionFilter.prototype.sendMessage);
    const scProto = sc.Http2SubchannelCall.prototype;
    const origSend = scProto.sendMessageWithContext;
    if (!identity || typeof origWrite !== 'function' || origWrite.length !== 2 || !sendSrc.includes('sendCompression.writeMessage(')) return false;
    if (typeof origSend !== 'function' || origSend.length !== 2 || !String(origSend).includes('this.http2Stream.write(message, cb)')) return false;
    const otherWrite = Object.getPrototypeOf(identity) as { writeMessage?: WriteMessage };
    identity.writeMessage = function (message: Buffer, compress: boolean): Promise<Buffer> {
      const whole = framed.get(message);
      const tail = tails.get(message);
      if (whole === undefined || compress) {
        // Not ours, or (never in our client) compressed: the whole message, copied together.
        if (tail !== undefined) {
          tails.delete(message);
          return origWrite.call(this, Buffer.concat([message, tail]), compress);
        }
        return origWrite.call(this, message, compress);
      }
      framed.delete(message);
      frameHeader(whole, message.length + (tail?.length ?? 0));
      if (tail !== undefined) {
        tails.delete(message);
        framedTails.set(whole, tail);
      }
      return Promise.resolve(whole);
    };
    // Compressing handlers inherit the original writeMessage; make them see the whole message too.
    if (otherWrite && typeof otherWrite.writeMessage === 'function') {
      const base = otherWrite.writeMessage;
      otherWrite.writeMessage = function (message: Buffer, compress: boolean): Promise<Buffer> {
        const tail = tails.get(message);
        if (tail === undefined) return base.call(this, message, compress);
        tails.delete(message);
        return base.call(this, Buffer.concat([message, tail]), compress);
      };
    }
    scProto.sendMessageWithContext = function (context: unknown, message: Buffer): void {
      const tail = framedTails.get(message);
      if (tail === undefined) return origSend.call(this, context, message);
      framedTails.delete(message);
      const s = this.http2Stream;
      s.cork();
      try {
        s.write(message);
      } catch {
        s.uncork();
        // The original reports the failure (it writes, throws again, and ends the call).
        return origSend.call(this, context, message);
      }
      try {
        origSend.call(this, context, tail);
      } finally {
        s.uncork();
      }
    };
    clientInstalled = true;
  } catch {
    clientInstalled = false;
  }
  return clientInstalled;
}
