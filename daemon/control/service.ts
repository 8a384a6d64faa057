// The handlers of `farmem.v1.Daemon`: decode, find the caller, call the Daemon, encode; every
// refusal becomes a gRPC status whose details are the full message.
import * as grpc from '@grpc/grpc-js';
import { farmem } from '../../proto/gen/farmem';
import { RegionError, check, groupsOf, type Caller, type RegionSpec } from '../regions';
import { parsePeerTag } from './peer';
import type { Daemon, RegionView } from '../daemon';
import type { Progress, RegionStatsSnapshot } from '../runtime';
import { NO_PAGER_DETAIL } from '../runtime';
import type { DaemonMethod } from './definition';
import { pageMapWindow } from './pagemap';
import { tlsOrNull } from '../util/tls-files';

const v1 = farmem.v1;

const STATUS: Record<RegionError['kind'], grpc.status> = {
  invalid: grpc.status.INVALID_ARGUMENT,
  'not-found': grpc.status.NOT_FOUND,
  exists: grpc.status.ALREADY_EXISTS,
  denied: grpc.status.PERMISSION_DENIED,
  precondition: grpc.status.FAILED_PRECONDITION,
  unavailable: grpc.status.UNAVAILABLE,
};

function toStatus(e: unknown): Partial<grpc.StatusObject> {
  if (e instanceof RegionError) return { code: STATUS[e.kind], details: e.message };
  return { code: grpc.status.INTERNAL, details: `farmemd: ${(e as Error)?.message ?? String(e)}` };
}

export function callerOf(call: { getPeer(): string }): Caller {
  const cred = parsePeerTag(call.getPeer());
  if (cred === null) throw new RegionError('denied', `permission denied: the caller's credentials are unknown (peer ${call.getPeer()})`);
  return { ...cred, groups: cred.pid > 0 ? groupsOf(cred.pid) : [] };
}

const ON_UNAVAILABLE_TO_PB = { wait: v1.OnUnavailable.ON_UNAVAILABLE_WAIT, sigbus: v1.OnUnavailable.ON_UNAVAILABLE_SIGBUS } as const;

function onUnavailableFromPb(v: farmem.v1.OnUnavailable): string | null {
  switch (v) {
    case v1.OnUnavailable.ON_UNAVAILABLE_WAIT:
      return 'wait';
    case v1.OnUnavailable.ON_UNAVAILABLE_SIGBUS:
      return 'sigbus';
    case v1.OnUnavailable.ON_UNAVAILABLE_UNSPECIFIED:
      return null;
    default:
      throw new RegionError('invalid', `Expected wait or sigbus for on-unavailable but received ${String(v)}`);
  }
}

export function regionToPb(s: RegionSpec): farmem.v1.IRegion {
  return {
    id: s.id,
    name: s.name,
    sizeBytes: s.sizeBytes,
    pageSize: s.pageSize,
    residentBytes: s.residentBytes,
    servers: s.servers,
    replicas: s.replicas,
    prefetch: s.prefetch,
    warmOnAttach: s.warmOnAttach === true,
    onUnavailable: ON_UNAVAILABLE_TO_PB[s.onUnavailable],
    dirtyTracking: s.dirtyTracking,
    ownerUid: s.ownerUid,
    ownerGid: s.ownerGid,
    mode: s.mode,
    createdAt: s.createdAt,
  };
}

function statsToPb(st: RegionStatsSnapshot | null): farmem.v1.IRegionStats {
  if (st === null) return { pager: false, detail: NO_PAGER_DETAIL };
  return {
    pager: true,
    detail: '',
    residentPages: st.residentPages,
    dirtyPages: st.dirtyPages,
    faults: st.faults,
    cacheHits: st.cacheHits,
    cacheMisses: st.cacheMisses,
    prefetchAccuracy: st.prefetchAccuracy,
    prefetchCoverage: st.prefetchCoverage,
    prefetchedPages: st.prefetchedPages,
    evictedPages: st.evictedPages,
    writtenBackPages: st.writtenBackPages,
    writeBackStalled: st.writeBackStalled ?? false,
    writeBackStalls: st.writeBackStalls ?? 0,
    remoteBytesIn: st.remoteBytesIn,
    remoteBytesOut: st.remoteBytesOut,
    attachments: st.attachments,
    faultP50Us: st.faultP50Us,
    faultP99Us: st.faultP99Us,
    prefetchUsedPages: st.prefetchUsedPages ?? 0,
    prefetchWastedPages: st.prefetchWastedPages ?? 0,
    prefetchWastedBytes: st.prefetchWastedBytes ?? 0,
    prefetchPolicy: st.prefetchPolicy ?? '',
    dirtyTracking: st.dirtyTracking ?? '',
    dirtyTrackingNote: st.dirtyTrackingNote ?? '',
  };
}

