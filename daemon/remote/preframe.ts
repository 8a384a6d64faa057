// One copy fewer for large messages: grpc-js frames every outgoing message by allocating length + 5
// bytes and copying the serialized message in. A serializer here can instead reserve those 5 bytes in
// front of its own buffer (preframed()), and the patched BaseServerInterceptingCall.serializeMessage
// fills the header in place and sends the whole buffer. Only installed when grpc-js's method looks as
// expected (1.14's shape); otherwise everything works as before, with the copy.
import { createRequire } from 'node:module';

const framed = new WeakMap<Buffer, Buffer>();
let installed: boolean | null = null;

/** A buffer for a message of n bytes with room for the gRPC frame header in front of it. */
export function preframed(n: number): Buffer {
  if (!installed) return Buffer.allocUnsafe(n);
  const whole = Buffer.allocUnsafe(n + 5);
  const msg = whole.subarray(5);
  framed.set(msg, whole);
  return msg;
}

interface CallProto {
  serializeMessage(this: { handler: { serialize(v: unknown): Buffer } }, value: unknown): Buffer;
}

/** Installs the server-side fast path; returns whether it is active. */
export function installServerPreframe(): boolean {
  if (installed !== null) return installed;
  installed = false;
  try {
    const req = createRequire(require.resolve('@grpc/grpc-js'));
    const mod = req('./server-interceptors') as { BaseServerInterceptingCall?: { prototype: CallProto } };
    const proto = mod.BaseServerInterceptingCall?.prototype;
    if (!proto || typeof proto.serializeMessage !== 'function' || proto.serializeMessage.length !== 1) return false;
    proto.serializeMessage = function (value: unknown): Buffer {
      const msg = this.handler.serialize(value);
      const whole = framed.get(msg);
      if (whole !== undefined) {
        framed.delete(msg);
        whole[0] = 0;
        whole.writeUInt32BE(msg.length, 1);
        return whole;
      }
      const out = Buffer.allocUnsafe(msg.length + 5);
      out[0] = 0;
      out.writeUInt32BE(msg.length, 1);
      msg.copy(out, 5);
      return out;
    };
    installed = true;
  } catch {
    installed = false;
  }
  return installed;
}
