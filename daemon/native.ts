// The bridge to the C++ addon (native/). Nothing else imports the addon: every native function and
// every plain data type that crosses the boundary is declared here. Arguments are validated in
// TypeScript before the call, so C++ only ever sees clean, typed data; native errors become
// NativeError with the errno name as `code`.
//
// Addresses are bigint (64-bit); page indexes, lengths and fds are numbers.

import path from 'node:path';

/** An error from a system call in the addon. `code` is the errno name: EEXIST, ESRCH, EBADF, ... */
export class NativeError extends Error {
  readonly code: string;
  readonly errno: number;
  readonly syscall: string;
  constructor(message: string, code: string, errno: number, syscall: string) {
    super(message);
    this.name = 'NativeError';
    this.code = code;
    this.errno = errno;
    this.syscall = syscall;
  }
}

// ---------------------------------------------------------------------------------------------
// Types that cross the boundary.

/** How the uffd was obtained, best first. */
export type UffdOpenMethod = 'dev-userfaultfd' | 'syscall' | 'syscall-user-mode-only';

export interface UffdOpened {
  fd: number;
  method: UffdOpenMethod;
  /** true when only UFFD_USER_MODE_ONLY was allowed: kernel-mode accesses (read(2) into the region) fail with EFAULT. */
  userModeOnly: boolean;
  /** A human sentence about a degraded mode, or null. */
  warning: string | null;
}

export type UffdFeature =
  | 'PAGEFAULT_FLAG_WP'
  | 'EVENT_FORK'
  | 'EVENT_REMAP'
  | 'EVENT_REMOVE'
  | 'MISSING_HUGETLBFS'
  | 'MISSING_SHMEM'
  | 'EVENT_UNMAP'
  | 'SIGBUS'
  | 'THREAD_ID'
  | 'MINOR_HUGETLBFS'
  | 'MINOR_SHMEM'
  | 'EXACT_ADDRESS'
  | 'WP_HUGETLBFS_SHMEM'
  | 'WP_UNPOPULATED'
  | 'POISON'
  | 'WP_ASYNC'
  | 'MOVE';

export interface UffdApiResult {
  /** Features granted by UFFDIO_API (the kernel lists every supported one). */
  features: UffdFeature[];
  /** ioctls available on the uffd: 'API', 'REGISTER', 'UNREGISTER'. */
  ioctls: string[];
}

export type RegisterMode = 'missing' | 'wp' | 'minor';

export interface RegisterResult {
  /** ioctls allowed on the range: 'COPY', 'ZEROPAGE', 'WAKE', 'WRITEPROTECT', 'CONTINUE', 'POISON', 'MOVE'. */
  ioctls: string[];
}

/** 'done': the ioctl did its work. 'exists': the page was already there (success; wake the range). 'again': retry (an event is pending). */
export type IoctlOutcome = 'done' | 'exists' | 'again';

export interface CopyResult {
  outcome: IoctlOutcome;
  /** Bytes installed before the outcome (a partial copy can end in 'again' or 'exists'). */
  bytes: number;
}

export interface IoctlMode {
  /** Install write-protected (UFFDIO_COPY_MODE_WP); only for copy. */
  wp?: boolean;
  /** Do not wake the faulting threads (wake the range later with uffdWake). */
  dontWake?: boolean;
}

export type UffdEvent =
  | { kind: 'pagefault'; address: bigint; write: boolean; wp: boolean; minor: boolean; tid: number }
  | { kind: 'fork'; uffd: number }
  | { kind: 'remap'; from: bigint; to: bigint; length: number }
  | { kind: 'remove'; start: bigint; end: bigint }
  | { kind: 'unmap'; start: bigint; end: bigint };

export interface DataRange {
  offset: number;
  length: number;
}

export interface Mapping {
  address: bigint;
  length: number;
  /** A Buffer over the mapping (external memory, not owned by V8; invalid after munmap). */
  buffer: Buffer;
}

export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

export interface ReceivedMessage {
  payload: Buffer;
  fds: number[];
}

export type SeqpacketEvent =
  | { type: 'connect'; conn: number; cred: PeerCred }
  | { type: 'message'; conn: number; payload: Buffer; fds: number[] }
  | { type: 'close'; conn: number }
  | { type: 'error'; conn: number; error: NativeError };

