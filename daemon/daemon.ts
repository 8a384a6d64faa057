// The Daemon: the regions, the memory servers, and the slot where the parts that make regions live
// plug in (a RegionRuntime: the pager; the attach server sets attachSocket). The control service
// calls these methods with the caller's credentials; each checks access and says why it refuses.
import type { DaemonConfig, MemoryServerConfig } from './config/load';
import type { Logger } from './log';
import type { DaemonMetrics } from './metrics';
import type { Lifecycle } from './lifecycle';
import { RegionRegistry, RegionError, check, type Caller, type NewRegion, type RegionSpec } from './regions';
import { NoPagerRuntime, NO_PAGER_DETAIL, type Progress, type RegionRuntime, type RegionStatsSnapshot, type RuntimeStats } from './runtime';
import { poolState, probe, type KnownServer, type PoolView, type ServerStatus } from './servers';
import { checkTlsFiles, type TlsFiles } from './util/tls-files';
import { applyServerChanges, readToken, type AddedServer, type ServerChangesFile } from './server-changes';
import { ADDRESS_EXPECTED, isAddress } from './util/address';

/** What a caller may say when creating a region; null = the daemon's default. */
export interface CreateInput {
  name: string;
  sizeBytes: number;
  pageSize: number | null;
  residentBytes: number | null;
  servers: string[];
  replicas: number | null;
  prefetch: string | null;
  onUnavailable: string | null;
  /** wp | async | auto; null = [region_defaults] dirty_tracking. */
  dirtyTracking?: string | null;
  ownerUid: number | null;
  ownerGid: number | null;
  mode: number | null;
  /** Replay on attach; null = off. (Optional so older callers need not say.) */
  warmOnAttach?: boolean | null;
}

export interface RegionView {
  spec: RegionSpec;
  accessible: boolean;
  attachments: number;
  stats: RegionStatsSnapshot | null;
}

export interface DaemonStatus {
  version: string;
  pid: number;
  uptimeSeconds: number;
  state: string;
  socket: string;
  attachSocket: string;
  stateDir: string;
  regions: number;
  pager: boolean;
  pagerDetail: string;
  residentCapBytes: number;
  runtime: RuntimeStats | null;
}

export const VERSION: string = (require('../../package.json') as { version: string }).version;

export class Daemon {
  runtime: RegionRuntime = new NoPagerRuntime();
  /** Set by the attach server once it listens; null until then. */
  attachSocket: string | null = null;
  readonly servers: KnownServer[];
  /** The pager's pools of memory servers (set by start once the pools exist): their view of each server. */
  pools: () => readonly PoolView[] = () => [];
  readonly startedAt = Date.now();
  /** Where run-time server changes are kept (set by start; null: not kept). */
  serverChanges: ServerChangesFile | null = null;
  /** The pools' side of adding and removing a server (set by start once the pools exist). */
  serverOps: { add(s: KnownServer): void; remove(address: string): Promise<void> } | null = null;

  constructor(
    readonly config: DaemonConfig,
    readonly logger: Logger,
    readonly metrics: DaemonMetrics,
    readonly lifecycle: Lifecycle,
    readonly registry: RegionRegistry,
  ) {
    this.servers = config.memoryServers.map((s) => ({ ...s, embedded: false }));
    metrics.regions.set(registry.list().length);
  }

  /** Plugs the pager in and tells it of every region already in the registry. */
  async useRuntime(runtime: RegionRuntime): Promise<void> {
    this.runtime = runtime;
    for (const spec of this.registry.list()) await runtime.onRegionCreated(spec);
  }

  addServer(s: KnownServer): void {
    this.servers.push(s);
  }

  /** Applies the kept run-time server changes to the configured servers (at start, before the pools). */
  useServerChanges(file: ServerChangesFile): void {
    this.serverChanges = file;
    const c = file.load();
    const configured = this.servers.filter((s) => !s.embedded);
    const now = applyServerChanges(configured, c, file.file);
    this.servers.splice(0, this.servers.length, ...now, ...this.servers.filter((s) => s.embedded));
  }

  /** Servers still draining when farmemd stopped: drained again (call once the pools exist). */
  resumeDrains(): void {
    for (const a of this.serverChanges?.load().draining ?? []) if (this.servers.some((s) => s.address === a)) this.startDrain(a);
  }

  private onlyRoot(caller: Caller, op: string): void {
    if (caller.uid !== 0) throw new RegionError('denied', `${op}: permission denied: only root may change the memory servers`);
  }

