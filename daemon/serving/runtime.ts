// The parts that make regions live, wired together: each region gets a memfd and a place in the
// pager; attaching processes (AttachServer) hand over their uffds, which go to one pinned fault
// thread per vCPU and to the pager; misses are read through the region's PageStore (the pool of
// memory servers). This is the RegionRuntime the control plane talks to and the AttachHost the
// attach server talks to.
import os from 'node:os';
import fs from 'node:fs';
import { FaultThread, memfd, PageCache, type FaultEvent } from '../native';

const closeFd = (fd: number) => memfd.close(fd);
import { Pager, nativeOps, nativeAsyncWpOps, probeAsyncWp, type DirtyTrackingMode, type RegionStats } from '../pager';
import { createPrefetcher, ReplayStore, runWarmup } from '../prefetch';
import type { PrefetchOptions, Prefetcher } from '../prefetch/types';
import { check, groupsOf, RegionError, type RegionSpec } from '../regions';
import { NAME_EXPECTED, NAME_RE } from '../regions/validate';
import type { AttachHost, DetachReason, NewAttachment, ResolveRequest, Resolution } from '../attach/host';
import type { Logger } from '../log';
import { PAGE_DIRTY, PAGE_RESIDENT, type AttachmentInfo, type Progress, type RegionPageMap, type RegionRuntime, type RegionStatsSnapshot, type RuntimeStats } from '../runtime';
import { DIRTY, RES } from '../pager/state';
import type { DaemonMetrics } from '../metrics';
import { FaultLatency } from './latency';
import { addRegionTotals, feedMetrics, type Totals } from './metrics';
import { PageStoreError, type PageStore } from '../remote/types';
import { closeQuietly, regionFdName, type FdStore, type ListenFd } from '../lifecycle/fdstore';
import { fileIdentity } from '../attach/fds';
import { sortStored } from './stored';

/**
 * A PageStore failure as the user sees it: the region by name (the store only knows its id), the
 * server, and what went wrong without the store's own prefix (`sync region "<id>" on <addr>: `)
 * nor grpc-js's empty trailing "Resolution note:".
 */
export function storeFailure(op: string, spec: RegionSpec, e: unknown): Error {
  if (!(e instanceof PageStoreError)) return e as Error;
  let detail = e.message;
  if (e.server !== null) {
    const at = detail.indexOf(` on ${e.server}: `);
    if (at >= 0) detail = detail.slice(at + ` on ${e.server}: `.length);
  }
  detail = detail.replace(/\s*Resolution note:\s*$/, '');
  const kind = e.kind === 'unavailable' ? 'unavailable' : 'precondition';
  if (e.server === null) return new RegionError(kind, `${op} region "${spec.name}": ${detail}`);
  if (e.kind === 'unavailable') return new RegionError(kind, `${op} region "${spec.name}": memory server ${e.server} unavailable: ${detail.replace(/^UNAVAILABLE: /, '')}`);
  return new RegionError(kind, `${op} region "${spec.name}": memory server ${e.server}: ${detail}`);
}

/**
 * Largest readahead window, in pages (4 MiB of 4 KiB pages; readahead's own cap), and a quarter of
 * the prefetch in flight per region. Readahead sends for its next window when the scan enters the
 * current one, so about one window is on the way: with 256 pages (1 MiB) the scan ran like the raw
 * stream with one 1 MiB read in flight; 1024 keeps about as much on the way as the stream's four
 * reads. Paired bench runs: median scan/stream 0.49-0.63 at 256, 0.65-0.79 at 1024.
 */
const PREFETCH_WINDOW = 1024;
const READ_BATCH = 256;
/** The other policies' largest window: stride and trend did worse with 256 (more faults, slower) in the prefetch bench. */
const OTHER_WINDOW = 64;
/** readahead's largest window under auto (see prefetchOptions). */
const AUTO_READAHEAD_WINDOW = 256;

/**
 * A region's largest prefetch window: PREFETCH_WINDOW, but at most 1/16 of a resident budget: the
 * guesses ahead of a scan are kept from the evictor (Prefetcher.whereIs), so a window much larger
 * than that would crowd out everything else the process has resident.
 */
