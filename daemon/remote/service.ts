// farmem.v1.MemoryServer as a grpc-js service definition built by hand from the generated message
// classes, so the Pages stream can use the hand-written page codec (see wire.ts).
import type * as grpc from '@grpc/grpc-js';
import { farmem } from '../../proto/gen/farmem';
import { customCodec, type PageCodec, type PageRequestMsg, type PageResponseMsg } from './wire';

/** The codec the Pages stream uses (the faster one, measured by the memserver-codec bench case). */
export const pageCodec: PageCodec = customCodec;

interface Generated<T> {
  encode(m: T): { finish(): Uint8Array };
  decode(b: Uint8Array): T;
}
function unary<Req, Res>(name: string, req: Generated<Req>, res: Generated<Res>): grpc.MethodDefinition<Req, Res> {
  return {
    path: `/farmem.v1.MemoryServer/${name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: (m: Req) => Buffer.from(req.encode(m).finish()),
    requestDeserialize: (b: Buffer) => req.decode(b),
    responseSerialize: (m: Res) => Buffer.from(res.encode(m).finish()),
    responseDeserialize: (b: Buffer) => res.decode(b),
    originalName: name.charAt(0).toLowerCase() + name.slice(1),
  };
}

export function pagesMethod(codec: PageCodec = pageCodec): grpc.MethodDefinition<PageRequestMsg, PageResponseMsg> {
  return {
    path: '/farmem.v1.MemoryServer/Pages',
    requestStream: true,
    responseStream: true,
    requestSerialize: codec.encodeRequest,
    requestDeserialize: codec.decodeRequest,
    responseSerialize: codec.encodeResponse,
    responseDeserialize: codec.decodeResponse,
    originalName: 'pages',
  };
}

export function memoryServerService(codec: PageCodec = pageCodec) {
  return {
    Pages: pagesMethod(codec),
    DeleteRegion: unary('DeleteRegion', farmem.v1.DeleteRegionRequest, farmem.v1.DeleteRegionResponse),
    Sync: unary('Sync', farmem.v1.SyncRequest, farmem.v1.SyncResponse),
    Stats: unary('Stats', farmem.v1.StatsRequest, farmem.v1.StatsResponse),
    Discard: unary('Discard', farmem.v1.DiscardRequest, farmem.v1.DiscardResponse),
  } satisfies grpc.ServiceDefinition;
}
export type MemoryServerService = ReturnType<typeof memoryServerService>;

/** Max page index + 1 for a page size: a region spans at most 2^40 bytes (1 TiB). */
export const REGION_SPAN_BYTES = 2 ** 40;
export function maxPages(pageSize: number): number {
  return REGION_SPAN_BYTES / pageSize;
}
export const MIN_PAGE_SIZE = 4096;
export const MAX_PAGE_SIZE = 2 * 1024 * 1024;
export function validPageSize(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_PAGE_SIZE && n <= MAX_PAGE_SIZE && (n & (n - 1)) === 0;
}
export const REGION_ID_RE = /^[A-Za-z0-9._-]{1,128}$/;
/** Room a message needs beyond its page bytes (ids, indexes, framing) at the max message size. */
export function messageOverhead(pages: number): number {
  return 256 + pages * 10;
}