  async addMemoryServer(caller: Caller, input: { address: string; weight: number; tokenFile: string | null; tls?: TlsFiles | null }): Promise<ServerStatus> {
    const op = `add memory server ${input.address}`;
    this.open(op);
    this.onlyRoot(caller, op);
    if (!isAddress(input.address)) throw new RegionError('invalid', `add memory server: Expected ${ADDRESS_EXPECTED} for address but received "${input.address}"`);
    if (!Number.isInteger(input.weight) || input.weight < 1) throw new RegionError('invalid', `${op}: Expected an integer weight >= 1 for weight but received ${input.weight}`);
    if (input.tokenFile !== null && !input.tokenFile.startsWith('/')) throw new RegionError('invalid', `${op}: Expected an absolute path for token file but received "${input.tokenFile}"`);
    if (this.servers.some((s) => s.address === input.address)) throw new RegionError('exists', `${op}: it is already one of the memory servers`);
    let token: string | null = null;
    try {
      token = input.tokenFile === null ? null : readToken(input.tokenFile, op);
    } catch (e) {
      throw new RegionError('invalid', (e as Error).message);
    }
    const tls = input.tls ?? null;
    if (tls !== null) {
      try {
        checkTlsFiles(tls, { ca: 'ca_file', cert: 'cert_file', key: 'key_file' });
      } catch (e) {
        throw new RegionError('invalid', `${op}: ${(e as Error).message}`);
      }
    }
    const s: KnownServer = { address: input.address, weight: input.weight, token, tls, embedded: false };
    this.admitServer(s, input.tokenFile, { uid: caller.uid, pid: caller.pid });
    return { ...(await probe(s)), pool: poolState(s.address, this.pools()) };
  }

  /**
   * Makes a server a member (`farmem servers add`, or a server a reloaded config names): kept in
   * servers.json unless the configuration names it, then in the list and the daemon pool.
   */
  private admitServer(s: KnownServer, tokenFile: string | null, who: Record<string, unknown>): void {
    if (this.serverChanges) {
      const c = this.serverChanges.load();
      c.removed = c.removed.filter((a) => a !== s.address);
      if (!this.config.memoryServers.some((m) => m.address === s.address)) c.added.push({ address: s.address, weight: s.weight, tokenFile, tls: s.tls });
      this.serverChanges.save(c);
    }
    this.servers.push(s);
    this.serverOps?.add(s);
    this.logger.info({ server: s.address, weight: s.weight, tls: s.tls !== null, ...who }, `memory server ${s.address} added`);
  }

  /**
   * A reloaded configuration's memory servers, diffed against the running one: servers it adds join
   * and servers it drops are drained (as by `farmem servers add|remove`); a server whose settings
   * changed keeps the old ones until a restart. Servers added or removed at run time stay so.
   */
  reloadServers(next: MemoryServerConfig[]): { added: string[]; removing: string[]; changed: string[]; refused: string[] } {
    const out = { added: [] as string[], removing: [] as string[], changed: [] as string[], refused: [] as string[] };
    const old = this.config.memoryServers;
    const same = (a: MemoryServerConfig, b: MemoryServerConfig) => a.weight === b.weight && a.token === b.token && JSON.stringify(a.tls) === JSON.stringify(b.tls);
    for (const n of next) {
      const o = old.find((x) => x.address === n.address);
      if (o !== undefined) {
        if (!same(o, n)) out.changed.push(n.address);
        continue;
      }
      if (this.servers.some((x) => x.address === n.address)) continue; // added at run time already
      this.config.memoryServers = [...this.config.memoryServers, n];
      this.admitServer({ ...n, embedded: false }, n.tokenFile ?? null, { reason: 'configuration reloaded' });
      out.added.push(n.address);
    }
    for (const o of old) {
      if (next.some((x) => x.address === o.address) || this.drains.has(o.address) || !this.servers.some((x) => x.address === o.address)) continue;
      try {
        this.checkRemovable(`remove memory server ${o.address}`, o.address);
      } catch (e) {
        this.logger.error({ server: o.address, err: (e as Error).message }, `configuration reloaded: ${(e as Error).message}; it stays`);
        out.refused.push(o.address);
        continue;
      }
      // Kept as added until drained: a restart meanwhile (its config no longer names it) resumes the drain.
      this.beginRemoval(o.address, { address: o.address, weight: o.weight, tokenFile: o.tokenFile ?? null, tls: o.tls });
      out.removing.push(o.address);
    }
    this.config.memoryServers = next;
    return out;
  }

