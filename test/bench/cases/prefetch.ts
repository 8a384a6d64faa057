// Prefetcher matrix (issue 6): access patterns × prefetch policies over regions served by a real
// farmemd child from a real memory server child on loopback. Each run reads every page of a fresh
// region (filled on the server first, so every first touch would be a remote fault) with fmattach
// (libfarmem, --no-checksum) and reports:
//   - completion time against the same pattern on all-local memory (fmattach --local: the same loop
//     on pre-faulted anonymous memory, no daemon, no uffd) — the ratio is the slowdown;
//   - remote MB; extra_pct: remote bytes over those of the `none` run of the same pattern (the bytes
//     the pattern itself needs), minus 1; accuracy and coverage measured from outside against that
//     `none` run: coverage = 1 - remote faults / remote faults under none (a fault that waits for an
//     in-flight prefetch still counts as remote), accuracy = (prefetched - wasted) / prefetched with
//     wasted = extra remote bytes / page size; and daemon_accuracy/daemon_coverage as the region's
//     live stats report them (farmem region show), which differ when the daemon cannot see a use;
//   - the sequential scan's MB/s against the memory server's raw batched stream (MemoryServerClient
//     reading 256-page batches, 1 and 4 in flight, the better of the two) measured in this run.
// Goals (issue 6): sequential and stride coverage >= 95% with accuracy >= 90%; random wastes <= 5%
// extra bytes; sequential scan >= 80% of the raw batched stream.
// The issue asks for 1 GiB; the default is 64 MiB (16384 pages) so the 30-run matrix stays under
// 4 minutes on 2 vCPUs; FARMEM_BENCH_SCALE=16 gives 1 GiB.
import { userfaultfdUnavailable } from '../../helpers/env';
import { runAttach, startBench, type AttachRun, type Bench } from '../e2e';
import { ratios, type BenchCase, type BenchContext, type BenchRow, type Metrics } from '../harness';

const PAGE = 4096;
const ALL_POLICIES = ['none', 'readahead', 'stride', 'trend', 'auto'] as const;
// FARMEM_BENCH_PREFETCH=PATTERN[,PATTERN] (fmattach pattern args, e.g. seq,random:11) runs only those
// rows (each still after its `none` run, which the ratios need): for profiling one cell, not for reports.
const ONLY = (process.env.FARMEM_BENCH_PREFETCH ?? '').split(',').filter(Boolean);
const POLICIES = ALL_POLICIES;
const PATTERNS = [
  { name: 'sequential', arg: 'seq' },
  { name: 'reverse', arg: 'reverse' },
  { name: 'stride 4', arg: 'stride:4' },
  { name: 'uniform random', arg: 'random:11' },
  { name: 'zipf 0.99', arg: 'zipf:13' },
  { name: 'two interleaved sequential streams', arg: 'two' },
] as const;

/** Runs the pattern; `two` is two processes at once, each scanning its own half sequentially. */
async function touch(pattern: string, pages: number, attach: (args: string[]) => Promise<AttachRun>): Promise<number> {
  if (pattern !== 'two') return (await attach(['--pages', String(pages), '--op', 'read', '--pattern', pattern, '--no-checksum'])).ns;
  // The slower of the two scans (each timed inside fmattach: process start-up and attach are not the
  // subject). They run at once; the first may start a few ms before the other.
  const half = Math.floor(pages / 2);
  const runs = await Promise.all([0, half].map((first) => attach(['--first', String(first), '--pages', String(half), '--op', 'read', '--pattern', 'seq', '--no-checksum'])));
  return Math.max(...runs.map((r) => r.ns));
}

/** The memory server's batched stream: 256-page reads over the region, `inflight` at once. */
async function stream(b: Bench, id: string, pages: number, inflight: number): Promise<number> {
  const ref = { id, pageSize: PAGE };
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (next < pages) {
        const first = next;
        next += 256;
        await b.store.read(ref, Array.from({ length: Math.min(256, pages - first) }, (_, j) => first + j));
      }
    }),
  );
  return (pages * PAGE) / 1e6 / (Number(process.hrtime.bigint() - t0) / 1e9);
}

const round = (v: number, d = 1000) => Math.round(v * d) / d;

