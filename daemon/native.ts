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
  /** The byte budget (stats().capacityBytes, without building the rest). */
  capacityBytes(): number;
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
  /** The same copy on a libuv pool thread, with its own dup of fd; src must stay unchanged until done. */
  uffdCopyAsync(fd: number, dst: bigint, src: Buffer, wp: boolean, dontWake: boolean, done: (err: Error | null, result?: CopyResult) => void): void;
  uffdZeropage(fd: number, dst: bigint, length: number, dontWake: boolean): CopyResult;
  uffdWake(fd: number, start: bigint, length: number): void;
  uffdWriteProtect(fd: number, start: bigint, length: number, protect: boolean, dontWake: boolean): IoctlOutcome;
  uffdContinue(fd: number, start: bigint, length: number, dontWake: boolean): CopyResult;
  uffdPoison(fd: number, start: bigint, length: number, dontWake: boolean): CopyResult;
  uffdReadEvents(fd: number, max: number): UffdEvent[];
  // memfd.cc
  memfdCreate(name: string, size: number): number;
  mmapShared(fd: number, length: number, writable: boolean): Mapping;
  munmap(address: bigint, length: number): void;
  punchHole(fd: number, offset: number, length: number): void;
  pread(fd: number, buffer: Buffer, offset: number): number;
  pwrite(fd: number, buffer: Buffer, offset: number): number;
  dataRanges(fd: number): DataRange[];
  hasData(fd: number, offset: number): boolean;
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
  /** A bound unix datagram socket (path or "@abstract"): the service manager's side of sd_notify, for tests. */
  dgramBind(path: string): number;
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
  // malloc_tune.cc
  mallocTune(mmapThreshold: number, trimThreshold: number): boolean;
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
// Argument checks shared by the wrappers below: C++ only ever sees clean data.

const UFFD_FEATURES: readonly UffdFeature[] = [
  'PAGEFAULT_FLAG_WP', 'EVENT_FORK', 'EVENT_REMAP', 'EVENT_REMOVE', 'MISSING_HUGETLBFS', 'MISSING_SHMEM',
  'EVENT_UNMAP', 'SIGBUS', 'THREAD_ID', 'MINOR_HUGETLBFS', 'MINOR_SHMEM', 'EXACT_ADDRESS',
  'WP_HUGETLBFS_SHMEM', 'WP_UNPOPULATED', 'POISON', 'WP_ASYNC', 'MOVE',
];
const REGISTER_MODES: readonly RegisterMode[] = ['missing', 'wp', 'minor'];
const U64_MAX = (1n << 64n) - 1n;

/** How a bad argument is shown in `Expected ... but received <value>`. */
export function describeValue(v: unknown): string {
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v);
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  if (Buffer.isBuffer(v)) return `a Buffer of ${v.length} bytes`;
  if (Array.isArray(v)) return 'an array';
  if (typeof v === 'function') return 'a function';
  return 'an object';
}

function argError(what: string, name: string, v: unknown): TypeError {
  const e = new TypeError(`Expected ${what} for ${name} but received ${describeValue(v)}`);
  (e as TypeError & { code: string }).code = 'ERR_INVALID_ARG'; // as the addon's own argument errors
  return e;
}

let cachedPageSize = 0;
function sysPageSize(): number {
  if (cachedPageSize === 0) cachedPageSize = addon().pageSize();
  return cachedPageSize;
}

function checkFd(v: unknown, name = 'fd'): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0x7fffffff) throw argError('a file descriptor (integer >= 0)', name, v);
  return v;
}