  async removeMemoryServer(caller: Caller, address: string): Promise<ServerStatus> {
    const op = `remove memory server ${address}`;
    this.open(op);
    this.onlyRoot(caller, op);
    const s = this.checkRemovable(op, address);
    this.beginRemoval(address, null);
    return { ...(await probe(s)), pool: poolState(address, this.pools()) };
  }

  /**
   * Records a server as draining in servers.json (with `keep` among the added ones, when the
   * configuration that named it no longer does), then starts its drain.
   */
  private beginRemoval(address: string, keep: AddedServer | null): void {
    if (this.serverChanges) {
      const c = this.serverChanges.load();
      if (!c.draining.includes(address)) c.draining.push(address);
      if (keep !== null && !c.added.some((a) => a.address === address)) c.added.push(keep);
      this.serverChanges.save(c);
    }
    this.startDrain(address);
  }

  /** The server, when it may be removed; else the reason, thrown. */
  private checkRemovable(op: string, address: string): KnownServer {
    const s = this.servers.find((x) => x.address === address);
    if (s === undefined) throw new RegionError('not-found', `${op}: it is not one of the memory servers (see farmem servers)`);
    if (s.embedded) throw new RegionError('invalid', `${op}: it is the embedded memory server (turn it off with embedded_server.enabled = false)`);
    const naming = this.registry.list().find((r) => r.servers.includes(address));
    if (naming) throw new RegionError('precondition', `${op}: region "${naming.name}" names it in its server list`);
    if (this.servers.filter((x) => !this.drains.has(x.address)).length === 1) throw new RegionError('precondition', `${op}: it is the only memory server: add another first`);
    return s;
  }

  private readonly drains = new Set<string>();

  /** Moves every group off a server, then forgets it (and keeps that forgotten). */
  private startDrain(address: string): void {
    if (this.drains.has(address)) return;
    this.drains.add(address);
    this.logger.info({ server: address }, `memory server ${address}: removing (moving its groups to the other servers)`);
    const drained = this.serverOps ? this.serverOps.remove(address) : Promise.resolve();
    drained.then(
      () => {
        this.drains.delete(address);
        const i = this.servers.findIndex((x) => x.address === address);
        if (i >= 0) this.servers.splice(i, 1);
        if (this.serverChanges) {
          const c = this.serverChanges.load();
          c.draining = c.draining.filter((a) => a !== address);
          c.added = c.added.filter((a) => a.address !== address);
          if (this.config.memoryServers.some((m) => m.address === address) && !c.removed.includes(address)) c.removed.push(address);
          this.serverChanges.save(c);
        }
        this.logger.info({ server: address }, `memory server ${address} removed: nothing is placed on it any more`);
      },
      (e: unknown) => {
        this.drains.delete(address);
        this.logger.error({ err: e, server: address }, `memory server ${address}: removal failed`);
      },
    );
  }

  private open(op: string): void {
    if (this.lifecycle.state === 'DRAINING' || this.lifecycle.state === 'STOPPED') {
      throw new RegionError('unavailable', `${op}: farmemd is stopping (${this.lifecycle.state}); try again once it is back`);
    }
  }

  async createRegion(caller: Caller, input: CreateInput): Promise<RegionSpec> {
    const op = `create region "${input.name}"`;
    this.open(op);
    const d = this.config.regionDefaults;
    const ownerUid = input.ownerUid ?? caller.uid;
    const ownerGid = input.ownerGid ?? caller.gid;
    if (caller.uid !== 0 && ownerUid !== caller.uid) {
      throw new RegionError('denied', `${op}: permission denied: only root may create a region owned by another user (uid ${ownerUid})`);
    }
    if (caller.uid !== 0 && ownerGid !== caller.gid && !caller.groups.includes(ownerGid)) {
      throw new RegionError('denied', `${op}: permission denied: uid ${caller.uid} is not in group ${ownerGid}`);
    }
    const n: NewRegion = {
      name: input.name,
      sizeBytes: input.sizeBytes,
      pageSize: input.pageSize ?? d.pageSize,
      residentBytes: input.residentBytes ?? 0,
      servers: input.servers,
      replicas: input.replicas ?? d.replicas,
      prefetch: input.prefetch ?? d.prefetch,
      onUnavailable: input.onUnavailable ?? d.onUnavailable,
      dirtyTracking: input.dirtyTracking ?? d.dirtyTracking,
      ownerUid,
      ownerGid,
      mode: input.mode ?? 0o600,
      ...(input.warmOnAttach != null ? { warmOnAttach: input.warmOnAttach } : {}),
    };
    if (n.dirtyTracking === 'async' && n.residentBytes === 0) {
      // Explicit async needs the kernel's support; auto falls back to wp quietly (region show says why).
      const why = this.runtime.asyncUnavailable?.() ?? null;
      if (why !== null) {
        throw new RegionError('precondition', `${op}: dirty tracking async needs UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN (Linux 6.7+): ${why}; use --dirty-tracking wp or auto`);
      }
    }
    const spec = await this.registry.create(n, this.servers.length);
    this.metrics.regions.set(this.registry.list().length);
    this.logger.info({ region: spec.name, id: spec.id, sizeBytes: spec.sizeBytes, pageSize: spec.pageSize, uid: caller.uid, pid: caller.pid }, 'region created');
    try {
      await this.runtime.onRegionCreated(spec);
    } catch (e) {
      this.logger.error({ err: e, region: spec.name }, 'the pager refused the new region');
      throw e;
    }
    return spec;
  }

