// The memory server: a grpc-js server with the Pages stream, DeleteRegion, Discard, Sync, Stats and the standard
// health service, over the slab store and (with a data dir) the journal.
import crypto from 'node:crypto';
import http from 'node:http';
import * as grpc from '@grpc/grpc-js';
import { HealthImplementation } from 'grpc-health-check';
import type pino from 'pino';
import type { farmem } from '../../proto/gen/farmem';
import { installServerGather } from '../remote/gather';
import { installServerPreframe } from '../remote/preframe';
import { maxPages, MIN_PAGE_SIZE, memoryServerService } from '../remote/service';
import { decodeRequestGathered, toNum, type PageRequestMsg, type PageResponseMsg } from '../remote/wire';
import { Authorizer, serverCredentials, type TlsFiles } from './auth';
import { PageHandler, regionIdError } from './handler';
import { Journal } from './journal';
import { ServerMetrics } from './metrics';
import { SlabStore } from './slabs';
import { formatBytes } from './units';

export interface MemoryServerOptions {
  /** host:port (port 0 picks one) or unix:/path. */
  listen: string;
  capacityBytes: number;
  /** Journal directory; null = purely in memory. */
  dataDir: string | null;
  token?: string | null;
  tls?: TlsFiles | null;
  logger: pino.Logger;
  /** Largest gRPC message accepted or sent (default 64 MiB). */
  maxMessageBytes?: number;
  /** Response bytes a stream may have queued before the server stops reading its requests (default 16 MiB). */
  streamBufferBytes?: number;
  /** HTTP flow-control window per stream and connection (default 16 MiB). */
  windowBytes?: number;
  /** host:port for an HTTP /metrics endpoint, or null. */
  metricsListen?: string | null;
  /** The journal is rewritten once it exceeds twice the live pages plus this (default 64 MiB). */
  journalCompactBytes?: number;
}

type PagesCall = grpc.ServerDuplexStream<PageRequestMsg, PageResponseMsg>;

interface StreamState {
  call: PagesCall;
  queuedBytes: number;
  /** Reasons the stream is not being read (responses backed up, journal backed up, draining). */
  holds: number;
  ended: boolean;
}

export const DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024;

/** grpc-js offers no server option for the HTTP/2 receive window; reach the session of a call. */
function sessionOf(call: unknown): import('node:http2').Http2Session | null {
  let c = call as Record<string, unknown> | undefined;
  for (let i = 0; i < 6 && c; i++) {
    const stream = c.stream as { session?: import('node:http2').Http2Session } | undefined;
    if (stream?.session) return stream.session;
    c = (c.call ?? c.nextCall) as Record<string, unknown> | undefined;
  }
  return null;
}

export class MemoryServer {
  readonly metrics: ServerMetrics;
  private readonly streams = new Set<StreamState>();
  private readonly tuned = new WeakSet<object>();
  private readonly auth: Authorizer;
  private readonly handler: PageHandler;
  private readonly health = new HealthImplementation({ '': 'SERVING', 'farmem.v1.MemoryServer': 'SERVING' });
  private draining = false;
  private metricsServer: http.Server | null = null;
  private lastRates = { at: Date.now(), reads: 0, writes: 0 };
  address = '';
  /** Changes at every start: clients tell a restarted (emptied) server from a live one. */
  readonly instanceId = crypto.randomUUID();

  /** host:port of the HTTP /metrics endpoint, or null. */
  metricsAddress: string | null = null;

  private constructor(
    private readonly opts: Required<Omit<MemoryServerOptions, 'token' | 'tls' | 'metricsListen' | 'journalCompactBytes'>> & { token: string | null; tls: TlsFiles | null; metricsListen: string | null },
    private readonly store: SlabStore,
    private readonly journal: Journal | null,
    private readonly server: grpc.Server,
  ) {
    this.metrics = new ServerMetrics(opts.capacityBytes);
    this.auth = new Authorizer(opts.tls !== null, opts.token);
    this.handler = new PageHandler(store, journal, this.metrics, opts.maxMessageBytes);
    this.metrics.usedBytes = store.usedBytes;
  }

