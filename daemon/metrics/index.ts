// Prometheus metrics of farmemd (prom-client). Every metric the issues name is registered here, in
// one registry. Parts that count on a hot path keep plain counters and register a collector
// (addCollector) that copies them into the metrics at scrape time; the fault-service histogram is
// observed directly. /metrics is served over HTTP on the configured address.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import client from 'prom-client';
import type { PoolView } from '../servers';
import { splitHostPort } from '../util/address';
import type { Logger } from '../log';

export interface DaemonMetrics {
  registry: client.Registry;
  /** Faults served, by kind: cache_hit (native, no JS), remote (fetched), zero (never written), wp (first write). */
  faults: client.Counter<'kind'>;
  /** Time from the pager (JS thread) receiving a missed fault to its install, by kind (remote, zero, cache). */
  faultSeconds: client.Histogram<'kind'>;
  cacheBytes: client.Gauge;
  cacheCapacityBytes: client.Gauge;
  /** hits / (hits + misses) of the daemon page cache since start. */
  cacheHitRatio: client.Gauge;
  remoteBytes: client.Counter<'direction'>;
  attachments: client.Gauge;
  regions: client.Gauge;
  residentBytes: client.Gauge<'region'>;
  residentPages: client.Gauge<'region'>;
  dirtyPages: client.Gauge<'region'>;
  evictions: client.Counter;
  writebackPages: client.Counter;
  /** Times eviction could not make progress (a memory server slow or full). */
  evictionStalls: client.Counter<'reason'>;
  /** 1 when the memory server answered its last probe. */
  serverUp: client.Gauge<'server'>;
  controlCalls: client.Counter<'method' | 'code'>;
  /** The pager's pools, read at each scrape for the per-server pool state and repair progress. */
  pools: () => readonly PoolView[];
  /** Runs fn before every scrape of the metrics it feeds (it must be cheap and synchronous). */
  addCollector(fn: () => void): void;
}

/** Gauges computed at scrape from the pools (never on the fault path). */
function poolGauges(m: DaemonMetrics, r: client.Registry[]): void {
  const states = ['up', 'suspect', 'down'] as const;
  const members = () => {
    const out = new Map<string, { state: string; latencyMs: number | null; failures: number }>();
    const rank = { up: 0, suspect: 1, down: 2 } as Record<string, number>;
    for (const p of m.pools()) {
      for (const s of p.servers()) {
        const seen = out.get(s.id);
        if (seen === undefined || rank[s.state]! > rank[seen.state]!) out.set(s.id, { state: s.state, latencyMs: s.latencyMs, failures: s.failures });
      }
    }
    return out;
  };
  const repair = () => {
    const t = { underReplicatedGroups: 0, repairedGroups: 0, copiedBytes: 0, restartsDetected: 0, pendingGroups: 0, discardedPages: 0, discardsPending: 0 };
    for (const p of m.pools()) {
      const s = p.repairStatus();
      t.underReplicatedGroups += s.underReplicatedGroups;
      t.repairedGroups += s.repairedGroups;
      t.copiedBytes += s.copiedBytes;
      t.restartsDetected += s.restartsDetected;
      t.discardedPages += s.discardedPages;
      t.discardsPending += s.discardsPending;
      t.pendingGroups += s.pendingGroups;
    }
    return t;
  };
  new client.Gauge({
    name: 'farmem_pool_server_state', help: 'Pool state of a memory server: 1 for its current state (up, suspect, down), 0 for the others', labelNames: ['server', 'state'], registers: r,
    collect() {
      this.reset();
      for (const [id, s] of members()) for (const st of states) this.set({ server: id, state: st }, s.state === st ? 1 : 0);
    },
  });
  new client.Gauge({
    name: 'farmem_pool_server_latency_seconds', help: 'Recent request latency of a memory server (moving average)', labelNames: ['server'], registers: r,
    collect() {
      this.reset();
      for (const [id, s] of members()) if (s.latencyMs !== null) this.set({ server: id }, s.latencyMs / 1000);
    },
  });
  new client.Gauge({
    name: 'farmem_pool_server_failures', help: 'Consecutive failed requests to a memory server', labelNames: ['server'], registers: r,
    collect() {
      this.reset();
      for (const [id, s] of members()) this.set({ server: id }, s.failures);
    },
  });
  const gauge = (name: string, help: string, key: keyof ReturnType<typeof repair>) =>
    new client.Gauge({ name, help, registers: r, collect() { this.set(repair()[key]); } });
  gauge('farmem_repair_under_replicated_groups', 'Page groups below their replica count right now', 'underReplicatedGroups');
  gauge('farmem_repair_groups_total', 'Page groups re-replicated by repair since start', 'repairedGroups');
  gauge('farmem_repair_pending_groups', 'Page groups the running repair pass still has to place (moves after a server is added or removed)', 'pendingGroups');
  gauge('farmem_repair_copied_bytes_total', 'Bytes copied between memory servers by repair since start', 'copiedBytes');
  gauge('farmem_repair_discarded_pages_total', 'Pages freed on memory servers the placement no longer names for them (old copies of moved groups, pages of failed writes)', 'discardedPages');
  gauge('farmem_repair_discards_pending_groups', 'Moved groups whose old copy is still to be freed (its server unreachable)', 'discardsPending');
  gauge('farmem_pool_server_restarts_total', 'Memory server restarts (a new instance id) seen by the pools', 'restartsDetected');
}