async function run(ctx: BenchContext): Promise<BenchRow[]> {
  const pages = Math.max(2048, Math.round(16384 * ctx.scale));
  const b = await startBench({ cacheSize: '64MiB', capacity: '2GiB' });
  const rows: BenchRow[] = [];
  try {
    // the raw batched stream, twice each (warm-up, then measured)
    const sid = await b.region('stream', pages * PAGE, 'none', pages);
    await stream(b, sid, pages, 1);
    const s1 = await stream(b, sid, pages, 1);
    const s4 = await stream(b, sid, pages, 4);
    await b.deleteRegion('stream');
    const streamMb = Math.max(s1, s4);
    ctx.log(`prefetch: memory server stream ${round(s1, 10)} MB/s (1 in flight), ${round(s4, 10)} MB/s (4 in flight)`);

    let n = 0;
    for (const p of PATTERNS) {
      if (ONLY.length > 0 && !ONLY.includes(p.arg)) continue;
      const local = await touch(p.arg, pages, (args) => runAttach(null, ['--local', '--region', 'local', ...args]));
      let noneBytes = NaN;
      let noneFaults = NaN;
      for (const policy of POLICIES) {
        const name = `pf${n++}`;
        await b.region(name, pages * PAGE, policy, pages);
        const ns = await touch(p.arg, pages, (args) => b.fmattach(['--region', name, ...args]));
        const st = await b.numbers(name);
        await b.deleteRegion(name);
        if (policy === 'none') {
          noneBytes = st.remoteBytesIn;
          noneFaults = st.remote;
        }
        const wasted = Math.max(0, (st.remoteBytesIn - noneBytes) / PAGE);
        const seconds = ns / 1e9;
        const metrics: Metrics = {
          seconds: round(seconds, 1e4),
          accuracy: st.prefetchedPages === 0 ? 0 : round((st.prefetchedPages - wasted) / st.prefetchedPages),
          coverage: round(1 - st.remote / noneFaults),
          daemon_accuracy: round(st.accuracy),
          daemon_coverage: round(st.coverage),
          remote_mb: round(st.remoteBytesIn / 1e6, 10),
          extra_pct: round((st.remoteBytesIn / noneBytes - 1) * 100, 10),
        };
        const baseline: Metrics = { seconds: round(local / 1e9, 1e6) };
        ctx.log(`prefetch: ${p.name} × ${policy}: ${metrics.seconds}s (local ${baseline.seconds}s), accuracy ${metrics.accuracy} (daemon ${metrics.daemon_accuracy}), coverage ${metrics.coverage} (daemon ${metrics.daemon_coverage}), ${metrics.remote_mb} MB`);
        rows.push({
          name: `prefetch/${p.name} × ${policy}`,
          params: { region_mib: (pages * PAGE) / 1048576, pattern: p.arg, prefetch: policy, remote_faults: st.remote, cache_hit_faults: st.cacheHit, prefetched_pages: st.prefetchedPages, baseline: 'same pattern on all-local memory' },
          metrics,
          baseline,
          ratio: ratios(metrics, baseline),
        });
        if (p.arg === 'seq') {
          const m: Metrics = { mb_per_s: round((pages * PAGE) / 1e6 / seconds, 10) };
          const bl: Metrics = { mb_per_s: round(streamMb, 10) };
          rows.push({
            name: `prefetch/sequential scan × ${policy} vs raw batched stream`,
            params: { region_mib: (pages * PAGE) / 1048576, goal: '>= 0.8x', stream: '256-page MemoryServerClient reads, best of 1 and 4 in flight', stream_1_mb_per_s: round(s1, 10), stream_4_mb_per_s: round(s4, 10) },
            metrics: m,
            baseline: bl,
            ratio: ratios(m, bl),
          });
        }
      }
    }
  } finally {
    await b.stop();
  }
  return rows;
}

export const cases: BenchCase[] = [
  {
    name: 'prefetch',
    description: 'patterns × prefetchers through farmemd from a loopback memory server: completion time vs all-local memory, accuracy, coverage, remote MB; sequential scan vs the raw batched stream',
    unavailable: () => userfaultfdUnavailable(),
    run,
  },
];
