// Runs fmwork (test/workloads/fmwork.c) as a faulting child: listens on a fresh SOCK_SEQPACKET socket,
// hands it a memfd (memfd mode), receives its {addr,len,page_size,pid} + uffd, and lets the test say
// "go". Used by the fault-thread tests and the fault benchmark. Main thread only.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addon, type NativeSeqpacketServer, type SeqpacketEvent } from '../../daemon/native';
import { workloadBin } from './pattern';

export interface FmworkOptions {
  pages: number;
  pageSize?: number;
  memfd: boolean;
  pattern?: string;
  op?: 'read' | 'write' | 'verify';
  seed?: number;
  wp?: boolean;
  cpu?: number | null;
  timing?: boolean;
  repeat?: number;
}

export interface FmworkResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  /** The JSON line fmwork prints, or null when it printed none. */
  json: { pages: number; checksum: string; mismatches: number; ns: number; p50_ns: number | null; p99_ns: number | null } | null;
}

export interface FmworkChild {
  proc: ChildProcess;
  pid: number;
  uffd: number;
  memfd: number | null;
  address: bigint;
  length: number;
  pageSize: number;
  /** Lets fmwork start touching pages. */
  go(): void;
  /** Resolves when fmwork exits. */
  done: Promise<FmworkResult>;
  /** Kills fmwork if still running, closes the fds and the socket, removes the directory. Idempotent. */
  close(): Promise<void>;
}

export async function startFmwork(o: FmworkOptions): Promise<FmworkChild> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-fault-'));
  const sock = path.join(dir, 's');
  const pageSize = o.pageSize ?? 4096;
  const memfd = o.memfd ? addon().memfdCreate('fmwork', o.pages * pageSize) : null;
  let server: NativeSeqpacketServer | null = null;
  let conn = -1;
  let proc: ChildProcess | null = null;
  let closed = false;
  const close = async (): Promise<void> => {
    if (closed) return;
    closed = true;
    if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    await done.catch(() => undefined);
    server?.close();
    if (memfd !== null) addon().closeFd(memfd);
    if (hello) addon().closeFd(hello.uffd);
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  };
  let hello: { uffd: number; address: bigint; length: number; pageSize: number; pid: number } | null = null;
  let onHello: (e: Error | null) => void = () => undefined;
  const gotHello = new Promise<void>((resolve, reject) => {
    onHello = (e) => (e ? reject(e) : resolve());
  });
  server = addon().seqpacketListen(sock, 0o600, (e: SeqpacketEvent) => {
    if (e.type === 'connect') {
      conn = e.conn;
      if (memfd !== null) server!.send(conn, Buffer.from('m'), [memfd]);
    } else if (e.type === 'message' && hello === null) {
      if (e.payload.length !== 24 || e.fds.length !== 1) {
        for (const fd of e.fds) addon().closeFd(fd);
        onHello(new Error(`fmwork sent ${e.payload.length} bytes and ${e.fds.length} fds`));
        return;
      }
      hello = {
        uffd: e.fds[0]!,
        address: e.payload.readBigUInt64LE(0),
        length: Number(e.payload.readBigUInt64LE(8)),
        pageSize: e.payload.readUInt32LE(16),
        pid: e.payload.readUInt32LE(20),
      };
      onHello(null);
    }
  });
  const args = ['--socket', sock, '--pages', String(o.pages), '--page-size', String(pageSize)];
  if (o.memfd) args.push('--memfd');
  if (o.pattern) args.push('--pattern', o.pattern);
  if (o.op) args.push('--op', o.op);
  if (o.seed !== undefined) args.push('--seed', String(o.seed));
  if (o.wp) args.push('--wp');
  if (o.cpu !== undefined && o.cpu !== null) args.push('--cpu', String(o.cpu));
  if (o.timing) args.push('--timing');
  if (o.repeat !== undefined) args.push('--repeat', String(o.repeat));
  proc = spawn(workloadBin('fmwork'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout!.on('data', (b: Buffer) => (stdout += b.toString()));
  proc.stderr!.on('data', (b: Buffer) => (stderr += b.toString()));
  const done = new Promise<FmworkResult>((resolve, reject) => {
    proc!.on('error', reject);
    proc!.on('close', (code, signal) => {
      const line = stdout.split('\n').find((l) => l.startsWith('{'));
      resolve({ code, signal, stdout, stderr, json: line ? JSON.parse(line) : null });
      onHello(new Error(`fmwork exited (${code ?? signal}) before its hello: ${stderr.trim()}`));
    });
  });
  try {
    await gotHello;
  } catch (e) {
    await close();
    throw e;
  }
  const h = hello!;
  return {
    proc,
    pid: h.pid,
    uffd: h.uffd,
    memfd,
    address: h.address,
    length: h.length,
    pageSize: h.pageSize,
    go: () => server!.send(conn, Buffer.from('g'), []),
    done,
    close,
  };
}
