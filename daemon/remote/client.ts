// MemoryServerClient: the PageStore of one memory server. Reads and writes are pipelined over a few
// long-lived Pages streams (requests carry ids; responses may come in any order), bounded by the bytes
// in flight, each with its own deadline. A broken stream fails its requests as 'unavailable' and is
// reopened on next use after an exponential backoff. A response that does not match its request
// (wrong page set, wrong byte count) is 'corrupt' and never returned as data.
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import type pino from 'pino';
import { farmem } from '../../proto/gen/farmem';
import { kindOf } from './errors';
import { healthCheckMethod, type HealthStatus } from './health';
import { Code, H2Connection, H2PageCall, type StreamEnd } from './h2pages';
import { PageViews } from './page-views';
import { installClientZeroCopy } from './preframe';
import { memoryServerService, messageOverhead } from './service';
import { PageStoreError, type PageStore, type ReadOptions, type ReadResult, type RegionRef, type WriteOptions } from './types';
import { encodeRequestFramed, encodeRequestSplit, toNum, type PageRequestMsg, type PageResponseMsg } from './wire';

/** Stats of one memory server, numbers as numbers. */
export interface MemoryServerStats {
  capacityBytes: number;
  usedBytes: number;
  durable: boolean;
  regions: { region: string; pages: number; pageSize: number }[];
  readsPerSecond: number;
  writesPerSecond: number;
  readsTotal: number;
  writesTotal: number;
  pagesReadTotal: number;
  pagesWrittenTotal: number;
  metricsText: string;
  /** Random per server start ('' from servers older than the field). */
  instanceId: string;
}

export interface ClientTls {
  /**
   * PEM files (paths): the CA that signed the server's certificate (null: the system roots), and this
   * client's certificate and key (null: none, for servers that ask for no client certificate).
   */
  ca: string | null;
  cert: string | null;
  key: string | null;
  /** Name to check the server certificate against, when it differs from the address's host. */
  serverName?: string;
}

export interface MemoryServerClientOptions {
  /** host:port or unix:/path. */
  address: string;
  tls?: ClientTls | null;
  token?: string | null;
  /** Pages streams to spread requests over (default 2), on this many connections (default 1). */
  streams?: number;
  connections?: number;
  /** Page bytes of requests in flight at once (default 64 MiB); further requests wait. */
  maxInFlightBytes?: number;
  /** Default deadline of a request (default 10 s). */
  deadlineMs?: number;
  /** Reopen backoff after a stream fails: first delay and cap (default 50 ms, 5 s). */
  backoffInitialMs?: number;
  backoffMaxMs?: number;
  maxMessageBytes?: number;
  windowBytes?: number;
  logger?: pino.Logger | null;
  /**
   * What carries the Pages streams: 'grpc-js' (default) through a grpc-js call, or 'h2', which
   * speaks the same gRPC protocol over node:http2 itself (h2pages.ts: cheaper per message, which is
   * most of a remote miss). The project's rule is grpc-js for every protocol, so 'h2' is an opt-in
   * experiment: FARMEM_PAGES_TRANSPORT=h2 makes it the default (and gives the benches their A/B).
   * Unary calls and health checks always go through grpc-js.
   */
  pagesTransport?: 'h2' | 'grpc-js';
}

interface Pending {
  op: 'read' | 'write';
  region: RegionRef;
  pages: readonly number[];
  cost: number;
  stream: PageStream;
  timer: NodeJS.Timeout;
  resolve(r: PageResponseMsg): void;
  reject(e: PageStoreError): void;
}

/** A Pages call, whichever transport carries it. */
interface PageCall {
  write(m: PageRequestMsg): void;
  cancel(): void;
}

interface PageStream {
  call: PageCall;
  pending: Map<number, Pending>;
  broken: boolean;
}

const ServiceClient = grpc.makeGenericClientConstructor(memoryServerService(), 'farmem.v1.MemoryServer');