  static async start(o: MemoryServerOptions): Promise<MemoryServer> {
    const opts = {
      listen: o.listen, capacityBytes: o.capacityBytes, dataDir: o.dataDir, token: o.token ?? null, tls: o.tls ?? null, logger: o.logger,
      maxMessageBytes: o.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES, streamBufferBytes: o.streamBufferBytes ?? 16 * 1024 * 1024,
      windowBytes: o.windowBytes ?? 16 * 1024 * 1024, metricsListen: o.metricsListen ?? null,
    };
    const log = o.logger;
    if (!installServerPreframe()) log.warn('grpc-js changed shape: responses are framed with an extra copy');
    if (!installServerGather()) log.warn('grpc-js changed shape: requests are joined from their chunks with an extra copy');
    const store = new SlabStore(opts.capacityBytes);
    const journal = opts.dataDir === null ? null : await Journal.open(opts.dataDir, store, log, 64 * 1024 * 1024, o.journalCompactBytes);
    const creds = serverCredentials(opts.tls);
    const server = new grpc.Server({
      'grpc.max_receive_message_length': opts.maxMessageBytes,
      'grpc.max_send_message_length': opts.maxMessageBytes,
      'grpc-node.max_session_memory': Number.MAX_SAFE_INTEGER,
    });
    const ms = new MemoryServer(opts, store, journal, server);
    const service = memoryServerService();
    // Write requests' page bytes stay in the chunks they arrived in until copied into the slabs.
    server.addService({ ...service, Pages: { ...service.Pages, requestDeserialize: decodeRequestGathered } }, {
      Pages: (call: PagesCall) => ms.pages(call),
      DeleteRegion: (call: grpc.ServerUnaryCall<farmem.v1.IDeleteRegionRequest, farmem.v1.IDeleteRegionResponse>, cb: grpc.sendUnaryData<farmem.v1.IDeleteRegionResponse>) => ms.deleteRegion(call, cb),
      Discard: (call: grpc.ServerUnaryCall<farmem.v1.IDiscardRequest, farmem.v1.IDiscardResponse>, cb: grpc.sendUnaryData<farmem.v1.IDiscardResponse>) => ms.discard(call, cb),
      Sync: (call: grpc.ServerUnaryCall<farmem.v1.ISyncRequest, farmem.v1.ISyncResponse>, cb: grpc.sendUnaryData<farmem.v1.ISyncResponse>) => void ms.sync(call, cb),
      Stats: (call: grpc.ServerUnaryCall<farmem.v1.IStatsRequest, farmem.v1.IStatsResponse>, cb: grpc.sendUnaryData<farmem.v1.IStatsResponse>) => void ms.stats(call, cb),
    });
    ms.health.addToServer(server);
    let port: number;
    try {
      port = await new Promise<number>((resolve, reject) => server.bindAsync(opts.listen, creds, (e, p) => (e ? reject(e) : resolve(p))));
    } catch (e) {
      await journal?.close();
      throw new Error(`listen ${opts.listen}: ${e instanceof Error ? e.message : String(e)}`);
    }
    ms.address = opts.listen.startsWith('unix:') ? opts.listen : `${opts.listen.slice(0, opts.listen.lastIndexOf(':'))}:${port}`;
    if (opts.metricsListen !== null) {
      ms.metricsServer = await ms.serveMetrics(opts.metricsListen);
      const a = ms.metricsServer.address() as import('node:net').AddressInfo;
      ms.metricsAddress = `${a.address}:${a.port}`;
    }
    log.info({
      address: ms.address, instanceId: ms.instanceId, capacity: formatBytes(opts.capacityBytes), durable: journal !== null, dataDir: opts.dataDir,
      tls: opts.tls !== null, token: opts.token !== null, storedBytes: store.usedBytes,
    }, journal === null ? 'memory server listening: no data dir, pages are kept in memory only and lost when it stops' : 'memory server listening: pages are journaled in the data dir (durable after Sync)');
    return ms;
  }

  private refused(call: { getAuthContext(): { sslPeerCertificate?: unknown }; metadata: grpc.Metadata; getPeer(): string }, method: string): grpc.ServiceError | null {
    const why = this.auth.refusal(call);
    if (why === null) return null;
    this.metrics.unauthenticated++;
    this.opts.logger.warn({ peer: call.getPeer(), method, reason: why }, 'refused unauthenticated call');
    return Object.assign(new Error(why), { code: grpc.status.UNAUTHENTICATED, details: `farmem-memserver: ${why}`, metadata: new grpc.Metadata() });
  }

  private tune(call: PagesCall): void {
    const s = sessionOf(call);
    if (s === null || this.tuned.has(s)) return;
    this.tuned.add(s);
    try {
      s.setLocalWindowSize(this.opts.windowBytes);
      s.settings({ initialWindowSize: Math.min(this.opts.windowBytes, 2 ** 31 - 1) });
    } catch (e) {
      this.opts.logger.debug({ err: e }, 'could not raise the HTTP/2 window');
    }
  }

