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

// ---------------------------------------------------------------------------------------------
// Validation shared by the wrappers below: C++ only ever sees clean, typed data.

function fail(what: string, name: string, v: unknown): never {
  throw new TypeError(`Expected ${what} for ${name} but received ${describe(v)}`);
}

function checkFd(fd: unknown, name = 'fd'): number {
  if (!Number.isSafeInteger(fd) || (fd as number) < 0 || (fd as number) > 0x7fffffff) fail('a file descriptor (an integer >= 0)', name, fd);
  return fd as number;
}

function checkLen(n: unknown, name: string, multipleOf = 1): number {
  if (!Number.isSafeInteger(n) || (n as number) < 0 || (n as number) % multipleOf !== 0) {
    fail(multipleOf > 1 ? `a non-negative multiple of ${multipleOf}` : 'a non-negative integer', name, n);
  }
  return n as number;
}

function checkAddr(a: unknown, name: string): bigint {
  if (typeof a !== 'bigint' || a < 0n || a >= 1n << 64n || a % PAGE_SIZE !== 0n) fail('a page-aligned bigint address', name, a);
  return a as bigint;
}

function checkBuffer(b: unknown, name: string): Buffer {
  if (!Buffer.isBuffer(b)) fail('a Buffer', name, b);
  return b as Buffer;
}

function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw toNativeError(e);
  }
}

function fdList(fds: unknown): number[] {
  if (!Array.isArray(fds) || fds.length > 16) fail('an array of at most 16 fds', 'fds', fds);
  (fds as unknown[]).forEach((f) => checkFd(f, 'fds[]'));
  return fds as number[];
}

// ---------------------------------------------------------------------------------------------
// uffd.cc. Called from the JS thread; none of these blocks (ioctls on a uffd return at once).

export const uffd = {
  /** Opens a uffd: /dev/userfaultfd, then userfaultfd(2), then (if allowed) USER_MODE_ONLY. */
  open(opts: { nonBlocking: boolean; allowUserModeOnly: boolean }): UffdOpened {
    return call(() => addon().uffdOpen(opts.nonBlocking === true, opts.allowUserModeOnly === true));
  },
  api(fd: number, features: UffdFeature[]): UffdApiResult {
    checkFd(fd);
    if (!Array.isArray(features)) fail('an array of uffd feature names', 'features', features);
    return call(() => addon().uffdApi(fd, features));
  },
  register(fd: number, start: bigint, length: number, modes: RegisterMode[]): RegisterResult {
    checkFd(fd);
    checkAddr(start, 'start');
    checkLen(length, 'length', Number(PAGE_SIZE));
    if (!Array.isArray(modes) || modes.length === 0 || !modes.every((m) => m === 'missing' || m === 'wp' || m === 'minor')) {
      fail("a non-empty array of 'missing' | 'wp' | 'minor'", 'modes', modes);
    }
    return call(() => addon().uffdRegister(fd, start, length, modes));
  },
  unregister(fd: number, start: bigint, length: number): void {
    checkFd(fd);
    checkAddr(start, 'start');
    checkLen(length, 'length', Number(PAGE_SIZE));
    call(() => addon().uffdUnregister(fd, start, length));
  },
  /** UFFDIO_COPY of whole pages. 'exists' is success (wake the range); 'again' means retry. */
  copy(fd: number, dst: bigint, src: Buffer, mode: IoctlMode = {}): CopyResult {
    checkFd(fd);
    checkAddr(dst, 'dst');
    checkBuffer(src, 'src');
    checkLen(src.length, 'src.length', Number(PAGE_SIZE));
    return call(() => addon().uffdCopy(fd, dst, src, mode.wp === true, mode.dontWake === true));
  },
  zeropage(fd: number, dst: bigint, length: number, mode: IoctlMode = {}): CopyResult {
    checkFd(fd);
    checkAddr(dst, 'dst');
    checkLen(length, 'length', Number(PAGE_SIZE));
    return call(() => addon().uffdZeropage(fd, dst, length, mode.dontWake === true));
  },
  wake(fd: number, start: bigint, length: number): void {
    checkFd(fd);
    checkAddr(start, 'start');
    checkLen(length, 'length', Number(PAGE_SIZE));
    call(() => addon().uffdWake(fd, start, length));
  },
  writeProtect(fd: number, start: bigint, length: number, protect: boolean, mode: IoctlMode = {}): IoctlOutcome {
    checkFd(fd);
    checkAddr(start, 'start');
    checkLen(length, 'length', Number(PAGE_SIZE));
    if (typeof protect !== 'boolean') fail('a boolean', 'protect', protect);
    return call(() => addon().uffdWriteProtect(fd, start, length, protect, mode.dontWake === true));
  },
  continue(fd: number, start: bigint, length: number, mode: IoctlMode = {}): CopyResult {
    checkFd(fd);
    checkAddr(start, 'start');
    checkLen(length, 'length', Number(PAGE_SIZE));
    return call(() => addon().uffdContinue(fd, start, length, mode.dontWake === true));
  },
  /** Non-blocking read of up to `max` events from a uffd opened with O_NONBLOCK ([] when none). */
  readEvents(fd: number, max = 64): UffdEvent[] {
    checkFd(fd);
    if (!Number.isSafeInteger(max) || max < 1 || max > 1024) fail('an integer from 1 to 1024', 'max', max);
    return call(() => addon().uffdReadEvents(fd, max));
  },
};

