// grpc-js method definitions built from the protobufjs static classes in proto/gen, so that the
// server and the clients share one definition of each service.
import type * as grpc from '@grpc/grpc-js';

export interface MessageClass<T> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  encode(message: any): { finish(): Uint8Array };
  /** T is taken from here: handlers and clients see decoded message instances. */
  decode(data: Uint8Array): T;
}

export function method<Req, Res>(
  service: string,
  name: string,
  req: MessageClass<Req>,
  res: MessageClass<Res>,
  responseStream = false,
): grpc.MethodDefinition<Req, Res> {
  return {
    path: `/${service}/${name}`,
    requestStream: false,
    responseStream,
    requestSerialize: (m: Req) => Buffer.from(req.encode(m).finish()),
    requestDeserialize: (b: Buffer) => req.decode(b),
    responseSerialize: (m: Res) => Buffer.from(res.encode(m).finish()),
    responseDeserialize: (b: Buffer) => res.decode(b),
    originalName: name,
  };
}
