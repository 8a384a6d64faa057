// A typed client of farmemd's control socket (`farmem.v1.Daemon` over a Unix socket). Errors say
// what failed and what to do, chained from the socket up:
//   connect /run/farmem/farmemd.sock: ECONNREFUSED — is farmemd running? start it with: npm start (or systemctl start farmemd)
import net from 'node:net';
import * as grpc from '@grpc/grpc-js';
import { farmem } from '../proto/gen/farmem';
import { DaemonService } from '../daemon/control/definition';
import { clientSocketPath } from '../daemon/util/paths';
import type { TlsFiles } from '../daemon/util/tls-files';

export { farmem };
export type Region = farmem.v1.IRegion;

/** A region's whole page map, as client/heatmap.ts draws it. */
export interface FetchedPageMap {
  region: Region;
  pageSize: number;
  pages: number;
  /** One byte per page: bit 0 resident, bit 1 dirty. */
  state: Uint8Array;
  faults: Uint32Array;
}

/** A failed control call. `code`: the errno of the connect ('ECONNREFUSED', ...) or the gRPC status name ('NOT_FOUND', ...). */
export class ControlError extends Error {
  readonly code: string;
  constructor(message: string, code: string) {
    super(message);
    this.name = 'ControlError';
    this.code = code;
  }
}

const ADVICE: Record<string, string> = {
  ENOENT: 'is farmemd running? start it with: npm start (or systemctl start farmemd)',
  ECONNREFUSED: 'is farmemd running? start it with: npm start (or systemctl start farmemd)',
  EACCES: 'permission denied: join the farmem group (then log in again) or run as root',
  ENOTSOCK: 'the path is not a socket: pick the right one with --socket',
};

/** Connects once, to turn "the daemon is not there" into an errno and advice before gRPC hides it. */
function probe(socket: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const c = net.connect(socket);
    const t = setTimeout(() => {
      c.destroy();
      reject(new ControlError(`connect ${socket}: ETIMEDOUT — farmemd did not accept within ${timeoutMs} ms; is it stuck? (journalctl -u farmemd)`, 'ETIMEDOUT'));
    }, timeoutMs);
    c.once('connect', () => {
      clearTimeout(t);
      c.destroy();
      resolve();
    });
    c.once('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(t);
      const code = e.code ?? 'EIO';
      reject(new ControlError(`connect ${socket}: ${code}${ADVICE[code] ? ` — ${ADVICE[code]}` : ''}`, code));
    });
  });
}

type Def<Req, Res> = grpc.MethodDefinition<Req, Res>;

export class ControlClient {
  readonly socket: string;
  private readonly client: grpc.Client;
  private readonly timeoutMs: number;

  private constructor(socket: string, timeoutMs: number) {
    this.socket = socket;
    this.timeoutMs = timeoutMs;
    this.client = new grpc.Client(`unix:${socket}`, grpc.credentials.createInsecure());
  }

  /** Connects to farmemd (`socket` defaults to $FARMEM_SOCKET, then the system or per-user socket). */
  static async connect(socket: string | null = null, timeoutMs = 10_000): Promise<ControlClient> {
    const path = socket ?? clientSocketPath();
    await probe(path, timeoutMs);
    return new ControlClient(path, timeoutMs);
  }

  close(): void {
    this.client.close();
  }

