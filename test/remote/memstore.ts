// An in-memory PageStore that can be taken down (refuses every call) or wiped: the pool tests' server.
import { PageStoreError, type PageStore, type ReadResult, type RegionRef } from '../../daemon/remote/types';

export class MemStore implements PageStore {
  pages = new Map<string, Buffer>();
  down = false;
  writes = 0;
  /** Read requests asked of it, answered or refused. */
  reads = 0;
  /** Pages freed by discard (old copies of groups that moved away). */
  discarded = 0;
  /** Runs as a discard arrives, before any page is freed (a test takes its "crash" snapshot here). */
  beforeDiscard: ((pages: readonly number[]) => void) | null = null;
  /** Fails the writes it says yes to (a write lost mid-partition while other calls get through). */
  refuseWrite: ((pages: readonly number[]) => boolean) | null = null;
  constructor(readonly id: string) {}
  private check(): void {
    if (this.down) throw new PageStoreError('unavailable', `${this.id}: connection refused`, this.id);
  }
  async read(region: RegionRef, pages: readonly number[]): Promise<ReadResult> {
    this.reads++;
    this.check();
    const present = new Map<number, Buffer>();
    const absent: number[] = [];
    for (const p of pages) {
      const b = this.pages.get(`${region.id}/${p}`);
      if (b) present.set(p, Buffer.from(b));
      else absent.push(p);
    }
    return { present, absent };
  }
  async write(region: RegionRef, pages: readonly number[], data: Buffer): Promise<void> {
    this.check();
    if (this.refuseWrite?.(pages)) throw new PageStoreError('deadline', `${this.id}: write deadline exceeded`, this.id);
    this.writes++;
    pages.forEach((p, i) => this.pages.set(`${region.id}/${p}`, Buffer.from(data.subarray(i * region.pageSize, (i + 1) * region.pageSize))));
  }
  async sync(): Promise<void> {
    this.check();
  }
  async deleteRegion(regionId: string): Promise<void> {
    for (const k of [...this.pages.keys()]) if (k.startsWith(`${regionId}/`)) this.pages.delete(k);
  }
  async discard(region: RegionRef, pages: readonly number[]): Promise<number> {
    this.check();
    this.beforeDiscard?.(pages);
    let n = 0;
    for (const p of pages) if (this.pages.delete(`${region.id}/${p}`)) n++;
    this.discarded += n;
    return n;
  }
  async close(): Promise<void> {}
  holds(region: RegionRef, page: number): boolean {
    return this.pages.has(`${region.id}/${page}`);
  }
}

/** Read requests asked of all of them so far. */
export function readsOf(stores: readonly MemStore[]): number {
  return stores.reduce((n, s) => n + s.reads, 0);
}
