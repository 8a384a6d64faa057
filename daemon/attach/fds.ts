// Checks on file descriptors received from clients: an fd is whatever the peer says it is only
// after the kernel agrees (/proc/self/fd/N names its type).

import fs from 'node:fs';

export type FdKind = 'userfaultfd' | 'memfd' | 'other';

/** What /proc/self/fd/N points at, e.g. "anon_inode:[userfaultfd]" or "/memfd:region (deleted)". */
export function fdTarget(fd: number): string {
  try {
    return fs.readlinkSync(`/proc/self/fd/${fd}`);
  } catch (e) {
    return `unreadable (${(e as NodeJS.ErrnoException).code ?? 'error'})`;
  }
}

export function fdKind(fd: number): FdKind {
  const t = fdTarget(fd);
  if (t === 'anon_inode:[userfaultfd]') return 'userfaultfd';
  if (t.startsWith('/memfd:')) return 'memfd';
  return 'other';
}

/** A short description for error messages: "a userfaultfd", "a memfd", "socket:[123]". */
export function describeFd(fd: number): string {
  const k = fdKind(fd);
  return k === 'userfaultfd' ? 'a userfaultfd' : k === 'memfd' ? 'a memfd' : fdTarget(fd);
}

/** Closes every fd, ignoring errors (they came from outside; we just must not keep them). */
export function closeAll(fds: Iterable<number>): void {
  for (const fd of fds) {
    try {
      fs.closeSync(fd);
    } catch {
      /* already closed */
    }
  }
}

/** The identity of an open file: two fds are the same memfd when these agree. */
export function fileIdentity(fd: number): string {
  const st = fs.fstatSync(fd, { bigint: true });
  return `${st.dev}:${st.ino}`;
}

/**
 * Checks in /proc/<pid>/maps that [address, address+length) is mapped from the file with inode
 * `ino`, contiguously and from offset 0 — so the daemon only ever installs a region's pages into
 * that region's mapping. Returns null when it is, else why not.
 */
export function checkMapping(pid: number, address: number, length: number, ino: bigint): string | null {
  let maps: string;
  try {
    maps = fs.readFileSync(`/proc/${pid}/maps`, 'utf8');
  } catch (e) {
    return `cannot read /proc/${pid}/maps (${(e as NodeJS.ErrnoException).code ?? 'error'})`;
  }
  const base = BigInt(address);
  const end = base + BigInt(length);
  let covered = base;
  for (const line of maps.split('\n')) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) \S+ ([0-9a-f]+) \S+ (\d+)/.exec(line);
    if (!m) continue;
    const lo = BigInt(`0x${m[1]}`);
    const hi = BigInt(`0x${m[2]}`);
    if (hi <= covered || lo > covered) continue;
    // Address a must map file offset a - base: the VMA's start offset is its distance from base.
    if (BigInt(m[4]) !== ino || BigInt(`0x${m[3]}`) !== lo - base) {
      return `0x${covered.toString(16)} is not mapped from the region's memfd at the matching offset`;
    }
    covered = hi;
    if (covered >= end) return null;
  }
  return `0x${covered.toString(16)} is not mapped from the region's memfd`;
}