  private fail(e: grpc.ServiceError): ControlError {
    const code = grpc.status[e.code] ?? String(e.code);
    // farmemd's own UNAVAILABLE refusals name their operation and region (`sync region "db": memory
    // server ... unavailable: ...`): those are its answer, not a lost connection.
    const refusal = /^[a-z-]+ region "[^"]*": /.test(e.details) || e.details.includes('farmemd is stopping');
    if (e.code === grpc.status.UNAVAILABLE && !refusal) {
      // grpc-js words a lost daemon as "No connection established. Last error: Error: connect
      // ECONNREFUSED ..."; say it as the first connect would have.
      const errno = /\bconnect (E[A-Z]+)\b/.exec(e.details)?.[1];
      if (errno !== undefined) return new ControlError(`connect ${this.socket}: ${errno}${ADVICE[errno] ? ` — ${ADVICE[errno]}` : ''}`, code);
      return new ControlError(`connect ${this.socket}: ${e.details} — is farmemd running? start it with: npm start (or systemctl start farmemd)`, code);
    }
    return new ControlError(e.details || e.message, code);
  }

  private unary<Req, Res>(def: Def<Req, Res>, req: Req): Promise<Res> {
    return new Promise((resolve, reject) => {
      this.client.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, req, new grpc.Metadata(), { deadline: Date.now() + this.timeoutMs }, (err, res) =>
        err ? reject(this.fail(err)) : resolve(res as Res),
      );
    });
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  private progress(def: Def<any, farmem.v1.OperationProgress>, name: string, onProgress: (p: farmem.v1.OperationProgress) => void): Promise<farmem.v1.OperationProgress> {
    return new Promise((resolve, reject) => {
      const call = this.client.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, farmem.v1.SyncRegionRequest.create({ name }), new grpc.Metadata(), {});
      let last: farmem.v1.OperationProgress | null = null;
      call.on('data', (p: farmem.v1.OperationProgress) => {
        last = p;
        onProgress(p);
      });
      call.on('error', (e: grpc.ServiceError) => reject(this.fail(e)));
      call.on('end', () => (last?.done ? resolve(last) : reject(new ControlError(`${def.originalName} "${name}": the stream ended before the operation finished`, 'INTERNAL'))));
    });
  }

  async createRegion(req: farmem.v1.ICreateRegionRequest): Promise<Region> {
    return (await this.unary(DaemonService.CreateRegion, farmem.v1.CreateRegionRequest.create(req))).region!;
  }
  deleteRegion(name: string): Promise<farmem.v1.RegionDeleteResponse> {
    return this.unary(DaemonService.DeleteRegion, farmem.v1.RegionDeleteRequest.create({ name }));
  }
  async listRegions(): Promise<farmem.v1.IRegionSummary[]> {
    return (await this.unary(DaemonService.ListRegions, farmem.v1.ListRegionsRequest.create())).regions;
  }
  showRegion(name: string): Promise<farmem.v1.ShowRegionResponse> {
    return this.unary(DaemonService.ShowRegion, farmem.v1.ShowRegionRequest.create({ name }));
  }
  async updateRegion(name: string, patch: { residentBytes?: number; mode?: number; prefetch?: string; warmOnAttach?: boolean }): Promise<Region> {
    return (await this.unary(DaemonService.UpdateRegion, farmem.v1.UpdateRegionRequest.create({ name, ...patch }))).region!;
  }
  syncRegion(name: string, onProgress: (p: farmem.v1.OperationProgress) => void = () => {}): Promise<farmem.v1.OperationProgress> {
    return this.progress(DaemonService.SyncRegion, name, onProgress);
  }
  evictRegion(name: string, onProgress: (p: farmem.v1.OperationProgress) => void = () => {}): Promise<farmem.v1.OperationProgress> {
    return this.progress(DaemonService.EvictRegion, name, onProgress);
  }
  /** Replay warm-up: farmemd fetches the region's recorded working set; progress as it goes. */
  warmRegion(name: string, onProgress: (p: farmem.v1.OperationProgress) => void = () => {}): Promise<farmem.v1.OperationProgress> {
    return this.progress(DaemonService.WarmRegion, name, onProgress);
  }
  daemonStats(): Promise<farmem.v1.DaemonStatsResponse> {
    return this.unary(DaemonService.DaemonStats, farmem.v1.DaemonStatsRequest.create());
  }
  async listServers(): Promise<farmem.v1.IServerInfo[]> {
    return (await this.unary(DaemonService.ListServers, farmem.v1.ListServersRequest.create())).servers;
  }
  /**
   * Adds a memory server to the daemon pool (root); tokenFile and the TLS files: absolute paths
   * farmemd reads (now and at each start).
   */
  async addServer(address: string, weight: number, tokenFile: string | null, tls: TlsFiles | null = null): Promise<farmem.v1.IServerInfo> {
    const req = farmem.v1.AddServerRequest.create({
      address, weight, tokenFile: tokenFile ?? '',
      caFile: tls?.ca ?? '', certFile: tls?.cert ?? '', keyFile: tls?.key ?? '', serverName: tls?.serverName ?? '',
    });
    return (await this.unary(DaemonService.AddServer, req)).server!;
  }
  /** Starts draining a memory server out of the daemon pool (root). */
  async removeServer(address: string): Promise<farmem.v1.IServerInfo> {
    return (await this.unary(DaemonService.RemoveServer, farmem.v1.RemoveServerRequest.create({ address }))).server!;
  }
  /** One window of a region's page map (farmemd caps a window at 256 Ki pages). */
  regionPageMapWindow(name: string, firstPage = 0, maxPages: number | null = null): Promise<farmem.v1.RegionPageMapResponse> {
    return this.unary(DaemonService.RegionPageMap, farmem.v1.RegionPageMapRequest.create({ name, firstPage, maxPages }));
  }
  /** The whole page map, window after window (each window is its own snapshot, moments apart). */
  async regionPageMap(name: string): Promise<FetchedPageMap> {
    let out: FetchedPageMap | null = null;
    let first = 0;
    do {
      const w = await this.regionPageMapWindow(name, first);
      const pages = Number(w.pages);
      if (out === null) {
        out = { region: w.region!, pageSize: w.pageSize, pages, state: new Uint8Array(pages), faults: new Uint32Array(pages) };
      } else if (pages !== out.pages) {
        throw new ControlError(`heatmap region "${name}": the region changed from ${out.pages} to ${pages} pages while its page map was read; try again`, 'ABORTED');
      }
      const n = w.state.length;
      if (Number(w.firstPage) !== first || w.faults.length !== n || (n === 0 && first < pages) || first + n > pages) {
        throw new ControlError(
          `heatmap region "${name}": farmemd answered pages ${Number(w.firstPage)}+${n} with ${w.faults.length} fault counts when asked for page ${first} of ${pages}`,
          'INTERNAL',
        );
      }
      out.state.set(w.state, first);
      out.faults.set(w.faults, first);
      first += n;
    } while (first < out.pages);
    return out;
  }
}
