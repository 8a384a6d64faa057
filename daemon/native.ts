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
      /** Page index within the region. */
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
  remove(attachment: number): void;
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
  // pagemap.cc
  pagemapOpen(pid: number): number;
  pagemapScan(
    fd: number,
    start: bigint,
    end: bigint,
    flags: number,
    categoryMask: number,
    categoryInverted: number,
    anyofMask: number,
    returnMask: number,
    maxPages: number,
  ): { regions: { start: bigint; end: bigint; categories: number }[]; walkEnd: bigint };
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
// pagemap.cc: PAGEMAP_SCAN (Linux 6.7+) on /proc/<pid>/pagemap. With a uffd API'd with WP_ASYNC and
// a range write-protected, WRITTEN marks the pages written since the last re-protect; wpMatching
// re-protects what matched in the same ioctl. Finding dirty pages only: async WP cannot block a
// writer, so it never guards an eviction alone (KERNEL.md). Called from the JS thread.

/** PAGEMAP_SCAN page categories (kernel PAGE_IS_*); GUARD needs Linux 6.14+. */
export type PageCategory = 'WPALLOWED' | 'WRITTEN' | 'FILE' | 'PRESENT' | 'SWAPPED' | 'PFNZERO' | 'HUGE' | 'SOFT_DIRTY' | 'GUARD';

const PAGE_CATEGORY_BITS: Record<PageCategory, number> = {
  WPALLOWED: 1 << 0,
  WRITTEN: 1 << 1,
  FILE: 1 << 2,
  PRESENT: 1 << 3,
  SWAPPED: 1 << 4,
  PFNZERO: 1 << 5,
  HUGE: 1 << 6,
  SOFT_DIRTY: 1 << 7,
  GUARD: 1 << 8,
};
const PM_SCAN_WP_MATCHING = 1 << 0;
const PM_SCAN_CHECK_WPASYNC = 1 << 1;

export interface PagemapScanOptions {
  /** A page matches when every category here is set (or, for categoryInverted ones, clear)... */
  categoryMask?: PageCategory[];
  /** ...categories of categoryMask/anyofMask that must be clear instead of set... */
  categoryInverted?: PageCategory[];
  /** ...and at least one of these is set (empty: no such condition). */
  anyofMask?: PageCategory[];
  /** Categories reported for each region (default: those of categoryMask and anyofMask). */
  returnMask?: PageCategory[];
  /** PM_SCAN_WP_MATCHING: write-protect (async) the pages that matched, in the same walk. */
  wpMatching?: boolean;
  /** PM_SCAN_CHECK_WPASYNC: fail with EPERM unless the whole range is registered with an async-WP uffd. */
  checkWpAsync?: boolean;
  /** Stop once this many pages matched (0: no limit); continue from walkEnd. */
  maxPages?: number;
}

export interface PageRegion {
  start: bigint;
  end: bigint;
  categories: PageCategory[];
}

export interface PagemapScanResult {
  /** Matching ranges in address order, adjacent ranges with equal categories merged. */
  regions: PageRegion[];
  /** Where the walk stopped: `end` unless maxPages stopped it first (then scan again from here). */
  walkEnd: bigint;
}

function describe(v: unknown): string {
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'string') return JSON.stringify(v);
  if (Array.isArray(v)) return `[${v.map(describe).join(', ')}]`;
  if (v !== null && typeof v === 'object') return 'an object';
  return String(v);
}

function categoryBits(names: unknown, name: string): number {
  if (names === undefined) return 0;
  if (!Array.isArray(names) || !names.every((n) => typeof n === 'string' && Object.hasOwn(PAGE_CATEGORY_BITS, n))) {
    throw new TypeError(`Expected an array of ${Object.keys(PAGE_CATEGORY_BITS).join('|')} for ${name} but received ${describe(names)}`);
  }
  return (names as PageCategory[]).reduce((m, n) => m | PAGE_CATEGORY_BITS[n], 0);
}