export class MemoryServerClient implements PageStore {
  readonly address: string;
  private readonly clients: grpc.Client[] = [];
  private readonly connect: () => grpc.Client[];
  /** The Pages streams' own HTTP/2 connections ('h2' transport; empty with 'grpc-js'). */
  private h2: H2Connection[] = [];
  private readonly connectH2: () => H2Connection[];
  private readonly streams: (PageStream | null)[];
  private readonly metadata = new grpc.Metadata();
  private readonly maxInFlight: number;
  private readonly maxMessageBytes: number;
  /** Writes' page bytes go to the socket from the caller's buffer (grpc-js patched, see preframe.ts). */
  private readonly zeroCopy = installClientZeroCopy();
  private readonly deadlineMs: number;
  private readonly backoffInitialMs: number;
  private readonly backoffMaxMs: number;
  private readonly logger: pino.Logger | null;
  private inFlightBytes = 0;
  private waiters: { cost: number; go(): void }[] = [];
  private nextId = 1;
  private rr = 0;
  private failures = 0;
  private retryAt = 0;
  private closed = false;
  /** The server answered UNIMPLEMENTED to Discard. */
  private noDiscard = false;

  constructor(opts: MemoryServerClientOptions) {
    this.address = opts.address;
    this.maxInFlight = opts.maxInFlightBytes ?? 64 * 1024 * 1024;
    this.deadlineMs = opts.deadlineMs ?? 10_000;
    this.backoffInitialMs = opts.backoffInitialMs ?? 50;
    this.backoffMaxMs = opts.backoffMaxMs ?? 5000;
    this.logger = opts.logger ?? null;
    if (opts.token) this.metadata.set('authorization', `Bearer ${opts.token}`);
    const maxMsg = opts.maxMessageBytes ?? 64 * 1024 * 1024;
    this.maxMessageBytes = maxMsg;
    const window = opts.windowBytes ?? 16 * 1024 * 1024;
    const channelOptions: grpc.ChannelOptions = {
      'grpc.max_receive_message_length': maxMsg,
      'grpc.max_send_message_length': maxMsg,
      'grpc-node.flow_control_window': window,
      'grpc-node.max_session_memory': Number.MAX_SAFE_INTEGER,
      'grpc.use_local_subchannel_pool': 1,
      'grpc.initial_reconnect_backoff_ms': this.backoffInitialMs,
      'grpc.max_reconnect_backoff_ms': this.backoffMaxMs,
      'grpc.keepalive_time_ms': 30_000,
      // Retries are ours (typed errors, failover): grpc-js's retry layer only buffers and copies.
      'grpc.enable_retries': 0,
    };
    if (opts.tls?.serverName) channelOptions['grpc.ssl_target_name_override'] = opts.tls.serverName;
    // Each PEM file read once, for grpc-js and (with 'h2') the page streams' own connections.
    const pem = (f: string | null | undefined) => (f == null ? null : fs.readFileSync(f));
    const [ca, cert, key] = [pem(opts.tls?.ca), pem(opts.tls?.cert), pem(opts.tls?.key)];
    const creds = opts.tls ? grpc.credentials.createSsl(ca, key, cert) : grpc.credentials.createInsecure();
    this.connect = () => Array.from({ length: Math.max(1, opts.connections ?? 1) }, () => new ServiceClient(opts.address, creds, channelOptions));
    this.clients.push(...this.connect());
    const transport = opts.pagesTransport ?? (process.env.FARMEM_PAGES_TRANSPORT === 'h2' ? 'h2' : 'grpc-js');
    const h2Tls = transport === 'h2' && opts.tls
      ? {
          ...(ca !== null ? { ca } : {}),
          ...(cert !== null && key !== null ? { cert, key } : {}),
          ...(opts.tls.serverName ? { serverName: opts.tls.serverName } : {}),
        }
      : null;
    this.connectH2 = () => transport === 'h2'
      ? Array.from({ length: Math.max(1, opts.connections ?? 1) }, () => new H2Connection({ address: opts.address, tls: h2Tls, windowBytes: window }))
      : [];
    this.h2 = this.connectH2();
    this.streams = new Array<PageStream | null>(Math.max(1, opts.streams ?? 2)).fill(null);
  }

  async read(region: RegionRef, pages: readonly number[], opts?: ReadOptions): Promise<ReadResult> {
    const r = await this.request('read', region, pages, null, opts?.deadlineMs);
    return this.verifyRead(region, pages, r, opts?.versions === true);
  }

