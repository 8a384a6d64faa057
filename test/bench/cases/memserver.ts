// Memory server throughput and latency against a raw length-prefixed TCP server measured in the same
// run: reads and writes of 4 KiB pages at batch sizes 1/16/64/256 with 1 and 8 batches in flight (with
// each side's CPU time per GB moved); the page codec (hand-written vs generated); and the journal's
// cost (--data-dir vs memory only).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { MemoryServerClient } from '../../../daemon/remote/client';
import { customCodec, generatedCodec, type PageCodec, type PageRequestMsg, type PageResponseMsg } from '../../../daemon/remote/wire';
import { load, pageThroughput, ratios, type BenchCase, type BenchContext, type BenchRow, type Metrics } from '../harness';
import { forkRawServer, RawClient } from '../raw/tcp';

const PAGE = 4096;
const SPAN = 4096; // pages touched (16 MiB)
const MAIN = path.join(__dirname, '..', '..', '..', 'daemon', 'memserver', 'main.js');

/** CPU time (user + system) a process has used, in ms (Linux /proc; clock ticks of 10 ms). */
function cpuMsOf(pid: number): number {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10;
}

/**
 * load() that also measures the CPU time the client (this process) and the server process spent: CPU
 * per byte moved holds up better than MB/s on a shared machine, and shows which side costs what.
 */
async function measured(serverPid: number, inflight: number, durationMs: number, op: (i: number) => Promise<unknown>): Promise<{ lat: number[]; seconds: number; clientMs: number; serverMs: number }> {
  const c0 = process.cpuUsage();
  const s0 = cpuMsOf(serverPid);
  const r = await load(inflight, durationMs, op);
  const c = process.cpuUsage(c0);
  return { ...r, clientMs: (c.user + c.system) / 1000, serverMs: cpuMsOf(serverPid) - s0 };
}

function metricsOf(r: { lat: number[]; seconds: number; clientMs?: number; serverMs?: number }, batch: number): Metrics {
  const m = pageThroughput(r, batch, PAGE);
  const gb = (r.lat.length * batch * PAGE) / 1e9;
  if (r.clientMs !== undefined && r.serverMs !== undefined && gb > 0) {
    m.client_cpu_ms_per_gb = Math.round(r.clientMs / gb);
    m.server_cpu_ms_per_gb = Math.round(r.serverMs / gb);
  }
  return m;
}

function pagesOf(i: number, batch: number): number[] {
  const base = (i * batch) % (SPAN - batch + 1);
  return Array.from({ length: batch }, (_, j) => base + j);
}

function spawnMemserver(args: string[]): Promise<{ child: ChildProcess; address: string }> {
  const child = spawn(process.execPath, [MAIN, '--listen', '127.0.0.1:0', '--capacity', '256MiB', '--log-level', 'warn', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`farmem-memserver exited ${code}`)));
    // listening is logged at info; at warn we learn the address from a probe line instead
    readline.createInterface({ input: child.stdout! }).on('line', (l) => {
      const j = JSON.parse(l) as { msg?: string; address?: string };
      if (j.msg?.startsWith('memory server listening')) resolve({ child, address: j.address! });
    });
  });
}

async function matrix(ctx: BenchContext): Promise<BenchRow[]> {
  const ms = await spawnMemserver(['--log-level', 'info']);
  const raw = await forkRawServer(SPAN);
  const rows: BenchRow[] = [];
  const grpcClient = new MemoryServerClient({ address: ms.address, streams: 2 });
  const rawClient = await RawClient.connect(raw.port);
  const region = { id: 'bench', pageSize: PAGE };
  // Writes carry a version, as the daemon's do (increasing: a superseded write would skip its copy).
  let version = 1_790_000_000_000_000;
  try {
    const fill = Buffer.alloc(256 * PAGE, 0x5a);
    for (let b = 0; b < SPAN; b += 256) {
      const pages = Array.from({ length: 256 }, (_, j) => b + j);
      await grpcClient.write(region, pages, fill, { versions: [++version] });
      await rawClient.write(pages, fill);
    }
    const dur = Math.max(150, Math.round(700 * ctx.scale));
    for (const op of ['read', 'write'] as const) {
      for (const batch of [1, 16, 64, 256]) {
        for (const inflight of [1, 8]) {
          const data = Buffer.alloc(batch * PAGE, 0x33);
          const g = op === 'read' ? (i: number) => grpcClient.read(region, pagesOf(i, batch)) : (i: number) => grpcClient.write(region, pagesOf(i, batch), data, { versions: [++version] });
          const r = op === 'read' ? (i: number) => rawClient.read(pagesOf(i, batch)) : (i: number) => rawClient.write(pagesOf(i, batch), data);
          await load(inflight, dur / 5, g); // warm-up
          await load(inflight, dur / 5, r);
          const base = metricsOf(await measured(raw.pid, inflight, dur, r), batch);
          const m = metricsOf(await measured(ms.child.pid!, inflight, dur, g), batch);
          rows.push({ name: 'memserver', params: { op, batch, inflight }, metrics: m, baseline: base, ratio: ratios(m, base) });
          ctx.log(`memserver ${op} batch=${batch} inflight=${inflight}: ${m.mb_per_s} MB/s (raw ${base.mb_per_s}), p50 ${m.p50_us} µs (raw ${base.p50_us}), CPU ms/GB client ${m.client_cpu_ms_per_gb} server ${m.server_cpu_ms_per_gb} (raw ${base.client_cpu_ms_per_gb} / ${base.server_cpu_ms_per_gb})`);
        }
      }
    }
  } finally {
    await grpcClient.close();
    rawClient.close();
    raw.stop();
    ms.child.kill('SIGKILL');
  }
  return rows;
}

