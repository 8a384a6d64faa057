// Output of the farmem CLI: plain-object forms for --json, and aligned tables for people.
import { farmem } from '../../proto/gen/farmem';
import { humanSize } from '../../daemon/util/size';

export const octal = (mode: number): string => `0${(mode ?? 0).toString(8).padStart(3, '0')}`;

function onUnavailable(v: farmem.v1.OnUnavailable | null | undefined): string {
  return v === farmem.v1.OnUnavailable.ON_UNAVAILABLE_SIGBUS ? 'sigbus' : 'wait';
}

const n = (v: number | null | undefined): number => Number(v ?? 0);

/** The JSON form of a region: camelCase keys, sizes in bytes, mode as an octal string. */
export function regionJson(r: farmem.v1.IRegion) {
  return {
    id: r.id ?? '',
    name: r.name ?? '',
    sizeBytes: n(r.sizeBytes),
    pageSize: n(r.pageSize),
    residentBytes: n(r.residentBytes),
    servers: r.servers ?? [],
    replicas: n(r.replicas),
    prefetch: r.prefetch ?? '',
    warmOnAttach: r.warmOnAttach === true,
    onUnavailable: onUnavailable(r.onUnavailable),
    dirtyTracking: r.dirtyTracking || 'wp',
    ownerUid: n(r.ownerUid),
    ownerGid: n(r.ownerGid),
    mode: octal(n(r.mode)),
    createdAt: r.createdAt ?? '',
  };
}

export function faultsJson(f: farmem.v1.IFaultCounts | null | undefined) {
  return { cacheHit: n(f?.cacheHit), remote: n(f?.remote), zero: n(f?.zero), writeProtect: n(f?.writeProtect), sigbus: n(f?.sigbus) };
}

export type StatsJson = { pager: false; detail: string } | ({ pager: true } & ReturnType<typeof pagerStats>);

export function statsJson(s: farmem.v1.IRegionStats | null | undefined): StatsJson {
  if (!s?.pager) return { pager: false, detail: s?.detail ?? '' };
  return { pager: true, ...pagerStats(s) };
}

function pagerStats(s: farmem.v1.IRegionStats) {
  return {
    residentPages: n(s.residentPages),
    dirtyPages: n(s.dirtyPages),
    faults: faultsJson(s.faults),
    cacheHits: n(s.cacheHits),
    cacheMisses: n(s.cacheMisses),
    prefetchAccuracy: s.prefetchAccuracy ?? 0,
    prefetchCoverage: s.prefetchCoverage ?? 0,
    prefetchedPages: n(s.prefetchedPages),
    prefetchUsedPages: n(s.prefetchUsedPages),
    prefetchWastedPages: n(s.prefetchWastedPages),
    prefetchWastedBytes: n(s.prefetchWastedBytes),
    prefetchPolicy: s.prefetchPolicy ?? '',
    dirtyTracking: s.dirtyTracking ?? '',
    dirtyTrackingNote: s.dirtyTrackingNote ?? '',
    evictedPages: n(s.evictedPages),
    writtenBackPages: n(s.writtenBackPages),
    writeBackStalled: s.writeBackStalled ?? false,
    writeBackStalls: n(s.writeBackStalls),
    remoteBytesIn: n(s.remoteBytesIn),
    remoteBytesOut: n(s.remoteBytesOut),
    faultP50Us: n(s.faultP50Us),
    faultP99Us: n(s.faultP99Us),
    attachments: (s.attachments ?? []).map((a) => ({ pid: n(a.pid), uid: n(a.uid), since: a.since ?? '', comm: a.comm ?? '' })),
  };
}

/** Left-aligned columns, two spaces apart; numbers (and the columns named in `right`) right-aligned. */
export function table(header: string[], rows: Array<Array<string | number>>, right: string[] = []): string {
  const cells = [header, ...rows.map((r) => r.map(String))];
  const numeric = header.map((h, i) => right.includes(h) || (rows.length > 0 && rows.every((r) => typeof r[i] === 'number')));
  const widths = header.map((_, i) => Math.max(...cells.map((r) => r[i]!.length)));
  return cells
    .map((r) => r.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd())
    .join('\n');
}

/** Key/value lines for `show`. */
export function fields(pairs: Array<[string, string | number]>): string {
  const w = Math.max(...pairs.map(([k]) => k.length));
  return pairs.map(([k, v]) => `${`${k}:`.padEnd(w + 1)}  ${v}`).join('\n');
}

export const size = (bytes: number): string => (bytes === 0 ? '0' : humanSize(bytes));
export const pct = (x: number): string => `${(x * 100).toFixed(1)}%`;
