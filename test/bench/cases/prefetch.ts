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
//     reading 256-page batches, 4 in flight) and against that stream plus one UFFDIO_COPY per batch
//     (the ceiling): both measured right before each scan, five such pairs per policy, the median
//     pair reported (the stream's speed swings 2x within minutes on this shared machine); beside it
//     the CPU per page of the reader (farmemd for the scan, this client for the stream) and of the
//     memory server, from /proc/PID/task/*/schedstat. Daemon and stream are warmed up first.
// Goals (issue 6): sequential and stride coverage >= 95% with accuracy >= 90%; random wastes <= 5%
// extra bytes; sequential scan >= 80% of the raw batched stream.
// The issue asks for 1 GiB. The matrix uses 64 MiB (16384 pages) so its 30 runs stay under 2 minutes
// on 2 vCPUs (FARMEM_BENCH_SCALE=16 gives 1 GiB); the sequential-scan pairs use 1 GiB (at scales
// below 1, that share of it), as the issue says: a 64 MiB scan takes ~100 ms, in which the start of a
// stream (detection, auto's first choice, the window's ramp) and the host's hiccups weigh more than
// in any scan worth prefetching.
import os from 'node:os';
import { userfaultfdUnavailable } from '../../helpers/env';
import { memfd, uffd } from '../../../daemon/native';
import { cpuNs, runAttach, startBench, type AttachRun, type Bench } from '../e2e';
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

interface StreamRun {
  mbPerS: number;
  /** CPU per page of the reading process (this one) and of the memory server, in µs. */
  clientUs: number;
  serverUs: number;
}

/**
 * The memory server's batched stream: 256-page reads over the region, `inflight` at once. With
 * `install`, each batch is also installed into a memfd mapping registered with a uffd (missing and
 * wp, as farmemd registers a region), by one UFFDIO_COPY write-protected and DONTWAKE, as farmemd
 * installs a run of guesses: the least work any daemon that receives over grpc-js and installs with
 * UFFDIO_COPY must do per page, with no fault, no bookkeeping and no application.
 */
async function stream(b: Bench, id: string, pages: number, inflight: number, install = false): Promise<StreamRun> {
  const ref = { id, pageSize: PAGE };
  let next = 0;
  const target = install ? installTarget(pages) : null;
  const c0 = process.cpuUsage();
  const s0 = cpuNs(b.memserverPid);
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: inflight }, async () => {
      while (next < pages) {
        const first = next;
        next += 256;
        const r = await b.store.read(ref, Array.from({ length: Math.min(256, pages - first) }, (_, j) => first + j));
        if (target !== null) {
          const head = r.present.get(first)!;
          uffd.copy(target.uffd, target.map.address + BigInt(first * PAGE), Buffer.from(head.buffer, head.byteOffset, r.present.size * PAGE), { wp: true, dontWake: true });
        }
      }
    }),
  );
  const ns = Number(process.hrtime.bigint() - t0);
  const c = process.cpuUsage(c0);
  if (target !== null) target.close();
  return { mbPerS: (pages * PAGE) / 1e6 / (ns / 1e9), clientUs: (c.user + c.system) / pages, serverUs: (cpuNs(b.memserverPid) - s0) / 1e3 / pages };
}

/** Pairs (stream, ceiling, scan) per sequential policy, of which the median counts. */
const SCAN_TRIES = 5;

interface Scan {
  ns: number;
  mbPerS: number;
  daemonUs: number;
  serverUs: number;
}

/** A stream run, a stream + install (ceiling) run, then a scan: measured back to back. */
interface Pair {
  stream: StreamRun;
  install: StreamRun;
  scan: Scan;
}

/** The pair whose `ratio` is the median (the lower middle of an even count). */
function medianPair(pairs: readonly Pair[], ratio: (p: Pair) => number): Pair {
  const sorted = [...pairs].sort((x, y) => ratio(x) - ratio(y));
  return sorted[Math.floor((sorted.length - 1) / 2)]!;
}