export function windowFor(spec: Pick<RegionSpec, 'pageSize' | 'residentBytes'>): number {
  if (spec.residentBytes === 0) return PREFETCH_WINDOW;
  return Math.max(16, Math.min(PREFETCH_WINDOW, Math.floor(spec.residentBytes / spec.pageSize / 16)));
}

/**
 * The policy's windows: readahead up to windowFor (4 MiB), the others OTHER_WINDOW. Under auto,
 * readahead's windows stop at AUTO_READAHEAD_WINDOW until auto runs it alone: when auto takes
 * readahead up on a pattern that only looks sequential for a while (zipf's first touches climb
 * through the hot pages), it fetches the windows readahead believes were sent, and at 4 MiB each
 * that was 72% extra bytes on zipf 0.99. Alone (its score proved over a whole scoring window), it
 * gets readahead's own windows.
 */
export function prefetchOptions(spec: Pick<RegionSpec, 'prefetch' | 'sizeBytes' | 'pageSize' | 'residentBytes'>): PrefetchOptions {
  const w = windowFor(spec);
  const readahead = spec.prefetch === 'auto' ? Math.min(AUTO_READAHEAD_WINDOW, w) : w;
  return { regionPages: spec.sizeBytes / spec.pageSize, maxWindow: Math.min(OTHER_WINDOW, w), readaheadMaxWindow: readahead, aloneMaxWindow: w, pageSize: spec.pageSize };
}

export interface PagingOptions {
  logger: Logger;
  /** Page cache budget in bytes. */
  cacheBytes: number;
  /** Daemon-wide resident cap in bytes (0 = none). */
  residentCapBytes: number;
  /** Fault threads: 0 = one per vCPU. */
  faultThreads: number;
  /** Pin fault thread i to CPU i (KERNEL.md: a handler on the faulting vCPU is 4–8× faster). */
  pin: boolean;
  unavailableAfterMs: number;
  /** Where a region's pages live (the pool for its servers). */
  storeFor(spec: RegionSpec): PageStore;
  /** Prometheus metrics to feed (faults, cache, remote bytes, attachments, per-region pages, latency). */
  metrics?: DaemonMetrics;
  /** Where replay recordings are kept (first-touch order per region), or null to record nothing. */
  replayDir?: string | null;
  /** systemd's fd store: every region memfd goes there while the region lives (null: none). */
  fdStore?: FdStore | null;
}

interface LiveRegion {
  spec: RegionSpec;
  key: number;
  memfd: number;
  prefetcher: Prefetcher | null;
  /** The dirty tracking in effect, and why it is not what the spec asked for ('' when it is). */
  tracking: DirtyTrackingMode;
  trackingNote: string;
}

interface LiveAttachment {
  id: number;
  region: LiveRegion;
  uffd: number;
  pidfd: number | null;
  pid: number;
  uid: number;
  since: string;
  comm: string;
}

function comm(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return '';
  }
}

export class PagingRuntime implements RegionRuntime, AttachHost {
  readonly serving = true;
  readonly description: string;
  readonly pager: Pager;
  readonly cache: PageCache;
  private readonly threads: FaultThread[] = [];
  private readonly regions = new Map<string, LiveRegion>(); // by region id
  private readonly attachments = new Map<number, LiveAttachment>();
  private nextKey = 1;
  private nextAttachment = 1;
  private readonly log: Logger;
  /** Fault-service latency per region key (the pager's onFaultServed measurement). */
  private readonly latency = new Map<number, FaultLatency>();
  private readonly replay: ReplayStore | null;
  private readonly idOfKey = new Map<number, string>();
  /** Why this kernel cannot do async dirty tracking, or null when it can (probed once). */
  private readonly asyncWhy: string | null;
  /** Warm-ups started by an attach (warm on attach), by attachment: stopped when it detaches. */
  private readonly warmups = new Map<number, AbortController>();

