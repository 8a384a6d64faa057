// The embedded memory server: when the configuration names no memory server, farmemd starts one
// itself on loopback (daemon/memserver) so that `npm start` works with nothing else running.
// Loaded lazily so that a daemon with configured servers never loads the server code.
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from './log';

/** The contract of daemon/memserver/index.ts's startMemoryServer. */
export interface MemoryServerHandle {
  address: string;
  stop(graceMs?: number): Promise<void>;
}
type StartMemoryServer = (opts: {
  listen: string;
  capacityBytes: number;
  dataDir: string | null;
  token?: string | null;
  tls?: object | null;
  logger: Logger;
}) => Promise<MemoryServerHandle>;

export async function startEmbeddedServer(opts: { listen: string; capacityBytes: number; dataDir: string | null; logger: Logger }): Promise<MemoryServerHandle> {
  let start: StartMemoryServer;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    start = (require('./memserver') as { startMemoryServer: StartMemoryServer }).startMemoryServer;
  } catch (e) {
    throw new Error(
      `embedded memory server: cannot load daemon/memserver (${(e as Error).message.split('\n')[0]}); ` +
        'name memory servers in the config ([[memory_servers]] or --memory-server) or set embedded_server.enabled = false',
    );
  }
  try {
    return await start({ ...opts, token: null, tls: null });
  } catch (e) {
    throw new Error(`embedded memory server on ${opts.listen}: ${(e as Error).message}`);
  }
}

/**
 * Starts the embedded server; on a configured port 0, first on the address it had at the last
 * start (kept in the state dir). The pools' placement record names servers by address: pages the
 * embedded server keeps (data_dir) are then found where the record says after a restart.
 */
export async function startEmbeddedServerSticky(opts: { listen: string; capacityBytes: number; dataDir: string | null; logger: Logger; stateDir: string }): Promise<MemoryServerHandle> {
  const file = path.join(opts.stateDir, 'embedded-address');
  const { stateDir: _unused, ...start } = opts;
  let server: MemoryServerHandle | null = null;
  if (opts.listen.endsWith(':0')) {
    let previous: string | null = null;
    try {
      previous = fs.readFileSync(file, 'utf8').trim() || null;
    } catch {
      previous = null; // first start
    }
    if (previous !== null) {
      try {
        server = await startEmbeddedServer({ ...start, listen: previous });
      } catch (e) {
        opts.logger.warn({ err: e, address: previous }, `embedded memory server: its previous address ${previous} is taken; pages it kept are not found where the placement record says`);
      }
    }
  }
  server ??= await startEmbeddedServer(start);
  if (opts.listen.endsWith(':0')) {
    try {
      fs.writeFileSync(file, server.address);
    } catch (e) {
      opts.logger.warn({ err: e, file }, 'embedded memory server: cannot keep its address for the next start');
    }
  }
  return server;
}
