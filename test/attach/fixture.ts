// Shared set-up for the attach tests: a fresh socket dir, a TestHost, an AttachServer, and helpers
// to run fmattach and Node children against it.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { AttachServer, type AttachServerOptions } from '../../daemon/attach';
import { workloadBin } from '../helpers/pattern';
import { TestHost } from './host';

export interface Env {
  dir: string;
  sock: string;
  host: TestHost;
  server: AttachServer;
  /** Closes the server and recreates it on the same path (a daemon restart keeping the host). */
  restart(): void;
  cleanup(): void;
}

export function setup(opts: Partial<AttachServerOptions> = {}): Env {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-attach-'));
  fs.chmodSync(dir, 0o755); // so a test may connect as another uid
  const sock = path.join(dir, 'attach.sock');
  const host = new TestHost();
  const env: Env = {
    dir,
    sock,
    host,
    server: new AttachServer({ ...opts, path: sock, host }),
    restart() {
      env.server.close();
      env.server = new AttachServer({ ...opts, path: sock, host });
    },
    cleanup() {
      env.server.close();
      host.close();
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
    },
  };
  return env;
}

export interface Run {
  child: ChildProcess;
  lines: string[];
  stderr: () => string;
  /** Resolves with the next stdout line matching pred. */
  line(pred: (l: string) => boolean): Promise<string>;
  done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>;
}

export function start(cmd: string, args: string[], opts: { uid?: number; env?: NodeJS.ProcessEnv } = {}): Run {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], uid: opts.uid, env: opts.env ?? process.env });
  let out = '';
  let err = '';
  const lines: string[] = [];
  const waiters: { pred: (l: string) => boolean; res: (l: string) => void }[] = [];
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
    const parts = out.split('\n');
    for (const l of parts.slice(lines.length, parts.length - 1)) {
      lines.push(l);
      for (const w of [...waiters]) if (w.pred(l)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.res(l);
      }
    }
  });
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const done = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((res) =>
    child.on('close', (code, signal) => res({ code, signal, stdout: out, stderr: err })),
  );
  return {
    child,
    lines,
    stderr: () => err,
    line(pred) {
      const hit = lines.find(pred);
      if (hit !== undefined) return Promise.resolve(hit);
      return new Promise((res, rej) => {
        waiters.push({ pred, res });
        void done.then((d) => rej(new Error(`process exited (${d.code ?? d.signal}) before the line; stderr: ${d.stderr}`)));
      });
    },
    done,
  };
}

export function fmattach(sock: string, args: string[], opts: { uid?: number } = {}): Run {
  return start(workloadBin('fmattach'), ['--socket', sock, ...args], opts);
}

/** Runs a Node script (the compiled test/attach/child.js) that uses client/attach.ts. */
export function nodeChild(sock: string, args: string[]): Run {
  return start(process.execPath, [path.join(__dirname, 'child.js'), sock, ...args]);
}

export function openFds(): string[] {
  return fs.readdirSync('/proc/self/fd').sort();
}

/** Waits until cond() holds, polling the event loop (not a timed assertion: a bounded wait). */
export async function until(cond: () => boolean, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}