// ---------------------------------------------------------------------------------------------
// memfd.cc. Called from the JS thread. The daemon never loads or stores through a mapping of a
// region (a hole would be allocated and the application would read zeros: KERNEL.md); it reads
// and writes pages with pread/pwrite.

export const memfd = {
  create(name: string, size: number): number {
    if (typeof name !== 'string' || name.length === 0 || name.length > 249 || name.includes('\0')) fail('a name of 1 to 249 characters', 'name', name);
    checkLen(size, 'size');
    return call(() => addon().memfdCreate(name, size));
  },
  /** Maps a memfd MAP_SHARED into this process (tests and tools; never a region in the daemon). */
  mmapShared(fd: number, length: number, writable: boolean): Mapping {
    checkFd(fd);
    if (!Number.isSafeInteger(length) || length <= 0) fail('a positive length', 'length', length);
    return call(() => addon().mmapShared(fd, length, writable === true));
  },
  munmap(address: bigint, length: number): void {
    checkAddr(address, 'address');
    checkLen(length, 'length');
    call(() => addon().munmap(address, length));
  },
  /** Drops [offset, offset+length) from the memfd, and from every mapping of it. */
  punchHole(fd: number, offset: number, length: number): void {
    checkFd(fd);
    checkLen(offset, 'offset', Number(PAGE_SIZE));
    checkLen(length, 'length', Number(PAGE_SIZE));
    call(() => addon().punchHole(fd, offset, length));
  },
  /** Reads into `buffer` at `offset` (a hole reads as zeros and stays a hole). Returns bytes read. */
  pread(fd: number, buffer: Buffer, offset: number): number {
    checkFd(fd);
    checkBuffer(buffer, 'buffer');
    checkLen(offset, 'offset');
    return call(() => addon().pread(fd, buffer, offset));
  },
  pwrite(fd: number, buffer: Buffer, offset: number): number {
    checkFd(fd);
    checkBuffer(buffer, 'buffer');
    checkLen(offset, 'offset');
    return call(() => addon().pwrite(fd, buffer, offset));
  },
  /** Ranges that hold data (SEEK_DATA / SEEK_HOLE): the resident pages of a region. */
  dataRanges(fd: number): DataRange[] {
    checkFd(fd);
    return call(() => addon().dataRanges(fd));
  },
  fileSize(fd: number): number {
    checkFd(fd);
    return call(() => addon().fileSize(fd));
  },
  close(fd: number): void {
    checkFd(fd);
    call(() => addon().closeFd(fd));
  },
  pidfdOpen(pid: number): number {
    if (!Number.isSafeInteger(pid) || pid <= 0) fail('a positive process id', 'pid', pid);
    return call(() => addon().pidfdOpen(pid));
  },
  /** Duplicates another process's fd into this one (needs PTRACE_MODE_ATTACH: root or CAP_SYS_PTRACE). */
  pidfdGetfd(pidfd: number, targetFd: number): number {
    checkFd(pidfd, 'pidfd');
    checkFd(targetFd, 'targetFd');
    return call(() => addon().pidfdGetfd(pidfd, targetFd));
  },
  pageSize(): number {
    return addon().pageSize();
  },
};

