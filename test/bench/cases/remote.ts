// End-to-end fault path (issue 4), through a real farmemd child and a real memory server child on
// loopback, measured by fmattach (libfarmem, the application's path) timing each page's first touch:
//   - remote miss (empty cache, prefetch none) against the raw C uffd round trip (raw_handler.c, as in
//     fault.ts) PLUS a raw length-prefixed TCP round trip of one 4 KiB page (raw/tcp.ts), both in this
//     run: the floor a remote fault could reach with no daemon, no gRPC;
//   - cache hit (pages read, evicted clean into the daemon cache, read again) against the raw C handler;
//   - sequential and random scans with prefetching off, pages/s, against the same serial floor
//     (1e6 / (uffd p50 + tcp p50) pages/s) and, in params, against all-local memory.
// Nothing is pinned here (the daemon, the server and the app share 2 vCPUs as they would in use); the
// raw C handler runs on CPU 0 with the app on CPU 0, its best case.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { userfaultfdUnavailable } from '../../helpers/env';
import { runAttach, startBench } from '../e2e';
import { percentiles, ratios, type BenchCase, type BenchContext, type BenchRow, type Metrics } from '../harness';
import { forkRawServer, RawClient } from '../raw/tcp';
import { runRaw } from './fault';

const PAGE = 4096;
const repoRoot = path.join(__dirname, '..', '..', '..', '..');
const us = (ns: number | undefined) => Math.round((ns ?? NaN) / 100) / 10;

async function rawTcp(n: number): Promise<{ p50_us: number; p99_us: number }> {
  const srv = await forkRawServer(1024);
  const c = await RawClient.connect(srv.port);
  try {
    for (let i = 0; i < 200; i++) await c.read([i % 1024]);
    const lat: number[] = [];
    for (let i = 0; i < n; i++) {
      const s = process.hrtime.bigint();
      await c.read([i % 1024]);
      lat.push(Number(process.hrtime.bigint() - s) / 1000);
    }
    const p = percentiles(lat);
    return { p50_us: Math.round(p.p50 * 10) / 10, p99_us: Math.round(p.p99 * 10) / 10 };
  } finally {
    c.close();
    srv.stop();
  }
}