  async write(region: RegionRef, pages: readonly number[], data: Buffer, opts?: WriteOptions): Promise<void> {
    const versions = opts?.versions ?? null;
    if (versions !== null && versions.length > 1 && versions.length !== pages.length) {
      throw new PageStoreError('invalid', `Expected no version, one, or one per page (${pages.length}) for versions but received ${versions.length}`, this.address);
    }
    if (data.length !== pages.length * region.pageSize) {
      throw new PageStoreError('invalid', `Expected ${pages.length * region.pageSize} bytes (${pages.length} pages of ${region.pageSize}) for data but received ${data.length}`, this.address);
    }
    // Checked here, not by grpc-js (which sees only the message's head when the page bytes are its
    // uncopied tail, and would fail the whole stream instead of this request).
    if (data.length + messageOverhead(pages.length) > this.maxMessageBytes) {
      throw new PageStoreError('invalid', `Expected at most ${this.maxMessageBytes - messageOverhead(pages.length)} bytes (max message ${this.maxMessageBytes}) for data but received ${data.length}`, this.address);
    }
    const r = await this.request('write', region, pages, data, opts?.deadlineMs, versions);
    // Superseded pages are counted in written: the server holds a newer version of them (not a failure).
    if (r.written !== pages.length) {
      throw this.corrupt('write', region, pages, `server acknowledged ${r.written} pages, expected ${pages.length}`);
    }
  }

  async sync(region: RegionRef): Promise<void> {
    await this.unary<farmem.v1.ISyncRequest, farmem.v1.ISyncResponse>('Sync', { region: region.id }, `sync region "${region.id}"`);
  }

  async deleteRegion(regionId: string): Promise<void> {
    try {
      await this.unary<farmem.v1.IDeleteRegionRequest, farmem.v1.IDeleteRegionResponse>('DeleteRegion', { region: regionId }, `delete region "${regionId}"`);
    } catch (e) {
      // Nothing stored there: the region is as deleted as it gets.
      if (e instanceof PageStoreError && (e as PageStoreError & { code?: number }).code === grpc.status.NOT_FOUND) return;
      throw e;
    }
  }

  /**
   * Frees pages of a region on this server (those it lacks are skipped); resolves with how many it
   * freed. A server older than Discard frees nothing (0, said once in the log): it keeps the copies.
   */
  async discard(region: RegionRef, pages: readonly number[], deadlineMs?: number): Promise<number> {
    if (this.noDiscard) return 0;
    try {
      const r = await this.unary<farmem.v1.IDiscardRequest, farmem.v1.DiscardResponse>('Discard', { region: region.id, pages: pages as number[] }, `discard ${pages.length} page${pages.length === 1 ? '' : 's'} of region "${region.id}"`, deadlineMs);
      return toNum(r.pagesFreed);
    } catch (e) {
      if (!(e instanceof PageStoreError && (e as PageStoreError & { code?: number }).code === grpc.status.UNIMPLEMENTED)) throw e;
      this.noDiscard = true;
      this.logger?.warn({ server: this.address }, 'memory server does not implement Discard (older version): old copies of moved groups stay on it');
      return 0;
    }
  }

  /** The server's Stats (capacity, usage, per-region pages, rates). */
  async stats(deadlineMs?: number): Promise<MemoryServerStats> {
    const s = await this.unary<farmem.v1.IStatsRequest, farmem.v1.StatsResponse>('Stats', {}, 'stats', deadlineMs);
    return {
      capacityBytes: toNum(s.capacityBytes), usedBytes: toNum(s.usedBytes), durable: s.durable,
      regions: s.regions.map((r) => ({ region: r.region ?? '', pages: toNum(r.pages), pageSize: r.pageSize ?? 0 })),
      readsPerSecond: s.readsPerSecond, writesPerSecond: s.writesPerSecond, readsTotal: toNum(s.readsTotal), writesTotal: toNum(s.writesTotal),
      pagesReadTotal: toNum(s.pagesReadTotal), pagesWrittenTotal: toNum(s.pagesWrittenTotal), metricsText: s.metricsText,
      instanceId: s.instanceId,
    };
  }

  /**
   * Drops every connection and opens new ones. A partitioned server leaves its TCP connection
   * silently alive (no RST); after the partition heals, that connection resumes only at TCP's next
   * retransmission, which backs off to tens of seconds. A fresh connection is back within the
   * reconnect backoff. Requests on the old connections fail as 'unavailable'.
   */
  resetConnections(): void {
    if (this.closed) return;
    const old = this.clients.splice(0, this.clients.length, ...this.connect());
    const oldH2 = this.h2;
    this.h2 = this.connectH2();
    for (const s of this.streams) if (s) this.breakStream(s, new PageStoreError('unavailable', `page stream to ${this.address}: connection reset after failed health checks`, this.address));
    this.streams.fill(null);
    for (const c of old) c.close();
    for (const c of oldH2) c.close();
  }

