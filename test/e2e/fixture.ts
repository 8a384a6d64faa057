// The e2e rig: a real farmemd child with a tiny page cache (so pages really come from the memory
// server), a real memory server in this process behind a TCP proxy the test can stall, and async
// runners for the CLI and the workloads (never spawnSync: the memory server lives on this event loop).
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import pino from 'pino';

import { MemoryServer } from '../../daemon/memserver/server';
import { FARMEM, FARMEMD } from '../helpers/farmemd';
import { onJsonLines } from '../helpers/json-lines';

interface After {
  after(fn: () => Promise<void> | void): void;
}

/** A fresh dir, removed at the end after `before` (e.g. stopping the daemon that writes into it). */
export function tempDir(t: After, tag: string, before: () => Promise<void> = async () => {}): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `farmem-e2e-${tag}-`));
  fs.chmodSync(d, 0o755); // other uids connect to the sockets in it
  t.after(async () => {
    await before();
    fs.rmSync(d, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  });
  return d;
}

export async function memoryServer(t: After): Promise<MemoryServer> {
  const s = await MemoryServer.start({ listen: '127.0.0.1:0', capacityBytes: 256 * 1024 * 1024, dataDir: null, logger: pino({ level: 'silent' }) });
  t.after(() => s.stop(500));
  return s;
}

/**
 * A TCP proxy in front of the memory server. stall(): bytes in both directions are held (the
 * connections stay up, so requests wait like on a hung server); resume() delivers them in order.
 */
export class StallProxy {
  address = '';
  private readonly server: net.Server;
  private readonly conns = new Set<{ a: net.Socket; b: net.Socket; held: [net.Socket, Buffer][] }>();
  private stalled = false;
  private down = false;
  /** Connections refused while down (farmemd trying again). */
  refused = 0;
  /** Bytes from farmemd that arrived while stalled (a request is out when this grows). */
  heldBytes = 0;

  constructor(target: string) {
    this.server = net.createServer((a) => {
      if (this.down) {
        this.refused++;
        a.destroy();
        return;
      }
      const [host, port] = [target.slice(0, target.lastIndexOf(':')), Number(target.slice(target.lastIndexOf(':') + 1))];
      const b = net.connect(port, host);
      const c = { a, b, held: [] as [net.Socket, Buffer][] };
      this.conns.add(c);
      const fwd = (from: net.Socket, to: net.Socket) =>
        from.on('data', (d: Buffer) => {
          if (this.stalled) {
            c.held.push([to, d]);
            if (from === a) this.heldBytes += d.length;
          } else to.write(d);
        });
      fwd(a, b);
      fwd(b, a);
      const end = () => {
        a.destroy();
        b.destroy();
        this.conns.delete(c);
      };
      a.on('error', end).on('close', end);
      b.on('error', end).on('close', end);
    });
  }

