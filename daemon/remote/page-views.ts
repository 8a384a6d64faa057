// The present pages of a read answer that holds a run of consecutive pages back to back in one
// message: a Map page → bytes whose entries are made only when something asks for them.
//
// A memory server answers a sequential read with pages first..first+n-1 in order. Built eagerly, the
// Map cost a view and a hash insert per page, and its users a hash lookup per page: ~5% of farmemd's
// JS thread on a 1 GiB scan, plus the garbage. Lazily, has() and get() are arithmetic, and span()
// hands the pager a run's bytes as one view for one UFFDIO_COPY. Everything else a Map does (set,
// delete, iteration) first turns it into an ordinary Map, so any caller may treat it as one.

export class PageViews extends Map<number, Buffer> {
  /** null once materialized: from then on it is a plain Map. */
  private run: { first: number; count: number; data: Buffer; pageSize: number } | null;

  constructor(first: number, count: number, data: Buffer, pageSize: number) {
    super();
    if (data.length !== count * pageSize) throw new RangeError(`Expected ${count * pageSize} bytes for ${count} pages of ${pageSize} but received ${data.length}`);
    this.run = { first, count, data, pageSize };
  }

  override get size(): number {
    return this.run !== null ? this.run.count : super.size;
  }

  override has(page: number): boolean {
    const r = this.run;
    if (r === null) return super.has(page);
    return Number.isInteger(page) && page >= r.first && page < r.first + r.count;
  }

  override get(page: number): Buffer | undefined {
    const r = this.run;
    if (r === null) return super.get(page);
    if (!this.has(page)) return undefined;
    const at = (page - r.first) * r.pageSize;
    return r.data.subarray(at, at + r.pageSize);
  }

  /** Whether this is exactly pages, in order, each pageSize bytes (and not turned into a plain Map). */
  holdsExactly(pages: readonly number[]): boolean {
    const r = this.run;
    if (r === null || pages.length !== r.count) return false;
    for (let i = 0; i < pages.length; i++) if (pages[i] !== r.first + i) return false;
    return true;
  }

  /** The bytes of pages first..first+count-1 as one view, when this answer holds them back to back. */
  span(first: number, count: number): Buffer | undefined {
    const r = this.run;
    if (r === null || count < 1 || !this.has(first) || !this.has(first + count - 1)) return undefined;
    const at = (first - r.first) * r.pageSize;
    return r.data.subarray(at, at + count * r.pageSize);
  }

  override set(page: number, bytes: Buffer): this {
    this.materialize();
    return super.set(page, bytes);
  }

  override delete(page: number): boolean {
    this.materialize();
    return super.delete(page);
  }

  override clear(): void {
    this.run = null;
    super.clear();
  }

  override forEach(fn: (value: Buffer, key: number, map: Map<number, Buffer>) => void, thisArg?: unknown): void {
    this.materialize();
    super.forEach(fn, thisArg);
  }

  override entries(): MapIterator<[number, Buffer]> {
    this.materialize();
    return super.entries();
  }

  override keys(): MapIterator<number> {
    this.materialize();
    return super.keys();
  }

  override values(): MapIterator<Buffer> {
    this.materialize();
    return super.values();
  }

  override [Symbol.iterator](): MapIterator<[number, Buffer]> {
    this.materialize();
    return super[Symbol.iterator]();
  }

  private materialize(): void {
    const r = this.run;
    if (r === null) return;
    this.run = null;
    for (let i = 0; i < r.count; i++) super.set(r.first + i, r.data.subarray(i * r.pageSize, (i + 1) * r.pageSize));
  }
}