/** One registered range handed to a FaultThread. */
export interface FaultRegistration {
  /** Caller-chosen id (u32) that comes back on every event of this uffd. */
  attachment: number;
  uffd: number;
  /** pidfd of the attached process, watched for exit; null to not watch. */
  pidfd: number | null;
  /** Region key (u32) used for page-cache lookups. */
  region: number;
  start: bigint;
  length: number;
  pageSize: number;
  /** Install cache hits write-protected (dirty tracking by WP faults) unless the fault is a write. */
  writeProtect: boolean;
}

export type FaultEvent =
  | {
      kind: 'pagefault';
      attachment: number;
      /** Page index within the registration ((address - start) / pageSize); -1 outside it. */
      page: number;
      address: bigint;
      write: boolean;
      wp: boolean;
      minor: boolean;
      tid: number;
      /** 'cache': already installed from the native page cache on the fault thread. null: JS must resolve it. */
      resolved: 'cache' | null;
    }
  | { kind: 'fork'; attachment: number; uffd: number }
  | { kind: 'remap'; attachment: number; from: bigint; to: bigint; length: number }
  | { kind: 'remove'; attachment: number; start: bigint; end: bigint }
  | { kind: 'unmap'; attachment: number; start: bigint; end: bigint }
  | { kind: 'gone'; attachment: number; reason: 'closed' | 'exited' | 'error'; detail: string | null };

export interface FaultThreadStats {
  faults: number;
  cacheHits: number;
  batches: number;
  events: number;
}

export interface PageCacheStats {
  hits: number;
  misses: number;
  inserts: number;
  evictions: number;
  entries: number;
  bytes: number;
  capacityBytes: number;
}

// ---------------------------------------------------------------------------------------------
// The addon's raw surface (what C++ exports). Filled in by native/src/*.cc.

export interface NativePageCache {
  put(region: number, page: number, data: Buffer): boolean;
  get(region: number, page: number): Buffer | null;
  has(region: number, page: number): boolean;
  delete(region: number, page: number): boolean;
  dropRegion(region: number): number;
  setCapacity(bytes: number): void;
  stats(): PageCacheStats;
}

export interface NativeFaultThread {
  add(reg: FaultRegistration): void;
  /** false when the attachment is not watched. */
  remove(attachment: number): boolean;
  setAffinity(cpu: number | null): void;
  stats(): FaultThreadStats;
  stop(): void;
}

export interface NativeSeqpacketServer {
  send(conn: number, payload: Buffer, fds: number[]): void;
  closeConnection(conn: number): void;
  close(): void;
}

export interface NativeAddon {
  // uffd.cc
  uffdOpen(nonBlocking: boolean, allowUserModeOnly: boolean): UffdOpened;
  uffdApi(fd: number, features: UffdFeature[]): UffdApiResult;
  uffdRegister(fd: number, start: bigint, length: number, modes: RegisterMode[]): RegisterResult;
  uffdUnregister(fd: number, start: bigint, length: number): void;
  uffdCopy(fd: number, dst: bigint, src: Buffer, wp: boolean, dontWake: boolean): CopyResult;
  uffdZeropage(fd: number, dst: bigint, length: number, dontWake: boolean): CopyResult;
  uffdWake(fd: number, start: bigint, length: number): void;
  uffdWriteProtect(fd: number, start: bigint, length: number, protect: boolean, dontWake: boolean): IoctlOutcome;
  uffdContinue(fd: number, start: bigint, length: number, dontWake: boolean): CopyResult;
  uffdReadEvents(fd: number, max: number): UffdEvent[];
  // memfd.cc
  memfdCreate(name: string, size: number): number;
  mmapShared(fd: number, length: number, writable: boolean): Mapping;
  munmap(address: bigint, length: number): void;
  punchHole(fd: number, offset: number, length: number): void;
  pread(fd: number, buffer: Buffer, offset: number): number;
  pwrite(fd: number, buffer: Buffer, offset: number): number;
  dataRanges(fd: number): DataRange[];
  fileSize(fd: number): number;
  closeFd(fd: number): void;
  pidfdOpen(pid: number): number;
  pidfdGetfd(pidfd: number, targetFd: number): number;
  pageSize(): number;
  // fd_passing.cc
  seqpacketListen(path: string, mode: number, onEvent: (e: SeqpacketEvent) => void): NativeSeqpacketServer;
  seqpacketConnect(path: string): number;
  sendFds(fd: number, payload: Buffer, fds: number[]): void;
  recvFds(fd: number, maxPayload: number, maxFds: number, timeoutMs: number): ReceivedMessage | null;
  peerCred(fd: number): PeerCred;
  // sd_notify.cc
  sdNotify(state: string, fds: number[]): boolean;
  // page_cache.cc
  PageCache: new (capacityBytes: number) => NativePageCache;
  // fault_thread.cc
  FaultThread: new (cpu: number | null, cache: NativePageCache | null, onEvents: (events: FaultEvent[]) => void) => NativeFaultThread;
}

