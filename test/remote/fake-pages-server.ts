// A grpc-js server whose Pages stream answers each request with answer(req), for client tests that
// need a server the real one would never be: wrong answers, silence, another request decoder.
import * as grpc from '@grpc/grpc-js';
import { memoryServerService } from '../../daemon/remote/service';
import { customCodec, type PageRequestMsg, type PageResponseMsg } from '../../daemon/remote/wire';

/** The answer to a request: a message, raw bytes sent as the response message, or null (never answer). */
export type Answer = (req: PageRequestMsg) => PageResponseMsg | Buffer | null;

export interface FakePagesServerOptions {
  /** How requests are decoded (default: the service's, the custom codec). */
  decodeRequest?: (b: Buffer) => PageRequestMsg;
  serverOptions?: grpc.ServerOptions;
}

/** Starts it on 127.0.0.1:0; `received` holds every request, with its page bytes copied. */
export async function fakePagesServer(
  t: { after(fn: () => Promise<void> | void): void },
  answer: Answer,
  opts: FakePagesServerOptions = {},
): Promise<{ address: string; received: PageRequestMsg[] }> {
  const server = new grpc.Server(opts.serverOptions);
  const received: PageRequestMsg[] = [];
  const svc = memoryServerService();
  const pages = {
    ...svc.Pages,
    ...(opts.decodeRequest ? { requestDeserialize: opts.decodeRequest } : {}),
    responseSerialize: (m: PageResponseMsg | Buffer) => (Buffer.isBuffer(m) ? m : customCodec.encodeResponse(m)),
  };
  server.addService({ ...svc, Pages: pages } as grpc.ServiceDefinition, {
    Pages: (call: grpc.ServerDuplexStream<PageRequestMsg, PageResponseMsg | Buffer>) => {
      call.on('data', (m: PageRequestMsg) => {
        received.push({ ...m, data: m.data === null ? null : Buffer.from(m.data) });
        const a = answer(m);
        if (a !== null) call.write(a);
      });
      call.on('end', () => call.end());
      call.on('error', () => undefined);
    },
    DeleteRegion: () => undefined, Sync: () => undefined, Stats: () => undefined,
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  t.after(() => server.forceShutdown());
  return { address: `127.0.0.1:${port}`, received };
}
