// The pool of memory servers: placement (rendezvous over page groups), R-way replicated writes,
// reads that fail over, per-server health (up / suspect / down), and background repair.
//
// Invariants:
// - a write resolves only when R distinct servers acknowledged every page of it; a down replica is
//   replaced by the next server in rendezvous order and the group is recorded under-replicated;
// - a read never returns bytes that failed validation, and "absent" is believed only for a page
//   never written through this pool: a written page no holder has fails the read (a server
//   restarted empty must not turn written pages into zero pages);
// - a page is read only from servers recorded as holding its latest version: a holder that missed a
//   write (down, partitioned, failed mid-write) is not one until repair rewrote the page there;
// - that record (placement-state.ts) is journaled per region in stateDir and durable before a write
//   resolves, so a restarted daemon knows it too (the pager punches the page out right after);
// - every write carries a page version from the daemon's VersionClock (versions.ts), the same to
//   every replica, and a repair copy carries the version it read: a server never lets a lower
//   version overwrite a higher one, so a write that times out here and lands on a server later
//   (after a newer write or a repair copy got there) leaves the newer bytes in place.
// - a copy a group's move left behind is discarded from its server only after the new placement
//   is durable in that journal, under the group's lock: never the last good copy. The same record
//   names the servers left with an old copy, and a 'd' record clears each once it acknowledged the
//   discard: a daemon that dies in between (or while that server is unreachable) sends the discard
//   after its restart instead of leaving the copy as garbage.
// - a write that fails frees what it left on servers the placement names for none of its pages
//   (discardStrays), right away and under the same lock; not journaled: a server unreachable then,
//   or a daemon that dies in between, leaves those pages until the region is deleted.
import type pino from 'pino';
import { PageStoreError, type PageStore, type ReadOptions, type ReadResult, type RegionRef, type WriteOptions } from './types';
import { DEFAULT_GROUP_BYTES, groupOf, pagesPerGroup, rank, type Candidate } from './placement';
import { Journal } from './journal';
import { applyOp, changes, decodeOp, decodeSnapshot, emptyState, encodeOp, encodeSnapshot, type PlacementOp, type PlacementState } from './placement-state';
import { InstanceFile } from './instances';
import { VersionClock } from './versions';

export type ServerState = 'up' | 'suspect' | 'down';

export interface PoolMember {
  /** The server's address as configured: its identity in placement. */
  id: string;
  weight: number;
  store: PageStore;
  /** true when the server's health service says SERVING. */
  health(): Promise<boolean>;
  /**
   * The server's instance id (new at every server start), asked after a passing health check; a
   * change means the server restarted and, unless durable, lost its pages.
   */
  instance?(): Promise<string>;
}

export interface PoolOptions {
  /** Default replica count for regions that do not say (min(2, servers) when null). */
  replicas: number | null;
  groupBytes: number;
  /** Consecutive failures that make a server suspect. */
  suspectAfter: number;
  /** How long a server may fail health checks before it is declared down and repaired around. */
  downAfterMs: number;
  healthIntervalMs: number;
  /** Repair copy rate limit. */
  repairBytesPerSecond: number;
  /**
   * Deadline of one read / write to one server when the caller gives none: a partitioned server
   * (no RST, just silence) costs a fault this long before it fails over to the next replica.
   */
  readDeadlineMs: number;
  writeDeadlineMs: number;
  /**
   * Directory of the placement journals (one per region) and of the servers' last seen instance
   * ids; null keeps placement in memory only (a restart then forgets where pages went).
   */
  stateDir: string | null;
  /** A region's journal is folded into a snapshot when it grows past this. */
  compactBytes: number;
  logger: pino.Logger;
  /** Where write versions come from (default: the clock of stateDir/page-versions, see versions.ts). */
  versionClock: VersionClock | null;
}

export interface ServerStatus {
  id: string;
  weight: number;
  state: ServerState;
  /** Being removed (its groups are moving off it). */
  draining: boolean;
  latencyMs: number | null;
  failures: number;
  since: number;
  /** The server's instance id as last seen ('' before the first health check that asked it). */
  instanceId: string;
  /** Pages it freed at this pool's request since start (old copies of moved groups, pages of failed writes). */
  discardedPages: number;
  /** Groups whose old copy on it is still to free (it could not be reached): retried by repair. */
  discardsPending: number;
}

export interface RepairStatus {
  /** Groups below their replica count right now. */
  underReplicatedGroups: number;
  /**
   * Groups the running repair pass still has to bring to their placement (copy to a server that
   * now ranks in their top R: added, back up, or replacing one being removed); 0 when idle.
   */
  pendingGroups: number;
  repairedGroups: number;
  copiedBytes: number;
  running: boolean;
  /** Times a server was found restarted with a new instance id (its pages are refilled). */
  restartsDetected: number;
  /** Pages freed on servers the placement no longer names for them (old copies of moved groups, pages of failed writes). */
  discardedPages: number;
  /** Groups whose old copy could not be discarded yet (its server unreachable): retried by repair. */
  discardsPending: number;
}

interface Member extends Omit<ServerStatus, 'discardedPages' | 'discardsPending'> {
  m: PoolMember;
  healthFailingSince: number | null;
  /** Being removed: takes no new copies, still read as a source until nothing is placed on it. */
  drain: { done: Promise<void>; resolve: () => void } | null;
}

/** Per-region placement record (holders, override, written: see PlacementState). */
interface RegionPlacement extends PlacementState {
  ref: RegionRef;
  replicas: number;
  /** The replica count asked for (null: the pool's default); replicas is it clamped to the servers. */
  requested: number | null;
  perGroup: number;
  /** Where every change of the placement state is made durable before the write it records resolves. */
  journal: Journal | null;
  /** group → writes acknowledged so far (repair notices a write that raced its copy). */
  writeSeq: Map<number, number>;
  /** group → the tail of its write/repair lock chain (see locked()). */
  locks: Map<number, Promise<void>>;
}

const REPAIR_GROUPS_IN_FLIGHT = 8;
/** Rendezvous orders remembered per region (64 Ki groups: 4 GiB of 64 KiB groups); cleared when full. */
const RANKINGS_PER_REGION = 1 << 16;