  constructor(private readonly opts: PagingOptions) {
    this.log = opts.logger.child({ part: 'paging' });
    this.asyncWhy = probeAsyncWp();
    if (this.asyncWhy !== null) this.log.info({ reason: this.asyncWhy }, 'async dirty tracking unavailable: every region tracks dirty pages with write-protect faults');
    this.cache = new PageCache(opts.cacheBytes);
    this.replay = opts.replayDir != null ? new ReplayStore(opts.replayDir) : null;
    const replay = this.replay;
    this.pager = new Pager({
      ops: nativeOps(),
      cache: this.cache.native,
      log: this.log,
      globalCapBytes: opts.residentCapBytes,
      maxBatchPages: READ_BATCH,
      maxPrefetchInFlight: 4 * PREFETCH_WINDOW,
      unavailableAfterMs: opts.unavailableAfterMs,
      onAttachmentGone: (id, reason) => this.endAttachment(id, reason),
      asyncWp: this.asyncWhy === null ? nativeAsyncWpOps() : null,
      onFaultServed: (key, kind, micros) => {
        this.latency.get(key)?.record(micros);
        opts.metrics?.faultSeconds.observe({ kind }, micros / 1e6);
      },
      onTouch: replay === null ? null : (key, att, page) => replay.touch(this.idOfKey.get(key) ?? '', att, page),
    });
    if (opts.metrics !== undefined) feedMetrics(opts.metrics, this);
    const cpus = os.availableParallelism();
    const n = opts.faultThreads > 0 ? opts.faultThreads : cpus;
    for (let i = 0; i < n; i++) {
      this.threads.push(new FaultThread({ cpu: opts.pin ? i % cpus : null, cache: this.cache, onEvents: (events: FaultEvent[]) => this.pager.onEvents(events) }));
    }
    this.description = `pager (${n} fault thread${n === 1 ? '' : 's'}${opts.pin ? ', pinned' : ''})`;
  }

  // ---------------------------------------------------------------------------------------------
  // RegionRuntime

  async onRegionCreated(spec: RegionSpec): Promise<void> {
    if (this.regions.has(spec.id)) return;
    const fd = memfd.create(`farmem:${spec.name}`, spec.sizeBytes);
    this.adopt(spec, fd);
  }

  /**
   * Start-up, before the registry's regions get fresh memfds: adopts the region memfds handed back
   * by systemd's fd store (LISTEN_FDS). Every page present in one counts as resident and dirty (as
   * for a re-attaching process's memfd), so eviction and drain write it back. Refused fds are closed
   * and dropped from the store; a process that re-attaches later with the same memfd just joins.
   */
  restore(stored: ListenFd[], byId: (id: string) => RegionSpec | null): { adopted: number; refused: number } {
    const { adopt, refuse } = sortStored(stored, byId);
    for (const r of refuse) {
      this.log.warn({ fd: r.fd, fdName: r.name, reason: r.reason }, `fd store: refused fd ${r.fd} "${r.name}": ${r.reason}; closed it and removed "${r.name}" from the store`);
      closeQuietly(r.fd);
      this.opts.fdStore?.remove(r.name);
    }
    for (const a of adopt) {
      if (this.regions.has(a.spec.id)) continue; // sortStored keeps one per region
      const live = this.adopt(a.spec, a.fd);
      const s = this.pager.stats(live.key);
      this.log.info(
        { region: a.spec.name, regionId: a.spec.id, fd: a.fd, residentPages: s.residentPages, dirtyPages: s.dirtyPages },
        `region "${a.spec.name}": adopted its memfd from the systemd fd store: ${s.dirtyPages} dirty page(s) to write back`,
      );
    }
    return { adopted: adopt.length, refused: refuse.length };
  }

  /** Starts serving a region over an existing memfd (a fresh one, one a re-attaching process kept, or one from the fd store). */
  private adopt(spec: RegionSpec, fd: number): LiveRegion {
    const key = this.nextKey++;
    const prefetcher = spec.prefetch === 'none' ? null : createPrefetcher(spec.prefetch, prefetchOptions(spec));
    const [tracking, trackingNote] = this.trackingOf(spec);
    if (spec.dirtyTracking === 'async' && tracking === 'wp') this.log.warn({ region: spec.name }, `region "${spec.name}": ${trackingNote}`);
    const live: LiveRegion = { spec, key, memfd: fd, prefetcher, tracking, trackingNote };
    this.latency.set(key, new FaultLatency());
    this.pager.addRegion({
      key,
      name: spec.name,
      ref: { id: spec.id, pageSize: spec.pageSize },
      sizeBytes: spec.sizeBytes,
      residentBytes: spec.residentBytes,
      onUnavailable: spec.onUnavailable,
      memfd: fd,
      store: this.opts.storeFor(spec),
      prefetcher,
      dirtyTracking: tracking,
    });
    this.regions.set(spec.id, live);
    this.idOfKey.set(key, spec.id);
    // Our copy is what keeps the pages when farmemd and every attached process die together.
    this.opts.fdStore?.store(regionFdName(spec.id), fd);
    return live;
  }