function checkInt(v: unknown, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw argError(max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer from ${min} to ${max}`, name, v);
  }
  return v;
}

function checkBool(v: unknown, name: string): boolean {
  if (typeof v !== 'boolean') throw argError('a boolean', name, v);
  return v;
}

function checkString(v: unknown, name: string): string {
  if (typeof v !== 'string') throw argError('a string', name, v);
  return v;
}

function checkBuffer(v: unknown, name: string): Buffer {
  if (!Buffer.isBuffer(v)) throw argError('a Buffer', name, v);
  return v;
}

function checkAddress(v: unknown, name: string): bigint {
  const ps = sysPageSize();
  if (typeof v !== 'bigint' || v < 0n || v > U64_MAX || v % BigInt(ps) !== 0n) throw argError(`a page-aligned bigint address (multiple of ${ps})`, name, v);
  return v;
}

function checkPageLength(v: unknown, name: string): number {
  const ps = sysPageSize();
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0 || v % ps !== 0) throw argError(`a positive multiple of the page size (${ps})`, name, v);
  return v;
}

function checkPageBuffer(v: unknown, name: string): Buffer {
  const ps = sysPageSize();
  if (!Buffer.isBuffer(v) || v.length === 0 || v.length % ps !== 0) throw argError(`a Buffer of whole pages (a positive multiple of ${ps} bytes)`, name, v);
  return v;
}

function checkFds(v: unknown, name = 'fds'): number[] {
  if (!Array.isArray(v) || v.length > 16 || !v.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0 && x <= 0x7fffffff)) {
    throw argError('an array of at most 16 file descriptors', name, v);
  }
  return v as number[];
}

function checkNames<T extends string>(v: unknown, name: string, allowed: readonly T[], what: string): T[] {
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string' && (allowed as readonly string[]).includes(x))) throw argError(what, name, v);
  return v as T[];
}

function checkOptions(v: unknown, name: string): Record<string, unknown> {
  if (v === undefined) return {};
  if (v === null || typeof v !== 'object' || Array.isArray(v)) throw argError('an options object', name, v);
  return v as Record<string, unknown>;
}

function optBool(o: Record<string, unknown>, key: string, def: boolean): boolean {
  return o[key] === undefined ? def : checkBool(o[key], key);
}

/** Calls the addon, turning its errors into NativeError; `context` (e.g. a path) is put after the syscall name. */
function call<T>(f: () => T, context?: string): T {
  try {
    return f();
  } catch (e) {
    const n = toNativeError(e);
    if (context !== undefined && n instanceof NativeError) {
      const rest = n.message.startsWith(n.syscall) ? n.message.slice(n.syscall.length) : `: ${n.message}`;
      throw new NativeError(`${n.syscall} ${context}${rest}`, n.code, n.errno, n.syscall);
    }
    throw n;
  }
}

// ---------------------------------------------------------------------------------------------
// uffd (native/src/uffd.cc). Called on the main thread; none blocks.

export const uffd = {
  /** Opens a userfaultfd: /dev/userfaultfd, else userfaultfd(2), else (when allowed) user-mode-only. */
  open(options?: { nonBlocking?: boolean; allowUserModeOnly?: boolean }): UffdOpened {
    const o = checkOptions(options, 'options');
    const nonBlocking = optBool(o, 'nonBlocking', true);
    const allowUserModeOnly = optBool(o, 'allowUserModeOnly', false);
    return call(() => addon().uffdOpen(nonBlocking, allowUserModeOnly));
  },
  /** The UFFDIO_API handshake. The kernel lists every feature it supports, not just those asked for. */
  api(fd: number, features: UffdFeature[]): UffdApiResult {
    checkFd(fd);
    checkNames(features, 'features', UFFD_FEATURES, 'an array of uffd feature names');
    return call(() => addon().uffdApi(fd, features));
  },
  register(fd: number, start: bigint, length: number, modes: RegisterMode[]): RegisterResult {
    checkFd(fd);
    checkAddress(start, 'start');
    checkPageLength(length, 'length');
    checkNames(modes, 'modes', REGISTER_MODES, "a non-empty array of 'missing' | 'wp' | 'minor'");
    if (modes.length === 0) throw argError("a non-empty array of 'missing' | 'wp' | 'minor'", 'modes', modes);
    return call(() => addon().uffdRegister(fd, start, length, modes));
  },
  unregister(fd: number, start: bigint, length: number): void {
    checkFd(fd);
    checkAddress(start, 'start');
    checkPageLength(length, 'length');
    call(() => addon().uffdUnregister(fd, start, length));
  },
  /** UFFDIO_COPY of one or more whole pages. 'exists' is success (wake the range if dontWake was not the reason). */
  copy(fd: number, dst: bigint, src: Buffer, mode?: IoctlMode): CopyResult {
    checkFd(fd);
    checkAddress(dst, 'dst');
    checkPageBuffer(src, 'src');
    const o = checkOptions(mode, 'mode');
    const wp = optBool(o, 'wp', false);
    const dontWake = optBool(o, 'dontWake', false);
    return call(() => addon().uffdCopy(fd, dst, src, wp, dontWake));
  },
  zeropage(fd: number, dst: bigint, length: number, mode?: { dontWake?: boolean }): CopyResult {
    checkFd(fd);
    checkAddress(dst, 'dst');
    checkPageLength(length, 'length');
    const dontWake = optBool(checkOptions(mode, 'mode'), 'dontWake', false);
    return call(() => addon().uffdZeropage(fd, dst, length, dontWake));
  },
  wake(fd: number, start: bigint, length: number): void {
    checkFd(fd);
    checkAddress(start, 'start');
    checkPageLength(length, 'length');
    call(() => addon().uffdWake(fd, start, length));
  },
  /** Sets (protect) or clears write protection; clearing wakes threads waiting in a WP fault unless dontWake. */
  writeProtect(fd: number, start: bigint, length: number, protect: boolean, mode?: { dontWake?: boolean }): IoctlOutcome {
    checkFd(fd);
    checkAddress(start, 'start');
    checkPageLength(length, 'length');
    checkBool(protect, 'protect');
    const dontWake = optBool(checkOptions(mode, 'mode'), 'dontWake', false);
    return call(() => addon().uffdWriteProtect(fd, start, length, protect, dontWake));
  },
  /** UFFDIO_CONTINUE (minor mode): map the page-cache pages already there. */
  continue(fd: number, start: bigint, length: number, mode?: { dontWake?: boolean }): CopyResult {
    checkFd(fd);
    checkAddress(start, 'start');
    checkPageLength(length, 'length');
    const dontWake = optBool(checkOptions(mode, 'mode'), 'dontWake', false);
    return call(() => addon().uffdContinue(fd, start, length, dontWake));
  },
  /** UFFDIO_POISON (6.6+): accesses to the range raise SIGBUS until a copy overwrites it. */
  poison(fd: number, start: bigint, length: number, mode?: { dontWake?: boolean }): CopyResult {
    checkFd(fd);
    checkAddress(start, 'start');
    checkPageLength(length, 'length');
    const dontWake = optBool(checkOptions(mode, 'mode'), 'dontWake', false);
    return call(() => addon().uffdPoison(fd, start, length, dontWake));
  },
  /** Reads up to `max` pending events from a uffd opened O_NONBLOCK; [] when there are none. */
  readEvents(fd: number, max = 64): UffdEvent[] {
    checkFd(fd);
    checkInt(max, 'max', 1, 1024);
    return call(() => addon().uffdReadEvents(fd, max));
  },
};

// ---------------------------------------------------------------------------------------------
// memfd and fd utilities (native/src/memfd.cc). Called on the main thread.

export const memfd = {
  /** A new memfd (close-on-exec) of `size` bytes, all holes. */
  create(name: string, size: number): number {
    checkString(name, 'name');
    checkInt(size, 'size', 0);
    return call(() => addon().memfdCreate(name, size));
  },
  /** Maps the file MAP_SHARED into the daemon. Never load or store through a hole (see KERNEL.md): use pread. */
  map(fd: number, length: number, options?: { writable?: boolean }): Mapping {
    checkFd(fd);
    checkPageLength(length, 'length');
    const writable = optBool(checkOptions(options, 'options'), 'writable', true);
    return call(() => addon().mmapShared(fd, length, writable));
  },
  /** Unmaps a mapping made by map(); its Buffer must not be used afterwards. */
  unmap(mapping: Mapping): void {
    checkOptions(mapping, 'mapping');
    checkAddress(mapping.address, 'mapping.address');
    checkPageLength(mapping.length, 'mapping.length');
    call(() => addon().munmap(mapping.address, mapping.length));
  },
  /** Drops the pages in [offset, offset+length) from the file and from every mapping: the next access faults. */
  punchHole(fd: number, offset: number, length: number): void {
    checkFd(fd);
    checkInt(offset, 'offset', 0);
    checkInt(length, 'length', 1);
    call(() => addon().punchHole(fd, offset, length));
  },
  /** Reads buffer.length bytes at offset (a hole reads as zeros, allocating nothing); fewer only at end of file. */
  pread(fd: number, buffer: Buffer, offset: number): number {
    checkFd(fd);
    checkBuffer(buffer, 'buffer');
    checkInt(offset, 'offset', 0);
    return call(() => addon().pread(fd, buffer, offset));
  },
  pwrite(fd: number, buffer: Buffer, offset: number): number {
    checkFd(fd);
    checkBuffer(buffer, 'buffer');
    checkInt(offset, 'offset', 0);
    return call(() => addon().pwrite(fd, buffer, offset));
  },
  /** Byte ranges that hold data (SEEK_DATA / SEEK_HOLE), in order. */
  dataRanges(fd: number): DataRange[] {
    checkFd(fd);
    return call(() => addon().dataRanges(fd));
  },
  /** Whether the page at `offset` holds data (SEEK_DATA lands on it); touches nothing. */
  hasData(fd: number, offset: number): boolean {
    checkFd(fd);
    checkInt(offset, 'offset', 0);
    return call(() => addon().hasData(fd, offset));
  },
  size(fd: number): number {
    checkFd(fd);
    return call(() => addon().fileSize(fd));
  },
  close(fd: number): void {
    checkFd(fd);
    call(() => addon().closeFd(fd));
  },
  pidfdOpen(pid: number): number {
    checkInt(pid, 'pid', 1, 0x7fffffff);
    return call(() => addon().pidfdOpen(pid));
  },
  /** A copy of another process's fd (needs ptrace rights over it, e.g. root). */
  pidfdGetfd(pidfd: number, targetFd: number): number {
    checkFd(pidfd, 'pidfd');
    checkFd(targetFd, 'targetFd');
    return call(() => addon().pidfdGetfd(pidfd, targetFd));
  },
  pageSize(): number {
    return sysPageSize();
  },
};

// ---------------------------------------------------------------------------------------------
// fd passing (native/src/fd_passing.cc).

export interface SeqpacketServer {
  /** Sends one message (payload + fds) on a connection; never blocks (a full socket is EAGAIN). */
  send(conn: number, payload: Buffer, fds?: number[]): void;
  /** Closes one connection (no 'close' event follows: that is for hang-ups by the peer). */
  closeConnection(conn: number): void;
  /** Closes every connection and the listening socket, and removes the socket file. */
  close(): void;
}

/** A zero-length read is how a seqpacket peer's hang-up looks, so an empty message cannot be sent. */
function checkPayload(v: unknown): Buffer {
  if (!Buffer.isBuffer(v) || v.length === 0) throw argError('a non-empty Buffer (an empty message reads as a hang-up)', 'payload', v);
  return v;
}

export const fdpass = {
  /**
   * Listens on a SOCK_SEQPACKET unix socket (path, or "@name" for the abstract namespace), driven by
   * the main loop: onEvent is called on the main thread for connect (with SO_PEERCRED), message,
   * close (peer hang-up) and error. Received fds are the handler's to close. Keeps the process alive
   * until close().
   */
  listen(path: string, mode: number, onEvent: (e: SeqpacketEvent) => void): SeqpacketServer {
    checkString(path, 'path');
    if (path.length === 0) throw argError('a non-empty socket path', 'path', path);
    checkInt(mode, 'mode', 0, 0o7777);
    if (typeof onEvent !== 'function') throw argError('a function', 'onEvent', onEvent);
    const raw = call(
      () =>
        addon().seqpacketListen(path, mode, (e) => {
          onEvent(e.type === 'error' ? { ...e, error: toNativeError(e.error) as NativeError } : e);
        }),
      path,
    );
    return {
      send(conn: number, payload: Buffer, fds: number[] = []): void {
        checkInt(conn, 'conn', 1, 0xffffffff);
        checkPayload(payload);
        checkFds(fds);
        call(() => raw.send(conn, payload, fds));
      },
      closeConnection(conn: number): void {
        checkInt(conn, 'conn', 1, 0xffffffff);
        raw.closeConnection(conn);
      },
      close(): void {
        raw.close();
      },
    };
  },
  /** Connects to a SOCK_SEQPACKET socket; blocking (a unix connect completes at once or fails). */
  connect(path: string): number {
    checkString(path, 'path');
    if (path.length === 0) throw argError('a non-empty socket path', 'path', path);
    return call(() => addon().seqpacketConnect(path), path);
  },
  /** Sends one message (a non-empty payload) with fds attached; blocking. */
  send(fd: number, payload: Buffer, fds: number[] = []): void {
    checkFd(fd);
    checkPayload(payload);
    checkFds(fds);
    call(() => addon().sendFds(fd, payload, fds));
  },
  /** Waits up to timeoutMs (-1: forever; blocks the calling thread) for one message; null on timeout. */
  recv(fd: number, options?: { maxPayload?: number; maxFds?: number; timeoutMs?: number }): ReceivedMessage | null {
    checkFd(fd);
    const o = checkOptions(options, 'options');
    const maxPayload = o.maxPayload === undefined ? 65536 : checkInt(o.maxPayload, 'maxPayload', 0, 1 << 24);
    const maxFds = o.maxFds === undefined ? 16 : checkInt(o.maxFds, 'maxFds', 0, 253);
    const timeoutMs = o.timeoutMs === undefined ? -1 : checkInt(o.timeoutMs, 'timeoutMs', -1, 0x7fffffff);
    return call(() => addon().recvFds(fd, maxPayload, maxFds, timeoutMs));
  },
  peerCred(fd: number): PeerCred {
    checkFd(fd);
    return call(() => addon().peerCred(fd));
  },
  /** A bound unix datagram socket, for playing the service manager in tests; read it with recv(). */
  dgramBind(path: string): number {
    checkString(path, 'path');
    if (path.length === 0) throw argError('a non-empty socket path', 'path', path);
    return call(() => addon().dgramBind(path), path);
  },
};

// ---------------------------------------------------------------------------------------------
// sd_notify (native/src/sd_notify.cc). Called on the main thread; never blocks. Each returns false
// when $NOTIFY_SOCKET is unset (not started by systemd with Type=notify).

export const sdNotify = {
  /** Sends raw state lines ("READY=1\nSTATUS=..."), with fds for FDSTORE=1. */
  send(state: string, fds: number[] = []): boolean {
    checkString(state, 'state');
    if (state.length === 0) throw argError('a non-empty state', 'state', state);
    if (!Array.isArray(fds) || fds.length > 253 || !fds.every((x) => typeof x === 'number' && Number.isInteger(x) && x >= 0)) {
      throw argError('an array of at most 253 file descriptors', 'fds', fds);
    }
    return call(() => addon().sdNotify(state, fds));
  },
  ready(status?: string): boolean {
    return sdNotify.send(status === undefined ? 'READY=1' : `READY=1\nSTATUS=${oneLine(status)}`);
  },
  status(text: string): boolean {
    return sdNotify.send(`STATUS=${oneLine(text)}`);
  },
  stopping(): boolean {
    return sdNotify.send('STOPPING=1');
  },
  watchdog(): boolean {
    return sdNotify.send('WATCHDOG=1');
  },
  /**
   * Hands fds to the service manager to keep across a restart (FDSTORE=1), under a name. systemd
   * takes names of at most 255 printable ASCII characters without ':' (the LISTEN_FDNAMES
   * separator); we allow a safe subset.
   */
  fdStore(name: string, fds: number[]): boolean {
    return sdNotify.send(`FDSTORE=1\nFDNAME=${checkFdName(name)}`, fds);
  },
  /** Drops every fd stored under `name` (FDSTOREREMOVE=1). */
  fdStoreRemove(name: string): boolean {
    return sdNotify.send(`FDSTOREREMOVE=1\nFDNAME=${checkFdName(name)}`);
  },
};

function checkFdName(name: unknown): string {
  checkString(name, 'name');
  if (!/^[A-Za-z0-9_.-]{1,255}$/.test(name as string)) throw argError('an fd name of 1-255 letters, digits, "_.-"', 'name', name);
  return name as string;
}

function oneLine(text: unknown): string {
  if (typeof text !== 'string' || text.includes('\n')) throw argError('a string without newlines', 'status', text);
  return text;
}
// PageCache and FaultThread (page_cache.cc, fault_thread.cc).

function checkU32(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffffffff) throw argError('an integer from 0 to 4294967295', name, v);
  return v;
}

function checkIndex(v: unknown, name: string): number {
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) throw argError('a non-negative integer', name, v);
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
    if (!Buffer.isBuffer(data) || data.length === 0) throw argError('a non-empty Buffer', 'data', data);
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

  capacityBytes(): number {
    return this.native.capacityBytes();
  }

  stats(): PageCacheStats {
    return this.native.stats();
  }
}

function checkCpu(v: unknown, name: string): number | null {
  if (v === null) return null;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 1023) throw argError('a CPU number from 0 to 1023 or null', name, v);
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
 * Several FaultThreads may watch the same uffd (one per vCPU, each pinned): every one is woken and
 * the one on the faulting CPU wins (measured in fault_thread.cc). Faults resolved from the cache are
 * reported lazily: with the next event JS must handle, every 256, or after 2 ms of quiet.
 * All methods: main thread.
 */
export class FaultThread {
  private readonly native: NativeFaultThread;
  private stopped = false;

  constructor(opts: FaultThreadOptions) {
    if (typeof opts !== 'object' || opts === null) throw argError('an options object', 'opts', opts);
    const cpu = checkCpu(opts.cpu, 'cpu');
    if (opts.cache !== null && !(opts.cache instanceof PageCache)) throw argError('a PageCache or null', 'cache', opts.cache);
    if (typeof opts.onEvents !== 'function') throw argError('a function', 'onEvents', opts.onEvents);
    try {
      this.native = new (addon().FaultThread)(cpu, opts.cache === null ? null : opts.cache.native, opts.onEvents);
    } catch (e) {
      throw toNativeError(e);
    }
  }

  /** Starts watching a registered range. Throws NativeError EEXIST when the attachment id is taken. */
  add(reg: FaultRegistration): void {
    if (typeof reg !== 'object' || reg === null) throw argError('a registration object', 'reg', reg);
    checkU32(reg.attachment, 'reg.attachment');
    checkFd(reg.uffd, 'reg.uffd');
    if (reg.pidfd !== null) checkFd(reg.pidfd, 'reg.pidfd');
    checkU32(reg.region, 'reg.region');
    const ps = reg.pageSize;
    if (typeof ps !== 'number' || !Number.isInteger(ps) || ps < 4096 || ps > 2 ** 30 || (ps & (ps - 1)) !== 0) {
      throw argError('a power of two from 4096 to 1073741824', 'reg.pageSize', ps);
    }
    if (typeof reg.start !== 'bigint' || reg.start <= 0n || reg.start % BigInt(ps) !== 0n || reg.start >= 1n << 64n) {
      throw argError(`a page-aligned address (bigint) for page size ${ps}`, 'reg.start', reg.start);
    }
    if (typeof reg.length !== 'number' || !Number.isSafeInteger(reg.length) || reg.length <= 0 || reg.length % ps !== 0) {
      throw argError(`a positive multiple of ${ps}`, 'reg.length', reg.length);
    }
    if (typeof reg.writeProtect !== 'boolean') throw argError('a boolean', 'reg.writeProtect', reg.writeProtect);
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
// malloc_tune.cc.

/** Allocations above this are mmaps of their own: above a read answer (~1 MiB), below a memory server's 64 MiB slabs. */
export const MALLOC_MMAP_THRESHOLD = 4 * 1024 * 1024;
/** Free memory kept at the top of the heap before any goes back to the kernel: a few dozen answers. */
export const MALLOC_TRIM_THRESHOLD = 64 * 1024 * 1024;

/**
 * Fixes glibc malloc's mmap and trim thresholds for a process that moves pages through ~1 MiB
 * buffers (farmemd, the memory server), so those buffers are not mapped, zeroed and unmapped again
 * for every read answer (see native/src/malloc_tune.cc). Call once, at start. Returns whether it was
 * done: false without glibc, or where the addon cannot be loaded (a memory server does not need it
 * otherwise), with the reason.
 */
export function tuneMalloc(): { tuned: boolean; why: string } {
  let a: NativeAddon;
  try {
    a = addon();
  } catch (e) {
    return { tuned: false, why: `the native addon could not be loaded: ${(e as Error).message}` };
  }
  if (typeof a.mallocTune !== 'function') return { tuned: false, why: 'the native addon predates mallocTune (rebuild it)' };
  return a.mallocTune(MALLOC_MMAP_THRESHOLD, MALLOC_TRIM_THRESHOLD) ? { tuned: true, why: '' } : { tuned: false, why: 'malloc is not glibc\'s, or refused the thresholds' };
}

/** tuneMalloc at a daemon's start (farmemd, the memory server), saying on `log` when it could not. */
export function tuneMallocAtStart(log: { info(obj: object, msg: string): void }): void {
  const malloc = tuneMalloc();
  if (!malloc.tuned) log.info({ why: malloc.why }, 'malloc thresholds left at their defaults: each read answer may cost an mmap and its page faults');
}
