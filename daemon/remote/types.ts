// What the pager needs from wherever a region's pages live: batched reads and acknowledged writes.
// MemoryServerClient (one server) and the pool (placement + replication) both implement it.

/** Result of a batched read: the bytes of every page present, and the pages never written. */
export interface ReadResult {
  /** page index → exactly pageSize bytes. */
  present: Map<number, Buffer>;
  /** Pages that were never written anywhere: install a zero page, nothing crossed the network. */
  absent: number[];
  /**
   * Only when the read asked for versions (MemoryServerClient; the pool does not return them): every
   * present page's stored version (0 = unversioned, also from servers older than versions). Repair
   * copies a page with the version it read.
   */
  versions?: Map<number, number>;
}

/** Options of a read: a deadline, and whether to return the pages' stored versions. */
export interface ReadOptions {
  deadlineMs?: number;
  versions?: boolean;
}

/**
 * Options of a write: a deadline, and the pages' versions (see memory.proto WritePages.versions):
 * null/absent = unversioned, one = every page, or one per page. A server keeping a higher version of
 * a page leaves it as it is and still acknowledges it: the write is superseded, not failed.
 */
export interface WriteOptions {
  deadlineMs?: number;
  versions?: readonly number[] | null;
}

export interface RegionRef {
  /** Region id (UUID). */
  id: string;
  pageSize: number;
}

/** Typed failure kinds so callers can fail over, back off or stall (and log why). */
export type PageStoreErrorKind = 'unavailable' | 'exhausted' | 'unauthenticated' | 'invalid' | 'deadline' | 'corrupt' | 'internal';

export class PageStoreError extends Error {
  readonly kind: PageStoreErrorKind;
  /** Which server (address), when known. */
  readonly server: string | null;
  constructor(kind: PageStoreErrorKind, message: string, server: string | null = null) {
    super(message);
    this.name = 'PageStoreError';
    this.kind = kind;
    this.server = server;
  }
}

export interface PageStore {
  /** Reads pages; resolves only with verified page-size bytes, never with wrong data. */
  read(region: RegionRef, pages: readonly number[], opts?: ReadOptions): Promise<ReadResult>;
  /** Writes pages (data = pages.length * pageSize bytes, in order); resolves once acknowledged. */
  write(region: RegionRef, pages: readonly number[], data: Buffer, opts?: WriteOptions): Promise<void>;
  /** Makes every acknowledged write of the region durable on the servers. */
  sync(region: RegionRef): Promise<void>;
  /**
   * Frees pages of a region that are no longer placed here (a moved group's old copy); resolves
   * with how many were freed. Optional: a store without it keeps such copies.
   */
  discard?(region: RegionRef, pages: readonly number[], deadlineMs?: number): Promise<number>;
  /** Frees every page of the region. */
  deleteRegion(regionId: string): Promise<void>;
  close(): Promise<void>;
}
