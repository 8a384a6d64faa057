// A region as the daemon knows it (the registry persists these in the state directory).

export type PrefetchPolicyName = 'auto' | 'none' | 'readahead' | 'stride' | 'trend';
export type OnUnavailable = 'wait' | 'sigbus';
/** How dirty pages are found: WP faults, WP_ASYNC + PAGEMAP_SCAN (never evicted), or the best that is safe. */
export type DirtyTracking = 'wp' | 'async' | 'auto';

export interface RegionSpec {
  /** Stable id (UUID v4), used as the key on memory servers. */
  id: string;
  /** Validated name: [a-z0-9][a-z0-9._-]{0,62}. */
  name: string;
  sizeBytes: number;
  /** Power of two, 4 KiB .. 2 MiB. */
  pageSize: number;
  /** Resident budget on this host, in bytes (0 = unlimited, the daemon-wide cap still applies). */
  residentBytes: number;
  /** Memory server addresses, or empty for the daemon's pool. */
  servers: string[];
  replicas: number;
  prefetch: PrefetchPolicyName;
  /**
   * Replay on attach: when a process attaches and the region has a recorded working set, the daemon
   * fetches it before the process asks (as `farmem region warm` does). Absent in older registries: off.
   */
  warmOnAttach?: boolean;
  onUnavailable: OnUnavailable;
  /** As created; what is in effect also depends on the kernel and the budgets (see regions/tracking.ts). */
  dirtyTracking: DirtyTracking;
  ownerUid: number;
  ownerGid: number;
  /** Unix-style mode bits: 0o600 owner only, 0o660 owner + group. */
  mode: number;
  createdAt: string;
}
