// Where regions' pages live: one MemoryPool per distinct set of memory servers (the daemon's
// configured pool for regions that name none), each member a MemoryServerClient.
import type { Logger } from '../log';
import type { KnownServer } from '../servers';
import type { RegionSpec } from '../regions/types';
import { MemoryServerClient } from '../remote';
import { MemoryPool, type PoolMember } from '../remote/pool';
import { PageStoreError, type PageStore, type ReadResult } from '../remote/types';

/**
 * The store of a region when the daemon knows no memory server (none configured, the embedded one
 * disabled): the region exists and is served, but every page that must leave or come back from
 * remote memory fails as unavailable (the region's on-unavailable policy applies), and nothing is
 * stored anywhere to delete.
 */
class NoServerStore implements PageStore {
  private fail(): never {
    throw new PageStoreError('unavailable', 'no memory server is configured (farmemd runs with --no-embedded-server and no --memory-server)');
  }
  async read(): Promise<ReadResult> {
    this.fail();
  }
  async write(): Promise<void> {
    this.fail();
  }
  async sync(): Promise<void> {
    this.fail();
  }
  async deleteRegion(): Promise<void> {}
  async close(): Promise<void> {}
}

export interface StoreOptions {
  logger: Logger;
  /** The daemon's servers (configured and embedded), looked up at each new pool. */
  servers: () => KnownServer[];
  /** Default replicas for regions (min(2, servers) when null). */
  replicas: number | null;
  /** Where the pools keep their placement journals (null: in memory only). */
  stateDir: string | null;
}

// Failover timing. A partitioned server answers nothing (no RST): a read waits READ_DEADLINE_MS on
// it before trying the next replica, and after two such failures the server is suspect and read
// last. Health is checked every HEALTH_INTERVAL_MS; DOWN_AFTER_MS of failing checks declare it down
// and start re-replicating its groups (a grace long enough to ride out a GC pause or a blip).
const READ_DEADLINE_MS = 1500;
const WRITE_DEADLINE_MS = 5000;
const HEALTH_INTERVAL_MS = 1000;
const HEALTH_DEADLINE_MS = 1000;
const DOWN_AFTER_MS = 5000;

function member(s: KnownServer, logger: Logger): PoolMember {
  // Paths: the client reads the PEM files (a missing ca means the system roots, no cert/key no client certificate).
  const tls = s.tls ? { ca: s.tls.ca, cert: s.tls.cert, key: s.tls.key, ...(s.tls.serverName ? { serverName: s.tls.serverName } : {}) } : null;
  const client = new MemoryServerClient({ address: s.address, token: s.token, tls, logger: logger.child({ part: 'remote' }) });
  return {
    id: s.address,
    weight: s.weight,
    store: client,
    health: async () => {
      try {
        return (await client.health('', HEALTH_DEADLINE_MS)) === 'SERVING';
      } catch (e) {
        // A silent failure (deadline) may be a dead connection to a live server: start afresh.
        if (e instanceof PageStoreError && e.kind === 'deadline') client.resetConnections();
        throw e;
      }
    },
    instance: async () => (await client.stats(HEALTH_DEADLINE_MS)).instanceId,
  };
}

/** The key of the daemon pool (regions that name no servers) among the pools. */
const DAEMON_POOL = '*';

export class Stores {
  private readonly pools = new Map<string, MemoryPool>();
  constructor(private readonly opts: StoreOptions) {}

  /**
   * The pool for a region's servers: its own list, or the daemon pool (every server the daemon
   * knows; servers added or removed at run time join or leave it, see addServer / removeServer).
   */
  poolFor(spec: RegionSpec): MemoryPool {
    const known = this.opts.servers();
    const chosen = spec.servers.length > 0 ? spec.servers.map((a) => known.find((k) => k.address === a) ?? { address: a, weight: 1, token: null, tls: null, embedded: false }) : known;
    if (chosen.length === 0) throw new Error(`region "${spec.name}": no memory server is configured`);
    const key = spec.servers.length > 0 ? chosen.map((s) => s.address).sort().join(',') : DAEMON_POOL;
    let pool = this.pools.get(key);
    if (pool === undefined) {
      pool = new MemoryPool(chosen.map((s) => member(s, this.opts.logger)), {
        logger: this.opts.logger.child({ part: 'pool' }),
        replicas: this.opts.replicas,
        readDeadlineMs: READ_DEADLINE_MS,
        writeDeadlineMs: WRITE_DEADLINE_MS,
        healthIntervalMs: HEALTH_INTERVAL_MS,
        downAfterMs: DOWN_AFTER_MS,
        stateDir: this.opts.stateDir,
      });
      pool.start();
      this.pools.set(key, pool);
    }
    pool.setRegion({ id: spec.id, pageSize: spec.pageSize }, spec.replicas);
    return pool;
  }

  /** A server added at run time joins the daemon pool (whose groups that now rank it move to it). */
  addServer(s: KnownServer): void {
    this.pools.get(DAEMON_POOL)?.addMember(member(s, this.opts.logger));
  }

  /** Drains a server out of the daemon pool; resolves once nothing is placed on it. */
  removeServer(address: string): Promise<void> {
    const pool = this.pools.get(DAEMON_POOL);
    if (pool === undefined || !pool.servers().some((m) => m.id === address)) return Promise.resolve();
    return pool.removeMember(address);
  }

  storeFor(spec: RegionSpec): PageStore {
    if (spec.servers.length === 0 && this.opts.servers().length === 0) return new NoServerStore();
    return this.poolFor(spec);
  }

  all(): MemoryPool[] {
    return [...this.pools.values()];
  }

  async close(): Promise<void> {
    await Promise.all([...this.pools.values()].map((p) => p.close()));
  }
}
