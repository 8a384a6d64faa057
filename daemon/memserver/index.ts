// The memory server's public face: start one (farmem-memserver, or embedded by farmemd on loopback).
import type pino from 'pino';
import type { TlsFiles } from './auth';
import { MemoryServer } from './server';

export { MemoryServer, type MemoryServerOptions } from './server';
export type { TlsFiles } from './auth';
export { parseSize, formatBytes } from './units';

/**
 * Starts a memory server. listen: host:port (port 0 picks a free one) or unix:/path. tls: PEM file
 * paths (server cert and key, and the CA that must have signed client certificates) or null.
 * Resolves with the address actually bound ("host:port" or "unix:/path").
 */
export async function startMemoryServer(opts: {
  listen: string;
  capacityBytes: number;
  dataDir: string | null;
  token?: string | null;
  tls?: TlsFiles | null;
  logger: pino.Logger;
}): Promise<{ address: string; stop(graceMs?: number): Promise<void> }> {
  const s = await MemoryServer.start(opts);
  return { address: s.address, stop: (graceMs?: number) => s.stop(graceMs) };
}