let loaded: NativeAddon | null = null;

/** The addon, loaded on first use (build/Release/farmem_native.node). */
export function addon(): NativeAddon {
  if (loaded === null) {
    const file = path.join(__dirname, '..', '..', 'build', 'Release', 'farmem_native.node');
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    loaded = require(file) as NativeAddon;
  }
  return loaded;
}

/** Turns an error thrown by the addon into a NativeError (other errors pass through unchanged). */
export function toNativeError(e: unknown): unknown {
  if (e instanceof Error && typeof (e as { code?: unknown }).code === 'string' && typeof (e as { syscall?: unknown }).syscall === 'string') {
    const x = e as Error & { code: string; errno: number; syscall: string };
    return new NativeError(x.message, x.code, x.errno, x.syscall);
  }
  return e;
}

// The typed, validated wrappers over addon() (uffd, memfd, fd passing, sd_notify, FaultThread,
// PageCache) are added below by their owners; each validates in TS and maps errors with
// toNativeError.

// ---------------------------------------------------------------------------------------------
// PageCache and FaultThread (page_cache.cc, fault_thread.cc).

function describeArg(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (v === null || v === undefined || typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Buffer.isBuffer(v)) return `a Buffer of ${v.length} bytes`;
  if (Array.isArray(v)) return 'an array';
  return typeof v === 'function' ? 'a function' : 'an object';
}

function badArg(what: string, name: string, v: unknown): TypeError {
  return new TypeError(`Expected ${what} for ${name} but received ${describeArg(v)}`);
}

function checkU32(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) throw badArg('an integer from 0 to 4294967295', name, v);
  return v;
}

function checkIndex(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw badArg('a non-negative integer', name, v);
  return v;
}

/**
 * The daemon's page cache: non-resident pages (prefetched, or evicted clean) keyed by (region, page),
 * in native memory within a byte budget, CLOCK replacement. The fault thread installs hits itself
 * and removes them (the cache never holds a resident page). All methods: main thread.
 */
export class PageCache {
  /** The native object; pass it to FaultThread only through this class. */
  readonly native: NativePageCache;

  constructor(capacityBytes: number) {
    this.native = new (addon().PageCache)(checkIndex(capacityBytes, 'capacityBytes'));
  }

  /** Copies `data` in (replacing the page's bytes if present). False when one page exceeds the whole budget. */
  put(region: number, page: number, data: Buffer): boolean {
    checkU32(region, 'region');
    checkIndex(page, 'page');
    if (!Buffer.isBuffer(data) || data.length === 0) throw badArg('a non-empty Buffer', 'data', data);
    return this.native.put(region, page, data);
  }

  /** A copy of the page (the entry stays), or null. Counts a hit or a miss. */
  get(region: number, page: number): Buffer | null {
    return this.native.get(checkU32(region, 'region'), checkIndex(page, 'page'));
  }

  has(region: number, page: number): boolean {
    return this.native.has(checkU32(region, 'region'), checkIndex(page, 'page'));
  }

  delete(region: number, page: number): boolean {
    return this.native.delete(checkU32(region, 'region'), checkIndex(page, 'page'));
  }

  /** Drops every page of a region; returns how many. */
  dropRegion(region: number): number {
    return this.native.dropRegion(checkU32(region, 'region'));
  }

  /** Sets the byte budget, evicting at once down to it. */
  setCapacity(bytes: number): void {
    this.native.setCapacity(checkIndex(bytes, 'bytes'));
  }

  stats(): PageCacheStats {
    return this.native.stats();
  }
}

