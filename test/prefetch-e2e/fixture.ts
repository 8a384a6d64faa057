// A real farmemd child with its embedded memory server on loopback, a small page cache, its control
// and attach sockets in a fresh temp dir; helpers to run the farmem CLI and fmattach against it and
// to read a region's figures from `farmem region show --json`.
import assert from 'node:assert/strict';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseRecording } from '../../daemon/prefetch';
import { FARMEM, FARMEMD } from '../helpers/farmemd';
import { onJsonLines } from '../helpers/json-lines';
import { workloadBin } from '../helpers/pattern';

export interface Daemon {
  dir: string;
  stateDir: string;
  metrics: string;
  /** Runs `farmem ARGS`; throws with its stderr unless it exits 0 (or `allowFail`). */
  cli(args: string[], allowFail?: boolean): { status: number; stdout: string; stderr: string };
  /** Runs fmattach; resolves with its parsed JSON lines (one per op), throws unless it exits 0. */
  fmattach(args: string[]): Array<Record<string, unknown>>;
  show(name: string): RegionFigures;
  scrape(): Promise<string>;
  /** SIGTERM, resolved once farmemd exited; its dir stays (for a look at the state dir). */
  terminate(): Promise<void>;
  /** terminate(), then the dir is removed. */
  stop(): Promise<void>;
}

export interface RegionFigures {
  prefetch: string;
  warmOnAttach: boolean;
  stats: {
    residentPages: number;
    faults: { cacheHit: number; remote: number; zero: number; writeProtect: number };
    prefetchAccuracy: number;
    prefetchCoverage: number;
    prefetchedPages: number;
    prefetchUsedPages: number;
    prefetchWastedPages: number;
    prefetchWastedBytes: number;
    prefetchPolicy: string;
    remoteBytesIn: number;
  };
}

export async function startDaemon(cacheSize: string): Promise<Daemon> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-pfe2e-'));
  const socket = path.join(dir, 'ctl.sock');
  const attach = path.join(dir, 'attach.sock');
  const stateDir = path.join(dir, 'state');
  const args = [FARMEMD, '--socket', socket, '--attach-socket', attach, '--state-dir', stateDir, '--embedded-listen', '127.0.0.1:0', '--cache-size', cacheSize, '--metrics', '127.0.0.1:0'];
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NOTIFY_SOCKET: '' } });
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += d));
  const exited = new Promise<void>((res) => child.once('exit', () => res()));
  let metrics = '';
  await new Promise<void>((resolve, reject) => {
    onJsonLines(child.stdout!, (j) => {
      if (typeof j.metrics === 'string') metrics = j.metrics;
      if (j.state === 'READY') resolve();
    }, (raw) => (out += `${raw}\n`));
    void exited.then(() => reject(new Error(`farmemd exited before READY: ${err}${out}`)));
  });
  const env = { ...process.env, FARMEM_SOCKET: '', FARMEM_ATTACH_SOCKET: attach };
  const d: Daemon = {
    dir,
    stateDir,
    metrics,
    cli(a, allowFail = false) {
      const r = spawnSync(process.execPath, [FARMEM, '--socket', socket, ...a], { encoding: 'utf8', env, timeout: 60_000 });
      if (!allowFail && r.status !== 0) throw new Error(`farmem ${a.join(' ')}: exit ${r.status}: ${r.stderr}`);
      return { status: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
    },
    fmattach(a) {
      const r = spawnSync(workloadBin('fmattach'), a, { encoding: 'utf8', env, timeout: 120_000 });
      if (r.status !== 0) throw new Error(`fmattach ${a.join(' ')}: exit ${r.status}: ${r.stderr}${r.stdout}`);
      return r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    show(name) {
      return JSON.parse(d.cli(['region', 'show', name, '--json']).stdout) as RegionFigures;
    },
    scrape() {
      return new Promise((resolve, reject) => {
        http.get(`http://${metrics}/metrics`, (res) => {
          let body = '';
          res.on('data', (c) => (body += c));
          res.on('end', () => resolve(body));
        }).on('error', reject);
      });
    },
    async terminate() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
    async stop() {
      await d.terminate();
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
    },
  };
  return d;
}

/** What happened between two `show`s: prefetch outcomes and faults of one run. */
export function delta(a: RegionFigures, b: RegionFigures) {
  const s = a.stats;
  const t = b.stats;
  const used = t.prefetchUsedPages - s.prefetchUsedPages;
  const issued = t.prefetchedPages - s.prefetchedPages;
  const remote = t.faults.remote - s.faults.remote;
  const zero = t.faults.zero - s.faults.zero;
  return {
    issued,
    used,
    wasted: t.prefetchWastedPages - s.prefetchWastedPages,
    remote,
    zero,
    cacheHit: t.faults.cacheHit - s.faults.cacheHit,
    accuracy: issued === 0 ? 0 : used / issued,
    coverage: used + remote + zero === 0 ? 0 : used / (used + remote + zero),
  };
}

/**
 * `farmem region evict` keeps the evicted bytes in the native cache: push them out with another
 * region's evicted pages, so the next run of the region really has to go to the memory server.
 */
export function flushCache(d: Daemon, pages: number, name = 'filler') {
  d.cli(['region', 'create', name, '--size', `${(pages * 4) / 1024}MiB`, '--prefetch', 'none']);
  d.fmattach(['--region', name, '--pages', String(pages), '--op', 'write', '--seed', '99']);
  d.cli(['region', 'sync', name]);
  d.cli(['region', 'evict', name]);
}

/** The recording lands when the detach is processed: wait for it (bounded). */
export async function recordingOf(d: Daemon, name: string, pages: number) {
  const id = (JSON.parse(d.cli(['region', 'show', name, '--json']).stdout) as { id: string }).id;
  const file = path.join(d.stateDir, 'replay', `${id}.fmrp`);
  for (let i = 0; i < 200; i++) {
    if (fs.existsSync(file)) {
      const rec = parseRecording(fs.readFileSync(file));
      if (rec.pages.length === pages) return rec;
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`no recording of ${pages} pages at ${file}`);
}

/**
 * fmattach --pause: attached and waiting before its op `until` (default: the first), the ops before
 * it run; `go()` lets the rest run and resolves with the last op's result; `kill()` ends it at once.
 */
export async function pausedAttach(d: Daemon, args: string[], t: { after(fn: () => void): void }, until?: string) {
  const child: ChildProcessWithoutNullStreams = spawn(workloadBin('fmattach'), [...args, '--pause'], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: { ...process.env, FARMEM_ATTACH_SOCKET: path.join(d.dir, 'attach.sock') },
  });
  t.after(() => child.kill('SIGKILL'));
  let last: Record<string, unknown> | null = null;
  let err = '';
  child.stderr.on('data', (c) => (err += c));
  const done = new Promise<number | null>((res) => child.on('close', (code) => res(code)));
  await new Promise<void>((res, rej) => {
    onJsonLines(child.stdout, (j) => {
      if (!('ready' in j)) last = j;
      else if (until === undefined || j.ready === until) res();
      else child.stdin.write('\n'); // an earlier op: let it run
    }, (raw) => (err += `not JSON on stdout: ${raw}\n`));
    void done.then(() => rej(new Error(`fmattach exited: ${err}`)));
  });
  return {
    async go() {
      child.stdin.write('\n');
      assert.equal(await done, 0, err);
      assert.ok(last !== null, `fmattach printed no result: ${err}`);
      return last as unknown as { mismatches: number };
    },
    kill() {
      child.kill('SIGKILL');
    },
  };
}