  /**
   * The standard gRPC health check (service '' = the whole server). An answer ends the page
   * streams' reopen backoff: the server is reachable now, and a fault should not wait out a timer
   * grown while it was away.
   */
  health(service = '', deadlineMs = 2000): Promise<HealthStatus> {
    return new Promise((resolve, reject) => {
      this.clients[0]!.makeUnaryRequest(healthCheckMethod.path, healthCheckMethod.requestSerialize, healthCheckMethod.responseDeserialize, service,
        this.metadata.clone(), { deadline: Date.now() + deadlineMs }, (err, res) => {
          if (err) return reject(this.statusError('health check', err));
          if (res === 'SERVING') this.retryAt = 0;
          resolve(res!);
        });
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (let i = 0; i < this.streams.length; i++) {
      const s = this.streams[i];
      if (s) this.breakStream(s, new PageStoreError('unavailable', `client for ${this.address} closed`, this.address));
    }
    for (const w of this.waiters.splice(0)) w.go();
    for (const c of this.clients) c.close();
    for (const c of this.h2) c.close();
  }

  // --- requests -----------------------------------------------------------------------------------

  private async request(op: 'read' | 'write', region: RegionRef, pages: readonly number[], data: Buffer | null, deadlineMs?: number, versions: readonly number[] | null = null): Promise<PageResponseMsg> {
    if (this.closed) throw new PageStoreError('unavailable', `${op} region "${region.id}" on ${this.address}: client closed`, this.address);
    const deadline = Date.now() + (deadlineMs ?? this.deadlineMs);
    const cost = Math.max(1, pages.length * region.pageSize);
    await this.acquire(cost, op, region, pages, deadline);
    try {
      const stream = await this.pickStream(op, region, pages, deadline);
      return await new Promise<PageResponseMsg>((resolve, reject) => {
        const requestId = this.nextId++;
        const timer = setTimeout(() => {
          stream.pending.delete(requestId);
          reject(new PageStoreError('deadline', `${this.what(op, region, pages)}: deadline of ${deadlineMs ?? this.deadlineMs} ms exceeded`, this.address));
        }, Math.max(0, deadline - Date.now()));
        stream.pending.set(requestId, { op, region, pages, cost, stream, timer, resolve, reject });
        stream.call.write({ requestId, region: region.id, pageSize: region.pageSize, op, pages: pages as number[], data, versions, malformed: null });
      });
    } finally {
      this.releaseBytes(cost);
    }
  }

  private what(op: string, region: RegionRef, pages: readonly number[]): string {
    return `${op} ${pages.length} page${pages.length === 1 ? '' : 's'} of region "${region.id}" on ${this.address}`;
  }

  private acquire(cost: number, op: string, region: RegionRef, pages: readonly number[], deadline: number): Promise<void> {
    if (this.inFlightBytes === 0 || (this.waiters.length === 0 && this.inFlightBytes + cost <= this.maxInFlight)) {
      this.inFlightBytes += cost;
      return Promise.resolve();
    }
    return new Promise((resolve, reject) => {
      const w = {
        cost,
        go: () => {
          clearTimeout(t);
          if (this.closed) return reject(new PageStoreError('unavailable', `${this.what(op, region as RegionRef, pages)}: client closed`, this.address));
          this.inFlightBytes += cost;
          resolve();
        },
      };
      const t = setTimeout(() => {
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new PageStoreError('deadline', `${this.what(op, region, pages)}: deadline exceeded waiting for in-flight bytes`, this.address));
      }, Math.max(0, deadline - Date.now()));
      this.waiters.push(w);
    });
  }

  private releaseBytes(cost: number): void {
    this.inFlightBytes -= cost;
    while (this.waiters.length > 0 && (this.inFlightBytes === 0 || this.inFlightBytes + this.waiters[0]!.cost <= this.maxInFlight)) {
      this.waiters.shift()!.go();
    }
  }

  private async pickStream(op: string, region: RegionRef, pages: readonly number[], deadline: number): Promise<PageStream> {
    const i = this.rr++ % this.streams.length;
    const s = this.streams[i];
    if (s && !s.broken) return s;
    const wait = this.retryAt - Date.now();
    if (wait > 0) {
      if (Date.now() + wait > deadline) {
        throw new PageStoreError('unavailable', `${this.what(op, region, pages)}: server unavailable (next reconnect in ${wait} ms, after the deadline)`, this.address);
      }
      await new Promise((r) => setTimeout(r, wait));
      const again = this.streams[i];
      if (again && !again.broken) return again;
    }
    if (this.closed) throw new PageStoreError('unavailable', `${this.what(op, region, pages)}: client closed`, this.address);
    return this.openStream(i);
  }

  private openStream(i: number): PageStream {
    const m = memoryServerService().Pages;
    const s: PageStream = { call: { write: () => undefined, cancel: () => undefined }, pending: new Map(), broken: false };
    this.streams[i] = s;
    if (this.h2.length > 0) {
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(this.metadata.getMap())) if (typeof v === 'string') headers[k] = v;
      let call: H2PageCall;
      try {
        call = this.openH2(i, m.path, headers, s);
      } catch (e) {
        this.streams[i] = null;
        throw new PageStoreError('unavailable', `page stream to ${this.address}: ${e instanceof Error ? e.message : String(e)}`, this.address);
      }
      s.call = {
        write: (req) => {
          const framed = encodeRequestFramed(req);
          call.write(framed, req.op === 'write' && req.data !== null && req.data.length > 0 ? req.data : null);
        },
        cancel: () => call.cancel(),
      };
      return s;
    }
    const client = this.clients[i % this.clients.length]!;
    const serialize = this.zeroCopy ? encodeRequestSplit : m.requestSerialize;
    const call = client.makeBidiStreamRequest(m.path, serialize, m.responseDeserialize, this.metadata.clone(), {});
    s.call = { write: (req) => call.write(req), cancel: () => call.cancel() };
    call.on('data', (r: PageResponseMsg) => this.onResponse(s, r));
    call.on('error', (e: grpc.ServiceError) => this.breakStream(s, this.statusError('page stream', e)));
    call.on('end', () => this.breakStream(s, new PageStoreError('unavailable', `page stream to ${this.address} ended by the server`, this.address)));
    return s;
  }