  async start(): Promise<this> {
    await new Promise<void>((res) => this.server.listen(0, '127.0.0.1', () => res()));
    this.address = `127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
    return this;
  }

  stall(): void {
    this.stalled = true;
    this.heldBytes = 0;
  }

  /** The server is gone: every connection is cut, new ones are closed at once. */
  goDown(): void {
    this.down = true;
    this.refused = 0;
    for (const c of this.conns) {
      c.a.destroy();
      c.b.destroy();
    }
  }

  comeBack(): void {
    this.down = false;
  }

  resume(): void {
    this.stalled = false;
    for (const c of this.conns) {
      for (const [to, d] of c.held) if (!to.destroyed) to.write(d);
      c.held = [];
    }
  }

  close(): Promise<void> {
    for (const c of this.conns) {
      c.a.destroy();
      c.b.destroy();
    }
    return new Promise((res) => this.server.close(() => res()));
  }
}

export async function stallProxy(t: After, target: string): Promise<StallProxy> {
  const p = await new StallProxy(target).start();
  t.after(() => p.close());
  return p;
}

export interface Daemon {
  dir: string;
  socket: string;
  attachSocket: string;
  metrics: string;
  child: ChildProcess;
  lines: Record<string, unknown>[];
  /** Resolves with the first log line (so far or to come) that matches. */
  waitLog(pred: (l: Record<string, unknown>) => boolean, what: string): Promise<Record<string, unknown>>;
}

/**
 * farmemd on `server` (null: the servers of `config`) with a 1 MiB page cache and metrics on port 0;
 * SIGTERM (then SIGKILL) at the end. `config`: TOML for farmemd.toml (at `${dir}/farmemd.toml`).
 */
export async function farmemd(t: After, server: string | null, opts: { args?: string[]; config?: string } = {}): Promise<Daemon> {
  let stop = async () => {};
  // The dir goes only once the daemon is dead: until then it writes into it (replay recordings).
  const dir = tempDir(t, 'd', () => stop());
  const extra = [...(opts.args ?? [])];
  if (opts.config !== undefined) {
    fs.writeFileSync(path.join(dir, 'farmemd.toml'), opts.config);
    extra.push('--config', path.join(dir, 'farmemd.toml'));
  }
  const socket = path.join(dir, 'ctl.sock');
  const attachSocket = path.join(dir, 'attach.sock');
  const args = [
    FARMEMD, '--socket', socket, '--attach-socket', attachSocket, '--state-dir', path.join(dir, 'state'), '--no-embedded-server',
    ...(server === null ? [] : ['--memory-server', server]), '--cache-size', '1MiB', '--metrics', '127.0.0.1:0', '--drain-timeout', '3s', ...extra,
  ];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NOTIFY_SOCKET: '' } });
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  };
  const lines: Record<string, unknown>[] = [];
  const waiters: { pred: (l: Record<string, unknown>) => boolean; res: (l: Record<string, unknown>) => void }[] = [];
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  onJsonLines(child.stdout!, (l) => {
    lines.push(l);
    for (const w of [...waiters]) if (w.pred(l)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.res(l);
    }
  });
  const waitLog = (pred: (l: Record<string, unknown>) => boolean, what: string) => {
    const hit = lines.find(pred);
    if (hit !== undefined) return Promise.resolve(hit);
    return new Promise<Record<string, unknown>>((res, rej) => {
      waiters.push({ pred, res });
      void exited.then(() => rej(new Error(`farmemd exited before logging ${what}: ${err}`)));
    });
  };
  await waitLog((l) => l.state === 'READY', 'READY');
  const m = lines.find((l) => typeof l.metrics === 'string');
  return { dir, socket, attachSocket, metrics: m === undefined ? '' : String(m.metrics), child, lines, waitLog };
}

export interface Out {
  code: number;
  stdout: string;
  stderr: string;
}

/** The farmem CLI against d (async). */
export function cli(d: Daemon, args: string[], env: NodeJS.ProcessEnv = {}): Promise<Out> {
  return new Promise((res) => {
    execFile(process.execPath, [FARMEM, '--socket', d.socket, ...args], { env: { ...process.env, FARMEM_SOCKET: '', ...env }, timeout: 60_000 }, (e, stdout, stderr) =>
      res({ code: e === null ? 0 : typeof e.code === 'number' ? e.code : -1, stdout, stderr }),
    );
  });
}

/** `farmem <args> --json`, parsed; fails the test on a non-zero exit. */
export async function cliJson<T = Record<string, unknown>>(d: Daemon, args: string[]): Promise<T> {
  const r = await cli(d, [...args, '--json']);
  if (r.code !== 0) throw new Error(`farmem ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout) as T;
}

export interface Faults {
  cacheHit: number;
  remote: number;
  zero: number;
  writeProtect: number;
}

export async function regionStats(d: Daemon, name: string): Promise<{ faults: Faults; remoteBytesIn: number; faultP50Us: number; faultP99Us: number; attachments: { pid: number }[] }> {
  const s = await cliJson<{ stats: never }>(d, ['region', 'show', name]);
  return s.stats;
}

/**
 * Region stats once pred holds: the fault thread hands cache-hit events to JS in held-back batches
 * (after a quiet moment), so counts settle shortly after the process is done. A bounded wait.
 */
export async function settledStats(d: Daemon, name: string, pred: (s: Awaited<ReturnType<typeof regionStats>>) => boolean): Promise<Awaited<ReturnType<typeof regionStats>>> {
  const end = Date.now() + 10_000;
  for (;;) {
    const s = await regionStats(d, name);
    if (pred(s) || Date.now() > end) return s;
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Scrapes /metrics into name{labels} → value. */
export function scrape(d: Daemon): Promise<Map<string, number>> {
  return new Promise((res, rej) => {
    http.get(`http://${d.metrics}/metrics`, (r) => {
      let body = '';
      r.on('data', (c) => (body += c));
      r.on('end', () => {
        const m = new Map<string, number>();
        for (const line of body.split('\n')) {
          if (line.startsWith('#') || line.trim() === '') continue;
          const i = line.lastIndexOf(' ');
          m.set(line.slice(0, i), Number(line.slice(i + 1)));
        }
        res(m);
      });
    }).on('error', rej);
  });
}

/** Writes, syncs and drops region `name`'s pages so the next touch must fetch them. */
export async function writeBackAndDrop(d: Daemon, name: string): Promise<void> {
  for (const op of ['sync', 'evict']) {
    const r = await cli(d, ['region', op, name]);
    if (r.code !== 0) throw new Error(`farmem region ${op} ${name} exited ${r.code}: ${r.stderr}`);
  }
}
