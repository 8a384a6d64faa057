// Shared pieces for memory-server tests: a server on port 0 with captured logs, temp dirs, raw streams.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import pino from 'pino';
import { MemoryServer, type MemoryServerOptions } from '../../daemon/memserver/server';
import { MemoryServerClient } from '../../daemon/remote/client';
import { memoryServerService } from '../../daemon/remote/service';
import type { PageRequestMsg, PageResponseMsg } from '../../daemon/remote/wire';

export interface LogLine {
  level: number;
  msg: string;
  [k: string]: unknown;
}

export function captureLogger(): { logger: pino.Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l) as LogLine);
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, sink), lines };
}

export function tmpDir(t: { after(fn: () => void): void }, prefix = 'farmem-ms-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  t.after(() => fs.rmSync(d, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  return d;
}

export async function startServer(
  t: { after(fn: () => Promise<void> | void): void },
  opts: Partial<MemoryServerOptions> = {},
): Promise<{ server: MemoryServer; lines: LogLine[] }> {
  const { logger, lines } = captureLogger();
  const server = await MemoryServer.start({ listen: '127.0.0.1:0', capacityBytes: 64 * 1024 * 1024, dataDir: null, logger, ...opts });
  t.after(() => server.stop(1000));
  return { server, lines };
}

/**
 * Runs `writes` against a server over `dataDir` that compacts its journal past `compactBytes`, checks
 * that it did, stops it, and returns a client of a server restarted from the same directory.
 */
export async function afterCompaction(
  t: { after(fn: () => Promise<void> | void): void },
  dataDir: string,
  compactBytes: number,
  writes: (c: MemoryServerClient) => Promise<void>,
): Promise<MemoryServerClient> {
  {
    const { server, lines } = await startServer(t, { dataDir, journalCompactBytes: compactBytes });
    const c = new MemoryServerClient({ address: server.address });
    await writes(c);
    assert.ok(lines.some((l) => l.msg === 'journal: compacted'), 'the journal was compacted');
    await c.close();
    await server.stop();
  }
  const { server } = await startServer(t, { dataDir });
  const c = new MemoryServerClient({ address: server.address });
  t.after(() => c.close());
  return c;
}

export const PagesClient = grpc.makeGenericClientConstructor(memoryServerService(), 'farmem.v1.MemoryServer');

/** A raw Pages stream: send any message, collect responses by request id, see the final status. */
export function rawStream(address: string, opts: { metadata?: grpc.Metadata; channel?: grpc.ChannelOptions } = {}) {
  const client = new PagesClient(address, grpc.credentials.createInsecure(), opts.channel ?? {});
  const m = memoryServerService().Pages;
  const call = client.makeBidiStreamRequest(m.path, m.requestSerialize, m.responseDeserialize, opts.metadata ?? new grpc.Metadata(), {});
  const responses = new Map<number, PageResponseMsg>();
  const waiters = new Map<number, (r: PageResponseMsg) => void>();
  call.on('data', (r: PageResponseMsg) => {
    responses.set(r.requestId, r);
    waiters.get(r.requestId)?.(r);
  });
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  call.on('error', () => undefined);
  return {
    call,
    client,
    responses,
    status,
    send(m: Omit<PageRequestMsg, 'malformed'>): Promise<PageResponseMsg> {
      const p = new Promise<PageResponseMsg>((resolve) => waiters.set(m.requestId, resolve));
      call.write({ ...m, malformed: null });
      return p;
    },
    close() {
      call.end();
      client.close();
    },
  };
}

/** A Pages stream that sends raw bytes as messages (for malformed input). */
export function bytesStream(address: string) {
  const client = new PagesClient(address, grpc.credentials.createInsecure(), {});
  const call = client.makeBidiStreamRequest('/farmem.v1.MemoryServer/Pages', (b: Buffer) => b, (b: Buffer) => b, new grpc.Metadata(), {});
  call.on('error', () => undefined);
  const status = new Promise<grpc.StatusObject>((resolve) => call.on('status', resolve));
  return { call, status, close: () => client.close() };
}

export function randomPages(n: number, pageSize: number): Buffer {
  const b = Buffer.allocUnsafe(n * pageSize);
  for (let i = 0; i < b.length; i += 4) b.writeUInt32LE((Math.random() * 2 ** 32) >>> 0, i);
  return b;
}

const MAIN = path.join(__dirname, '..', '..', 'daemon', 'memserver', 'main.js');

/** Starts farmem-memserver as a child; resolves with its address once it logs that it listens. */
export function spawnServer(t: { after(fn: () => void): void }, args: string[]): Promise<{ child: ChildProcess; address: string; lines: Record<string, unknown>[] }> {
  const child = spawn(process.execPath, [MAIN, '--listen', '127.0.0.1:0', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  t.after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    readline.createInterface({ input: child.stdout! }).on('line', (l) => {
      const j = JSON.parse(l) as Record<string, unknown>;
      lines.push(j);
      if (typeof j.msg === 'string' && j.msg.startsWith('memory server listening')) resolve({ child, address: j.address as string, lines });
    });
    child.once('exit', (code) => reject(new Error(`farmem-memserver exited ${code}: ${stderr}`)));
  });
}

