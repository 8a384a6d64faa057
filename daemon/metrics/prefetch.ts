// Per-region prefetch metrics for Prometheus, read from the pager's counters at scrape time (no
// work on the fault path): pages issued, used and wasted, wasted bytes, accuracy and coverage.
import client from 'prom-client';

export interface PrefetchFigures {
  name: string;
  pageSize: number;
  prefetch: { issued: number; used: number; wasted: number; accuracy: number | null; coverage: number | null };
}

export interface PrefetchMetrics {
  pages: client.Gauge<'region' | 'outcome'>;
  wastedBytes: client.Gauge<'region'>;
  accuracy: client.Gauge<'region'>;
  coverage: client.Gauge<'region'>;
}

/**
 * Registers the gauges; `source` is called on each scrape. Gauges (not counters) because a region
 * that is deleted and created again starts from zero, and each scrape resets the label set so
 * deleted regions disappear.
 */
export function registerPrefetchMetrics(registry: client.Registry, source: () => readonly PrefetchFigures[]): PrefetchMetrics {
  const r = [registry];
  const m: PrefetchMetrics = {
    pages: new client.Gauge({
      name: 'farmem_region_prefetch_pages',
      help: 'Prefetched pages of a region since it was loaded, by outcome (issued, used, wasted)',
      labelNames: ['region', 'outcome'],
      registers: r,
      collect() {
        this.reset();
        for (const s of source()) {
          this.set({ region: s.name, outcome: 'issued' }, s.prefetch.issued);
          this.set({ region: s.name, outcome: 'used' }, s.prefetch.used);
          this.set({ region: s.name, outcome: 'wasted' }, s.prefetch.wasted);
        }
      },
    }),
    wastedBytes: new client.Gauge({
      name: 'farmem_region_prefetch_wasted_bytes',
      help: 'Bytes fetched by the prefetcher and dropped untouched',
      labelNames: ['region'],
      registers: r,
      collect() {
        this.reset();
        for (const s of source()) this.set({ region: s.name }, s.prefetch.wasted * s.pageSize);
      },
    }),
    accuracy: new client.Gauge({
      name: 'farmem_region_prefetch_accuracy',
      help: 'Used prefetched pages / prefetched pages (absent before the first guess)',
      labelNames: ['region'],
      registers: r,
      collect() {
        this.reset();
        for (const s of source()) if (s.prefetch.accuracy !== null) this.set({ region: s.name }, s.prefetch.accuracy);
      },
    }),
    coverage: new client.Gauge({
      name: 'farmem_region_prefetch_coverage',
      help: 'Faults avoided by prefetching / faults that would have happened (absent before the first access)',
      labelNames: ['region'],
      registers: r,
      collect() {
        this.reset();
        for (const s of source()) if (s.prefetch.coverage !== null) this.set({ region: s.name }, s.prefetch.coverage);
      },
    }),
  };
  return m;
}
