// What `farmem stats --watch` shows, computed from two successive snapshots of the daemon: rates
// are counter differences over the daemon's own clock (its uptime), so a slow refresh does not
// inflate them. Pure: snapshot in, view (JSON-able) and text out.
import type { farmem } from '../../proto/gen/farmem';
import { pct, size, table } from './format';

export interface Snapshot {
  time: Date;
  daemon: farmem.v1.IDaemonStatsResponse;
  /** Every listed region; `stats` null when the caller may not use it or nothing is counted. */
  regions: Array<{ summary: farmem.v1.IRegionSummary; stats: farmem.v1.IRegionStats | null }>;
  servers: farmem.v1.IServerInfo[];
}

export interface FaultRates {
  total: number;
  cacheHit: number;
  remote: number;
  zero: number;
  writeProtect: number;
  sigbus: number;
}

export interface RegionRow {
  name: string;
  sizeBytes: number;
  accessible: boolean;
  attachments: number;
  /** null: no pager counts them (or no access). */
  residentPages: number | null;
  dirtyPages: number | null;
  /** null as well on the first refresh: a rate needs two snapshots. */
  faultsPerSecond: number | null;
  remoteInMBps: number | null;
  remoteOutMBps: number | null;
}

export interface WatchView {
  time: string;
  daemon: { version: string; pid: number; state: string; uptimeSeconds: number; regions: number; pager: boolean; pagerDetail: string };
  /** Seconds between the two snapshots the rates come from; null on the first one (or after a restart). */
  intervalSeconds: number | null;
  /** null without a pager: nothing is counted, and zeros would be a lie. */
  pager: null | {
    attachments: number;
    faultsPerSecond: FaultRates | null;
    /** Page-cache hits / lookups over the interval; null when there was no lookup (or no interval). */
    hitRatio: number | null;
    hitRatioSinceStart: number | null;
    remoteInMBps: number | null;
    remoteOutMBps: number | null;
    cacheBytes: number;
    cacheCapacityBytes: number;
    residentBytes: number;
    residentCapBytes: number;
    dirtyPages: number;
  };
  regions: RegionRow[];
  servers: Array<{ address: string; state: string; embedded: boolean; usedBytes: number; capacityBytes: number; regions: number; detail: string }>;
}

const n = (v: number | null | undefined): number => Number(v ?? 0);
const MB = 1e6;

function faultsOf(f: farmem.v1.IFaultCounts | null | undefined): Omit<FaultRates, 'total'> {
  return { cacheHit: n(f?.cacheHit), remote: n(f?.remote), zero: n(f?.zero), writeProtect: n(f?.writeProtect), sigbus: n(f?.sigbus) };
}

/** (b - a) / dt for each counter, or null when one went backwards (the daemon's counters were reset). */
function rates(a: Omit<FaultRates, 'total'>, b: Omit<FaultRates, 'total'>, dt: number): FaultRates | null {
  const d = { cacheHit: b.cacheHit - a.cacheHit, remote: b.remote - a.remote, zero: b.zero - a.zero, writeProtect: b.writeProtect - a.writeProtect, sigbus: b.sigbus - a.sigbus };
  if (Object.values(d).some((x) => x < 0)) return null;
  const r = { cacheHit: d.cacheHit / dt, remote: d.remote / dt, zero: d.zero / dt, writeProtect: d.writeProtect / dt, sigbus: d.sigbus / dt };
  return { total: r.cacheHit + r.remote + r.zero + r.writeProtect + r.sigbus, ...r };
}

const rate = (a: number, b: number, dt: number): number | null => (b >= a ? (b - a) / dt : null);
const ratio = (hits: number, misses: number): number | null => (hits + misses > 0 ? hits / (hits + misses) : null);

export function watchView(prev: Snapshot | null, cur: Snapshot): WatchView {
  const d = cur.daemon;
  const p = prev?.daemon;
  // Same daemon, clock moved on, pager in both: then differences mean something.
  const dt = p && p.pid === d.pid && p.pager && d.pager && n(d.uptimeSeconds) > n(p.uptimeSeconds) ? n(d.uptimeSeconds) - n(p.uptimeSeconds) : null;
  const view: WatchView = {
    time: cur.time.toISOString(),
    daemon: { version: d.version ?? '', pid: n(d.pid), state: d.state ?? '', uptimeSeconds: n(d.uptimeSeconds), regions: n(d.regions), pager: d.pager === true, pagerDetail: d.pagerDetail ?? '' },
    intervalSeconds: dt,
    pager: null,
    regions: [],
    servers: cur.servers.map((s) => ({
      address: s.address ?? '',
      state: s.state ?? '',
      embedded: s.embedded === true,
      usedBytes: n(s.usedBytes),
      capacityBytes: n(s.capacityBytes),
      regions: n(s.regions),
      detail: s.detail ?? '',
    })),
  };
  if (d.pager) {
    const hits = dt !== null ? rate(n(p!.cacheHits), n(d.cacheHits), 1) : null;
    const misses = dt !== null ? rate(n(p!.cacheMisses), n(d.cacheMisses), 1) : null;
    view.pager = {
      attachments: n(d.attachments),
      faultsPerSecond: dt !== null ? rates(faultsOf(p!.faults), faultsOf(d.faults), dt) : null,
      hitRatio: hits !== null && misses !== null ? ratio(hits, misses) : null,
      hitRatioSinceStart: ratio(n(d.cacheHits), n(d.cacheMisses)),
      remoteInMBps: dt !== null ? rate(n(p!.remoteBytesIn), n(d.remoteBytesIn), dt * MB) : null,
      remoteOutMBps: dt !== null ? rate(n(p!.remoteBytesOut), n(d.remoteBytesOut), dt * MB) : null,
      cacheBytes: n(d.cacheBytes),
      cacheCapacityBytes: n(d.cacheCapacityBytes),
      residentBytes: n(d.residentBytes),
      residentCapBytes: n(d.residentCapBytes),
      dirtyPages: n(d.dirtyPages),
    };
  }
  const before = new Map((prev?.regions ?? []).map((r) => [r.summary.region?.id ?? '', r.stats]));
  for (const { summary, stats } of cur.regions) {
    const r = summary.region ?? {};
    const counted = d.pager === true && stats?.pager === true ? stats : null;
    const old = dt !== null ? before.get(r.id ?? '') : null;
    const was = old?.pager === true ? old : null;
    const f = counted && was ? rates(faultsOf(was.faults), faultsOf(counted.faults), dt!) : null;
    view.regions.push({
      name: r.name ?? '',
      sizeBytes: n(r.sizeBytes),
      accessible: summary.accessible === true,
      attachments: n(summary.attachments),
      residentPages: counted ? n(counted.residentPages) : null,
      dirtyPages: counted ? n(counted.dirtyPages) : null,
      faultsPerSecond: f ? f.total : null,
      remoteInMBps: counted && was ? rate(n(was.remoteBytesIn), n(counted.remoteBytesIn), dt! * MB) : null,
      remoteOutMBps: counted && was ? rate(n(was.remoteBytesOut), n(counted.remoteBytesOut), dt! * MB) : null,
    });
  }
  return view;
}

