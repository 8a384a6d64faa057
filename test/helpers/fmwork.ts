// Runs the C workload fmwork as a child that faults through a uffd it hands to the test.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fdpass, closeFd, type NativeSeqpacketServer } from '../../daemon/native';
import { workloadBin, type FmworkResult } from './pattern';

export interface FmworkChild {
  child: ChildProcess;
  uffd: number;
  address: bigint;
  length: number;
  pageSize: number;
  pid: number;
  /** Tells fmwork to start touching pages. */
  go(): void;
  /** fmwork's JSON line and exit code. */
  result: Promise<{ code: number | null; signal: NodeJS.Signals | null; json: FmworkResult | null; stderr: string }>;
  /** Kills the child (if running), closes the uffd and the socket. */
  dispose(): void;
}

export interface FmworkOptions {
  pages: number;
  pageSize?: number;
  pattern?: string;
  op?: 'read' | 'write' | 'verify';
  seed?: number;
  wp?: boolean;
  repeat?: number;
  cpu?: number;
  timing?: boolean;
  /** A memfd to send to fmwork (it maps it MAP_SHARED instead of anonymous memory). */
  memfd?: number;
}

/** Starts fmwork and resolves once it has sent its uffd (it then waits for go()). */
export async function startFmwork(opts: FmworkOptions): Promise<FmworkChild> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fmwork-'));
  const sock = path.join(dir, 's');
  let conn = -1;
  let server: NativeSeqpacketServer | null = null;
  const hello = new Promise<{ uffd: number; payload: Buffer }>((resolve, reject) => {
    server = fdpass.listen(sock, 0o600, (e) => {
      if (e.type === 'connect') {
        conn = e.conn;
        if (opts.memfd !== undefined) server!.send(conn, Buffer.from('m'), [opts.memfd]);
      } else if (e.type === 'message') {
        if (e.fds.length !== 1 || e.payload.length !== 24) reject(new Error(`fmwork sent ${e.payload.length} bytes and ${e.fds.length} fds`));
        else resolve({ uffd: e.fds[0]!, payload: e.payload });
      }
    });
  });
  const args = ['--socket', sock, '--pages', String(opts.pages), '--page-size', String(opts.pageSize ?? 4096)];
  if (opts.memfd !== undefined) args.push('--memfd');
  if (opts.pattern) args.push('--pattern', opts.pattern);
  if (opts.op) args.push('--op', opts.op);
  if (opts.seed !== undefined) args.push('--seed', String(opts.seed));
  if (opts.wp) args.push('--wp');
  if (opts.repeat !== undefined) args.push('--repeat', String(opts.repeat));
  if (opts.cpu !== undefined) args.push('--cpu', String(opts.cpu));
  if (opts.timing) args.push('--timing');
  const child = spawn(workloadBin('fmwork'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  const result = new Promise<{ code: number | null; signal: NodeJS.Signals | null; json: FmworkResult | null; stderr: string }>((resolve) => {
    child.once('error', (err) => resolve({ code: null, signal: null, json: null, stderr: `spawn ${workloadBin('fmwork')}: ${err.message} (run npm run build)` }));
    child.once('exit', (code, signal) => {
      const line = stdout.trim().split('\n').pop() ?? '';
      let json: FmworkResult | null = null;
      try {
        json = line ? (JSON.parse(line) as FmworkResult) : null;
      } catch {
        json = null;
      }
      resolve({ code, signal, json, stderr });
    });
  });
  const early = result.then((r) => {
    throw new Error(`fmwork exited before sending its uffd (code ${r.code}): ${r.stderr.trim()}`);
  });
  let got: { uffd: number; payload: Buffer };
  try {
    got = await Promise.race([hello, early]);
  } catch (e) {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    server!.close();
    fs.rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const { uffd, payload } = got;
  let disposed = false;
  return {
    child,
    uffd,
    address: payload.readBigUInt64LE(0),
    length: Number(payload.readBigUInt64LE(8)),
    pageSize: payload.readUInt32LE(16),
    pid: payload.readUInt32LE(20),
    go: () => server!.send(conn, Buffer.from('g'), []),
    result,
    dispose: () => {
      if (disposed) return;
      disposed = true;
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
      try {
        closeFd(uffd);
      } catch {
        /* already closed */
      }
      server!.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
