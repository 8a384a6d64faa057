// Replication's cost and repair's speed, over three memory servers (farmem-memserver children on
// loopback) driven by the real MemoryPool and MemoryServerClients:
//   - fault fetch latency p50/p99 (1-page reads, one in flight: what a fault waits for) and read
//     throughput (16-page batches, 8 in flight), R=2 vs R=1 (baseline);
//   - write-back throughput (256-page batches, 4 in flight), R=2 vs R=1 (baseline);
//   - repair: N MiB written with R=2, one server killed (kill -9) and declared down, the time for
//     repair to bring every group back to two copies (rate limit off). N = 64 MiB × FARMEM_BENCH_SCALE
//     by default (the figure is 1 GiB: FARMEM_BENCH_SCALE=16); the rate is what carries over.
//     Baseline: writing the same bytes through the pool at R=1.
import { spawn, type ChildProcess } from 'node:child_process';
import readline from 'node:readline';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { MemoryServerClient } from '../../../daemon/remote/client';
import { MemoryPool, type PoolMember } from '../../../daemon/remote/pool';
import { load, pageThroughput, ratios, type BenchCase, type BenchContext, type BenchRow, type Metrics } from '../harness';

const PAGE = 4096;
const MAIN = path.join(__dirname, '..', '..', '..', 'daemon', 'memserver', 'main.js');
const logger = pino({ level: 'silent' });

interface Server {
  child: ChildProcess;
  address: string;
}

function spawnServer(capacity: string): Promise<Server> {
  const child = spawn(process.execPath, [MAIN, '--listen', '127.0.0.1:0', '--capacity', capacity], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`farmem-memserver exited ${code}`)));
    readline.createInterface({ input: child.stdout! }).on('line', (l) => {
      const j = JSON.parse(l) as { msg?: string; address?: string };
      if (j.msg?.startsWith('memory server listening')) resolve({ child, address: j.address! });
    });
  });
}

function makePool(servers: Server[], replicas: number, stateDir: string | null = null): { pool: MemoryPool; clients: MemoryServerClient[] } {
  const clients = servers.map((s) => new MemoryServerClient({ address: s.address }));
  const members = clients.map((c, i): PoolMember => ({ id: servers[i]!.address, weight: 1, store: c, health: async () => (await c.health('', 500)) === 'SERVING' }));
  return { pool: new MemoryPool(members, { logger, replicas, downAfterMs: 0, repairBytesPerSecond: 1e12, writeDeadlineMs: 30_000, readDeadlineMs: 30_000, stateDir }), clients };
}

