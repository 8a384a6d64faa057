// Feeds farmemd's Prometheus metrics from the pager's and the page cache's plain counters at scrape
// time (the fault path never touches prom-client). Counters get the delta since the last scrape of
// daemon-wide totals that never go backwards (removed regions are kept in runtime.retired).
import type { DaemonMetrics } from '../metrics';
import type { PageCache } from '../native';
import type { Pager, RegionStats } from '../pager';

/** Daemon-wide fault and traffic totals, summed over regions. */
export interface Totals {
  cacheHit: number;
  remote: number;
  zero: number;
  wp: number;
  remoteBytesIn: number;
  remoteBytesOut: number;
  evictions: number;
  writebacks: number;
}

/** Adds one region's counters to t (live regions at scrape time, and a region's last figures when it goes). */
export function addRegionTotals(t: Totals, s: RegionStats): void {
  t.cacheHit += s.faults.cacheHit;
  t.remote += s.faults.remote;
  t.zero += s.faults.zero;
  t.wp += s.faults.wp;
  t.remoteBytesIn += s.remoteBytesIn;
  t.remoteBytesOut += s.remoteBytesOut;
  t.evictions += s.evicted.clean + s.evicted.dirty;
  t.writebacks += s.writeBack.pages;
}

interface Source {
  pager: Pager;
  cache: PageCache;
  retired: Totals;
  attachmentTotal: number;
}

export function feedMetrics(m: DaemonMetrics, src: Source): void {
  const seen = new Map<string, number>();
  const add = (key: string, total: number, inc: (n: number) => void) => {
    const d = total - (seen.get(key) ?? 0);
    if (d > 0) {
      inc(d);
      seen.set(key, total);
    }
  };
  m.addCollector(() => {
    const all = src.pager.allStats();
    const t = { ...src.retired };
    m.residentBytes.reset();
    m.residentPages.reset();
    m.dirtyPages.reset();
    for (const s of all) {
      addRegionTotals(t, s);
      m.residentBytes.set({ region: s.name }, s.residentPages * s.pageSize);
      m.residentPages.set({ region: s.name }, s.residentPages);
      m.dirtyPages.set({ region: s.name }, s.dirtyPages);
    }
    for (const kind of ['cacheHit', 'remote', 'zero', 'wp'] as const) {
      add(`faults.${kind}`, t[kind], (n) => m.faults.inc({ kind: kind === 'cacheHit' ? 'cache_hit' : kind }, n));
    }
    add('bytes.in', t.remoteBytesIn, (n) => m.remoteBytes.inc({ direction: 'in' }, n));
    add('bytes.out', t.remoteBytesOut, (n) => m.remoteBytes.inc({ direction: 'out' }, n));
    add('evictions', t.evictions, (n) => m.evictions.inc(n));
    add('writebacks', t.writebacks, (n) => m.writebackPages.inc(n));
    const c = src.cache.stats();
    m.cacheBytes.set(c.bytes);
    m.cacheCapacityBytes.set(c.capacityBytes);
    m.cacheHitRatio.set(c.hits + c.misses > 0 ? c.hits / (c.hits + c.misses) : 0);
    m.attachments.set(src.attachmentTotal);
  });
  // Every kind shows from the first scrape, at 0.
  for (const kind of ['cache_hit', 'remote', 'zero', 'wp']) m.faults.inc({ kind }, 0);
  m.remoteBytes.inc({ direction: 'in' }, 0);
  m.remoteBytes.inc({ direction: 'out' }, 0);
}