export function duration(seconds: number): string {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h${String(Math.floor(s / 60) % 60).padStart(2, '0')}m`;
  return `${Math.floor(s / 86400)}d${String(Math.floor(s / 3600) % 24).padStart(2, '0')}h`;
}

export function intervalLabel(ms: number): string {
  if (ms > 0 && ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  if (ms > 0 && ms % 60_000 === 0) return `${ms / 60_000}m`;
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

const num = (x: number | null, digits = 1): string => (x === null ? '-' : x.toFixed(digits));

/** The text of one refresh (no trailing newline). */
export function renderWatch(v: WatchView, opts: { intervalMs: number }): string {
  const d = v.daemon;
  const clock = new Date(v.time).toTimeString().slice(0, 8);
  const out: string[] = [`farmemd ${d.version}  pid ${d.pid}  ${d.state}  up ${duration(d.uptimeSeconds)}  ${d.regions} region${d.regions === 1 ? '' : 's'}  ${clock}  (every ${intervalLabel(opts.intervalMs)})`];
  const pg = v.pager;
  if (pg === null) {
    out.push(`pager: none — ${d.pagerDetail}`);
  } else {
    out.push(`pager: ${d.pagerDetail}`, '');
    const f = pg.faultsPerSecond;
    const later = v.intervalSeconds === null ? ' (rates from the next refresh)' : '';
    out.push(
      f === null
        ? `faults/s    -${later}`
        : `faults/s    ${num(f.total)} total: ${num(f.cacheHit)} cache hit, ${num(f.remote)} remote, ${num(f.zero)} zero, ${num(f.writeProtect)} wp, ${num(f.sigbus)} sigbus`,
      `hit ratio   ${pg.hitRatio === null ? '-' : pct(pg.hitRatio)} (since start ${pg.hitRatioSinceStart === null ? '-' : pct(pg.hitRatioSinceStart)})`,
      `remote      in ${num(pg.remoteInMBps, 2)} MB/s, out ${num(pg.remoteOutMBps, 2)} MB/s`,
      `memory      cache ${size(pg.cacheBytes)} of ${size(pg.cacheCapacityBytes)}, resident ${size(pg.residentBytes)} (cap ${pg.residentCapBytes === 0 ? 'none' : size(pg.residentCapBytes)}), ${pg.dirtyPages} dirty pages, ${pg.attachments} attachment${pg.attachments === 1 ? '' : 's'}`,
    );
  }
  out.push('');
  if (v.regions.length === 0) out.push('no regions');
  else {
    out.push(
      table(
        ['REGION', 'SIZE', 'ATTACHED', 'RESIDENT', 'DIRTY', 'FAULTS/S', 'IN MB/S', 'OUT MB/S'],
        v.regions.map((r) => [
          r.name + (r.accessible ? '' : ' (no access)'),
          size(r.sizeBytes),
          r.attachments,
          num(r.residentPages, 0),
          num(r.dirtyPages, 0),
          num(r.faultsPerSecond),
          num(r.remoteInMBps, 2),
          num(r.remoteOutMBps, 2),
        ]),
        ['SIZE', 'RESIDENT', 'DIRTY', 'FAULTS/S', 'IN MB/S', 'OUT MB/S'],
      ),
    );
  }
  out.push('');
  if (v.servers.length === 0) out.push('no memory servers');
  else {
    out.push(
      table(
        ['SERVER', 'STATE', 'USED', 'CAPACITY', 'REGIONS', 'KIND', 'DETAIL'],
        v.servers.map((s) => [s.address, s.state, size(s.usedBytes), size(s.capacityBytes), s.regions, s.embedded ? 'embedded' : 'remote', s.detail]),
        ['USED', 'CAPACITY'],
      ),
    );
  }
  return out.join('\n');
}