export class MemoryPool implements PageStore {
  private readonly members = new Map<string, Member>();
  private readonly regions = new Map<string, RegionPlacement>();
  private readonly opts: PoolOptions;
  private healthTimer: NodeJS.Timeout | null = null;
  private repairing: Promise<void> | null = null;
  private repairAgain = false;
  /** The repair rate limit's timeline: when the bytes copied so far may have been sent. */
  private rateAt = 0;
  /** The last repair pass failed (a copy source or target failed mid-pass): retried by the next health round. */
  private repairFailed = false;
  private repairStats = { repairedGroups: 0, copiedBytes: 0, restartsDetected: 0, discardedPages: 0 };
  /** server → pages it freed at our request (the per-server share of repairStats.discardedPages). */
  private readonly discardedBy = new Map<string, number>();
  private pendingGroups = 0;
  private closed = false;
  private readonly instances: InstanceFile | null;
  private readonly clock: VersionClock;
  /**
   * Rendezvous orders computed so far: region id → group → order. An order depends only on the
   * members that may take copies (and their weights), so addMember / removeMember forget them all;
   * a scan asks for the same groups' order batch after batch, and repair for every written group.
   */
  private readonly rankings = new Map<string, Map<number, readonly string[]>>();
  /** Those members as rank() takes them (null: to be listed again). */
  private rankCandidates: Candidate[] | null = null;
  /**
   * readCoalesced's scratch: each page's server, and the groups met with theirs. Used only before its
   * first await (no other read runs in between), so every read shares them: allocating a typed
   * array per read cost more than the rest of the pass.
   */
  private pageServer = new Int32Array(256);
  private readonly metGroups: number[] = [];
  private readonly metGroupServer: number[] = [];

  constructor(members: PoolMember[], opts: Partial<PoolOptions> & { logger: pino.Logger }) {
    this.opts = {
      replicas: null,
      groupBytes: DEFAULT_GROUP_BYTES,
      suspectAfter: 2,
      downAfterMs: 5000,
      healthIntervalMs: 1000,
      repairBytesPerSecond: 256 * 1024 * 1024,
      readDeadlineMs: 2000,
      writeDeadlineMs: 5000,
      stateDir: null,
      compactBytes: 4 * 1024 * 1024,
      versionClock: null,
      ...opts,
    };
    this.clock = this.opts.versionClock ?? VersionClock.forFile(this.opts.stateDir === null ? null : `${this.opts.stateDir}/page-versions`);
    this.instances = this.opts.stateDir === null ? null : new InstanceFile(`${this.opts.stateDir}/instances.json`);
    for (const m of members) this.addMember(m);
  }

  /** Starts periodic health checks (tests may drive checkHealth() by hand instead). */
  start(): void {
    if (this.healthTimer === null) {
      // One round at a time: a partitioned server makes a round last its health deadline.
      let checking = false;
      this.healthTimer = setInterval(() => {
        if (checking) return;
        checking = true;
        void this.checkHealth().finally(() => (checking = false));
      }, this.opts.healthIntervalMs);
      this.healthTimer.unref();
    }
  }

  addMember(m: PoolMember): void {
    if (!(m.weight > 0)) throw new Error(`Expected a weight > 0 for memory server ${m.id} but received ${m.weight}`);
    if (this.members.has(m.id)) throw new Error(`memory server ${m.id} is already in the pool`);
    // The instance id seen before a daemon restart: a server that restarted empty meanwhile is refilled.
    const instanceId = this.instances?.get(m.id) ?? '';
    this.members.set(m.id, { id: m.id, weight: m.weight, state: 'up', draining: false, latencyMs: null, failures: 0, since: Date.now(), instanceId, m, healthFailingSince: null, drain: null });
    this.forgetRankings();
    this.reclampReplicas();
    // Groups that now rank the newcomer among their top R are moved to it by repair.
    if (this.regions.size > 0) this.scheduleRepair();
  }

  /**
   * Removes a server: it takes no new writes or copies; repair moves every group placed on it to
   * the servers that rank next (copying from it or another replica before it stops being a
   * holder); once nothing is placed on it, it leaves the pool and the promise resolves. A page
   * whose only copy is on it (a dead server, R=1) keeps the drain waiting: it is never dropped.
   */
  removeMember(id: string): Promise<void> {
    const m = this.members.get(id);
    if (m === undefined) return Promise.reject(new Error(`memory server ${id} is not in the pool`));
    if (m.drain !== null) return m.drain.done;
    if ([...this.members.values()].filter((x) => x.drain === null).length <= 1) {
      return Promise.reject(new Error(`memory server ${id} is the last one of the pool: add another before removing it`));
    }
    let resolve!: () => void;
    const done = new Promise<void>((res) => (resolve = res));
    m.drain = { done, resolve };
    m.draining = true;
    this.forgetRankings();
    this.opts.logger.info({ server: id }, `memory server ${id}: draining (moving its groups to other servers)`);
    this.reclampReplicas();
    this.finishDrains();
    if (this.members.has(id)) this.scheduleRepair();
    return done;
  }

  servers(): ServerStatus[] {
    const pending = new Map<string, number>();
    for (const r of this.regions.values()) for (const servers of r.stale.values()) for (const s of servers) pending.set(s, (pending.get(s) ?? 0) + 1);
    return [...this.members.values()].map(({ id, weight, state, draining, latencyMs, failures, since, instanceId }) => ({
      id,
      weight,
      state,
      draining,
      latencyMs,
      failures,
      since,
      instanceId,
      discardedPages: this.discardedBy.get(id) ?? 0,
      discardsPending: pending.get(id) ?? 0,
    }));
  }

  repairStatus(): RepairStatus {
    let under = 0;
    for (const r of this.regions.values()) for (const g of r.written.keys()) if (this.isUnderReplicated(r, g)) under++;
    let discardsPending = 0;
    for (const r of this.regions.values()) discardsPending += r.stale.size;
    return { underReplicatedGroups: under, pendingGroups: this.pendingGroups, ...this.repairStats, discardsPending, running: this.repairing !== null };
  }

  /** Declares a region's replica count (defaults to the pool's). */
  setRegion(ref: RegionRef, replicas: number | null): void {
    const r = this.placement(ref);
    r.requested = replicas;
    r.replicas = this.replicaCount(replicas);
  }