function checkCpu(v: unknown, name: string): number | null {
  if (v === null) return null;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 1023) throw badArg('a CPU number from 0 to 1023 or null', name, v);
  return v;
}

function checkFd(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw badArg('a file descriptor', name, v);
  return v;
}

export interface FaultThreadOptions {
  /** Pin the thread to this CPU (null: any). See KERNEL.md: waking a thread on another vCPU costs ~40 µs. */
  cpu: number | null;
  /** MISSING faults whose page is here are installed on the fault thread, without JS. */
  cache: PageCache | null;
  /** Batches of events, on the main thread. Faults with resolved === null must be resolved by JS. */
  onEvents: (events: FaultEvent[]) => void;
}

/**
 * One native thread serving the page faults of any number of uffds (see fault_thread.h). It keeps
 * the event loop alive until stop(). add() duplicates the uffd and pidfd (the caller keeps its own);
 * after a 'gone' event the thread no longer watches the attachment, and remove() releases it.
 * Several FaultThreads may watch the same uffd (one per vCPU, each pinned): uffds are added with
 * EPOLLEXCLUSIVE, so a fault wakes one of them. All methods: main thread.
 */
export class FaultThread {
  private readonly native: NativeFaultThread;
  private stopped = false;

  constructor(opts: FaultThreadOptions) {
    if (typeof opts !== 'object' || opts === null) throw badArg('an options object', 'opts', opts);
    const cpu = checkCpu(opts.cpu, 'cpu');
    if (opts.cache !== null && !(opts.cache instanceof PageCache)) throw badArg('a PageCache or null', 'cache', opts.cache);
    if (typeof opts.onEvents !== 'function') throw badArg('a function', 'onEvents', opts.onEvents);
    try {
      this.native = new (addon().FaultThread)(cpu, opts.cache === null ? null : opts.cache.native, opts.onEvents);
    } catch (e) {
      throw toNativeError(e);
    }
  }

  /** Starts watching a registered range. Throws NativeError EEXIST when the attachment id is taken. */
  add(reg: FaultRegistration): void {
    if (typeof reg !== 'object' || reg === null) throw badArg('a registration object', 'reg', reg);
    checkU32(reg.attachment, 'reg.attachment');
    checkFd(reg.uffd, 'reg.uffd');
    if (reg.pidfd !== null) checkFd(reg.pidfd, 'reg.pidfd');
    checkU32(reg.region, 'reg.region');
    const ps = reg.pageSize;
    if (typeof ps !== 'number' || !Number.isInteger(ps) || ps < 4096 || ps > 2 ** 30 || (ps & (ps - 1)) !== 0) {
      throw badArg('a power of two from 4096 to 1073741824', 'reg.pageSize', ps);
    }
    if (typeof reg.start !== 'bigint' || reg.start <= 0n || reg.start % BigInt(ps) !== 0n || reg.start >= 1n << 64n) {
      throw badArg(`a page-aligned address (bigint) for page size ${ps}`, 'reg.start', reg.start);
    }
    if (typeof reg.length !== 'number' || !Number.isSafeInteger(reg.length) || reg.length <= 0 || reg.length % ps !== 0) {
      throw badArg(`a positive multiple of ${ps}`, 'reg.length', reg.length);
    }
    if (typeof reg.writeProtect !== 'boolean') throw badArg('a boolean', 'reg.writeProtect', reg.writeProtect);
    if (this.stopped) throw new Error(`watch attachment ${reg.attachment}: the fault thread is stopped`);
    try {
      this.native.add(reg);
    } catch (e) {
      throw toNativeError(e);
    }
  }

  /** Stops watching and closes the thread's copies of the fds; once it returns the thread no longer touches them. False if unknown. */
  remove(attachment: number): boolean {
    return this.native.remove(checkU32(attachment, 'attachment'));
  }

  setAffinity(cpu: number | null): void {
    const c = checkCpu(cpu, 'cpu');
    if (this.stopped) throw new Error('set affinity: the fault thread is stopped');
    try {
      this.native.setAffinity(c);
    } catch (e) {
      throw toNativeError(e);
    }
  }

  stats(): FaultThreadStats {
    return this.native.stats();
  }

  /** Signals the thread and joins it; events already queued are still delivered. Idempotent. */
  stop(): void {
    this.stopped = true;
    this.native.stop();
  }
}
