// The prefetcher's contract with the pager: it is told every fault of an attachment and what became
// of its guesses, and answers with page indexes worth fetching now.

export interface FaultInfo {
  /** Page index within the region. */
  page: number;
  /** true when the page was found in the page cache or was already being fetched (no remote round trip). */
  hit: boolean;
  /** The faulting thread (tid), so per-thread streams can be told apart. */
  tid: number;
  write: boolean;
}

export interface Prefetcher {
  readonly name: string;
  /**
   * Called on every fault; returns pages to prefetch (the pager drops resident/in-flight ones).
   * A fault on a page this prefetcher asked for counts as a use of it (same as onPrefetchUsed), so a
   * pager that learns of uses only through cache-hit faults needs no separate call.
   */
  onFault(fault: FaultInfo): number[];
  /**
   * A prefetched page was touched (a fault was avoided or satisfied from the cache). Reporting a use
   * twice (here and as a hit fault) is harmless. May return pages to prefetch now (asynchronous
   * readahead: the stream reached the start of its last window); a pager that ignores them only loses
   * the head start, the next fault asks again.
   */
  onPrefetchUsed(page: number): number[] | void;
  /** A prefetched page was evicted (or dropped from the cache) without ever being touched. */
  onPrefetchWasted(page: number): void;
  /** Forget all streams (e.g. on detach). */
  reset(): void;
  /** The policy issuing real prefetches right now (auto's current choice; the name itself for the others). */
  current?(): string;
  /**
   * true when the first page of each returned window is its trigger (Linux's PG_readahead): a touch of
   * it is reported as a hit fault and answered with the next window. The pager may then hold that page
   * back instead of installing it, so that the touch is seen. Absent: false.
   */
  windowMarkers?(): boolean;
  /**
   * Where a guessed page stands against this policy's streams, for the evictor: 'behind' when a stream
   * has moved past it (it was walked over: a use the pager could not see, as reads of installed pages
   * raise no fault), 'ahead' when it lies between a stream's newest page and the end of what the stream
   * asked for (the stream is about to touch it: evicting it means fetching it again), null when no
   * stream knows it. Absent: null for every page. Must be cheap: called per eviction candidate.
   */
  whereIs?(page: number): 'behind' | 'ahead' | null;
  /** true when `page` is a guess of this policy not yet used nor wasted. Absent: unknown. */
  asked?(page: number): boolean;
  /**
   * The guesses still ahead of a stream (asked for, not reached yet), with the thread of each, nearest
   * first per stream. Absent: unknown.
   */
  ahead?(): Array<[page: number, tid: number]>;
  /**
   * auto runs this policy alone (true) or in shadow of the others again (false): windows may grow to
   * PrefetchOptions.aloneMaxWindow meanwhile. Absent: windows do not change.
   */
  runAlone?(alone: boolean): void;
}

export interface PrefetchOptions {
  /** Pages in the region (guesses past the end are dropped). */
  regionPages: number;
  /** Cap on one prefetch decision, in pages. */
  maxWindow: number;
  /** Cap on readahead's window, in pages (default maxWindow): sequential windows pay at larger sizes than the others. */
  readaheadMaxWindow?: number;
  /**
   * Cap on readahead's window while auto runs it alone, its scores proved over a whole scoring window
   * (default readaheadMaxWindow): larger than the cap it starts with, as auto's take-over fetches the
   * windows readahead believes were sent, and a pattern that looks sequential for a while (zipf's
   * first touches) would make that many wasted bytes.
   */
  aloneMaxWindow?: number;
  /** Bytes per page of the region (default 4096): policies whose windows are set in bytes convert with it. */
  pageSize?: number;
}