async function writeSpan(pool: MemoryPool, region: { id: string; pageSize: number }, pages: number, inflight = 4): Promise<number> {
  const data = crypto.randomBytes(256 * PAGE);
  const t0 = process.hrtime.bigint();
  let next = 0;
  await Promise.all(Array.from({ length: inflight }, async () => {
    for (let b = next; b < pages; b = next) {
      next += 256;
      const n = Math.min(256, pages - b);
      await pool.write(region, Array.from({ length: n }, (_, j) => b + j), data.subarray(0, n * PAGE));
    }
  }));
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function costOfReplicas(ctx: BenchContext, servers: Server[]): Promise<BenchRow[]> {
  const SPAN = 4096; // 16 MiB
  const dur = Math.max(200, Math.round(800 * ctx.scale));
  const per: Record<number, { fault: Metrics; read: Metrics; write: Metrics }> = {};
  for (const replicas of [1, 2]) {
    const { pool } = makePool(servers, replicas);
    const region = { id: crypto.randomUUID(), pageSize: PAGE };
    try {
      await writeSpan(pool, region, SPAN);
      const fault = pageThroughput(await load(1, dur, (i) => pool.read(region, [(i * 7919) % SPAN])), 1, PAGE);
      const read = pageThroughput(await load(8, dur, (i) => pool.read(region, Array.from({ length: 16 }, (_, j) => ((i * 16) % SPAN) + j))), 16, PAGE);
      const data = crypto.randomBytes(256 * PAGE);
      const write = pageThroughput(await load(4, dur, (i) => pool.write(region, Array.from({ length: 256 }, (_, j) => ((i * 256) % SPAN) + j), data)), 256, PAGE);
      per[replicas] = { fault, read, write };
      ctx.log(`R=${replicas}: fault p50 ${fault.p50_us} µs p99 ${fault.p99_us} µs; read ${read.mb_per_s} MB/s; write-back ${write.mb_per_s} MB/s`);
    } finally {
      await pool.deleteRegion(region.id);
      await pool.close();
    }
  }
  const row = (name: string, k: 'fault' | 'read' | 'write', params: BenchRow['params']): BenchRow => ({
    name, params: { ...params, replicas: 2, baseline: 'replicas 1' }, metrics: per[2]![k], baseline: per[1]![k], ratio: ratios(per[2]![k], per[1]![k]),
  });
  return [
    row('replication fault fetch', 'fault', { batch: 1, inflight: 1 }),
    row('replication read', 'read', { batch: 16, inflight: 8 }),
    row('replication write-back', 'write', { batch: 256, inflight: 4 }),
  ];
}

/**
 * The placement journal's cost on write-back: R=2 with the journal (every write's placement made
 * durable, group commit) vs R=2 without, for big batches (256 pages, 4 in flight: the evictor's)
 * and small ones (16 pages, 16 in flight: one fdatasync shared by more writes). The journal is on
 * os.tmpdir()'s file system (FARMEM_BENCH_STATE_DIR to choose another).
 */
async function costOfJournal(ctx: BenchContext, servers: Server[]): Promise<BenchRow[]> {
  const SPAN = 4096;
  const dur = Math.max(300, Math.round(1000 * ctx.scale));
  const base = process.env.FARMEM_BENCH_STATE_DIR ?? os.tmpdir();
  const rows: BenchRow[] = [];
  // fresh: every write is of pages never written (each needs a journal record: the worst case);
  // rewrite: pages written before, on their usual holders (no record: the steady state).
  for (const [batch, inflight, fresh] of [[256, 4, true], [16, 16, true], [16, 16, false]] as const) {
    const per: Record<string, Metrics> = {};
    for (const journal of [false, true]) {
      const dir = journal ? fs.mkdtempSync(path.join(base, 'farmem-bench-journal-')) : null;
      const { pool } = makePool(servers, 2, dir);
      const region = { id: crypto.randomUUID(), pageSize: PAGE };
      try {
        await writeSpan(pool, region, SPAN);
        const data = crypto.randomBytes(batch * PAGE);
        const first = (i: number) => (fresh ? SPAN + i * batch : (i * batch) % SPAN);
        per[String(journal)] = pageThroughput(await load(inflight, dur, (i) => pool.write(region, Array.from({ length: batch }, (_, j) => first(i) + j), data)), batch, PAGE);
      } finally {
        await pool.deleteRegion(region.id);
        await pool.close();
        if (dir) fs.rmSync(dir, { recursive: true, force: true });
      }
    }
    const [with_, without] = [per.true!, per.false!];
    ctx.log(`placement journal, ${fresh ? 'first' : 're'}writes of ${batch} pages × ${inflight}: ${with_.mb_per_s} MB/s (p50 ${with_.p50_us} µs) vs ${without.mb_per_s} MB/s (p50 ${without.p50_us} µs) without`);
    rows.push({ name: 'replication write-back journaled', params: { batch, inflight, pages: fresh ? 'never written' : 'rewritten', replicas: 2, state_fs: base, baseline: 'no placement journal' }, metrics: with_, baseline: without, ratio: ratios(with_, without) });
  }
  return rows;
}

async function repairRow(ctx: BenchContext, servers: Server[]): Promise<BenchRow> {
  const mib = Math.max(8, Math.round(64 * ctx.scale));
  const pages = (mib * 1024 * 1024) / PAGE;
  // Baseline: the same bytes written through the pool at R=1.
  const base = makePool(servers, 1);
  const bregion = { id: crypto.randomUUID(), pageSize: PAGE };
  const baseSeconds = await writeSpan(base.pool, bregion, pages);
  await base.pool.deleteRegion(bregion.id);
  await base.pool.close();

  const { pool } = makePool(servers, 2);
  const region = { id: crypto.randomUUID(), pageSize: PAGE };
  try {
    await writeSpan(pool, region, pages);
    const victim = servers[0]!;
    victim.child.kill('SIGKILL');
    await new Promise((r) => victim.child.once('exit', r));
    await pool.checkHealth(); // suspect
    await pool.checkHealth(); // down (downAfterMs 0): repair starts
    const t0 = process.hrtime.bigint();
    await pool.repair();
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const st = pool.repairStatus();
    if (st.underReplicatedGroups !== 0) throw new Error(`repair left ${st.underReplicatedGroups} groups under-replicated`);
    const copiedMiB = st.copiedBytes / 2 ** 20;
    ctx.log(`repair: ${copiedMiB.toFixed(0)} MiB copied of a ${mib} MiB region in ${seconds.toFixed(2)} s (${(copiedMiB / seconds).toFixed(0)} MiB/s); writing ${mib} MiB at R=1 took ${baseSeconds.toFixed(2)} s`);
    const metrics = { seconds: Math.round(seconds * 1000) / 1000, mib_per_s: Math.round((copiedMiB / seconds) * 10) / 10, seconds_per_gib: Math.round((seconds / copiedMiB) * 1024 * 10) / 10 };
    const baseline = { seconds: Math.round(baseSeconds * 1000) / 1000, mib_per_s: Math.round((mib / baseSeconds) * 10) / 10, seconds_per_gib: Math.round((baseSeconds / mib) * 1024 * 10) / 10 };
    return { name: 'replication repair', params: { region_mib: mib, copied_mib: Math.round(copiedMiB), servers: 3, replicas: 2, rate_limit: 'off', baseline: 'write same MiB at R=1' }, metrics, baseline, ratio: ratios(metrics, baseline) };
  } finally {
    await pool.close();
  }
}

export const cases: BenchCase[] = [
  {
    name: 'replication',
    description: 'R=2 vs R=1 over three loopback memory servers: fault fetch p50/p99, read and write-back throughput; time to repair N MiB after kill -9 of a server (64 MiB × scale; 1 GiB at FARMEM_BENCH_SCALE=16)',
    unavailable: () => null,
    async run(ctx) {
      // Slabs grow as pages come, so room costs nothing until used. The journal case's first writes
      // go to pages never written for as long as it runs: at R=2 and ~400 MB/s that is ~270 MB a
      // server per second, which overflowed 256 MiB once writes got faster.
      const capacity = `${Math.max(1024, Math.round(640 * ctx.scale))}MiB`;
      const servers = await Promise.all([0, 1, 2].map(() => spawnServer(capacity)));
      try {
        const rows = await costOfReplicas(ctx, servers);
        rows.push(...(await costOfJournal(ctx, servers)));
        rows.push(await repairRow(ctx, servers));
        return rows;
      } finally {
        for (const s of servers) if (s.child.exitCode === null && s.child.signalCode === null) s.child.kill('SIGKILL');
      }
    },
  },
];