  async onRegionUpdated(spec: RegionSpec): Promise<void> {
    const r = this.regions.get(spec.id);
    if (!r) return this.onRegionCreated(spec);
    if (spec.prefetch !== r.spec.prefetch || windowFor(spec) !== windowFor(r.spec)) {
      // Takes effect at the next fault; guesses already out finish as usual.
      r.prefetcher = spec.prefetch === 'none' ? null : createPrefetcher(spec.prefetch, prefetchOptions(spec));
      this.pager.region(r.key).cfg.prefetcher = r.prefetcher;
    }
    r.spec = spec;
    // auto follows the budget: async without one, wp with one (budgetRefusal kept async attachments out).
    [r.tracking, r.trackingNote] = this.trackingOf(spec);
    this.pager.region(r.key).cfg.dirtyTracking = r.tracking;
    this.pager.setBudget(r.key, spec.residentBytes);
  }

  /**
   * The dirty tracking a region gets: async only where it is safe and possible — the kernel has
   * WP_ASYNC and PAGEMAP_SCAN, and nothing would ever evict the region (no resident budget; for
   * auto also no daemon-wide cap). Async regions are never evicted (see pager/async-wp.ts).
   */
  private trackingOf(spec: RegionSpec): [DirtyTrackingMode, string] {
    const t = spec.dirtyTracking;
    if (t === 'wp') return ['wp', ''];
    if (this.asyncWhy !== null) return ['wp', `async dirty tracking unavailable (${this.asyncWhy}): using write-protect faults`];
    if (spec.residentBytes > 0) return ['wp', 'a region with a resident budget is evicted, which needs write-protect faults'];
    if (t === 'auto' && this.opts.residentCapBytes > 0) return ['wp', 'the daemon-wide resident cap may evict it, which needs write-protect faults'];
    return ['async', ''];
  }

  asyncUnavailable(): string | null {
    return this.asyncWhy;
  }

  budgetRefusal(spec: RegionSpec): string | null {
    if (spec.dirtyTracking === 'async') return null; // the registry refuses it, saying why
    const r = this.regions.get(spec.id);
    if (!r || r.tracking !== 'async') return null;
    const pids = [...this.attachments.values()].filter((a) => a.region === r).map((a) => a.pid);
    if (pids.length === 0) return null;
    return `${pids.length} process(es) attached with async dirty tracking (pid ${pids.join(', ')}); ` +
      'a resident budget needs write-protect faults, as an async write between the read-back and the hole punch of an eviction would be lost: detach them first';
  }

  async onRegionDeleted(spec: RegionSpec): Promise<{ pagesFreed: number }> {
    const r = this.regions.get(spec.id);
    if (r) {
      const attached = [...this.attachments.values()].filter((a) => a.region === r);
      if (attached.length > 0) {
        throw new RegionError('precondition', `delete region "${spec.name}": ${attached.length} process(es) attached (pid ${attached.map((a) => a.pid).join(', ')}); detach them first`);
      }
      this.unload(r);
    }
    this.replay?.remove(spec.id);
    // The region is gone from this daemon either way; a memory server that cannot be reached keeps
    // its copy of the pages until it is told again (worth a warning, not a refused delete that
    // would leave a region the pager no longer serves).
    try {
      await this.opts.storeFor(spec).deleteRegion(spec.id);
    } catch (e) {
      this.log.warn({ region: spec.name, err: storeFailure('delete', spec, e).message }, `region "${spec.name}" deleted, but its pages could not be freed on the memory servers: ${storeFailure('delete', spec, e).message}`);
    }
    return { pagesFreed: 0 };
  }

