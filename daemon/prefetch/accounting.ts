// What became of prefetched pages: issued, used (a fault avoided), wasted (dropped untouched). The
// pager keeps one per region for its metrics; auto keeps one per candidate to score it in shadow.
// Pages are tracked individually so that a use or a waste reported twice is counted once.

export interface PrefetchStats {
  issuedPages: number;
  usedPages: number;
  wastedPages: number;
  /** Issued and neither used nor wasted yet. */
  outstandingPages: number;
  /** Faults that happened (the prefetcher did not cover them). */
  faults: number;
  /** used ÷ issued (0 when nothing was issued). */
  accuracy: number;
  /** faults avoided ÷ (faults avoided + faults that happened) (0 when there was no access at all). */
  coverage: number;
  wastedBytes: number;
}

export class PrefetchAccounting {
  private readonly outstanding = new Set<number>();
  private issued = 0;
  private used = 0;
  private wasted = 0;
  private faults = 0;

  /**
   * @param pageSize bytes per page, for wastedBytes.
   * @param capacity pages that may be outstanding at once (0: no limit); issuing past it drops the
   *   oldest outstanding page as wasted, which models a cache of prefetched pages with FIFO eviction.
   */
  constructor(
    private readonly pageSize: number,
    private readonly capacity = 0,
  ) {}

  /** A page was sent for; returns the pages dropped to make room (counted as wasted). */
  issue(page: number): number[] {
    if (this.outstanding.has(page)) return [];
    this.outstanding.add(page);
    this.issued++;
    const dropped: number[] = [];
    if (this.capacity > 0) {
      // A Set iterates in insertion order: the first entries are the oldest guesses.
      for (const old of this.outstanding) {
        if (this.outstanding.size <= this.capacity) break;
        this.outstanding.delete(old);
        this.wasted++;
        dropped.push(old);
      }
    }
    return dropped;
  }

  /** A prefetched page was touched; false when it was not outstanding (not ours, or already counted). */
  use(page: number): boolean {
    if (!this.outstanding.delete(page)) return false;
    this.used++;
    return true;
  }

  /** A prefetched page was dropped untouched; false when it was not outstanding. */
  waste(page: number): boolean {
    if (!this.outstanding.delete(page)) return false;
    this.wasted++;
    return true;
  }

  /** A fault that no prefetch covered. */
  fault(): void {
    this.faults++;
  }

  isOutstanding(page: number): boolean {
    return this.outstanding.has(page);
  }

  /** Everything still outstanding is written off as wasted (detach, end of a simulation). */
  writeOffOutstanding(): void {
    this.wasted += this.outstanding.size;
    this.outstanding.clear();
  }

  snapshot(): PrefetchStats {
    const accesses = this.used + this.faults;
    return {
      issuedPages: this.issued,
      usedPages: this.used,
      wastedPages: this.wasted,
      outstandingPages: this.outstanding.size,
      faults: this.faults,
      accuracy: this.issued === 0 ? 0 : this.used / this.issued,
      coverage: accesses === 0 ? 0 : this.used / accesses,
      wastedBytes: this.wasted * this.pageSize,
    };
  }
}
