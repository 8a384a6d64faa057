// The end-to-end bench fixture (remote.ts, prefetch.ts): a real farmem-memserver child on loopback, a
// real farmemd child whose regions name that server, fmattach runs (libfarmem: the application's
// path) and the region's live stats. Regions are filled by writing straight to the memory server
// (256-page batches), so every first touch is a remote fault without a slow write pass first.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { ControlClient } from '../../client/control';
import { statsJson } from '../../client/cli/format';
import { MemoryServerClient } from '../../daemon/remote/client';
import { startFarmemd, tempDir, type Farmemd } from '../helpers/farmemd';
import { workloadBin } from '../helpers/pattern';

const PAGE = 4096;
const MEMSERVER = path.join(__dirname, '..', '..', 'daemon', 'memserver', 'main.js');

export interface AttachRun {
  pages: number;
  ns: number;
  p50_ns?: number;
  p99_ns?: number;
  max_ns?: number;
  mismatches: number;
}

export interface RegionNumbers {
  remote: number;
  cacheHit: number;
  zero: number;
  prefetchedPages: number;
  accuracy: number;
  coverage: number;
  remoteBytesIn: number;
}

export interface Bench {
  memserver: string;
  /** The memory server child's pid (for cpuNs). */
  memserverPid: number;
  daemon: Farmemd;
  control: ControlClient;
  attachSocket: string;
  store: MemoryServerClient;
  /** Creates a region on the memory server and fills its first `pages` pages there (byte `fill`). */
  region(name: string, sizeBytes: number, prefetch: string, pages: number): Promise<string>;
  fmattach(args: string[], cpu?: number | null): Promise<AttachRun>;
  numbers(name: string): Promise<RegionNumbers>;
  deleteRegion(name: string): Promise<void>;
  stop(): Promise<void>;
}

export function spawnMemserver(capacity: string): Promise<{ child: ChildProcess; address: string }> {
  const child = spawn(process.execPath, [MEMSERVER, '--listen', '127.0.0.1:0', '--capacity', capacity, '--log-level', 'info'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`farmem-memserver exited ${code}`)));
    readline.createInterface({ input: child.stdout! }).on('line', (l) => {
      try {
        const j = JSON.parse(l) as { msg?: string; address?: string };
        if (j.msg?.startsWith('memory server listening')) resolve({ child, address: j.address! });
      } catch {
        /* not JSON */
      }
    });
  });
}

/**
 * CPU time process `pid` has used so far, all its threads, in ns (the first field of each thread's
 * /proc/PID/task/TID/schedstat: nanosecond run time, where /proc/PID/stat counts 10 ms ticks). A
 * thread that exited between the listing and the read is skipped.
 */
export function cpuNs(pid: number): number {
  let ns = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    try {
      ns += Number(fs.readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
    } catch {
      /* exited */
    }
  }
  return ns;
}

/** Runs fmattach; resolves with its last JSON line (rejects on a non-zero exit). */
export function runAttach(attachSocket: string | null, args: string[], cpu: number | null = null): Promise<AttachRun> {
  const argv = [workloadBin('fmattach'), ...(attachSocket === null ? [] : ['--socket', attachSocket]), ...args];
  // --cpu: pinned with taskset (the daemon runs a FaultThread per vCPU; the local one wins the wake-up)
  const child = cpu === null ? spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] }) : spawn('taskset', ['-c', String(cpu), ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => {
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) return reject(new Error(`fmattach ${args.join(' ')}: exit ${code}: ${err.trim()}`));
      resolve(JSON.parse(last) as AttachRun);
    });
  });
}

export async function startBench(opts: { cacheSize: string; capacity: string }): Promise<Bench> {
  const ms = await spawnMemserver(opts.capacity);
  const dir = tempDir('bench-e2e');
  const attachSocket = path.join(dir, 'attach.sock');
  let daemon: Farmemd;
  try {
    daemon = await startFarmemd({ dir, args: ['--attach-socket', attachSocket, '--cache-size', opts.cacheSize, '--log-level', 'info'] });
  } catch (e) {
    ms.child.kill('SIGKILL');
    throw e;
  }
  const control = await ControlClient.connect(daemon.socket);
  const store = new MemoryServerClient({ address: ms.address, streams: 2 });
  return {
    memserver: ms.address,
    memserverPid: ms.child.pid!,
    daemon,
    control,
    attachSocket,
    store,
    async region(name, sizeBytes, prefetch, pages) {
      const r = await control.createRegion({ name, sizeBytes, servers: [ms.address], prefetch, pageSize: null, residentBytes: null, replicas: null, ownerUid: null, ownerGid: null, mode: null });
      const ref = { id: r.id!, pageSize: PAGE };
      const data = Buffer.alloc(256 * PAGE, 0x41);
      for (let b = 0; b < pages; b += 256) {
        const n = Math.min(256, pages - b);
        await store.write(ref, Array.from({ length: n }, (_, j) => b + j), n === 256 ? data : data.subarray(0, n * PAGE));
      }
      return r.id!;
    },
    fmattach: (args, cpu = null) => runAttach(attachSocket, args, cpu),
    async numbers(name) {
      const s = statsJson((await control.showRegion(name)).stats);
      if (!s.pager) throw new Error(`region ${name}: no live numbers (${s.detail})`);
      return {
        remote: s.faults.remote,
        cacheHit: s.faults.cacheHit,
        zero: s.faults.zero,
        prefetchedPages: s.prefetchedPages,
        accuracy: s.prefetchAccuracy,
        coverage: s.prefetchCoverage,
        remoteBytesIn: s.remoteBytesIn,
      };
    },
    async deleteRegion(name) {
      await control.deleteRegion(name);
    },
    async stop() {
      control.close();
      await store.close();
      await daemon.stop();
      ms.child.kill('SIGKILL');
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
    },
  };
}
