// Multi-host fixture: memory servers (farmem-memserver) in network namespaces made by the test, one
// per namespace on the namespace's own address; farmemd and the workloads (fmattach through
// libfarmem) in the root namespace. Every wait is bounded; cleanup() kills every child and deletes
// every namespace, and is safe to call twice (t.after).
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { TestHosts, type TestHost } from '../helpers/netns';
import { FARMEMD, farmem } from '../helpers/farmemd';
import { onJsonLines } from '../helpers/json-lines';
import { workloadBin } from '../helpers/pattern';
import { MemoryServerClient } from '../../daemon/remote';

const ROOT = path.join(__dirname, '..', '..', '..');
const MEMSERVER = path.join(ROOT, 'daemon', 'bin', 'farmem-memserver.js');
const PORT = 7070; // each namespace has its own port space

export interface PoolJson {
  state: string;
  latencyMs: number;
  failures: number;
  instanceId: string;
  underReplicatedGroups: number;
  repairedGroups: number;
  copiedBytes: number;
  repairing: boolean;
  restartsDetected: number;
  pendingGroups: number;
  draining: boolean;
  discardedPages: number;
  discardsPending: number;
}
export interface ServerJson {
  address: string;
  state: string;
  detail: string;
  pool: PoolJson | null;
}

export interface Run {
  child: ChildProcess;
  lines: Array<Record<string, unknown>>;
  /** Resolves with the first stdout JSON line with this key (bounded by the run's exit). */
  next(key: string): Promise<Record<string, unknown>>;
  done: Promise<{ code: number | null; stderr: string }>;
}

function waitLine(child: ChildProcess, pred: (j: Record<string, unknown>) => boolean, what: string, ms: number): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => done(new Error(`timed out after ${ms} ms waiting for ${what}: ${err}`)), ms);
    let settled = false;
    const offLines = onJsonLines(child.stdout!, (j) => {
      if (!settled && pred(j)) done(null, j);
    });
    const onErr = (d: Buffer) => (err += d.toString());
    const onExit = (c: number | null, s: string | null) => done(new Error(`${what}: exited (${c ?? s}) first: ${err}`));
    function done(e: Error | null, j?: Record<string, unknown>) {
      settled = true;
      clearTimeout(timer);
      offLines();
      child.stderr!.off('data', onErr);
      child.off('exit', onExit);
      if (e) reject(e);
      else resolve(j!);
    }
    child.stderr!.on('data', onErr);
    child.once('exit', onExit);
  });
}

export class Cluster {
  readonly hosts = new TestHosts();
  readonly dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-multihost-'));
  readonly socket = path.join(this.dir, 'ctl.sock');
  readonly attachSocket = path.join(this.dir, 'attach.sock');
  host: TestHost[] = [];
  servers: Array<ChildProcess | null> = [];
  daemon: ChildProcess | null = null;
  /** farmemd's Prometheus endpoint (host:port on loopback). */
  metricsAddress = '';
  private readonly runs = new Set<ChildProcess>();
  private readonly clients: MemoryServerClient[] = [];

  address(i: number): string {
    return `${this.host[i]!.address}:${PORT}`;
  }

  /** Makes `count` hosts, each running an in-memory memory server. */
  async createHosts(count: number): Promise<void> {
    this.host = this.hosts.create(count);
    for (let i = 0; i < count; i++) await this.startServer(i);
  }

  async startServer(i: number): Promise<void> {
    const child = this.hosts.spawn(this.host[i]!, process.execPath, [MEMSERVER, '--listen', this.address(i), '--capacity', '256MiB']);
    this.servers[i] = child;
    await waitLine(child, (j) => typeof j.msg === 'string' && j.msg.startsWith('memory server listening'), `memory server ${i} to listen`, 15_000);
  }

  /** kill -9 of server i; resolves once it is gone. */
  async killServer(i: number): Promise<void> {
    const c = this.servers[i];
    if (!c) return;
    this.servers[i] = null;
    if (c.exitCode !== null || c.signalCode !== null) return;
    // `ip netns exec` execs the command: the child's pid is the server's.
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await gone;
  }