function summaryToPb(v: RegionView): farmem.v1.IRegionSummary {
  return {
    region: regionToPb(v.spec),
    attachments: v.attachments,
    residentPages: v.stats?.residentPages ?? 0,
    dirtyPages: v.stats?.dirtyPages ?? 0,
    accessible: v.accessible,
  };
}

const progressToPb = (p: Progress, done: boolean): farmem.v1.IOperationProgress => ({ ...p, done });

type Unary = (call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) => void;
type Streaming = (call: grpc.ServerWritableStream<any, any>) => void;

export function daemonHandlers(d: Daemon): Record<DaemonMethod, Unary | Streaming> {
  const count = (m: string, code: grpc.status) => d.metrics.controlCalls.inc({ method: m, code: grpc.status[code] });

  function unary<Req>(name: DaemonMethod, fn: (caller: Caller, req: Req) => Promise<unknown> | unknown): Unary {
    return (call, cb) => {
      Promise.resolve()
        .then(() => fn(callerOf(call), call.request as Req))
        .then(
          (res) => {
            count(name, grpc.status.OK);
            cb(null, res);
          },
          (e: unknown) => {
            const st = toStatus(e);
            count(name, st.code!);
            if (st.code === grpc.status.INTERNAL) d.logger.error({ err: e, method: name }, 'control call failed');
            cb(st);
          },
        );
    };
  }

  function progressStream(name: DaemonMethod, fn: (caller: Caller, regionName: string, progress: (p: Progress) => void, signal: AbortSignal) => Promise<Progress>): Streaming {
    return (call) => {
      const ac = new AbortController();
      call.on('cancelled', () => ac.abort());
      Promise.resolve()
        .then(() => fn(callerOf(call), (call.request as { name: string }).name, (p) => call.write(progressToPb(p, false)), ac.signal))
        .then(
          (last) => {
            count(name, grpc.status.OK);
            call.write(progressToPb(last, true));
            call.end();
          },
          (e: unknown) => {
            const st = toStatus(e);
            count(name, st.code!);
            call.emit('error', Object.assign(new Error(st.details), st)); // grpc-js turns this into the call's status
          },
        );
    };
  }

  return {
    CreateRegion: unary<farmem.v1.CreateRegionRequest>('CreateRegion', async (caller, r) => {
      const spec = await d.createRegion(caller, {
        name: r.name,
        sizeBytes: Number(r.sizeBytes),
        pageSize: r.pageSize ?? null,
        residentBytes: r.residentBytes != null ? Number(r.residentBytes) : null,
        servers: r.servers ?? [],
        replicas: r.replicas ?? null,
        prefetch: r.prefetch || null,
        onUnavailable: onUnavailableFromPb(r.onUnavailable),
        dirtyTracking: r.dirtyTracking || null,
        ownerUid: r.ownerUid ?? null,
        ownerGid: r.ownerGid ?? null,
        mode: r.mode ?? null,
        warmOnAttach: r.warmOnAttach ?? null,
      });
      return v1.CreateRegionResponse.create({ region: regionToPb(spec) });
    }),
    DeleteRegion: unary<farmem.v1.RegionDeleteRequest>('DeleteRegion', async (caller, r) => {
      const { spec, pagesFreed } = await d.deleteRegion(caller, r.name);
      return v1.RegionDeleteResponse.create({ region: regionToPb(spec), pagesFreed });
    }),
    ListRegions: unary('ListRegions', (caller) => v1.ListRegionsResponse.create({ regions: d.listRegions(caller).map(summaryToPb) })),
    ShowRegion: unary<farmem.v1.ShowRegionRequest>('ShowRegion', (caller, r) => {
      const v = d.showRegion(caller, r.name);
      return v1.ShowRegionResponse.create({ region: regionToPb(v.spec), stats: statsToPb(v.stats) });
    }),
    UpdateRegion: unary<farmem.v1.UpdateRegionRequest>('UpdateRegion', async (caller, r) => {
      const patch: { residentBytes?: number; mode?: number; prefetch?: string; warmOnAttach?: boolean } = {};
      if (r.residentBytes != null) patch.residentBytes = Number(r.residentBytes);
      if (r.mode != null) patch.mode = r.mode;
      if (r.prefetch) patch.prefetch = r.prefetch;
      if (r.warmOnAttach != null) patch.warmOnAttach = r.warmOnAttach;
      return v1.UpdateRegionResponse.create({ region: regionToPb(await d.updateRegion(caller, r.name, patch)) });
    }),
    SyncRegion: progressStream('SyncRegion', (c, n, p, s) => d.syncRegion(c, n, p, s)),
    EvictRegion: progressStream('EvictRegion', (c, n, p, s) => d.evictRegion(c, n, p, s)),
    WarmRegion: progressStream('WarmRegion', async (c, n, p, s) => {
      const spec = d.registry.require(n, 'warm');
      check(spec, c, 'use', 'warm');
      if (d.runtime.warm === undefined) throw new RegionError('precondition', `warm region "${spec.name}": ${NO_PAGER_DETAIL}, so it has no recorded run to replay`);
      return d.runtime.warm(spec, p, s);
    }),
    DaemonStats: unary('DaemonStats', () => {
      const s = d.status();
      const rt = s.runtime;
      return v1.DaemonStatsResponse.create({
        version: s.version,
        pid: s.pid,
        uptimeSeconds: s.uptimeSeconds,
        state: s.state,
        socket: s.socket,
        attachSocket: s.attachSocket,
        stateDir: s.stateDir,
        regions: s.regions,
        pager: s.pager,
        pagerDetail: s.pagerDetail,
        residentCapBytes: s.residentCapBytes,
        ...(rt === null
          ? {}
          : {
              attachments: rt.attachments,
              cacheCapacityBytes: rt.cacheCapacityBytes,
              cacheBytes: rt.cacheBytes,
              cacheHits: rt.cacheHits,
              cacheMisses: rt.cacheMisses,
              residentBytes: rt.residentBytes,
              faults: rt.faults,
              remoteBytesIn: rt.remoteBytesIn,
              remoteBytesOut: rt.remoteBytesOut,
              dirtyPages: rt.dirtyPages,
              evictions: rt.evictions,
              writebacks: rt.writebacks,
            }),
      });
    }),
    ListServers: unary('ListServers', async () => v1.ListServersResponse.create({ servers: await d.listServers() })),
    AddServer: unary<farmem.v1.AddServerRequest>('AddServer', async (caller, r) =>
      v1.AddServerResponse.create({
        server: await d.addMemoryServer(caller, {
          address: r.address,
          weight: r.weight === 0 ? 1 : r.weight,
          tokenFile: r.tokenFile === '' ? null : r.tokenFile,
          tls: tlsOrNull({ ca: r.caFile || null, cert: r.certFile || null, key: r.keyFile || null, serverName: r.serverName || null }),
        }),
      }),
    ),
    RemoveServer: unary<farmem.v1.RemoveServerRequest>('RemoveServer', async (caller, r) => v1.RemoveServerResponse.create({ server: await d.removeMemoryServer(caller, r.address) })),
    RegionPageMap: unary<farmem.v1.RegionPageMapRequest>('RegionPageMap', (caller, r) => {
      const { spec, map, first, end } = pageMapWindow(d, caller, r);
      return v1.RegionPageMapResponse.create({
        region: regionToPb(spec),
        pageSize: map.pageSize,
        pages: map.pages,
        firstPage: first,
        state: map.state.subarray(first, end),
        // protobufjs encodes any array-like: no copy of the window.
        faults: map.faults.subarray(first, end) as unknown as number[],
      });
    }),
  };
}
