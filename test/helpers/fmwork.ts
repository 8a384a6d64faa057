// Runs test/workloads/bin/fmwork as a child that faults through a uffd it hands to the test over a
// seqpacket server, and gives the test that uffd plus helpers to wait for its events.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fdpass, memfd as memfdApi, uffd, type SeqpacketServer, type UffdEvent } from '../../daemon/native';
import { type FmworkResult, workloadBin } from './pattern';

export interface FmworkExit {
  code: number | null;
  /** The signal that ended the child, or null. */
  signal: NodeJS.Signals | null;
  json: FmworkResult | null;
  stderr: string;
}

export interface FmworkChild {
  pid: number;
  /** The test's copy of the child's uffd (O_NONBLOCK, shares the child's file description). */
  uffd: number;
  addr: bigint;
  len: number;
  pageSize: number;
  /** Lets the child start touching pages. */
  go(): void;
  /** The next uffd event, read by polling (bounded by timeoutMs so a broken test fails instead of hanging). */
  nextEvent(timeoutMs?: number): Promise<UffdEvent>;
  /** Page index of an address in the child's region. */
  pageOf(address: bigint): number;
  exited: Promise<FmworkExit>;
  /** Kills the child if still running; closes the server, the uffd and the temp dir. */
  close(): void;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export async function startFmwork(args: string[], options: { memfd?: number } = {}): Promise<FmworkChild> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-fmwork-'));
  const sock = path.join(dir, 'test.sock');
  let server: SeqpacketServer | null = null;
  let helloResolve!: (m: { payload: Buffer; fds: number[] }) => void;
  const hello = new Promise<{ payload: Buffer; fds: number[] }>((r) => (helloResolve = r));
  let conn = 0;
  server = fdpass.listen(sock, 0o600, (e) => {
    if (e.type === 'connect') {
      conn = e.conn;
      if (options.memfd !== undefined) server!.send(e.conn, Buffer.from('memfd'), [options.memfd]);
    } else if (e.type === 'message') {
      helloResolve({ payload: e.payload, fds: e.fds });
    }
  });
  const child = spawn(workloadBin('fmwork'), ['--socket', sock, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<FmworkExit>((resolve) => {
    child.on('close', (code, signal) => {
      let json: FmworkResult | null = null;
      try {
        json = JSON.parse(stdout) as FmworkResult;
      } catch {
        json = null;
      }
      resolve({ code, signal, json, stderr });
    });
  });
  const cleanup = () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    server?.close();
    server = null;
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  };
  const first = await Promise.race([hello, exited.then((x) => x)]);
  if (!('payload' in first)) {
    cleanup();
    throw new Error(`fmwork exited with ${first.code} before sending its uffd: ${first.stderr.trim()}`);
  }
  const { payload, fds } = first;
  if (payload.length !== 24 || fds.length !== 1) {
    for (const fd of fds) memfdApi.close(fd);
    cleanup();
    throw new Error(`fmwork sent a ${payload.length}-byte hello with ${fds.length} fds`);
  }
  const uffdFd = fds[0]!;
  const addr = payload.readBigUInt64LE(0);
  const len = Number(payload.readBigUInt64LE(8));
  const pageSize = payload.readUInt32LE(16);
  let pending: UffdEvent[] = [];
  let closed = false;
  return {
    pid: payload.readUInt32LE(20),
    uffd: uffdFd,
    addr,
    len,
    pageSize,
    go: () => server!.send(conn, Buffer.from('g')),
    async nextEvent(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (pending.length === 0) {
        pending = uffd.readEvents(uffdFd, 64);
        if (pending.length > 0) break;
        if (Date.now() > deadline) throw new Error(`no uffd event from fmwork within ${timeoutMs} ms; stderr: ${stderr.trim()}`);
        await sleep(1);
      }
      return pending.shift()!;
    },
    pageOf: (address: bigint) => Number((address - addr) / BigInt(pageSize)),
    exited,
    close() {
      if (closed) return;
      closed = true;
      cleanup();
      memfdApi.close(uffdFd);
    },
  };
}
