// The prefetcher's public face: the pager creates one per attachment with the region's --prefetch choice.
import { AutoPrefetcher } from './auto';
import { NonePrefetcher } from './none';
import { ReadaheadPrefetcher } from './readahead';
import { StridePrefetcher } from './stride';
import { TrendPrefetcher } from './trend';
import type { PrefetchOptions, Prefetcher } from './types';

export type { FaultInfo, PrefetchOptions, Prefetcher } from './types';
export { PrefetchAccounting, type PrefetchStats } from './accounting';
export { AutoPrefetcher } from './auto';
export { NonePrefetcher } from './none';
export { ReadaheadPrefetcher } from './readahead';
export { StridePrefetcher } from './stride';
export { TrendPrefetcher, majorityTrend } from './trend';
export * from './replay';
export { ReplayStore, runWarmup, type WarmupProgress } from './replay-store';

export const PREFETCH_POLICIES = ['auto', 'none', 'readahead', 'stride', 'trend'] as const;
export type PrefetchPolicy = (typeof PREFETCH_POLICIES)[number];

/** Cap on one decision when the region sets none: a few batched gRPC messages' worth (Leap uses 8). */
export const DEFAULT_MAX_WINDOW = 64;

export function isPrefetchPolicy(name: unknown): name is PrefetchPolicy {
  return typeof name === 'string' && (PREFETCH_POLICIES as readonly string[]).includes(name);
}

/** Throws `Expected ... for <name> but received ...` on a bad policy name or option. */
export function createPrefetcher(name: PrefetchPolicy, opts: PrefetchOptions): Prefetcher {
  if (!isPrefetchPolicy(name)) {
    throw new Error(`Expected one of ${PREFETCH_POLICIES.join(', ')} for prefetch but received ${show(name)}`);
  }
  checkPositiveInteger(opts.regionPages, 'regionPages');
  checkPositiveInteger(opts.maxWindow, 'maxWindow');
  if (opts.readaheadMaxWindow !== undefined) checkPositiveInteger(opts.readaheadMaxWindow, 'readaheadMaxWindow');
  if (opts.aloneMaxWindow !== undefined) checkPositiveInteger(opts.aloneMaxWindow, 'aloneMaxWindow');
  if (opts.pageSize !== undefined) {
    const ps = opts.pageSize;
    if (!Number.isInteger(ps) || ps < 1 || (ps & (ps - 1)) !== 0) {
      throw new Error(`Expected a power of two for pageSize but received ${show(ps)}`);
    }
  }
  switch (name) {
    case 'auto':
      return new AutoPrefetcher(opts);
    case 'none':
      return new NonePrefetcher();
    case 'readahead':
      return new ReadaheadPrefetcher(opts);
    case 'stride':
      return new StridePrefetcher(opts);
    case 'trend':
      return new TrendPrefetcher(opts);
  }
}

function checkPositiveInteger(v: unknown, name: string): void {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > 0xffffffff) {
    throw new Error(`Expected a positive integer below 2^32 for ${name} but received ${show(v)}`);
  }
}

function show(v: unknown): string {
  return typeof v === 'string' ? JSON.stringify(v) : String(v);
}