async function run(ctx: BenchContext): Promise<BenchRow[]> {
  execFileSync('make', ['-s', '-C', path.join(repoRoot, 'test', 'bench')], { stdio: 'inherit' });
  const latPages = Math.max(1024, Math.round(8192 * ctx.scale));
  // 1 GiB = 262144 pages takes ~1 min per scan on these VMs at ~4-5k remote faults/s: the default
  // scans 128 MiB (FARMEM_BENCH_SCALE=8 gives the 1 GiB).
  const scanPages = Math.max(4096, Math.round(32768 * ctx.scale));
  const rows: BenchRow[] = [];

  ctx.log(`remote: baselines (raw C uffd handler, raw TCP 4 KiB round trip)`);
  const raw = await runRaw(latPages, 0, 0);
  const tcp = await rawTcp(Math.max(1000, Math.round(5000 * ctx.scale)));
  const floor: Metrics = { p50_us: Math.round((raw.p50_us + tcp.p50_us) * 10) / 10, p99_us: Math.round((raw.p99_us + tcp.p99_us) * 10) / 10 };

  const b = await startBench({ cacheSize: '64KiB', capacity: '2GiB' });
  try {
    // remote miss: 64 KiB of cache holds 16 pages, so the cache is empty for practical purposes.
    await b.region('miss', latPages * PAGE, 'none', latPages);
    ctx.log(`remote: ${latPages} remote-miss faults`);
    const miss = await b.fmattach(['--region', 'miss', '--pages', String(latPages), '--op', 'read', '--timing', '--no-checksum']);
    const mn = await b.numbers('miss');
    await b.deleteRegion('miss');
    const mm: Metrics = { p50_us: us(miss.p50_ns), p99_us: us(miss.p99_ns) };
    rows.push({
      name: 'remote/miss vs raw uffd + raw TCP',
      params: { pages: latPages, prefetch: 'none', cache: '64KiB', remote_faults: mn.remote, raw_uffd_p50_us: raw.p50_us, raw_uffd_p99_us: raw.p99_us, raw_tcp_p50_us: tcp.p50_us, raw_tcp_p99_us: tcp.p99_us },
      metrics: mm,
      baseline: floor,
      ratio: ratios(mm, floor),
    });
  } finally {
    await b.stop();
  }

  // cache hit: a daemon whose cache holds the region; read (remote), evict (clean → cache), read again.
  const h = await startBench({ cacheSize: `${Math.ceil((latPages * PAGE) / 1048576) + 16}MiB`, capacity: '2GiB' });
  try {
    await h.region('hit', latPages * PAGE, 'none', latPages);
    await h.fmattach(['--region', 'hit', '--pages', String(latPages), '--op', 'read', '--no-checksum']);
    await h.control.evictRegion('hit');
    const before = await h.numbers('hit');
    ctx.log(`remote: ${latPages} cache-hit faults`);
    const hit = await h.fmattach(['--region', 'hit', '--pages', String(latPages), '--op', 'read', '--timing', '--no-checksum'], 0);
    const after = await h.numbers('hit');
    // the same again with the app unpinned (wherever the scheduler puts it, as an application runs)
    await h.control.evictRegion('hit');
    const loose = await h.fmattach(['--region', 'hit', '--pages', String(latPages), '--op', 'read', '--timing', '--no-checksum']);
    const rawAgain = await runRaw(latPages, 0, 0);
    const base = rawAgain.p50_us <= raw.p50_us ? rawAgain : raw; // the better of two raw runs: the goal's floor
    const m: Metrics = { p50_us: us(hit.p50_ns), p99_us: us(hit.p99_ns) };
    const bl: Metrics = { p50_us: base.p50_us, p99_us: base.p99_us };
    rows.push({
      name: 'remote/cache-hit vs raw C handler',
      params: {
        pages: latPages,
        goal: '<= 1.3x',
        app_cpu: 0,
        raw_handler_cpu: 0,
        cache_hits: after.cacheHit - before.cacheHit,
        remote_faults: after.remote - before.remote,
        unpinned_app_p50_us: us(loose.p50_ns),
        unpinned_app_p99_us: us(loose.p99_ns),
        path: 'farmemd FaultThread (per vCPU)→PageCache→UFFDIO_COPY',
      },
      metrics: m,
      baseline: bl,
      ratio: ratios(m, bl),
    });
  } finally {
    await h.stop();
  }

  // scans with prefetching off.
  const s = await startBench({ cacheSize: '64KiB', capacity: '2GiB' });
  try {
    for (const pattern of ['seq', 'random:7']) {
      const name = pattern === 'seq' ? 'scanseq' : 'scanrand';
      await s.region(name, scanPages * PAGE, 'none', scanPages);
      ctx.log(`remote: ${pattern} scan of ${scanPages} pages, prefetch none`);
      const r = await s.fmattach(['--region', name, '--pages', String(scanPages), '--op', 'read', '--pattern', pattern, '--no-checksum']);
      const n = await s.numbers(name);
      await s.deleteRegion(name);
      const local = await runAttach(null, ['--local', '--region', 'local', '--pages', String(scanPages), '--op', 'read', '--pattern', pattern, '--no-checksum']);
      const m: Metrics = { pages_per_s: Math.round((scanPages * 1e9) / r.ns) };
      const bl: Metrics = { pages_per_s: Math.round(1e6 / floor.p50_us!) };
      rows.push({
        name: `remote/scan ${pattern === 'seq' ? 'sequential' : 'random'} vs serial raw floor`,
        params: {
          region_mib: (scanPages * PAGE) / 1048576,
          note: 'default 128 MiB; FARMEM_BENCH_SCALE=8 for 1 GiB',
          prefetch: 'none',
          remote_faults: n.remote,
          baseline: '1e6/(raw uffd p50 + raw TCP p50)',
          local_pages_per_s: Math.round((scanPages * 1e9) / local.ns),
          vs_local: Math.round(((scanPages * 1e9) / r.ns / ((scanPages * 1e9) / local.ns)) * 1e4) / 1e4,
        },
        metrics: m,
        baseline: bl,
        ratio: ratios(m, bl),
      });
    }
  } finally {
    await s.stop();
  }
  return rows;
}

export const cases: BenchCase[] = [
  {
    name: 'remote',
    description: 'end to end through farmemd + a loopback memory server: remote-miss and cache-hit fault latency, scans with prefetch off',
    unavailable: () => userfaultfdUnavailable(),
    run,
  },
];
