// The native mechanism the pager drives: the handful of uffd and memfd calls it needs, as one
// interface so tests can put a fake kernel behind it (test/helpers/fake-native.ts) and the daemon
// the real addon (nativeOps()). All are called from the JS (main) thread.
//
// Errors: an ioctl on a uffd whose process is gone throws a NativeError with code ESRCH (or EBADF
// for a closed fd); the pager treats those as "tear the attachment down", never as failures.

import { addon, toNativeError, type CopyResult, type DataRange, type IoctlOutcome } from '../native';

export interface PagerOps {
  /** UFFDIO_COPY of whole pages; wp installs write-protected (UFFDIO_COPY_MODE_WP). */
  copy(uffd: number, dst: bigint, data: Buffer, wp: boolean, dontWake: boolean): CopyResult;
  /**
   * The same copy off the JS thread (a libuv pool thread with its own dup of the uffd): done is called
   * on the JS thread with the result, or with the error (gone: see isGone). data must not change
   * until then. null: not offered (the pager copies synchronously).
   */
  copyAsync: ((uffd: number, dst: bigint, data: Buffer, wp: boolean, dontWake: boolean, done: (err: Error | null, result: CopyResult | null) => void) => void) | null;
  /** UFFDIO_ZEROPAGE: installs a zeroed page, writable (there is no WP mode for it). */
  zeropage(uffd: number, dst: bigint, length: number, dontWake: boolean): CopyResult;
  wake(uffd: number, start: bigint, length: number): void;
  /** UFFDIO_WRITEPROTECT; on shmem a protect of a page with no pte installs a marker. */
  writeProtect(uffd: number, start: bigint, length: number, protect: boolean, dontWake: boolean): IoctlOutcome;
  /**
   * UFFDIO_POISON (Linux 6.6+): a later access raises SIGBUS; a later copy overwrites it. null when
   * the addon does not offer it (then 'sigbus' regions fall back to waiting, with a log line).
   */
  poison: ((uffd: number, start: bigint, length: number, dontWake: boolean) => CopyResult) | null;
  pread(memfd: number, buffer: Buffer, offset: number): number;
  punchHole(memfd: number, offset: number, length: number): void;
  dataRanges(memfd: number): DataRange[];
  /** Whether the page at offset is in the memfd (SEEK_DATA). */
  hasData(memfd: number, offset: number): boolean;
}

function wrap<A extends unknown[], R>(f: (...a: A) => R): (...a: A) => R {
  return (...a: A) => {
    try {
      return f(...a);
    } catch (e) {
      throw toNativeError(e);
    }
  };
}

/** PagerOps over the real addon (build/Release/farmem_native.node). */
export function nativeOps(): PagerOps {
  const n = addon();
  const maybePoison = (n as unknown as { uffdPoison?: (fd: number, start: bigint, length: number, dontWake: boolean) => CopyResult }).uffdPoison;
  return {
    copy: wrap((fd, dst, data, wp, dontWake) => n.uffdCopy(fd, dst, data, wp, dontWake)),
    copyAsync: wrap((fd, dst, data, wp, dontWake, done) =>
      n.uffdCopyAsync(fd, dst, data, wp, dontWake, (err, result) => (err ? done(toNativeError(err) as Error, null) : done(null, result ?? null))),
    ),
    zeropage: wrap((fd, dst, len, dontWake) => n.uffdZeropage(fd, dst, len, dontWake)),
    wake: wrap((fd, start, len) => n.uffdWake(fd, start, len)),
    writeProtect: wrap((fd, start, len, protect, dontWake) => n.uffdWriteProtect(fd, start, len, protect, dontWake)),
    poison: typeof maybePoison === 'function' ? wrap((fd: number, s: bigint, l: number, d: boolean) => maybePoison.call(n, fd, s, l, d)) : null,
    pread: wrap((fd, buf, off) => n.pread(fd, buf, off)),
    punchHole: wrap((fd, off, len) => n.punchHole(fd, off, len)),
    dataRanges: wrap((fd) => n.dataRanges(fd)),
    hasData: wrap((fd, off) => n.hasData(fd, off)),
  };
}

/**
 * true for the errors that mean "the attached process (or its mapping of the region) is gone":
 * ESRCH (no mm), EBADF (no uffd), and ENOENT — no registered vma at the address: the process is
 * exiting (exit_mmap has begun, its pidfd news not read yet) or unmapped the region. (An mremap
 * would also move it, but its REMAP event is read before any ioctl on the uffd gets past EAGAIN;
 * only a stale base in the window before JS sees that event could be mistaken for a departure.)
 */
export function isGone(e: unknown): boolean {
  const code = (e as { code?: unknown } | null)?.code;
  return code === 'ESRCH' || code === 'EBADF' || code === 'ENOENT';
}
