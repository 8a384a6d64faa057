// A real farmemd child process on a temporary socket and state dir, and a runner for the real
// `farmem` CLI against it. Always stopped and cleaned up by the caller (t.after).
import { spawn, spawnSync, type ChildProcess, type SpawnSyncReturns } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { onJsonLines } from './json-lines';

const ROOT = path.join(__dirname, '..', '..', '..');
export const FARMEMD = path.join(ROOT, 'daemon', 'bin', 'farmemd.js');
export const FARMEM = path.join(ROOT, 'client', 'bin', 'farmem.js');

export interface Farmemd {
  dir: string;
  socket: string;
  stateDir: string;
  child: ChildProcess;
  /** Every stdout line so far, parsed (pino JSON). */
  lines: Array<Record<string, unknown>>;
  stderr(): string;
  /** SIGTERM, then the exit code (or signal name). */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export function tempDir(tag: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `farmem-${tag}-`));
}

/**
 * Starts farmemd and resolves once it logged READY. `dir` reuses a state dir (restart). `servers`:
 * memory servers to use (default: an unreachable one, for tests that never page). `env` is added to
 * the environment (NOTIFY_SOCKET is '' unless given). `listenFds` are passed as systemd passes its
 * fd store: as fds 3.. with LISTEN_FDS, LISTEN_FDNAMES and LISTEN_PID (the daemon's own pid, which
 * only a shell that execs node can know).
 */
export function startFarmemd(
  opts: { dir?: string; args?: string[]; config?: string; servers?: string[]; env?: NodeJS.ProcessEnv; listenFds?: Array<{ fd: number; name: string }> } = {},
): Promise<Farmemd> {
  const dir = opts.dir ?? tempDir('ctl');
  const socket = path.join(dir, 'farmemd.sock');
  const stateDir = path.join(dir, 'state');
  const servers = (opts.servers ?? ['127.0.0.1:1']).flatMap((s) => ['--memory-server', s]);
  const args = [FARMEMD, '--socket', socket, '--state-dir', stateDir, '--no-embedded-server', ...servers, ...(opts.args ?? [])];
  if (opts.config !== undefined) {
    const file = path.join(dir, 'farmemd.toml');
    fs.writeFileSync(file, opts.config);
    args.push('--config', file);
  }
  const env: NodeJS.ProcessEnv = { ...process.env, NOTIFY_SOCKET: '', ...opts.env };
  const passed = opts.listenFds ?? [];
  const child =
    passed.length === 0
      ? spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env })
      : spawn('/bin/sh', ['-c', 'LISTEN_PID=$$; export LISTEN_PID; exec "$0" "$@"', process.execPath, ...args], {
          stdio: ['ignore', 'pipe', 'pipe', ...passed.map((p) => p.fd)],
          env: { ...env, LISTEN_FDS: String(passed.length), LISTEN_FDNAMES: passed.map((p) => p.name).join(':') },
        });
  const lines: Array<Record<string, unknown>> = [];
  let err = '';
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  child.stderr!.on('data', (d) => (err += d));
  return new Promise((resolve, reject) => {
    onJsonLines(child.stdout!, (j) => {
      lines.push(j);
      if (j.state === 'READY') {
        resolve({
          dir,
          socket,
          stateDir,
          child,
          lines,
          stderr: () => err,
          stop: async (signal = 'SIGTERM') => {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            return exited;
          },
        });
      }
    }, (raw) => (err += `${raw}\n`));
    void exited.then((code) => reject(new Error(`farmemd exited (${code}) before READY: ${err}${lines.map((l) => JSON.stringify(l)).join('\n')}`)));
  });
}

/** Runs the farmem CLI (as `uid` when given) and returns its output and status. */
export function farmem(socket: string | null, args: string[], opts: { uid?: number; gid?: number } = {}): SpawnSyncReturns<string> & { status: number } {
  const full = [FARMEM, ...(socket === null ? [] : ['--socket', socket]), ...args];
  let cmd = process.execPath;
  let argv = full;
  if (opts.uid !== undefined) {
    cmd = 'setpriv';
    argv = [`--reuid=${opts.uid}`, `--regid=${opts.gid ?? opts.uid}`, '--clear-groups', process.execPath, ...full];
  }
  const r = spawnSync(cmd, argv, { encoding: 'utf8', env: { ...process.env, FARMEM_SOCKET: '' }, timeout: 30_000 });
  return r as SpawnSyncReturns<string> & { status: number };
}

/** null when the addon reads SO_PEERCRED; else why ACL tests across uids cannot run. */
export function peerCredUnavailable(): string | null {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const a = require(path.join(ROOT, 'build', 'Release', 'farmem_native.node')) as { peerCred?: unknown };
    return typeof a.peerCred === 'function' ? null : 'the native addon has no peerCred yet (native/src/fd_passing.cc): the control socket cannot tell uids apart';
  } catch (e) {
    return `the native addon did not load (${(e as Error).message.split('\n')[0]}): run npx node-gyp rebuild`;
  }
}