/** A fresh memfd of `pages` pages, mapped here and registered with a new uffd (missing + wp). */
function installTarget(pages: number) {
  const fd = memfd.create('bench-install', pages * PAGE);
  const map = memfd.map(fd, pages * PAGE, { writable: true });
  const u = uffd.open({ nonBlocking: true });
  uffd.api(u.fd, ['MISSING_SHMEM', 'WP_HUGETLBFS_SHMEM']);
  uffd.register(u.fd, map.address, pages * PAGE, ['missing', 'wp']);
  return {
    uffd: u.fd,
    map,
    close() {
      memfd.unmap(map);
      memfd.close(u.fd);
      memfd.close(fd);
    },
  };
}

const round = (v: number, d = 1000) => Math.round(v * d) / d;

async function run(ctx: BenchContext): Promise<BenchRow[]> {
  const pages = Math.max(2048, Math.round(16384 * ctx.scale));
  const scanPages = Math.max(pages, Math.round(262144 * Math.min(1, ctx.scale)));
  const b = await startBench({ cacheSize: '64MiB', capacity: '4GiB' });
  const rows: BenchRow[] = [];
  try {
    // The raw batched stream, warmed up (1 and 4 in flight). On this shared machine its speed swings
    // by 2x within minutes, so it is measured again right before each sequential scan below, with the
    // stream + install ceiling: each scan is compared with the stream measured next to it (a pair),
    // and the row reports the median pair.
    const sid = await b.region('stream', scanPages * PAGE, 'none', scanPages);
    await stream(b, sid, pages, 1);
    const s1 = await stream(b, sid, scanPages, 1);
    await stream(b, sid, pages, 4);
    const s4 = await stream(b, sid, scanPages, 4);
    ctx.log(`prefetch: memory server stream ${round(s1.mbPerS, 10)} MB/s (1 in flight), ${round(s4.mbPerS, 10)} MB/s (4 in flight)`);
    // One unmeasured scan first, as the stream had its warm-up: the daemon's paging path is compiled
    // and its heap grown before the first measured row.
    await b.region('warm', pages * PAGE, 'readahead', pages);
    await touch('seq', pages, (args) => b.fmattach(['--region', 'warm', ...args]));
    await b.deleteRegion('warm');

    let n = 0;
    for (const p of PATTERNS) {
      if (ONLY.length > 0 && !ONLY.includes(p.arg)) continue;
      const local = await touch(p.arg, pages, (args) => runAttach(null, ['--local', '--region', 'local', ...args]));
      let noneBytes = NaN;
      let noneFaults = NaN;
      const seqRows: Array<{ policy: string; pairs: Pair[] }> = [];
      const scan = async (region: string, n = pages) => {
        const d0 = cpuNs(b.daemon.child.pid!);
        const m0 = cpuNs(b.memserverPid);
        const ns = await touch(p.arg, n, (args) => b.fmattach(['--region', region, ...args]));
        return { ns, mbPerS: (n * PAGE) / 1e6 / (ns / 1e9), daemonUs: (cpuNs(b.daemon.child.pid!) - d0) / 1e3 / n, serverUs: (cpuNs(b.memserverPid) - m0) / 1e3 / n };
      };
      // A sequential scan comes with the stream and the ceiling measured just before it (a pair),
      // over as many pages.
      const paired = async (region: string, n: number): Promise<Pair> => {
        const s = await stream(b, sid, n, 4);
        const c = await stream(b, sid, n, 4, true);
        return { stream: s, install: c, scan: await scan(region, n) };
      };
      for (const policy of POLICIES) {
        const name = `pf${n++}`;
        await b.region(name, pages * PAGE, policy, pages);
        const pairs: Pair[] = [];
        // none's pair (a remote fault per page, there for scale) is its matrix run.
        if (p.arg === 'seq' && policy === 'none') pairs.push(await paired(name, pages));
        const first = pairs.length > 0 ? pairs[0]!.scan : await scan(name);
        const ns = first.ns;
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
        if (p.arg === 'seq') seqRows.push({ policy, pairs });
      }
      if (p.arg === 'seq') {
        // SCAN_TRIES pairs of scanPages per policy, each scan of a fresh region, the policies taking
        // turns, after one unmeasured pair: the first 1 GiB scans of a run are 20-25% slower (this VM's
        // memory touched for the first time, by the memfd and by the ceiling's mapping), and with
        // each policy's pairs back to back, the first policy got all of them.
        await b.region('warm-pair', scanPages * PAGE, 'readahead', scanPages);
        await paired('warm-pair', scanPages);
        await b.deleteRegion('warm-pair');
        for (let i = 0; i < SCAN_TRIES; i++) {
          for (const row of seqRows) {
            if (row.policy === 'none') continue;
            const again = `pf${n++}`;
            await b.region(again, scanPages * PAGE, row.policy, scanPages);
            row.pairs.push(await paired(again, scanPages));
            await b.deleteRegion(again);
          }
        }
        const all = seqRows.filter((r) => r.policy !== 'none').flatMap((r) => r.pairs);
        const ceiling = medianPair(all, (x) => x.install.mbPerS / x.stream.mbPerS);
        {
          const m: Metrics = { mb_per_s: round(ceiling.install.mbPerS, 10), reader_cpu_us_per_page: round(ceiling.install.clientUs), server_cpu_us_per_page: round(ceiling.install.serverUs) };
          const bl: Metrics = { mb_per_s: round(ceiling.stream.mbPerS, 10), reader_cpu_us_per_page: round(ceiling.stream.clientUs), server_cpu_us_per_page: round(ceiling.stream.serverUs) };
          rows.push({
            name: 'prefetch/raw batched stream + UFFDIO_COPY of each batch (the ceiling on this host) vs raw batched stream',
            params: {
              region_mib: (scanPages * PAGE) / 1048576,
              what: 'the same stream, each 256-page batch installed by one UFFDIO_COPY (wp, dontwake) into a uffd-registered memfd mapping in the reading process: no fault, no bookkeeping, no application',
              runs: `the median of ${all.length} pairs (a stream run, then this), one before each sequential scan`,
              pair_ratios: all.map((x) => round(x.install.mbPerS / x.stream.mbPerS)).join(' '),
              stream_mb_per_s: all.map((x) => round(x.stream.mbPerS, 10)).join(' '),
              vcpus: os.availableParallelism(),
            },
            metrics: m,
            baseline: bl,
            ratio: ratios(m, bl),
          });
        }
        // The CPU each side spent per page, beside the stream's: on one host the memory server, the
        // daemon and the application share the vCPUs, so these bound the ratio (see the note on #6).
        for (const { policy, pairs } of seqRows) {
          const x = medianPair(pairs, (q) => q.scan.mbPerS / q.stream.mbPerS);
          const m: Metrics = {
            mb_per_s: round(x.scan.mbPerS, 10),
            reader_cpu_us_per_page: round(x.scan.daemonUs),
            server_cpu_us_per_page: round(x.scan.serverUs),
            // the share of what is reachable here: the median scan's ratio to its stream over the
            // ceiling's median ratio (each pair's own ceiling swings too much to divide by alone)
            of_install_ceiling: round(x.scan.mbPerS / x.stream.mbPerS / (ceiling.install.mbPerS / ceiling.stream.mbPerS)),
          };
          const bl: Metrics = { mb_per_s: round(x.stream.mbPerS, 10), reader_cpu_us_per_page: round(x.stream.clientUs), server_cpu_us_per_page: round(x.stream.serverUs) };
          rows.push({
            name: `prefetch/sequential scan × ${policy} vs raw batched stream`,
            params: {
              region_mib: ((policy === 'none' ? pages : scanPages) * PAGE) / 1048576,
              goal: 'mb_per_s >= 0.8x',
              runs: `the median of ${pairs.length} pair(s): a stream run, a ceiling run, then a scan of a fresh region`,
              pair_ratios: pairs.map((q) => round(q.scan.mbPerS / q.stream.mbPerS)).join(' '),
              stream: '256-page MemoryServerClient reads, 4 in flight; reader = this client there, farmemd here',
              vcpus: os.availableParallelism(),
            },
            metrics: m,
            baseline: bl,
            ratio: ratios(m, bl),
          });
        }
      }
    }
    await b.deleteRegion('stream');
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