  async read(region: RegionRef, pages: readonly number[], opts?: ReadOptions): Promise<ReadResult> {
    const r = this.placement(region);
    opts = { deadlineMs: opts?.deadlineMs ?? this.opts.readDeadlineMs };
    const absent: number[] = [];
    // First one request per server, for every page whose fastest live copy is there: a read of
    // contiguous pages spans many 64 KiB groups, and one request per group made a 1 MiB read 16
    // round trips on one stream (a sequential scan ran at ~0.4 of the server's batched stream).
    // What that does not settle (a failed server, a written page a replica lacks) goes the careful
    // way below, group by group through every replica.
    const failed = new Set<string>();
    const { present, rest } = await this.readCoalesced(r, pages, opts, absent, failed);
    if (rest.length === 0) return { present, absent };
    const parts = await Promise.all([...this.byGroup(r, rest)].map(([group, groupPages]) => this.readGroup(r, group, groupPages, opts, failed)));
    for (const got of parts) {
      for (const [p, b] of got.present) present.set(p, b);
      absent.push(...got.absent);
    }
    return { present, absent };
  }

  /**
   * opts.versions: the caller's page versions (one, or one per page); by default the write takes the
   * clock's next version, before anything awaits: writes of a group are applied (under its lock) in
   * the order they were called, so a later write of a page always has the higher version.
   */
  async write(region: RegionRef, pages: readonly number[], data: Buffer, opts?: WriteOptions): Promise<void> {
    const r = this.placement(region);
    const given = opts?.versions ?? null;
    if (given !== null && given.length !== 1 && given.length !== pages.length) {
      throw new PageStoreError('invalid', `write ${region.id}: Expected one version, or one per page (${pages.length}) for versions but received ${given.length}`);
    }
    const one = given === null ? [this.clock.next()] : given.length === 1 ? given : null;
    const deadlineMs = opts?.deadlineMs ?? this.opts.writeDeadlineMs;
    const ps = region.pageSize;
    if (data.length !== pages.length * ps) {
      throw new PageStoreError('invalid', `write ${region.id}: Expected ${pages.length * ps} bytes for data but received ${data.length}`);
    }
    const index = new Map<number, number>();
    pages.forEach((p, i) => index.set(p, i));
    await Promise.all(
      [...this.byGroup(r, pages)].map(([group, groupPages]) => {
        const buf = Buffer.concat(groupPages.map((p) => data.subarray(index.get(p)! * ps, (index.get(p)! + 1) * ps)));
        const versions = one ?? groupPages.map((p) => given![index.get(p)!]!);
        return this.writeGroup(r, group, groupPages, buf, { deadlineMs, versions });
      }),
    );
  }

  /**
   * Makes the region durable on every live server that may hold its pages. A server that fails its
   * sync (dead but not yet declared down) is tolerated when every written page has a copy on a
   * server whose sync succeeded: its groups are under-replicated and repaired like any other
   * failure. Otherwise the first failure is thrown.
   */
  async sync(region: RegionRef): Promise<void> {
    const r = this.placement(region);
    // Every live server may hold some of the region's pages (holders, substitutes, repair targets).
    const ids = [...this.members.keys()].filter((s) => this.alive(s));
    const results = await Promise.allSettled(ids.map((s) => this.call(s, (st) => st.sync(region))));
    const failed = ids.filter((_, i) => results[i]!.status === 'rejected');
    if (failed.length === 0) return;
    const synced = new Set(ids.filter((_, i) => results[i]!.status === 'fulfilled'));
    // Nobody could be asked: say so, even when this daemon wrote nothing (the operator asked).
    if (synced.size === 0) throw (results[ids.indexOf(failed[0]!)] as PromiseRejectedResult).reason;
    for (const pages of r.written.values()) {
      for (const p of pages) {
        if (!this.copiesOf(r, p).some((s) => synced.has(s))) throw (results[ids.indexOf(failed[0]!)] as PromiseRejectedResult).reason;
      }
    }
    this.opts.logger.warn({ region: region.id, failed }, 'sync: some memory servers failed; every page is synced on another replica');
  }

