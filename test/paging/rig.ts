// What the paging tests share: an external memory server child (it must outlive farmemd so pages
// written back before a crash survive it), a farmemd child with a small page cache, and fmattach
// runs through libfarmem. Everything is stopped by t.after, even when a test fails.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { FARMEM, farmem, startFarmemd, tempDir, type Farmemd } from '../helpers/farmemd';
import { onJsonLines } from '../helpers/json-lines';
import { workloadBin } from '../helpers/pattern';

const ROOT = path.join(__dirname, '..', '..', '..');
const MEMSERVER = path.join(ROOT, 'daemon', 'bin', 'farmem-memserver.js');
export const FMATTACH = workloadBin('fmattach');
export { FARMEM };

export interface Memserver {
  address: string;
  child: ChildProcess;
  stop(): Promise<void>;
}

/** farmem-memserver on `listen` (127.0.0.1:0 by default); resolves with the address it logged. */
export function startMemserver(t: TestContext, opts: { listen?: string; capacity?: string; dataDir?: string } = {}): Promise<Memserver> {
  const args = [MEMSERVER, '--listen', opts.listen ?? '127.0.0.1:0', '--capacity', opts.capacity ?? '256MiB'];
  if (opts.dataDir !== undefined) args.push('--data-dir', opts.dataDir);
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  t.after(stop);
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += d;
      const m = /"address":"([^"]+)"/.exec(out);
      if (m) resolve({ address: m[1]!, child, stop });
    });
    void exited.then(() => reject(new Error(`farm-memserver exited before listening: ${err}${out}`)));
  });
}

export interface Daemon extends Farmemd {
  attachSocket: string;
}

const daemonsIn = new Map<string, Farmemd[]>();

/**
 * A state dir shared by the daemons of one test (a restart reuses it), removed at the end once every
 * daemon started in it is dead: a live one keeps writing into it (replay recordings).
 */
export function stateDir(t: TestContext, name: string): string {
  const dir = tempDir(name);
  daemonsIn.set(dir, []);
  t.after(async () => {
    for (const f of daemonsIn.get(dir) ?? []) await f.stop('SIGKILL');
    daemonsIn.delete(dir);
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  });
  return dir;
}

/** farmemd with a 1 MiB page cache on `servers`; `dir` (from stateDir) reuses a state dir and attach socket (restart). */
export async function startDaemon(t: TestContext, servers: string[], dir?: string, extra: string[] = []): Promise<Daemon> {
  const d = dir ?? tempDir('paging');
  const attachSocket = path.join(d, 'attach.sock');
  let f: Farmemd | null = null;
  // One hook, in this order: the daemon writes into its state dir (replay recordings) until it is dead.
  t.after(async () => {
    await f?.stop('SIGKILL');
    if (dir === undefined) fs.rmSync(d, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  });
  f = await startFarmemd({ dir: d, servers, args: ['--attach-socket', attachSocket, '--cache-size', '1MiB', ...extra] });
  if (dir !== undefined) daemonsIn.get(dir)?.push(f);
  return { ...f, attachSocket };
}

/** The CLI; throws with its output when it fails. */
export function cli(d: Daemon, args: string[]): string {
  const r = farmem(d.socket, args);
  if (r.status !== 0) throw new Error(`farmem ${args.join(' ')} exited ${r.status}: ${r.stderr}${r.stdout}`);
  return r.stdout;
}

export interface RegionShow {
  residentPages: number;
  dirtyPages: number;
  evictedPages: number;
  writtenBackPages: number;
  writeBackStalled?: boolean;
  writeBackStalls?: number;
  faults: { cacheHit: number; remote: number; zero: number; writeProtect: number };
}

export function show(d: Daemon, name: string): RegionShow {
  return (JSON.parse(cli(d, ['region', 'show', name, '--json'])) as { stats: RegionShow }).stats;
}

export interface Run {
  child: ChildProcess;
  /** Parsed JSON lines of stdout so far. */
  lines: Array<Record<string, unknown>>;
  stderr(): string;
  done: Promise<number>;
  /** Resolves when a line satisfying `pred` has been printed. */
  line(pred: (l: Record<string, unknown>) => boolean): Promise<Record<string, unknown>>;
}

/** Starts fmattach against the daemon's attach socket. */
export function fmattach(t: TestContext, attachSocket: string, args: string[]): Run {
  return start(t, FMATTACH, ['--socket', attachSocket, ...args]);
}

/** Starts test/paging/node_writer.js (the Node attach API) against the daemon's attach socket. */
export function nodeWriter(t: TestContext, attachSocket: string, region: string, pages: number, seed: number): Run {
  return start(t, process.execPath, [path.join(__dirname, 'node_writer.js'), attachSocket, region, String(pages), String(seed)]);
}

/** A child printing JSON lines on stdout. */
function start(t: TestContext, cmd: string, argv: string[]): Run {
  const child = spawn(cmd, argv, { stdio: ['pipe', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines: Array<Record<string, unknown>> = [];
  const waiters: Array<() => void> = [];
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  onJsonLines(child.stdout!, (l) => {
    lines.push(l);
    for (const w of waiters.splice(0)) w();
  }, (raw) => (err += `not JSON on stdout: ${raw}\n`));
  const done = new Promise<number>((resolve) => child.once('exit', (code, sig) => resolve(code ?? (sig === null ? -1 : 128))));
  const line = (pred: (l: Record<string, unknown>) => boolean) =>
    new Promise<Record<string, unknown>>((resolve, reject) => {
      const check = () => {
        const l = lines.find(pred);
        if (l) return resolve(l);
        if (child.exitCode !== null) return reject(new Error(`fmattach exited ${child.exitCode}: ${err}`));
        waiters.push(check);
      };
      void done.then(() => waiters.push(() => undefined)).then(check);
      check();
    });
  return { child, lines, stderr: () => err, done, line };
}

/** Runs fmattach to the end; asserts exit 0 and returns its op lines. */
export async function runOk(t: TestContext, attachSocket: string, args: string[]): Promise<Array<Record<string, unknown>>> {
  const r = fmattach(t, attachSocket, args);
  const code = await r.done;
  if (code !== 0) throw new Error(`fmattach ${args.join(' ')} exited ${code}: ${r.stderr()}${JSON.stringify(r.lines)}`);
  return r.lines;
}

export async function until(what: string, cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
