// The embedded memory server: when the configuration names no memory server, farmemd starts one
// itself on loopback (daemon/memserver) so that `npm start` works with nothing else running.
// Loaded lazily so that a daemon with configured servers never loads the server code.
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