  async deleteRegion(regionId: string): Promise<void> {
    const r = this.regions.get(regionId);
    this.regions.delete(regionId);
    this.rankings.delete(regionId);
    if (r?.journal) await r.journal.remove();
    else if (this.opts.stateDir !== null) Journal.removeFiles(this.placementDir(), regionId);
    const results = await Promise.allSettled([...this.members.values()].map((m) => m.m.store.deleteRegion(regionId)));
    const failed = results.filter((x) => x.status === 'rejected');
    if (failed.length === results.length && results.length > 0) throw (failed[0] as PromiseRejectedResult).reason;
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.healthTimer) clearInterval(this.healthTimer);
    this.healthTimer = null;
    await this.repairing?.catch(() => undefined);
    // A clean stop leaves a snapshot per region (a short load next time).
    await Promise.all(
      [...this.regions.values()].map(async (r) => {
        if (r.journal === null) return;
        await r.journal.compact(() => encodeSnapshot(r)).catch((e: unknown) => this.opts.logger.error({ err: e, region: r.ref.id }, 'placement journal: snapshot failed'));
        await r.journal.close();
      }),
    );
    await Promise.all([...this.members.values()].map((m) => m.m.store.close()));
  }

  /** One round of health checks; declares servers down after downAfterMs of failing. */
  async checkHealth(): Promise<void> {
    const now = Date.now();
    await Promise.all(
      [...this.members.values()].map(async (m) => {
        let ok = false;
        try {
          ok = await m.m.health();
        } catch {
          ok = false;
        }
        if (ok && m.m.instance !== undefined) {
          let id: string | null = null;
          try {
            id = await m.m.instance();
          } catch {
            ok = false; // answers health but not Stats: not healthy
          }
          if (id !== null && id !== '' && m.instanceId !== '' && id !== m.instanceId) {
            this.repairStats.restartsDetected++;
            this.opts.logger.warn({ server: m.id, was: m.instanceId, now: id }, `memory server ${m.id} restarted`);
            m.instanceId = id;
            // The new id is kept only once the loss is on record: a crash in between must see the restart again.
            const instances = this.instances;
            const newId = id;
            this.serverLostData(m.id).then(() => instances?.set(m.id, newId), () => undefined);
          } else if (id !== null && id !== '' && id !== m.instanceId) {
            m.instanceId = id;
            this.instances?.set(m.id, id);
          }
        }
        if (ok) {
          m.healthFailingSince = null;
          if (m.state !== 'up') this.setState(m, 'up', 'health check passed');
          return;
        }
        m.healthFailingSince ??= now;
        if (m.state === 'up') this.setState(m, 'suspect', 'health check failed');
        if (m.state === 'suspect' && now - m.healthFailingSince >= this.opts.downAfterMs) this.setState(m, 'down', `unhealthy for ${now - m.healthFailingSince} ms`);
      }),
    );
    if (this.repairFailed) this.scheduleRepair();
  }

  /**
   * Forgets everything a server held (it came back empty: an in-memory server restarted), so its
   * groups are refilled from the other replicas.
   */
  serverLostData(id: string): Promise<void> {
    const recorded = Promise.all(
      [...this.regions.values()].map((r) => this.change(r, { t: 'l', s: id })),
    ).then(
      () => undefined,
      (e: unknown) => {
        this.opts.logger.error({ err: e, server: id }, 'placement journal: could not record a lost server');
        throw e;
      },
    );
    this.opts.logger.warn({ server: id }, 'memory server lost its pages; re-replicating its groups');
    this.scheduleRepair();
    return recorded;
  }

  /** Repairs every under-replicated group now (rate-limited); resolves when done. */
  async repair(): Promise<void> {
    this.scheduleRepair();
    while (this.repairing) await this.repairing;
  }

  // ---------------------------------------------------------------------------------------------

  private replicaCount(requested: number | null): number {
    const count = [...this.members.values()].filter((m) => m.drain === null).length;
    const n = requested ?? this.opts.replicas ?? Math.min(2, count);
    return Math.max(1, Math.min(n, count));
  }

  private reclampReplicas(): void {
    for (const r of this.regions.values()) r.replicas = this.replicaCount(r.requested);
  }

  /** Lets go of draining servers that nothing is placed on any more. */
  private finishDrains(): void {
    for (const m of [...this.members.values()]) {
      if (m.drain === null) continue;
      let used = false;
      for (const r of this.regions.values()) {
        for (const h of r.holders.values()) if (h.includes(m.id)) used = true;
        for (const c of r.override.values()) if (c.includes(m.id)) used = true;
        if (used) break;
      }
      if (used) continue;
      this.members.delete(m.id);
      this.opts.logger.info({ server: m.id }, `memory server ${m.id}: drained and removed from the pool`);
      m.m.store.close().catch(() => undefined);
      m.drain.resolve();
    }
  }

  private placement(ref: RegionRef): RegionPlacement {
    let r = this.regions.get(ref.id);
    if (r === undefined) {
      const perGroup = pagesPerGroup(ref.pageSize, this.opts.groupBytes);
      r = { ref: { id: ref.id, pageSize: ref.pageSize }, replicas: this.replicaCount(null), requested: null, perGroup, ...emptyState(), journal: null, writeSeq: new Map(), locks: new Map() };
      if (this.opts.stateDir !== null) this.load(r);
      this.regions.set(ref.id, r);
      // (Old copies the journal says are still to discard are freed by that repair pass too.)
      if (this.opts.stateDir !== null && (r.stale.size > 0 || [...r.written.keys()].some((g) => this.isUnderReplicated(r!, g)))) this.scheduleRepair();
    } else if (r.ref.pageSize !== ref.pageSize) {
      throw new PageStoreError('invalid', `region ${ref.id}: Expected page size ${r.ref.pageSize} but received ${ref.pageSize}`);
    }
    return r;
  }

  private placementDir(): string {
    return `${this.opts.stateDir}/placement`;
  }

  /** Reads a region's placement journal (snapshot, then the records after it). */
  private load(r: RegionPlacement): void {
    const dir = this.placementDir();
    let opened;
    try {
      opened = Journal.open(dir, r.ref.id);
    } catch (e) {
      throw new PageStoreError('internal', `region ${r.ref.id}: placement journal in ${dir}: ${e instanceof Error ? e.message : String(e)}`);
    }
    const { journal, contents } = opened;
    r.journal = journal;
    try {
      if (contents.snapshot !== null) Object.assign(r, decodeSnapshot(contents.snapshot, r.perGroup));
      for (const rec of contents.records) applyOp(r, decodeOp(rec));
    } catch (e) {
      throw new PageStoreError('internal', `region ${r.ref.id}: placement journal in ${dir}: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (contents.tornBytes > 0) this.opts.logger.warn({ region: r.ref.id, bytes: contents.tornBytes }, 'placement journal: cut off a torn tail (a write that was never acknowledged)');
    if (contents.records.length > 0 || contents.snapshot !== null) {
      this.opts.logger.info({ region: r.ref.id, groups: r.written.size, offRendezvous: r.override.size, records: contents.records.length }, 'placement journal loaded');
    }
  }

  /** Applies a placement change and resolves once it is durable (at once without a journal). */
  private change(r: RegionPlacement, op: PlacementOp): Promise<boolean> {
    const record = r.journal !== null && changes(r, op);
    const off = applyOp(r, op);
    const j = r.journal;
    if (j === null || !record || this.regions.get(r.ref.id) !== r) return Promise.resolve(off);
    const done = j.append(encodeOp(op)).then(() => off);
    if (j.size > this.opts.compactBytes) {
      j.compact(() => encodeSnapshot(r)).catch((e: unknown) => this.opts.logger.error({ err: e, region: r.ref.id }, 'placement journal: snapshot failed'));
    }
    return done;
  }

  private byGroup(r: RegionPlacement, pages: readonly number[]): Map<number, number[]> {
    const out = new Map<number, number[]>();
    for (const p of pages) {
      const g = groupOf(p, r.perGroup);
      const list = out.get(g);
      if (list) list.push(p);
      else out.set(g, [p]);
    }
    return out;
  }

  /** Rendezvous order over the servers that may take copies (not those being removed); shared: not to be changed. */
  private ranked(r: RegionPlacement, group: number): readonly string[] {
    let byGroup = this.rankings.get(r.ref.id);
    if (byGroup === undefined) this.rankings.set(r.ref.id, (byGroup = new Map()));
    let order = byGroup.get(group);
    if (order === undefined) {
      if (byGroup.size >= RANKINGS_PER_REGION) byGroup.clear();
      this.rankCandidates ??= [...this.members.values()].filter((m) => m.drain === null).map((m) => ({ id: m.id, weight: m.weight }));
      order = rank(this.rankCandidates, r.ref.id, group);
      byGroup.set(group, order);
    }
    return order;
  }

  private forgetRankings(): void {
    this.rankings.clear();
    this.rankCandidates = null;
  }

  private holdersOf(r: RegionPlacement, group: number): string[] {
    return r.holders.get(group) ?? this.ranked(r, group).slice(0, r.replicas);
  }

  private isUnderReplicated(r: RegionPlacement, group: number): boolean {
    const live = this.holdersOf(r, group).filter((s) => this.alive(s));
    if (live.length < r.replicas) return true;
    for (const p of r.written.get(group) ?? []) if (r.override.has(p)) return true;
    return false;
  }

  private alive(id: string): boolean {
    const m = this.members.get(id);
    return m !== undefined && m.state !== 'down';
  }

  /** Servers holding the latest version of a page. */
  private copiesOf(r: RegionPlacement, page: number): string[] {
    return r.override.get(page) ?? this.holdersOf(r, groupOf(page, r.perGroup));
  }

  /** Every server the placement says has a copy of some of a group's pages (its holders, and overrides). */
  private withCopies(r: RegionPlacement, group: number, pages: readonly number[]): Set<string> {
    const out = new Set(this.holdersOf(r, group));
    for (const p of pages) for (const s of this.copiesOf(r, p)) out.add(s);
    return out;
  }

  /** Read preference of a live member: lower is better; suspect ones after every up one. */
  private static score(m: Member): number {
    return (m.state === 'suspect' ? 1e9 : 0) + (m.latencyMs ?? 0);
  }

  private byLatency(ids: string[]): string[] {
    const score = (id: string) => MemoryPool.score(this.members.get(id)!);
    return ids.filter((s) => this.alive(s)).sort((a, b) => score(a) - score(b));
  }

  /** byLatency(ids)[0] without filtering and sorting copies: the first alive of the lowest score, as that stable sort gives. */
  private fastest(ids: readonly string[]): string | undefined {
    let best: string | undefined;
    let bestScore = Infinity;
    for (const id of ids) {
      const m = this.members.get(id);
      if (m === undefined || m.state === 'down') continue;
      const score = MemoryPool.score(m);
      if (score < bestScore) {
        best = id;
        bestScore = score;
      }
    }
    return best;
  }

  /**
   * The fast path of read(): fills absent; returns the pages read and those left for readGroup.
   * One pass over the batch picks each page's server (a group's choice is made once per batch), kept
   * in a typed array; when every page goes to one server (one server, or a batch within its
   * groups) the caller's page list is sent as it is, and the first answer's map becomes the read's
   * (a store builds its result per read): a scan costs no per-page copies here.
   */
  private async readCoalesced(r: RegionPlacement, pages: readonly number[], opts: { deadlineMs?: number }, absent: number[], failed: Set<string>): Promise<{ present: Map<number, Buffer>; rest: number[] }> {
    const n = pages.length;
    const perGroup = r.perGroup;
    const overrides = r.override.size > 0;
    // The servers this read asks, in the order first needed; page i goes to servers[at[i]] (-1: no live copy).
    const servers: string[] = [];
    if (this.pageServer.length < n) this.pageServer = new Int32Array(Math.max(n, this.pageServer.length * 2));
    const at = this.pageServer;
    const indexOf = (s: string | undefined): number => {
      if (s === undefined) return -1;
      const k = servers.indexOf(s);
      return k >= 0 ? k : servers.push(s) - 1;
    };
    // The current group's server, and those of the groups before it: in met* while the batch's
    // groups ascend (a scan), in a map once one comes back or out of order.
    let group = -1;
    let groupAt = -1;
    let maxGroup = -1;
    const metGroups = this.metGroups;
    const metGroupServer = this.metGroupServer;
    metGroups.length = 0;
    metGroupServer.length = 0;
    let groupsAt: Map<number, number> | null = null;
    let unplaced = 0;
    for (let i = 0; i < n; i++) {
      const p = pages[i]!;
      const own = overrides ? r.override.get(p) : undefined;
      let k: number;
      if (own !== undefined) k = indexOf(this.fastest(own));
      else {
        const g = groupOf(p, perGroup);
        if (g !== group) {
          group = g;
          if (groupsAt === null && g > maxGroup) {
            maxGroup = g;
            groupAt = indexOf(this.fastest(this.holdersOf(r, g)));
            metGroups.push(g);
            metGroupServer.push(groupAt);
          } else {
            if (groupsAt === null) {
              groupsAt = new Map();
              for (let j = 0; j < metGroups.length; j++) groupsAt.set(metGroups[j]!, metGroupServer[j]!);
            }
            const known = groupsAt.get(g);
            if (known !== undefined) groupAt = known;
            else groupsAt.set(g, (groupAt = indexOf(this.fastest(this.holdersOf(r, g)))));
          }
        }
        k = groupAt;
      }
      at[i] = k;
      if (k < 0) unplaced++;
    }
    const rest: number[] = [];
    let lists: Array<readonly number[]>;
    if (servers.length === 1 && unplaced === 0) lists = [pages];
    else {
      const split: number[][] = servers.map(() => []);
      for (let i = 0; i < n; i++) {
        const k = at[i]!;
        (k < 0 ? rest : split[k]!).push(pages[i]!);
      }
      lists = split;
    }
    const done = await Promise.allSettled(lists.map((list, k) => this.call(servers[k]!, (st) => st.read(r.ref, list, opts))));
    let present: Map<number, Buffer> | null = null;
    for (let k = 0; k < lists.length; k++) {
      const res = done[k]!;
      if (res.status === 'rejected') {
        failed.add(servers[k]!);
        for (const p of lists[k]!) rest.push(p);
        continue;
      }
      const got = res.value;
      if (present === null) present = got.present;
      else for (const [p, b] of got.present) present.set(p, b);
      for (const p of got.absent) (r.written.get(groupOf(p, perGroup))?.has(p) ? rest : absent).push(p);
    }
    return { present: present ?? new Map<number, Buffer>(), rest };
  }

  /** `failed`: servers that just failed this read: asked last (a partitioned one would cost its deadline again first). */
  private async readGroup(r: RegionPlacement, group: number, pages: number[], opts?: { deadlineMs?: number }, failed: ReadonlySet<string> = new Set(), depth = 0): Promise<ReadResult> {
    const written = r.written.get(group);
    const present = new Map<number, Buffer>();
    const absent: number[] = [];
    // Pages whose copies live elsewhere than the group's holders are read on their own.
    const bySet = new Map<string, number[]>();
    const overrides = r.override.size > 0;
    const holdersKey = this.holdersOf(r, group).join(',');
    for (const p of pages) {
      const own = overrides ? r.override.get(p) : undefined;
      const key = own === undefined ? holdersKey : own.join(',');
      const list = bySet.get(key);
      if (list) list.push(p);
      else bySet.set(key, [p]);
    }
    for (const [key, setPages] of bySet) {
      const live = this.byLatency(key.split(','));
      const readers = [...live.filter((s) => !failed.has(s)), ...live.filter((s) => failed.has(s))];
      let need = setPages;
      let lastError: unknown = null;
      for (const server of readers) {
        try {
          const got = await this.call(server, (st) => st.read(r.ref, need, opts));
          for (const [p, b] of got.present) present.set(p, b);
          const again: number[] = [];
          for (const p of got.absent) (written?.has(p) ? again : absent).push(p);
          if (again.length > 0) this.opts.logger.warn({ server, region: r.ref.id, group, pages: again.length }, 'memory server is missing written pages; asking another replica');
          need = again;
          if (need.length === 0) break;
        } catch (e) {
          lastError = e;
        }
      }
      // The group moved while this read was on its way (and its old copy was discarded): ask the new holders.
      if (need.length > 0 && depth < 2 && this.movedSince(r, group, need, key)) {
        const got = await this.readGroup(r, group, need, opts, failed, depth + 1);
        for (const [p, b] of got.present) present.set(p, b);
        absent.push(...got.absent);
        need = [];
      }
      if (need.length > 0) {
        const why = lastError instanceof Error ? lastError.message : `${need.length} written page(s) found on no live replica`;
        throw new PageStoreError('unavailable', `read region ${r.ref.id} group ${group}: no replica could answer (${readers.join(', ') || 'none alive'}): ${why}`);
      }
    }
    return { present, absent };
  }

  /** Whether some of a group's pages now have other copies than `key` (copiesOf joined) says. */
  private movedSince(r: RegionPlacement, group: number, pages: readonly number[], key: string): boolean {
    const holdersKey = this.holdersOf(r, group).join(',');
    for (const p of pages) if ((r.override.get(p)?.join(',') ?? holdersKey) !== key) return true;
    return false;
  }

  /**
   * Writes of a group and its repair copy exclude each other: a repair that read the old version
   * from a source must not land on a target after (or instead of) a newer write there.
   */
  private async locked<T>(r: RegionPlacement, group: number, fn: () => Promise<T>): Promise<T> {
    const prev = r.locks.get(group) ?? Promise.resolve();
    let release!: () => void;
    const mine = new Promise<void>((res) => (release = res));
    const tail = prev.then(() => mine);
    r.locks.set(group, tail);
    await prev;
    try {
      return await fn();
    } finally {
      release();
      if (r.locks.get(group) === tail) r.locks.delete(group);
    }
  }

  private writeGroup(r: RegionPlacement, group: number, pages: number[], data: Buffer, opts: WriteOptions): Promise<void> {
    return this.locked(r, group, () => this.writeGroupNow(r, group, pages, data, opts));
  }

  private async writeGroupNow(r: RegionPlacement, group: number, pages: number[], data: Buffer, opts: WriteOptions): Promise<void> {
    const current = this.holdersOf(r, group);
    // Preferred targets: the group's live holders, then the rendezvous order; suspect servers last
    // (a partitioned holder would cost every write its deadline before the substitute is tried).
    const order = [...current.filter((s) => this.alive(s) && !this.members.get(s)!.draining), ...this.ranked(r, group).filter((s) => !current.includes(s) && this.alive(s))];
    const suspect = (s: string) => this.members.get(s)!.state === 'suspect';
    const candidates = [...order.filter((s) => !suspect(s)), ...order.filter(suspect)];
    const acked: string[] = [];
    let lastError: unknown = null;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (acked.length < r.replicas && next < candidates.length) {
        const server = candidates[next++]!;
        try {
          await this.call(server, (st) => st.write(r.ref, pages, data, opts));
          acked.push(server);
          return;
        } catch (e) {
          lastError = e;
          if (e instanceof PageStoreError && (e.kind === 'invalid' || e.kind === 'unauthenticated')) throw e;
        }
      }
    };
    await Promise.all(Array.from({ length: r.replicas }, () => worker()));
    if (acked.length < r.replicas) {
      await this.discardStrays(r, group, pages, acked);
      const why = lastError instanceof Error ? lastError.message : 'not enough live servers';
      const kind = lastError instanceof PageStoreError ? lastError.kind : 'unavailable';
      throw new PageStoreError(kind, `write region ${r.ref.id} group ${group}: ${acked.length} of ${r.replicas} replicas acknowledged: ${why}`);
    }
    r.writeSeq.set(group, (r.writeSeq.get(group) ?? 0) + 1);
    // Durable before the write resolves: the pager punches the page out of the memfd next.
    const off = await this.change(r, { t: 'w', g: group, p: pages, a: acked });
    // Substitutes took the write: the group is under-replicated on its holders until repaired.
    if (off) this.scheduleRepair();
  }

  /**
   * A write that failed may still have landed on servers the placement names for none of these
   * pages (a substitute said yes where a holder did not): bytes nobody will ever read, kept until the
   * region is deleted. Freed now, under the group's lock (no write of the group can come between), on
   * those that are up; one that cannot be reached keeps them, logged. A server holding any of the
   * pages by the placement is left alone: the retry overwrites its copy.
   */
  private async discardStrays(r: RegionPlacement, group: number, pages: number[], acked: readonly string[]): Promise<void> {
    const known = this.withCopies(r, group, pages);
    for (const s of acked) {
      if (known.has(s)) continue;
      const out = await this.discardOn(s, r, pages);
      if (out === 'freed') continue;
      const why = out === 'gone' ? (this.members.has(s) ? 'it cannot discard' : 'it left the pool') : out === 'later' ? `it is ${this.members.get(s)!.state}` : out.message;
      this.opts.logger.warn({ server: s, region: r.ref.id, group, pages: pages.length, err: why }, 'could not discard the pages a failed write left on a server that does not hold them; they stay there until the region is deleted');
    }
  }

  private async call<T>(server: string, fn: (s: PageStore) => Promise<T>): Promise<T> {
    const m = this.members.get(server);
    if (m === undefined) throw new PageStoreError('unavailable', `memory server ${server} is not in the pool`, server);
    const t0 = performance.now();
    try {
      const v = await fn(m.m.store);
      const ms = performance.now() - t0;
      m.latencyMs = m.latencyMs === null ? ms : m.latencyMs * 0.8 + ms * 0.2;
      m.failures = 0;
      if (m.state === 'suspect' && m.healthFailingSince === null) this.setState(m, 'up', 'request succeeded');
      return v;
    } catch (e) {
      if (e instanceof PageStoreError && (e.kind === 'unavailable' || e.kind === 'deadline' || e.kind === 'corrupt' || e.kind === 'internal')) {
        m.failures++;
        if (m.state === 'up' && m.failures >= this.opts.suspectAfter) this.setState(m, 'suspect', e.message);
      }
      throw e;
    }
  }

  private setState(m: Member, state: ServerState, why: string): void {
    const from = m.state;
    m.state = state;
    m.since = Date.now();
    const log = state === 'up' ? this.opts.logger.info.bind(this.opts.logger) : this.opts.logger.warn.bind(this.opts.logger);
    log({ server: m.id, from, to: state, why }, `memory server ${m.id} is ${state}`);
    // Back up (also from suspect: it may have been unreachable since this daemon started): groups
    // that rank it among their top R move back to it.
    if (state === 'down' || (state === 'up' && from !== 'up')) this.scheduleRepair();
  }

  private scheduleRepair(): void {
    if (this.closed) return;
    if (this.repairing !== null) {
      // A pass may already have walked past the groups this change affects: run another after it.
      this.repairAgain = true;
      return;
    }
    this.repairAgain = false;
    this.repairFailed = false;
    this.repairing = this.runRepair()
      .catch((e: unknown) => {
        this.repairFailed = true;
        this.opts.logger.error({ err: e }, 'repair pass failed; will retry after the next health check');
      })
      .finally(() => {
        this.repairing = null;
        if (this.repairAgain) this.scheduleRepair();
      });
  }

  /**
   * One repair pass: for every written group, choose its holders (its live holders, then the next
   * live servers in rendezvous order, up to R) and copy each page's latest version to the chosen
   * servers that lack it. Groups whose every copy is on dead servers wait for one to come back.
   */
  private async runRepair(): Promise<void> {
    try {
      for (let pass = 0; pass < 3 && !this.closed; pass++) {
        const tasks: Array<() => Promise<boolean>> = [];
        for (const r of this.regions.values()) {
          for (const [group, written] of r.written) if (this.needsRepair(r, group, written)) tasks.push(() => this.repairGroup(r, group, written));
        }
        this.pendingGroups = tasks.length;
        let work = 0;
        let next = 0;
        // Groups are copied REPAIR_GROUPS_IN_FLIGHT at a time: one at a time leaves the servers idle
        // between a group's read and its write (the rate limit is shared, see copyPages).
        await Promise.all(Array.from({ length: REPAIR_GROUPS_IN_FLIGHT }, async () => {
          while (next < tasks.length && !this.closed) {
            if (await tasks[next++]!()) work++;
            this.pendingGroups--;
          }
        }));
        await this.retryDiscards();
        this.finishDrains();
        if (work === 0 || this.closed) return;
      }
    } finally {
      this.pendingGroups = 0;
    }
  }

  /** Whether a group is off its placement: holders other than its top R live servers, or pages off its holders. */
  private needsRepair(r: RegionPlacement, group: number, written: Set<number>): boolean {
    const desired = this.ranked(r, group).filter((s) => this.alive(s)).slice(0, r.replicas);
    const h = r.holders.get(group);
    if (h === undefined || h.length !== desired.length || !h.every((s) => desired.includes(s))) return true;
    for (const p of written) if (r.override.has(p)) return true;
    return false;
  }

  /** Brings one group to its desired holders; true when it copied (or must look again). */
  private repairGroup(r: RegionPlacement, group: number, written: Set<number>): Promise<boolean> {
    return this.locked(r, group, () => this.repairGroupNow(r, group, written));
  }

  private async repairGroupNow(r: RegionPlacement, group: number, written: Set<number>): Promise<boolean> {
    // Placement is the rendezvous order over live servers: a server that comes back, or is added,
    // gets its groups back (copied), the others keep theirs.
    const desired = this.ranked(r, group).filter((s) => this.alive(s)).slice(0, r.replicas);
    // No live server at all: nothing to copy to, and an empty placement would forget every copy.
    if (desired.length === 0) return false;
    const pages = [...written];
    const complete = pages.every((p) => {
      const c = this.copiesOf(r, p);
      return desired.every((d) => c.includes(d));
    });
    // Every server with a copy now: those left out of `desired` hold garbage once it is recorded
    // (and are named in that record, to be discarded even after a daemon restart).
    const gone = [...this.withCopies(r, group, pages)].filter((s) => !desired.includes(s) && this.members.get(s)?.m.store.discard !== undefined);
    const moved: PlacementOp = gone.length > 0 ? { t: 'h', g: group, h: desired, d: gone } : { t: 'h', g: group, h: desired };
    if (complete) {
      const h = r.holders.get(group);
      if (h === undefined || !(h.length === desired.length && h.every((s) => desired.includes(s))) || pages.some((p) => r.override.has(p))) {
        await this.change(r, moved);
        await this.discardStale(r, group, gone, pages);
      }
      return false;
    }
    // Copy plan: (source, target) → pages.
    const plan = new Map<string, number[]>();
    let stranded = 0;
    for (const p of pages) {
      const copies = this.copiesOf(r, p);
      const sources = this.byLatency(copies);
      if (sources.length === 0) {
        stranded++;
        continue;
      }
      for (const t of desired) {
        if (copies.includes(t)) continue;
        const key = `${sources[0]}\n${t}`;
        const list = plan.get(key);
        if (list) list.push(p);
        else plan.set(key, [p]);
      }
    }
    if (stranded > 0) {
      this.opts.logger.error({ region: r.ref.id, group, pages: stranded }, 'no live server holds these pages: waiting for one to come back');
      return false;
    }
    const seq = r.writeSeq.get(group) ?? 0;
    for (const [key, ps] of plan) {
      const [source, target] = key.split('\n') as [string, string];
      await this.copyPages(r, source, target, ps);
    }
    // (Writes wait for the lock; kept as a guard should one ever bypass it.)
    if ((r.writeSeq.get(group) ?? 0) !== seq) return true;
    await this.change(r, moved);
    this.repairStats.repairedGroups++;
    // Only now, with the new holders durable, may the old ones let go.
    await this.discardStale(r, group, gone, pages);
    return true;
  }

  /**
   * Frees a group's pages on servers that no longer hold it. Called under the group's lock once the
   * placement naming its new holders (and these servers in r.stale) is durable; a server that
   * cannot be reached now stays in r.stale, retried by later repair passes (retryDiscards), also
   * after a daemon restart.
   */
  private async discardStale(r: RegionPlacement, group: number, servers: string[], pages: number[]): Promise<void> {
    for (const s of servers) {
      // (A copy it holds again, e.g. the group moved back to it meanwhile, is not garbage.)
      const out = this.withCopies(r, group, pages).has(s) ? 'gone' : await this.discardOn(s, r, pages);
      // Suspect or down: later (retryDiscards).
      if (out === 'later') continue;
      if (out instanceof Error) {
        this.opts.logger.warn({ server: s, region: r.ref.id, group, err: out.message }, 'could not discard the old copy of a moved group; will retry');
        continue;
      }
      await this.forgetStale(r, group, s);
    }
  }

  /**
   * Asks server s to free pages of region r and counts what it freed. 'gone': it left the pool (its
   * garbage with it, as far as this daemon goes) or is too old to discard; 'later': it is suspect or
   * down (a partitioned server would cost the caller its deadline now); else its error.
   */
  private async discardOn(s: string, r: RegionPlacement, pages: number[]): Promise<'freed' | 'gone' | 'later' | Error> {
    const m = this.members.get(s);
    if (m === undefined || m.m.store.discard === undefined) return 'gone';
    if (m.state !== 'up') return 'later';
    try {
      this.discarded(s, await m.m.store.discard(r.ref, pages, this.opts.readDeadlineMs));
      return 'freed';
    } catch (e) {
      return e instanceof Error ? e : new Error(String(e));
    }
  }

  private discarded(server: string, pages: number): void {
    this.repairStats.discardedPages += pages;
    this.discardedBy.set(server, (this.discardedBy.get(server) ?? 0) + pages);
  }

  /**
   * Records that a server's old copy of a group needs no discard any more. Not needed for safety (a
   * discard sent again after a restart is checked against the placement like the first): a journal
   * failure here is only logged.
   */
  private async forgetStale(r: RegionPlacement, group: number, server: string): Promise<void> {
    try {
      await this.change(r, { t: 'd', g: group, s: server });
    } catch (e) {
      this.opts.logger.error({ err: e, region: r.ref.id, group, server }, 'placement journal: could not record a discard');
    }
  }

  /** Old copies not discarded yet (their server was unreachable, or the daemon restarted): tried again. */
  private async retryDiscards(): Promise<void> {
    // A server that fails one is not asked again this round (it would cost each group its deadline).
    const failing = new Set<string>();
    for (const r of [...this.regions.values()]) {
      for (const [group, servers] of [...r.stale]) {
        if (this.closed || this.regions.get(r.ref.id) !== r) break;
        const live = servers.filter((s) => !failing.has(s) && (this.members.get(s)?.state ?? 'up') === 'up');
        if (live.length === 0) continue;
        await this.locked(r, group, () => this.discardStale(r, group, live, [...(r.written.get(group) ?? [])]));
        for (const s of live) if (r.stale.get(group)?.includes(s) && this.members.has(s)) failing.add(s);
      }
    }
  }

  private async copyPages(r: RegionPlacement, source: string, target: string, pages: number[]): Promise<void> {
    const ps = r.ref.pageSize;
    for (let i = 0; i < pages.length; i += 256) {
      const chunk = pages.slice(i, i + 256);
      const got = await this.call(source, (st) => st.read(r.ref, chunk, { deadlineMs: this.opts.readDeadlineMs, versions: true }));
      if (got.absent.length > 0) throw new PageStoreError('corrupt', `repair region ${r.ref.id}: ${source} lacks ${got.absent.length} page(s) it should hold`, source);
      // The copy keeps each page's stored version: never newer than a later real write of the page
      // (which the target keeps if it got there first), never older than what it copies.
      const versions = chunk.map((p) => got.versions?.get(p) ?? 0);
      await this.call(target, (st) => st.write(r.ref, chunk, Buffer.concat(chunk.map((p) => got.present.get(p)!)), { deadlineMs: this.opts.writeDeadlineMs, versions }));
      this.repairStats.copiedBytes += chunk.length * ps;
      // Rate limit, shared by every group in flight: each chunk reserves its slot on one timeline.
      const ms = ((chunk.length * ps) / this.opts.repairBytesPerSecond) * 1000;
      this.rateAt = Math.max(Date.now(), this.rateAt) + ms;
      const wait = this.rateAt - Date.now();
      if (wait >= 1) await new Promise((res) => setTimeout(res, wait));
    }
  }
}
