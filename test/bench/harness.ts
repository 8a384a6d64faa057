// The benchmark harness's types and helpers. Each file in test/bench/cases/ exports `cases`;
// every case measures its subject and a baseline in the same run and reports their ratio, because
// these machines are shared and noisy: absolute figures mean little, ratios mean something.

export type Metrics = Record<string, number>;

export interface BenchRow {
  name: string;
  params: Record<string, string | number | boolean>;
  metrics: Metrics;
  baseline: Metrics;
  /** metrics[k] / baseline[k] for every key both have (see ratios()). */
  ratio: Metrics;
}

export interface BenchContext {
  /** Scale factor for iteration counts (FARMEM_BENCH_SCALE, default 1): lower for a quick look. */
  scale: number;
  log(message: string): void;
}

export interface BenchCase {
  /** Short name used by --only (matched as a prefix). */
  name: string;
  description: string;
  /** Root (or a kernel feature) needed: the case is reported as skipped with this reason otherwise. */
  unavailable(): string | null;
  run(ctx: BenchContext): Promise<BenchRow[]>;
}

/** ratio[k] = metrics[k] / baseline[k] for every key present in both. */
export function ratios(metrics: Metrics, baseline: Metrics): Metrics {
  const out: Metrics = {};
  for (const [k, v] of Object.entries(metrics)) {
    const b = baseline[k];
    if (b !== undefined && b !== 0 && Number.isFinite(v)) out[k] = Math.round((v / b) * 1000) / 1000;
  }
  return out;
}

/** p50/p99/mean (in the samples' unit) of a list of samples. */
export function percentiles(samples: ArrayLike<number>): { p50: number; p99: number; mean: number; n: number } {
  const a = Array.from(samples).sort((x, y) => x - y);
  if (a.length === 0) return { p50: NaN, p99: NaN, mean: NaN, n: 0 };
  const at = (q: number) => a[Math.min(a.length - 1, Math.floor(q * a.length))]!;
  return { p50: at(0.5), p99: at(0.99), mean: a.reduce((s, x) => s + x, 0) / a.length, n: a.length };
}

/** Keeps `inflight` operations going for durationMs; returns per-op latencies (µs) and the elapsed time. */
export async function load(inflight: number, durationMs: number, op: (i: number) => Promise<unknown>): Promise<{ lat: number[]; seconds: number }> {
  const lat: number[] = [];
  const t0 = process.hrtime.bigint();
  const end = Date.now() + durationMs;
  let i = 0;
  await Promise.all(Array.from({ length: inflight }, async () => {
    while (Date.now() < end) {
      const s = process.hrtime.bigint();
      await op(i++);
      lat.push(Number(process.hrtime.bigint() - s) / 1000);
    }
  }));
  return { lat, seconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

/** Pages/s, MB/s and per-operation p50/p99 (µs) of a load() run whose operations moved `batch` pages each. */
export function pageThroughput(r: { lat: number[]; seconds: number }, batch: number, pageBytes: number): Metrics {
  const p = percentiles(r.lat);
  const pagesPerS = (r.lat.length * batch) / r.seconds;
  return { pages_per_s: Math.round(pagesPerS), mb_per_s: Math.round((pagesPerS * pageBytes) / 1e5) / 10, p50_us: Math.round(p.p50), p99_us: Math.round(p.p99) };
}