  regionStats(spec: RegionSpec): RegionStatsSnapshot | null {
    const r = this.regions.get(spec.id);
    if (!r) return null;
    // Async regions: ask the pagemap what was written since the last scan, so the dirty count is
    // current (one PAGEMAP_SCAN per attachment, tens of µs; it re-protects what it reports).
    if (r.tracking === 'async') this.pager.collectWritten(r.key);
    const s: RegionStats = this.pager.stats(r.key);
    const attachments: AttachmentInfo[] = [...this.attachments.values()].filter((a) => a.region === r).map((a) => ({ pid: a.pid, uid: a.uid, since: a.since, comm: a.comm }));
    return {
      residentPages: s.residentPages,
      dirtyPages: s.dirtyPages,
      faults: { cacheHit: s.faults.cacheHit, remote: s.faults.remote, zero: s.faults.zero, writeProtect: s.faults.wp, sigbus: s.poisoned },
      cacheHits: s.faults.cacheHit,
      cacheMisses: s.faults.remote + s.faults.zero,
      prefetchAccuracy: s.prefetch.accuracy ?? 0,
      prefetchCoverage: s.prefetch.coverage ?? 0,
      prefetchedPages: s.prefetch.issued,
      prefetchUsedPages: s.prefetch.used,
      prefetchWastedPages: s.prefetch.wasted,
      prefetchWastedBytes: s.prefetch.wasted * s.pageSize,
      prefetchPolicy: r.prefetcher === null ? 'none' : r.prefetcher.current?.() ?? r.prefetcher.name,
      evictedPages: s.evicted.clean + s.evicted.dirty,
      writtenBackPages: s.writeBack.pages,
      writeBackStalled: s.writeBack.stalled,
      writeBackStalls: s.writeBack.stalls,
      remoteBytesIn: s.remoteBytesIn,
      remoteBytesOut: s.remoteBytesOut,
      attachments,
      faultP50Us: this.latency.get(r.key)?.percentile(50) ?? 0,
      faultP99Us: this.latency.get(r.key)?.percentile(99) ?? 0,
      dirtyTracking: r.tracking,
      dirtyTrackingNote: r.tracking === 'async' ? 'never evicted; its pages count toward the daemon-wide cap; dirty pages are found by a pagemap scan (show, sync, drain)' : r.trackingNote,
    };
  }

  /** Counters of regions that were removed, so daemon-wide totals (metrics) never go backwards. */
  readonly retired: Totals = { cacheHit: 0, remote: 0, zero: 0, wp: 0, remoteBytesIn: 0, remoteBytesOut: 0, evictions: 0, writebacks: 0 };

  /** Takes a live region out of this daemon: its counters kept, out of the pager and the cache, its memfd closed and out of the fd store. */
  private unload(r: LiveRegion): void {
    this.retire(r);
    this.pager.removeRegion(r.key);
    this.cache.dropRegion(r.key);
    closeFd(r.memfd);
    this.regions.delete(r.spec.id);
    this.opts.fdStore?.remove(regionFdName(r.spec.id));
  }

  private retire(r: LiveRegion): void {
    addRegionTotals(this.retired, this.pager.stats(r.key));
    this.latency.delete(r.key);
  }

  /** Live attachments (the metrics collector reads it). */
  get attachmentTotal(): number {
    return this.attachments.size;
  }

  pageMap(spec: RegionSpec): RegionPageMap | null {
    const r = this.regions.get(spec.id);
    if (!r) return null;
    const st = this.pager.region(r.key);
    const state = new Uint8Array(st.pages);
    for (let p = 0; p < st.pages; p++) {
      const f = st.flags[p]!;
      state[p] = (f & RES ? PAGE_RESIDENT : 0) | (f & DIRTY ? PAGE_DIRTY : 0);
    }
    return { pageSize: st.pageSize, pages: st.pages, state, faults: st.faults.slice() };
  }

  attachmentCount(spec: RegionSpec): number {
    const r = this.regions.get(spec.id);
    return r ? [...this.attachments.values()].filter((a) => a.region === r).length : 0;
  }