  /** An 'h2' Pages call on stream slot i's connection, its messages and its end routed to s. */
  private openH2(i: number, path: string, headers: Record<string, string>, s: PageStream): H2PageCall {
    const deserialize = memoryServerService().Pages.responseDeserialize;
    const onMessage = (b: Buffer): void => {
      let r: PageResponseMsg;
      try {
        r = deserialize(b);
      } catch (e) {
        this.breakStream(s, new PageStoreError('corrupt', `page stream to ${this.address}: malformed PageResponse: ${e instanceof Error ? e.message : String(e)}`, this.address));
        return;
      }
      this.onResponse(s, r);
    };
    const onEnd = (end: StreamEnd): void => {
      if (end.code === Code.OK) this.breakStream(s, new PageStoreError('unavailable', `page stream to ${this.address} ended by the server`, this.address));
      else this.breakStream(s, this.statusError('page stream', { code: end.code, details: end.details } as grpc.ServiceError));
    };
    return new H2PageCall(this.h2[i % this.h2.length]!, path, headers, this.maxMessageBytes, onMessage, onEnd);
  }

  private onResponse(s: PageStream, r: PageResponseMsg): void {
    if (r.malformed !== null) {
      this.breakStream(s, new PageStoreError('corrupt', `page stream to ${this.address}: malformed PageResponse: ${r.malformed}`, this.address));
      return;
    }
    const p = s.pending.get(r.requestId);
    if (p === undefined) return; // its deadline passed
    s.pending.delete(r.requestId);
    clearTimeout(p.timer);
    this.failures = 0;
    if (r.code !== 0) {
      const e = new PageStoreError(kindOf(r.code), `${this.what(p.op, p.region, p.pages)}: ${r.message}`, this.address);
      (e as PageStoreError & { code?: number }).code = r.code;
      p.reject(e);
    } else p.resolve(r);
  }