export function createMetrics(): DaemonMetrics {
  const registry = new client.Registry();
  client.collectDefaultMetrics({ register: registry });
  const r = [registry];
  // Every metric fed by collectors runs all of them on scrape (prom-client calls collect per metric,
  // in registration order; collectors only add deltas and set gauges, so running them again is harmless).
  const collectors: (() => void)[] = [];
  const collect = (): void => {
    for (const c of collectors) c();
  };
  const m: DaemonMetrics = {
    addCollector: (fn) => void collectors.push(fn),
    pools: () => [],
    registry,
    faults: new client.Counter({
      name: 'farmem_faults_total',
      help: 'Page faults served, by kind: cache_hit (from the daemon page cache), remote (fetched from a memory server), zero (a page never written: zeros), wp (first write to a clean resident page)',
      labelNames: ['kind'],
      registers: r,
      collect,
    }),
    faultSeconds: new client.Histogram({
      name: 'farmem_fault_service_seconds',
      help:
        'Fault-service time measured in the pager: from the JS thread receiving a fault the native page cache missed to the page being installed ' +
        '(fetch, retries and install included; the fault thread\'s read and hand-off to JS and native cache hits are not timed), ' +
        'by kind: remote, zero, cache (staged in the cache after the fault thread looked)',
      labelNames: ['kind'],
      buckets: [5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 5e-2, 0.1, 1],
      registers: r,
    }),
    cacheBytes: new client.Gauge({ name: 'farmem_cache_bytes', help: 'Bytes held by the daemon page cache', registers: r, collect }),
    cacheCapacityBytes: new client.Gauge({ name: 'farmem_cache_capacity_bytes', help: 'Byte budget of the daemon page cache', registers: r }),
    cacheHitRatio: new client.Gauge({ name: 'farmem_cache_hit_ratio', help: 'Page cache hits / lookups since start', registers: r, collect }),
    remoteBytes: new client.Counter({ name: 'farmem_remote_bytes_total', help: 'Page bytes moved to and from memory servers', labelNames: ['direction'], registers: r, collect }),
    attachments: new client.Gauge({ name: 'farmem_attachments', help: 'Processes attached to regions', registers: r, collect }),
    regions: new client.Gauge({ name: 'farmem_regions', help: 'Regions in the registry', registers: r }),
    residentBytes: new client.Gauge({ name: 'farmem_region_resident_bytes', help: 'Resident bytes of a region on this host', labelNames: ['region'], registers: r, collect }),
    residentPages: new client.Gauge({ name: 'farmem_region_resident_pages', help: 'Resident pages of a region on this host', labelNames: ['region'], registers: r, collect }),
    dirtyPages: new client.Gauge({ name: 'farmem_region_dirty_pages', help: 'Dirty (not yet written back) pages of a region', labelNames: ['region'], registers: r, collect }),
    evictions: new client.Counter({ name: 'farmem_evictions_total', help: 'Pages evicted from regions', registers: r, collect }),
    writebackPages: new client.Counter({ name: 'farmem_writeback_pages_total', help: 'Dirty pages written back to memory servers', registers: r, collect }),
    evictionStalls: new client.Counter({ name: 'farmem_eviction_stalls_total', help: 'Times eviction stalled, by reason', labelNames: ['reason'], registers: r }),
    serverUp: new client.Gauge({ name: 'farmem_memory_server_up', help: '1 when the memory server answered its last probe', labelNames: ['server'], registers: r }),
    controlCalls: new client.Counter({ name: 'farmem_control_calls_total', help: 'Control-socket calls, by method and gRPC status', labelNames: ['method', 'code'], registers: r }),
  };
  poolGauges(m, r);
  return m;
}

export interface MetricsServer {
  /** The bound address (host:port), with the real port when 0 was asked. */
  address: string;
  close(): Promise<void>;
}

export function startMetricsServer(address: string, registry: client.Registry, logger: Logger): Promise<MetricsServer> {
  const { host, port } = splitHostPort(address);
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('farmemd serves only GET /metrics\n');
      return;
    }
    registry.metrics().then(
      (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
      (e: Error) => {
        logger.error({ err: e }, 'metrics: collecting failed');
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${e.message}\n`);
      },
    );
  });
  return new Promise((resolve, reject) => {
    server.once('error', (e) => reject(new Error(`metrics ${address}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
    server.listen(port, host, () => {
      const a = server.address() as AddressInfo;
      const bound = `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`;
      const close = (): Promise<void> =>
        new Promise<void>((res) => {
          server.close(() => res());
          server.closeAllConnections(); // keep-alive scrapers would hold close() open
        });
      resolve({ address: bound, close });
    });
  });
}