  stats(): RuntimeStats | null {
    const all = this.pager.allStats();
    const c = this.cache.stats();
    const sum = (f: (s: RegionStats) => number) => all.reduce((t, s) => t + f(s), 0);
    return {
      attachments: this.attachments.size,
      cacheCapacityBytes: c.capacityBytes,
      cacheBytes: c.bytes,
      cacheHits: c.hits,
      cacheMisses: c.misses,
      residentBytes: sum((s) => s.residentPages * s.pageSize),
      faults: { cacheHit: sum((s) => s.faults.cacheHit), remote: sum((s) => s.faults.remote), zero: sum((s) => s.faults.zero), writeProtect: sum((s) => s.faults.wp), sigbus: sum((s) => s.poisoned) },
      remoteBytesIn: sum((s) => s.remoteBytesIn),
      remoteBytesOut: sum((s) => s.remoteBytesOut),
      dirtyPages: sum((s) => s.dirtyPages),
      evictions: sum((s) => s.evicted.clean + s.evicted.dirty),
      writebacks: sum((s) => s.writeBack.pages),
    };
  }

  async sync(spec: RegionSpec, progress: (p: Progress) => void, signal: AbortSignal): Promise<Progress> {
    const r = this.live(spec, 'sync');
    let last: Progress = { pagesDone: 0, pagesTotal: 0, bytesDone: 0, message: 'nothing dirty' };
    const report = (done: number, total: number) => {
      last = { pagesDone: done, pagesTotal: total, bytesDone: done * spec.pageSize, message: `written back ${done} of ${total} dirty page(s)` };
      progress(last);
    };
    if (signal.aborted) throw new RegionError('precondition', `sync region "${spec.name}": cancelled`);
    try {
      await this.pager.sync(r.key, (p) => report(p.done, p.total));
    } catch (e) {
      throw storeFailure('sync', spec, e);
    }
    return { ...last, message: `synced: ${last.pagesTotal} dirty page(s) written back and made durable` };
  }

  async evict(spec: RegionSpec, progress: (p: Progress) => void): Promise<Progress> {
    const r = this.live(spec, 'evict');
    if (r.tracking === 'async') {
      throw new RegionError('precondition', `evict region "${spec.name}": the region tracks dirty pages asynchronously (dirty tracking async) and is never evicted: ` +
        'async write-protect cannot block a write between the read-back and the hole punch, so that write would be lost');
    }
    const n = this.pager.evictAll(r.key);
    const p: Progress = { pagesDone: n, pagesTotal: n, bytesDone: n * spec.pageSize, message: `dropped ${n} clean page(s)` };
    progress(p);
    return p;
  }

  /**
   * Replay warm-up (`farmem region warm`): fetches the latest recorded working set in first-touch
   * order, 256 pages per read, and places each page like a prefetch guess (installed when an
   * attachment is live and the budget has room, else staged in the native page cache).
   */
  async warm(spec: RegionSpec, progress: (p: Progress) => void, signal: AbortSignal): Promise<Progress> {
    const r = this.live(spec, 'warm');
    if (this.replay === null) throw new RegionError('precondition', `warm region "${spec.name}": replay recording is off in this daemon`);
    let rec;
    try {
      rec = this.replay.load(spec.id);
    } catch (e) {
      throw new RegionError('precondition', `warm region "${spec.name}": ${(e as Error).message}`);
    }
    if (rec === null) throw new RegionError('precondition', `warm region "${spec.name}": no recorded run yet (a process must attach and detach first)`);
    const pages = spec.sizeBytes / spec.pageSize;
    if (rec.pageSize !== spec.pageSize || rec.regionPages !== pages) {
      throw new RegionError('precondition', `warm region "${spec.name}": the recording is of ${rec.regionPages} pages of ${rec.pageSize} bytes, the region has ${pages} of ${spec.pageSize}`);
    }
    const msg = (w: { pagesDone: number; pagesTotal: number; pagesFetched: number }) => `walked ${w.pagesDone} of ${w.pagesTotal} recorded page(s), fetched ${w.pagesFetched}`;
    const w = await runWarmup(rec, (batch) => this.pager.warm(r.key, batch), (w) => progress({ pagesDone: w.pagesDone, pagesTotal: w.pagesTotal, bytesDone: w.pagesFetched * spec.pageSize, message: msg(w) }), signal);
    if (signal.aborted) throw new RegionError('precondition', `warm region "${spec.name}": cancelled`);
    return { pagesDone: w.pagesDone, pagesTotal: w.pagesTotal, bytesDone: w.pagesFetched * spec.pageSize, message: `warmed: ${msg(w)}` };
  }