function categoryNames(bits: number): PageCategory[] {
  return (Object.keys(PAGE_CATEGORY_BITS) as PageCategory[]).filter((n) => (bits & PAGE_CATEGORY_BITS[n]) !== 0);
}

// farmem regions use 4 KiB pages (x86_64); PAGEMAP_SCAN itself only needs start page-aligned.
const PAGE_SIZE = 4096n;

/** Opens /proc/<pid>/pagemap read-only (O_CLOEXEC) for pagemapScan. Close it with closeFd. */
export function pagemapOpen(pid: number): number {
  if (!Number.isSafeInteger(pid) || pid <= 0 || pid > 0x7fffffff) {
    throw new TypeError(`Expected a positive process id for pid but received ${describe(pid)}`);
  }
  try {
    return addon().pagemapOpen(pid);
  } catch (e) {
    throw toNativeError(e);
  }
}

/**
 * PAGEMAP_SCAN over [start, end) of the process whose pagemap `fd` is. The whole range is walked in
 * one call (several ioctls when many regions match) unless maxPages stops it: then walkEnd < end.
 */
export function pagemapScan(fd: number, start: bigint, end: bigint, opts: PagemapScanOptions = {}): PagemapScanResult {
  if (!Number.isSafeInteger(fd) || fd < 0 || fd > 0x7fffffff) throw new TypeError(`Expected a file descriptor for fd but received ${describe(fd)}`);
  if (typeof start !== 'bigint' || start < 0n || start >= 1n << 64n || start % PAGE_SIZE !== 0n) {
    throw new TypeError(`Expected a page-aligned address (bigint) for start but received ${describe(start)}`);
  }
  if (typeof end !== 'bigint' || end < start || end >= 1n << 64n || end % PAGE_SIZE !== 0n) {
    throw new TypeError(`Expected a page-aligned address (bigint) not below start (${start}n) for end but received ${describe(end)}`);
  }
  if (opts === null || typeof opts !== 'object') throw new TypeError(`Expected an object for opts but received ${describe(opts)}`);
  const categoryMask = categoryBits(opts.categoryMask, 'opts.categoryMask');
  const categoryInverted = categoryBits(opts.categoryInverted, 'opts.categoryInverted');
  const anyofMask = categoryBits(opts.anyofMask, 'opts.anyofMask');
  const returnMask = opts.returnMask === undefined ? categoryMask | anyofMask : categoryBits(opts.returnMask, 'opts.returnMask');
  if ((categoryInverted & ~(categoryMask | anyofMask)) !== 0) {
    throw new TypeError(`Expected categories of categoryMask or anyofMask for opts.categoryInverted but received ${describe(opts.categoryInverted)}`);
  }
  if (returnMask === 0) throw new TypeError(`Expected at least one category for opts.returnMask but received ${describe(opts.returnMask ?? [])}`);
  for (const k of ['wpMatching', 'checkWpAsync'] as const) {
    if (opts[k] !== undefined && typeof opts[k] !== 'boolean') throw new TypeError(`Expected a boolean for opts.${k} but received ${describe(opts[k])}`);
  }
  const maxPages = opts.maxPages ?? 0;
  if (!Number.isSafeInteger(maxPages) || maxPages < 0) throw new TypeError(`Expected a non-negative integer for opts.maxPages but received ${describe(opts.maxPages)}`);
  const flags = (opts.wpMatching === true ? PM_SCAN_WP_MATCHING : 0) | (opts.checkWpAsync === true ? PM_SCAN_CHECK_WPASYNC : 0);
  let raw;
  try {
    raw = addon().pagemapScan(fd, start, end, flags, categoryMask, categoryInverted, anyofMask, returnMask, maxPages);
  } catch (e) {
    throw toNativeError(e);
  }
  return { regions: raw.regions.map((r) => ({ start: r.start, end: r.end, categories: categoryNames(r.categories) })), walkEnd: raw.walkEnd };
}
