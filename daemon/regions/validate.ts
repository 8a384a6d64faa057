// Checks of everything a caller may say about a region. Each failure is a RegionError('invalid')
// in the one format: `Expected <what> for <name> but received <value>`.
import { RegionError } from './errors';
import { formatSize } from '../util/size';
import { ADDRESS_EXPECTED, isAddress } from '../util/address';
import type { DirtyTracking, OnUnavailable, PrefetchPolicyName } from './types';

export const NAME_RE = /^[a-z0-9][a-z0-9._-]{0,62}$/;
export const NAME_EXPECTED = "1 to 63 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit,";
export const MIN_PAGE_SIZE = 4096;
export const MAX_PAGE_SIZE = 2 * 1024 * 1024;
/** 64 TiB: far beyond any host, well inside Number.MAX_SAFE_INTEGER and a u32 page index at 16 KiB pages. */
export const MAX_REGION_BYTES = 64 * 1024 ** 4;
export const MAX_REPLICAS = 16;
export const PREFETCH_POLICIES: readonly PrefetchPolicyName[] = ['auto', 'none', 'readahead', 'stride', 'trend'];
export const ON_UNAVAILABLE: readonly OnUnavailable[] = ['wait', 'sigbus'];
export const DIRTY_TRACKING: readonly DirtyTracking[] = ['wp', 'async', 'auto'];

function invalid(what: string, name: string, value: unknown): RegionError {
  return new RegionError('invalid', `Expected ${what} for ${name} but received ${typeof value === 'string' ? JSON.stringify(value) : String(value)}`);
}

export function validateName(name: string): string {
  if (!NAME_RE.test(name)) throw invalid(NAME_EXPECTED, 'region name', name);
  return name;
}

export function validatePageSize(pageSize: number): number {
  if (!Number.isInteger(pageSize) || pageSize < MIN_PAGE_SIZE || pageSize > MAX_PAGE_SIZE || (pageSize & (pageSize - 1)) !== 0) {
    throw invalid('a power of two from 4KiB to 2MiB', 'page size', pageSize);
  }
  return pageSize;
}

export function validateSize(size: number, pageSize: number): number {
  if (!Number.isSafeInteger(size) || size <= 0 || size > MAX_REGION_BYTES || size % pageSize !== 0) {
    throw invalid(`a multiple of the page size (${formatSize(pageSize)}) from ${formatSize(pageSize)} to ${formatSize(MAX_REGION_BYTES)}`, 'size', size);
  }
  return size;
}

export function validateResident(bytes: number, pageSize: number): number {
  if (!Number.isSafeInteger(bytes) || bytes < 0 || bytes % pageSize !== 0) {
    throw invalid(`0 (unlimited) or a multiple of the page size (${formatSize(pageSize)})`, 'resident budget', bytes);
  }
  return bytes;
}

export function validateServers(servers: readonly string[]): string[] {
  for (const s of servers) if (!isAddress(s)) throw invalid(ADDRESS_EXPECTED, 'memory server', s);
  if (new Set(servers).size !== servers.length) throw invalid('distinct addresses', 'memory servers', servers.join(','));
  return [...servers];
}

/** `available`: how many servers the region can place on (its own list, or the pool). */
export function validateReplicas(replicas: number, available: number): number {
  if (!Number.isInteger(replicas) || replicas < 1 || replicas > MAX_REPLICAS) throw invalid(`an integer from 1 to ${MAX_REPLICAS}`, 'replicas', replicas);
  if (available > 0 && replicas > available) throw invalid(`at most ${available} (the number of memory servers)`, 'replicas', replicas);
  return replicas;
}

export function validatePrefetch(p: string): PrefetchPolicyName {
  if (!(PREFETCH_POLICIES as readonly string[]).includes(p)) throw invalid(PREFETCH_POLICIES.join(', '), 'prefetch', p);
  return p as PrefetchPolicyName;
}

export function validateFlag(b: unknown, name: string): boolean {
  if (typeof b !== 'boolean') throw invalid('true or false', name, b);
  return b;
}

export function validateOnUnavailable(p: string): OnUnavailable {
  if (!(ON_UNAVAILABLE as readonly string[]).includes(p)) throw invalid(ON_UNAVAILABLE.join(' or '), 'on-unavailable', p);
  return p as OnUnavailable;
}

export function validateDirtyTracking(t: string): DirtyTracking {
  if (!(DIRTY_TRACKING as readonly string[]).includes(t)) throw invalid(DIRTY_TRACKING.join(', '), 'dirty tracking', t);
  return t as DirtyTracking;
}

/**
 * An async region has no resident budget: async write-protect cannot block a write that lands
 * between an eviction's read-back (or the scan that called a page clean) and its hole punch, and
 * that write would be lost (measured: KERNEL.md). `op`: e.g. `create region "db"`.
 */
export function validateTrackingBudget(op: string, tracking: DirtyTracking, residentBytes: number): void {
  if (tracking !== 'async' || residentBytes === 0) return;
  throw new RegionError('invalid', `${op}: Expected no resident budget (0) for a region with dirty tracking async but received ${formatSize(residentBytes)}: ` +
    'async write-protect cannot block a write between the read-back and the hole punch of an eviction, so that write would be lost; ' +
    'use --dirty-tracking wp (or auto) for a region with a resident budget');
}

export function validateMode(mode: number): number {
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) throw invalid('a file mode from 0 to 0o777', 'mode', mode);
  return mode;
}

export function validateId(id: number, name: string): number {
  if (!Number.isInteger(id) || id < 0 || id > 0xfffffffe) throw invalid('an id from 0 to 4294967294', name, id);
  return id;
}