  async startDaemon(servers: number[]): Promise<void> {
    const args = [FARMEMD, '--socket', this.socket, '--attach-socket', this.attachSocket, '--state-dir', path.join(this.dir, 'state'), '--no-embedded-server', '--cache-size', '1MiB', '--metrics', '127.0.0.1:0'];
    for (const i of servers) args.push('--memory-server', this.address(i));
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NOTIFY_SOCKET: '' } });
    this.daemon = child;
    const log = fs.createWriteStream(path.join(this.dir, 'farmemd.log'), { flags: 'a' });
    child.stdout!.pipe(log);
    const metrics = waitLine(child, (j) => typeof j.metrics === 'string', 'farmemd metrics address', 20_000);
    await waitLine(child, (j) => j.state === 'READY', 'farmemd READY', 20_000);
    this.metricsAddress = (await metrics).metrics as string;
  }

  /** kill -9 of farmemd (its state dir stays for the next startDaemon); resolves once it is gone. */
  async killDaemon(): Promise<void> {
    const d = this.daemon;
    this.daemon = null;
    if (!d || d.exitCode !== null || d.signalCode !== null) return;
    const gone = new Promise((r) => d.once('exit', r));
    d.kill('SIGKILL');
    await gone;
  }

  /** The farmem CLI, parsed JSON output; throws with stderr on failure. */
  cli(args: string[]): unknown {
    const r = farmem(this.socket, [...args, '--json']);
    if (r.status !== 0) throw new Error(`farmem ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
    return JSON.parse(r.stdout);
  }

  cliText(args: string[]): string {
    const r = farmem(this.socket, args);
    if (r.status !== 0) throw new Error(`farmem ${args.join(' ')}: exit ${r.status}: ${r.stderr}`);
    return r.stdout;
  }

  serversJson(): ServerJson[] {
    return this.cli(['servers']) as ServerJson[];
  }

  /** fmattach against the daemon, JSON lines collected. */
  fmattach(args: string[]): Run {
    const child = spawn(workloadBin('fmattach'), ['--socket', this.attachSocket, ...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    this.runs.add(child);
    const lines: Array<Record<string, unknown>> = [];
    let err = '';
    const waiters: Array<{ key: string; res: (j: Record<string, unknown>) => void }> = [];
    onJsonLines(child.stdout!, (j) => {
      lines.push(j);
      for (const w of [...waiters]) if (w.key in j) {
        waiters.splice(waiters.indexOf(w), 1);
        w.res(j);
      }
    }, (raw) => (err += `not JSON on stdout: ${raw}\n`));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const done = new Promise<{ code: number | null; stderr: string }>((res) => child.once('exit', (code) => {
      this.runs.delete(child);
      res({ code, stderr: err });
    }));
    return {
      child,
      lines,
      done,
      next: (key) => {
        const have = lines.find((l) => key in l);
        if (have) return Promise.resolve(have);
        return Promise.race([
          new Promise<Record<string, unknown>>((res) => waiters.push({ key, res })),
          done.then((d) => Promise.reject(new Error(`fmattach exited (${d.code}) before printing ${key}: ${d.stderr}`))),
        ]);
      },
    };
  }

  /** Polls `farmem servers --json` until cond holds (bounded). */
  async until(cond: (s: ServerJson[]) => boolean, what: string, ms = 40_000): Promise<ServerJson[]> {
    const end = Date.now() + ms;
    let last: ServerJson[] = [];
    while (Date.now() < end) {
      last = this.serversJson();
      if (cond(last)) return last;
      await new Promise((r) => setTimeout(r, 250));
    }
    throw new Error(`timed out after ${ms} ms waiting for ${what}; last farmem servers: ${JSON.stringify(last)}`);
  }

  /** farmemd's /metrics text. */
  async metrics(): Promise<string> {
    const r = await fetch(`http://${this.metricsAddress}/metrics`);
    return r.text();
  }

  /** Pages of a region held by server i (its Stats), straight from the server. */
  async pagesOn(i: number, regionId: string): Promise<number> {
    const c = new MemoryServerClient({ address: this.address(i), token: null, tls: null, logger: pino({ level: 'silent' }) });
    this.clients.push(c);
    try {
      const s = await c.stats(5000);
      return s.regions.find((r) => r.region === regionId)?.pages ?? 0;
    } finally {
      await c.close();
    }
  }

  async cleanup(): Promise<void> {
    for (const r of this.runs) r.kill('SIGKILL');
    if (this.daemon && this.daemon.exitCode === null && this.daemon.signalCode === null) {
      const d = this.daemon;
      const gone = new Promise((r) => d.once('exit', r));
      d.kill('SIGKILL'); // a drain towards dead servers would wait; nothing here needs a clean stop
      await gone;
    }
    this.hosts.destroy();
    fs.rmSync(this.dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  }
}