function codecRow(ctx: BenchContext): BenchRow[] {
  const pages = Array.from({ length: 64 }, (_, i) => i * 7);
  const data = Buffer.alloc(64 * PAGE, 1);
  const versions = pages.map(() => 1_790_000_000_000_000);
  const req: PageRequestMsg = { requestId: 12345, region: '6f1c2a9e-1111-4222-8333-944455556666', pageSize: PAGE, op: 'write', pages, data, versions: [versions[0]!], malformed: null };
  const resp: PageResponseMsg = { requestId: 12345, code: 0, message: '', present: pages, data: null, absent: [], written: 0, versions, fill: (out, at) => data.copy(out, at), dataLength: data.length, malformed: null };
  const n = Math.max(200, Math.round(3000 * ctx.scale));
  const time = (c: PageCodec): Metrics => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < n; i++) {
      c.decodeRequest(c.encodeRequest(req));
      c.decodeResponse(c.encodeResponse(resp));
    }
    const us = Number(process.hrtime.bigint() - t0) / 1000 / n;
    return { us_per_roundtrip: Math.round(us * 10) / 10, mb_per_s: Math.round((2 * data.length) / us) };
  };
  time(customCodec);
  time(generatedCodec);
  const base = time(generatedCodec);
  const m = time(customCodec);
  return [{ name: 'memserver-codec', params: { pages: 64, note: 'encode+decode of a 64-page write request and read response; baseline = generated' }, metrics: m, baseline: base, ratio: ratios(m, base) }];
}

async function durableRow(ctx: BenchContext): Promise<BenchRow[]> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-bench-'));
  const mem = await spawnMemserver(['--log-level', 'info']);
  const dur = await spawnMemserver(['--log-level', 'info', '--data-dir', dir]);
  const region = { id: 'bench', pageSize: PAGE };
  const data = Buffer.alloc(64 * PAGE, 7);
  const run = async (address: string): Promise<Metrics> => {
    const c = new MemoryServerClient({ address });
    try {
      let version = 1_790_000_000_000_000;
      await load(8, 100, (i) => c.write(region, pagesOf(i, 64), data, { versions: [++version] }));
      const r = await load(8, Math.max(200, Math.round(1000 * ctx.scale)), (i) => c.write(region, pagesOf(i, 64), data, { versions: [++version] }));
      const t0 = process.hrtime.bigint();
      await c.sync(region);
      return { ...metricsOf(r, 64), sync_ms: Math.round(Number(process.hrtime.bigint() - t0) / 1e5) / 10 };
    } finally {
      await c.close();
    }
  };
  try {
    const base = await run(mem.address);
    const m = await run(dur.address);
    return [{ name: 'memserver-durable', params: { op: 'write', batch: 64, inflight: 8, note: 'with --data-dir (journal); baseline = memory only' }, metrics: m, baseline: base, ratio: ratios(m, base) }];
  } finally {
    mem.child.kill('SIGKILL');
    dur.child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  }
}

export const cases: BenchCase[] = [
  {
    name: 'memserver',
    description: 'gRPC memory server vs raw length-prefixed TCP (writev): pages/s, MB/s, p50/p99 at batch 1/16/64/256 × in-flight 1/8; page codec; journal cost',
    unavailable: () => null,
    async run(ctx) {
      return [...(await matrix(ctx)), ...codecRow(ctx), ...(await durableRow(ctx))];
    },
  },
];