/** Closes an fd of any kind (uffd, memfd, pidfd, socket). */
export function closeFd(fd: number): void {
  memfd.close(fd);
}

// ---------------------------------------------------------------------------------------------
// fd_passing.cc: SOCK_SEQPACKET, one message per packet, fds by SCM_RIGHTS.

export const fdpass = {
  /**
   * Listens on a unix SOCK_SEQPACKET socket; events arrive on the main thread (libuv), with the
   * peer's SO_PEERCRED on connect. A stale socket file at `path` is replaced; `mode` is chmod'ed.
   */
  listen(path: string, mode: number, onEvent: (e: SeqpacketEvent) => void): NativeSeqpacketServer {
    if (typeof path !== 'string' || path.length === 0 || Buffer.byteLength(path) >= 108) fail('a unix socket path shorter than 108 bytes', 'path', path);
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) fail('a file mode (0 to 0o7777)', 'mode', mode);
    if (typeof onEvent !== 'function') fail('a function', 'onEvent', onEvent);
    const server = call(() =>
      addon().seqpacketListen(path, mode, (e) => {
        if (e.type === 'error') onEvent({ ...e, error: toNativeError(e.error) as NativeError });
        else onEvent(e);
      }),
    );
    return {
      send: (conn, payload, fds) => call(() => server.send(conn, checkBuffer(payload, 'payload'), fdList(fds))),
      closeConnection: (conn) => call(() => server.closeConnection(conn)),
      close: () => call(() => server.close()),
    };
  },
  /** Connects (blocking) and returns the socket fd (close-on-exec). */
  connect(path: string): number {
    if (typeof path !== 'string' || path.length === 0 || Buffer.byteLength(path) >= 108) fail('a unix socket path shorter than 108 bytes', 'path', path);
    return call(() => addon().seqpacketConnect(path));
  },
  send(fd: number, payload: Buffer, fds: number[] = []): void {
    checkFd(fd);
    checkBuffer(payload, 'payload');
    call(() => addon().sendFds(fd, payload, fdList(fds)));
  },
  /** Receives one packet, waiting up to timeoutMs (blocks the thread); null on timeout. */
  recv(fd: number, opts: { maxPayload?: number; maxFds?: number; timeoutMs: number }): ReceivedMessage | null {
    checkFd(fd);
    const maxPayload = opts.maxPayload ?? 65536;
    const maxFds = opts.maxFds ?? 16;
    if (!Number.isInteger(opts.timeoutMs) || opts.timeoutMs < -1) fail('an integer >= -1', 'timeoutMs', opts.timeoutMs);
    return call(() => addon().recvFds(fd, maxPayload, maxFds, opts.timeoutMs));
  },
  peerCred(fd: number): PeerCred {
    checkFd(fd);
    return call(() => addon().peerCred(fd));
  },
};

// ---------------------------------------------------------------------------------------------
// sd_notify.cc

/** Sends `state` (e.g. "READY=1\nSTATUS=serving") to $NOTIFY_SOCKET; false when not under systemd. */
export function sdNotify(state: string, fds: number[] = []): boolean {
  if (typeof state !== 'string' || state.length === 0) fail('a non-empty state string', 'state', state);
  return call(() => addon().sdNotify(state, fdList(fds)));
}