  private pages(call: PagesCall): void {
    const refused = this.refused(call, 'Pages');
    if (refused) {
      call.emit('error', refused);
      return;
    }
    if (this.draining) {
      call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'memory server is shutting down' });
      return;
    }
    this.tune(call);
    const st: StreamState = { call, queuedBytes: 0, holds: 0, ended: false };
    this.streams.add(st);
    this.metrics.openStreams++;
    const hold = () => {
      if (st.holds++ === 0) {
        call.pause();
        this.metrics.pauses++;
      }
    };
    const release = () => {
      if (--st.holds === 0 && !st.ended && !this.draining) call.resume();
    };
    let backedUp = false;
    let reported = false;
    const finish = (why: string | null) => {
      if (!st.ended) {
        st.ended = true;
        this.streams.delete(st);
        this.metrics.openStreams--;
      }
      // A vanished client may show as a half-close first and a cancel after: report the cancel.
      if (why !== null && !reported) {
        reported = true;
        this.metrics.streamError(why);
        this.opts.logger.info({ peer: call.getPeer(), reason: why }, 'page stream ended early');
      }
    };
    call.on('data', (m: PageRequestMsg) => {
      if (st.ended) return;
      if (m.malformed !== null) {
        this.metrics.streamError('malformed');
        this.opts.logger.warn({ peer: call.getPeer(), error: m.malformed }, 'malformed PageRequest: ending the stream');
        finish(null);
        call.emit('error', { code: grpc.status.INVALID_ARGUMENT, details: `malformed PageRequest: ${m.malformed}` });
        return;
      }
      const resp = this.handler.handle(m);
      const len = (resp.dataLength ?? 0) + 64;
      st.queuedBytes += len;
      // fill() runs inside write (serialization is synchronous), before any later request is applied.
      const ok = call.write(resp, () => {
        st.queuedBytes -= len;
        if (backedUp && st.queuedBytes <= this.opts.streamBufferBytes / 2) {
          backedUp = false;
          release();
        }
      });
      if (!backedUp && (st.queuedBytes > this.opts.streamBufferBytes || (!ok && st.queuedBytes > this.opts.streamBufferBytes / 2))) {
        backedUp = true;
        hold();
      }
      if (this.journal !== null && m.op === 'write' && this.journal.backlogBytes >= this.journal.highWaterBytes) {
        hold();
        void this.journal.whenDrained().then(release);
      }
    });
    call.on('end', () => {
      finish(null);
      call.end();
    });
    call.on('cancelled', () => finish('cancelled'));
    call.on('error', (e: Error) => finish(`error: ${e.message}`));
  }

  private deleteRegion(call: grpc.ServerUnaryCall<farmem.v1.IDeleteRegionRequest, farmem.v1.IDeleteRegionResponse>, cb: grpc.sendUnaryData<farmem.v1.IDeleteRegionResponse>): void {
    const refused = this.refused(call, 'DeleteRegion');
    if (refused) return cb(refused);
    const region = call.request.region ?? '';
    const badRegion = regionIdError(region);
    if (badRegion !== null) return cb({ code: grpc.status.INVALID_ARGUMENT, details: badRegion });
    const freed = this.store.deleteRegion(region);
    // Journaled either way: the deleted id refuses late writes after a restart too.
    this.journal?.appendDelete(region);
    if (freed === null) return cb({ code: grpc.status.NOT_FOUND, details: `region "${region}" has no pages on this server` });
    this.metrics.usedBytes = this.store.usedBytes;
    this.opts.logger.info({ region, pages: freed }, 'region deleted');
    cb(null, { pagesFreed: freed });
  }

  private discard(call: grpc.ServerUnaryCall<farmem.v1.IDiscardRequest, farmem.v1.IDiscardResponse>, cb: grpc.sendUnaryData<farmem.v1.IDiscardResponse>): void {
    const refused = this.refused(call, 'Discard');
    if (refused) return cb(refused);
    const region = call.request.region ?? '';
    const badRegion = regionIdError(region);
    if (badRegion !== null) return cb({ code: grpc.status.INVALID_ARGUMENT, details: badRegion });
    const pages = (call.request.pages ?? []).map((p) => toNum(p));
    const limit = maxPages(this.store.regions.get(region)?.pageSize ?? MIN_PAGE_SIZE);
    const bad = pages.find((p) => !(Number.isSafeInteger(p) && p < limit));
    if (bad !== undefined) {
      return cb({ code: grpc.status.OUT_OF_RANGE, details: `Expected page indexes below ${limit} for pages but received ${bad}` });
    }
    // Applied and journaled at once, in order with the writes around it (replay ends in this state).
    const freed = this.store.discard(region, pages);
    if (freed > 0) {
      this.journal?.appendDiscard(region, pages);
      this.metrics.usedBytes = this.store.usedBytes;
    }
    this.opts.logger.debug({ region, asked: pages.length, freed }, 'pages discarded');
    cb(null, { pagesFreed: freed });
  }

  private async sync(call: grpc.ServerUnaryCall<farmem.v1.ISyncRequest, farmem.v1.ISyncResponse>, cb: grpc.sendUnaryData<farmem.v1.ISyncResponse>): Promise<void> {
    const refused = this.refused(call, 'Sync');
    if (refused) return cb(refused);
    const region = call.request.region ?? '';
    const badRegion = regionIdError(region);
    if (badRegion !== null) return cb({ code: grpc.status.INVALID_ARGUMENT, details: badRegion });
    const pages = this.store.regions.get(region)?.pages.size ?? 0;
    try {
      await this.journal?.sync();
    } catch (e) {
      return cb({ code: grpc.status.INTERNAL, details: `sync region "${region}": ${e instanceof Error ? e.message : String(e)}` });
    }
    cb(null, { pagesDurable: this.journal === null ? 0 : pages });
  }

  private async stats(call: grpc.ServerUnaryCall<farmem.v1.IStatsRequest, farmem.v1.IStatsResponse>, cb: grpc.sendUnaryData<farmem.v1.IStatsResponse>): Promise<void> {
    const refused = this.refused(call, 'Stats');
    if (refused) return cb(refused);
    const m = this.metrics;
    const now = Date.now();
    const dt = Math.max(1e-3, (now - this.lastRates.at) / 1000);
    const readsPerSecond = (m.readsTotal - this.lastRates.reads) / dt;
    const writesPerSecond = (m.writesTotal - this.lastRates.writes) / dt;
    this.lastRates = { at: now, reads: m.readsTotal, writes: m.writesTotal };
    cb(null, {
      capacityBytes: this.store.capacityBytes, usedBytes: this.store.usedBytes,
      regions: [...this.store.regions].map(([region, r]) => ({ region, pages: r.pages.size, pageSize: r.pageSize })),
      readsPerSecond, writesPerSecond, durable: this.journal !== null, readsTotal: m.readsTotal, writesTotal: m.writesTotal,
      pagesReadTotal: m.pagesRead, pagesWrittenTotal: m.pagesWritten, metricsText: await m.registry.metrics(),
      instanceId: this.instanceId,
    });
  }

  private serveMetrics(listen: string): Promise<http.Server> {
    const i = listen.lastIndexOf(':');
    const srv = http.createServer((req, res) => {
      if (req.url !== '/metrics') {
        res.writeHead(404).end();
        return;
      }
      this.metrics.registry.metrics().then((text) => res.writeHead(200, { 'content-type': this.metrics.registry.contentType }).end(text), () => res.writeHead(500).end());
    });
    return new Promise((resolve, reject) => {
      srv.once('error', (e) => reject(new Error(`metrics listen ${listen}: ${e.message}`)));
      srv.listen(Number(listen.slice(i + 1)), listen.slice(0, i), () => resolve(srv));
    });
  }

  /** Bytes of pages stored now. */
  get usedBytes(): number {
    return this.store.usedBytes;
  }

  /**
   * Graceful stop: refuse new calls, stop reading requests, let queued responses flush (up to graceMs),
   * end open streams with UNAVAILABLE, then make the journal durable and close it.
   */
  async stop(graceMs = 5000): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    this.health.setStatus('', 'NOT_SERVING');
    this.health.setStatus('farmem.v1.MemoryServer', 'NOT_SERVING');
    const deadline = Date.now() + graceMs;
    for (const st of this.streams) st.call.pause();
    while ([...this.streams].some((s) => s.queuedBytes > 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    for (const st of [...this.streams]) {
      st.ended = true;
      st.call.emit('error', { code: grpc.status.UNAVAILABLE, details: 'memory server is shutting down' });
    }
    this.streams.clear();
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, Math.max(0, deadline - Date.now()));
      this.server.tryShutdown(() => {
        clearTimeout(t);
        resolve();
      });
    });
    await this.journal?.close();
    await new Promise<void>((r) => (this.metricsServer ? this.metricsServer.close(() => r()) : r()));
    this.opts.logger.info({ storedBytes: this.store.usedBytes, durable: this.journal !== null }, 'memory server stopped');
  }
}