  async deleteRegion(caller: Caller, name: string): Promise<{ spec: RegionSpec; pagesFreed: number }> {
    const op = `delete region "${name}"`;
    this.open(op);
    const spec = this.registry.require(name, 'delete');
    check(spec, caller, 'admin', 'delete');
    const { pagesFreed } = await this.runtime.onRegionDeleted(spec);
    await this.registry.delete(name);
    this.metrics.regions.set(this.registry.list().length);
    this.logger.info({ region: name, id: spec.id, pagesFreed, uid: caller.uid, pid: caller.pid }, 'region deleted');
    return { spec, pagesFreed };
  }

  listRegions(caller: Caller): RegionView[] {
    return this.registry.list().map((spec) => {
      let accessible = true;
      try {
        check(spec, caller, 'use', 'list');
      } catch {
        accessible = false;
      }
      return { spec, accessible, attachments: this.runtime.attachmentCount(spec), stats: accessible ? this.runtime.regionStats(spec) : null };
    });
  }

  showRegion(caller: Caller, name: string): RegionView {
    const spec = this.registry.require(name, 'show');
    check(spec, caller, 'use', 'show');
    return { spec, accessible: true, attachments: this.runtime.attachmentCount(spec), stats: this.runtime.regionStats(spec) };
  }

  async updateRegion(caller: Caller, name: string, patch: { residentBytes?: number; mode?: number; prefetch?: string; warmOnAttach?: boolean }): Promise<RegionSpec> {
    const op = `change region "${name}"`;
    this.open(op);
    const cur = this.registry.require(name, 'change');
    check(cur, caller, 'admin', 'change');
    if (patch.residentBytes !== undefined && patch.residentBytes > 0 && cur.residentBytes === 0) {
      const why = this.runtime.budgetRefusal?.(cur) ?? null;
      if (why !== null) throw new RegionError('precondition', `resize region "${name}": ${why}`);
    }
    const spec = await this.registry.update(name, patch);
    this.logger.info({ region: name, ...patch, uid: caller.uid, pid: caller.pid }, 'region changed');
    await this.runtime.onRegionUpdated(spec);
    return spec;
  }

  async syncRegion(caller: Caller, name: string, progress: (p: Progress) => void, signal: AbortSignal): Promise<Progress> {
    const spec = this.registry.require(name, 'sync');
    check(spec, caller, 'use', 'sync');
    return this.runtime.sync(spec, progress, signal);
  }

  async evictRegion(caller: Caller, name: string, progress: (p: Progress) => void, signal: AbortSignal): Promise<Progress> {
    const spec = this.registry.require(name, 'evict');
    check(spec, caller, 'use', 'evict');
    return this.runtime.evict(spec, progress, signal);
  }

  status(): DaemonStatus {
    return {
      version: VERSION,
      pid: process.pid,
      uptimeSeconds: (Date.now() - this.startedAt) / 1000,
      state: this.lifecycle.state,
      socket: this.config.socket,
      attachSocket: this.attachSocket ?? '',
      stateDir: this.config.stateDir,
      regions: this.registry.list().length,
      pager: this.runtime.serving,
      pagerDetail: this.runtime.serving ? this.runtime.description : NO_PAGER_DETAIL,
      residentCapBytes: this.config.residentCapBytes,
      runtime: this.runtime.stats(),
    };
  }

  async listServers(): Promise<ServerStatus[]> {
    const pools = this.pools();
    const all = await Promise.all(this.servers.map(async (s) => ({ ...(await probe(s)), pool: poolState(s.address, pools) })));
    for (const s of all) this.metrics.serverUp.set({ server: s.address }, s.state === 'up' ? 1 : 0);
    return all;
  }
}