  /** SIGTERM: writes back every dirty page, bounded by timeoutMs. */
  async drain(timeoutMs: number): Promise<{ complete: boolean; dirtyLeft: number }> {
    return this.pager.drain(timeoutMs);
  }

  /**
   * Ends every attachment. Their replay recordings are written before this resolves: a process still
   * attached at shutdown reattaches to the next daemon, which would otherwise find no recording of
   * its run to warm from.
   */
  async stop(): Promise<void> {
    const saves = [...this.attachments.keys()].map((id) => this.endAttachment(id, 'shutdown'));
    for (const t of this.threads) t.stop();
    await Promise.all(saves);
  }

  private live(spec: RegionSpec, op: string): LiveRegion {
    const r = this.regions.get(spec.id);
    if (!r) throw new RegionError('precondition', `${op} region "${spec.name}": the region is not loaded in the pager`);
    return r;
  }

  // ---------------------------------------------------------------------------------------------
  // AttachHost

  /** Set by the daemon: region lookup by name. */
  lookup: (name: string) => RegionSpec | null = () => null;

  resolveRegion(req: ResolveRequest): Resolution {
    // A name no region can have is the caller's mistake, not a missing region: say what a name is.
    if (!NAME_RE.test(req.name)) return { ok: false, code: 'INVALID_ARGUMENT', reason: `Expected ${NAME_EXPECTED} for region name but received ${JSON.stringify(req.name)}` };
    const spec = this.lookup(req.name);
    if (spec === null) return { ok: false, code: 'NOT_FOUND', reason: 'not found' };
    try {
      check(spec, { pid: req.cred.pid, uid: req.cred.uid, gid: req.cred.gid, groups: groupsOf(req.cred.pid) }, 'use', 'attach');
    } catch (e) {
      return { ok: false, code: 'PERMISSION_DENIED', reason: (e as Error).message.replace(/^attach region "[^"]*": /, '') };
    }
    let r = this.regions.get(spec.id);
    const sameFile = r !== undefined && req.reattach !== null && fileIdentity(r.memfd) === fileIdentity(req.reattach.memfd);
    if (req.reattach !== null && req.reattach.regionId === spec.id && !sameFile && (r === undefined || !this.hasAttachments(r))) {
      // A daemon restarted after a crash: the process kept the region's memfd (with every page
      // written before the crash); adopt it instead of the empty one we made at start-up. (When the
      // fd store gave us back that very memfd, the process just joins: sameFile.)
      if (r !== undefined) this.unload(r);
      r = this.adopt(spec, req.reattach.memfd);
      this.log.info({ region: spec.name, pid: req.cred.pid }, `region "${spec.name}": adopted the memfd of re-attaching pid ${req.cred.pid}`);
    }
    if (r === undefined) return { ok: false, code: 'UNAVAILABLE', reason: 'not loaded in the pager' };
    return { ok: true, spec, memfd: r.memfd, writeProtect: true, wpAsync: r.tracking === 'async' };
  }

  private hasAttachments(r: LiveRegion): boolean {
    for (const a of this.attachments.values()) if (a.region === r) return true;
    return false;
  }

  onRegistered(att: NewAttachment): number {
    const r = this.regions.get(att.spec.id);
    if (!r) throw new Error(`region "${att.spec.name}" is not loaded in the pager`);
    const id = this.nextAttachment++;
    const asyncWp = att.writeProtect && att.features.includes('WP_ASYNC');
    this.pager.attach({ attachment: id, region: r.key, uffd: att.uffd, pid: att.pid, base: att.start, length: att.length, writeProtect: att.writeProtect, asyncWp, reattach: att.reattach });
    for (const t of this.threads) {
      t.add({ attachment: id, uffd: att.uffd, pidfd: att.pidfd, region: r.key, start: att.start, length: att.length, pageSize: att.spec.pageSize, writeProtect: att.writeProtect });
    }
    this.replay?.begin(id, r.spec.id, r.spec.sizeBytes / r.spec.pageSize, r.spec.pageSize);
    if (r.spec.warmOnAttach === true) this.warmOnAttach(r, id, att.pid);
    this.attachments.set(id, { id, region: r, uffd: att.uffd, pidfd: att.pidfd, pid: att.pid, uid: att.uid, since: new Date().toISOString(), comm: comm(att.pid) });
    // The pager drops to WP faults when the process's uffd turns out to lack WP_ASYNC.
    const dirtyTracking = this.pager.attachmentTracking(id);
    this.log.info({ region: att.spec.name, pid: att.pid, attachment: id, reattach: att.reattach, dirtyTracking }, `region "${att.spec.name}": pid ${att.pid} attached`);
    return id;
  }

  /**
   * Warm on attach: replays the region's latest recording for a process that just attached, in the
   * background (its faults meanwhile join the fetches in flight). Nothing recorded, or a recording
   * that does not fit the region, only logs: the attach itself never fails for it.
   */
  private warmOnAttach(r: LiveRegion, id: number, pid: number): void {
    const name = r.spec.name;
    if (this.replay === null) {
      this.log.warn({ region: name, pid }, `region "${name}": warm on attach skipped: replay recording is off in this daemon`);
      return;
    }
    let rec;
    try {
      rec = this.replay.load(r.spec.id);
    } catch (e) {
      this.log.warn({ region: name, pid }, `region "${name}": warm on attach skipped: ${(e as Error).message}`);
      return;
    }
    if (rec === null) {
      this.log.info({ region: name, pid }, `region "${name}": warm on attach: no recorded run yet`);
      return;
    }
    const pages = r.spec.sizeBytes / r.spec.pageSize;
    if (rec.pageSize !== r.spec.pageSize || rec.regionPages !== pages) {
      this.log.warn({ region: name, pid }, `region "${name}": warm on attach skipped: the recording is of ${rec.regionPages} pages of ${rec.pageSize} bytes, the region has ${pages} of ${r.spec.pageSize}`);
      return;
    }
    this.replay.seed(id, rec.pages);
    const ac = new AbortController();
    this.warmups.set(id, ac);
    const t0 = performance.now();
    runWarmup(rec, (batch) => this.pager.warm(r.key, batch), () => {}, ac.signal).then(
      (w) => this.log.info({ region: name, pid, attachment: id, pages: w.pagesTotal, fetched: w.pagesFetched, ms: Math.round(performance.now() - t0), complete: !ac.signal.aborted },
        `region "${name}": warmed on attach: fetched ${w.pagesFetched} of ${w.pagesTotal} recorded page(s)`),
      (err: unknown) => this.log.warn({ err, region: name, pid, attachment: id }, `region "${name}": warm on attach failed`),
    ).finally(() => this.warmups.delete(id));
  }

  onDetached(id: number, reason: DetachReason): void {
    void this.endAttachment(id, reason);
  }

  /** Tears an attachment down; resolves once its replay recording is saved (never rejects). */
  private endAttachment(id: number, reason: string): Promise<void> {
    const a = this.attachments.get(id);
    if (!a) return Promise.resolve();
    this.attachments.delete(id);
    this.warmups.get(id)?.abort();
    for (const t of this.threads) t.remove(id);
    this.pager.detach(id);
    closeFd(a.uffd);
    if (a.pidfd !== null) closeFd(a.pidfd);
    this.log.info({ region: a.region.spec.name, pid: a.pid, attachment: id, reason }, `region "${a.region.spec.name}": pid ${a.pid} detached (${reason})`);
    if (this.replay === null) return Promise.resolve();
    return this.replay.end(id).then(
      (saved) => void (saved !== null && this.log.debug({ region: a.region.spec.name, pid: a.pid, ...saved }, 'replay recording saved')),
      (err: unknown) => this.log.warn({ err, region: a.region.spec.name, pid: a.pid }, 'replay recording not saved'),
    );
  }
}