  private breakStream(s: PageStream, e: PageStoreError): void {
    if (s.broken) return;
    s.broken = true;
    const idx = this.streams.indexOf(s);
    if (idx >= 0) this.streams[idx] = null;
    if (!this.closed) {
      this.failures++;
      const delay = Math.min(this.backoffMaxMs, this.backoffInitialMs * 2 ** Math.min(20, this.failures - 1));
      this.retryAt = Date.now() + delay * (0.8 + 0.4 * Math.random());
      this.logger?.warn({ server: this.address, error: e.message, retryInMs: delay }, 'page stream failed');
    }
    for (const p of s.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new PageStoreError(e.kind, `${this.what(p.op, p.region, p.pages)}: ${e.message}`, this.address));
    }
    s.pending.clear();
    try {
      s.call.cancel();
    } catch {
      /* already finished */
    }
  }

  private verifyRead(region: RegionRef, pages: readonly number[], r: PageResponseMsg, withVersions: boolean): ReadResult {
    const ps = region.pageSize;
    const dataLen = r.data === null ? 0 : r.data.length;
    if (r.present.length + r.absent.length !== pages.length) {
      throw this.corrupt('read', region, pages, `answered ${r.present.length} present + ${r.absent.length} absent pages for ${pages.length} asked`);
    }
    if (dataLen !== r.present.length * ps) {
      throw this.corrupt('read', region, pages, `sent ${dataLen} bytes for ${r.present.length} pages of ${ps}`);
    }
    const rv = r.versions ?? null;
    if (rv !== null && rv.length !== r.present.length) {
      throw this.corrupt('read', region, pages, `sent ${rv.length} versions for ${r.present.length} present pages`);
    }
    let present: Map<number, Buffer> = new Map();
    // The usual answer: every page present, in the order asked. Then every page was asked for, and
    // none came twice unless one was asked twice (the map comes out smaller: checked below as usual).
    let inOrder = r.absent.length === 0 && r.present.length === pages.length;
    let consecutive = inOrder;
    for (let i = 0; inOrder && i < pages.length; i++) {
      inOrder = r.present[i] === pages[i];
      if (i > 0 && pages[i] !== pages[i - 1]! + 1) consecutive = false;
    }
    if (inOrder && consecutive && pages.length > 0) {
      // A sequential read (the prefetcher's): its views are made when asked for.
      present = new PageViews(pages[0]!, pages.length, r.data!, ps);
    } else if (inOrder) {
      for (let i = 0; i < pages.length; i++) present.set(pages[i]!, r.data!.subarray(i * ps, (i + 1) * ps));
      if (present.size !== pages.length) present = new Map();
    }
    if (present.size !== pages.length) {
      const asked = new Set(pages);
      for (let i = 0; i < r.present.length; i++) {
        const p = r.present[i]!;
        if (!asked.has(p) || present.has(p)) throw this.corrupt('read', region, pages, `answered page ${p}, which was not asked or came twice`);
        present.set(p, r.data!.subarray(i * ps, (i + 1) * ps));
      }
      for (const p of r.absent) {
        if (!asked.has(p) || present.has(p)) throw this.corrupt('read', region, pages, `answered page ${p} absent, which was not asked or came twice`);
      }
    }
    if (!withVersions) return { present, absent: r.absent };
    const versions = new Map<number, number>();
    for (let i = 0; i < r.present.length; i++) versions.set(r.present[i]!, rv === null ? 0 : rv[i]!);
    return { present, absent: r.absent, versions };
  }

  private corrupt(op: string, region: RegionRef, pages: readonly number[], why: string): PageStoreError {
    this.logger?.error({ server: this.address, region: region.id, why }, 'corrupt response from memory server');
    return new PageStoreError('corrupt', `${this.what(op, region, pages)}: corrupt response: ${why}`, this.address);
  }

  private statusError(what: string, e: grpc.ServiceError): PageStoreError {
    // grpc-js 1.14 ends a call with code and details undefined when one of its filters rejects with a
    // plain Error (a compressed message without a negotiated encoding does): the reason is lost there.
    const known = typeof e.code === 'number';
    const code = known ? e.code : grpc.status.INTERNAL;
    const details = known ? e.details : 'the call ended without a gRPC status (grpc-js dropped the reason; one known cause: a compressed message the client did not negotiate)';
    const err = new PageStoreError(kindOf(code), `${what} on ${this.address}: ${grpc.status[code] ?? code}: ${details}`, this.address);
    (err as PageStoreError & { code?: number }).code = code;
    return err;
  }

  private unary<Req, Res>(name: 'Sync' | 'DeleteRegion' | 'Stats' | 'Discard', req: Req, what: string, deadlineMs?: number): Promise<Res> {
    const m = memoryServerService()[name] as unknown as grpc.MethodDefinition<Req, Res>;
    return new Promise((resolve, reject) => {
      this.clients[0]!.makeUnaryRequest(m.path, m.requestSerialize, m.responseDeserialize, req, this.metadata.clone(),
        { deadline: Date.now() + (deadlineMs ?? this.deadlineMs) }, (err, res) => (err ? reject(this.statusError(what, err)) : resolve(res!)));
    });
  }
}
