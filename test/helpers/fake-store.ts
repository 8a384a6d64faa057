// An in-memory PageStore for pager tests, with the misbehaviours a real memory server can show:
// delay, failures (unavailable), refusal of writes (capacity), held writes, and garbage answers.

import { PageStoreError, type PageStore, type ReadResult, type RegionRef } from '../../daemon/remote/types';

export class FakeStore implements PageStore {
  readonly data = new Map<string, Map<number, Buffer>>();
  reads = 0;
  readPages = 0;
  writes = 0;
  writtenPages = 0;
  syncs = 0;
  /** Reads fail with 'unavailable' while true. */
  down = false;
  /** The next n reads fail with 'unavailable'. */
  failNextReads = 0;
  /** The next n reads answer with a short page (the pager must refuse it). */
  corruptNextReads = 0;
  /** Writes fail with 'exhausted' while true. */
  refuseWrites = false;
  readDelayMs = 0;
  writeDelayMs = 0;
  private held: { resolve: () => void }[] | null = null;
  private heldWaiters: (() => void)[] = [];
  /** Called when a write arrives; the ack waits for what it returns (a test may touch the pages meanwhile). */
  onWrite: ((pages: readonly number[]) => Promise<unknown> | void) | null = null;
  /** Writes waiting on holdWrites(). */
  pendingWrites = 0;

  private region(id: string): Map<number, Buffer> {
    let m = this.data.get(id);
    if (m === undefined) this.data.set(id, (m = new Map()));
    return m;
  }

  page(regionId: string, page: number): Buffer | null {
    return this.data.get(regionId)?.get(page) ?? null;
  }

  /** Writes wait until the returned release() is called. */
  holdWrites(): () => void {
    this.held = [];
    return () => {
      const h = this.held ?? [];
      this.held = null;
      for (const w of h) w.resolve();
    };
  }

  /** Resolves once a write is waiting on holdWrites(). */
  writeHeld(): Promise<void> {
    if (this.pendingWrites > 0) return Promise.resolve();
    return new Promise((resolve) => this.heldWaiters.push(resolve));
  }

  /** Answer each read as one message (present pages are views of it); each message is kept in `messages`. */
  oneMessage = false;
  readonly messages: Buffer[] = [];

  async read(region: RegionRef, pages: readonly number[]): Promise<ReadResult> {
    this.reads++;
    if (this.readDelayMs > 0) await sleep(this.readDelayMs);
    if (this.down || this.failNextReads > 0) {
      if (this.failNextReads > 0) this.failNextReads--;
      throw new PageStoreError('unavailable', 'connect 127.0.0.1:1: ECONNREFUSED', '127.0.0.1:1');
    }
    this.readPages += pages.length;
    const m = this.region(region.id);
    const present = new Map<number, Buffer>();
    const absent: number[] = [];
    for (const p of pages) {
      const b = m.get(p);
      if (b === undefined) absent.push(p);
      else present.set(p, Buffer.from(b));
    }
    if (this.oneMessage && present.size > 0) {
      // As MemoryServerClient answers: the present pages are views of one received message, in order.
      const msg = Buffer.concat([...present.values()]);
      let off = 0;
      for (const [p, b] of present) {
        present.set(p, msg.subarray(off, off + b.length));
        off += b.length;
      }
      this.messages.push(msg);
    }
    if (this.corruptNextReads > 0 && present.size > 0) {
      this.corruptNextReads--;
      const [p, b] = present.entries().next().value as [number, Buffer];
      present.set(p, b.subarray(0, 100));
    }
    return { present, absent };
  }

  async write(region: RegionRef, pages: readonly number[], data: Buffer): Promise<void> {
    if (data.length !== pages.length * region.pageSize) throw new PageStoreError('invalid', 'bad write length');
    const copy = Buffer.from(data);
    const meanwhile = this.onWrite?.(pages);
    if (meanwhile) await meanwhile;
    if (this.held !== null) {
      this.pendingWrites++;
      const waiters = this.heldWaiters;
      this.heldWaiters = [];
      for (const w of waiters) w();
      await new Promise<void>((resolve) => this.held!.push({ resolve }));
      this.pendingWrites--;
    }
    if (this.writeDelayMs > 0) await sleep(this.writeDelayMs);
    this.writes++;
    if (this.refuseWrites) throw new PageStoreError('exhausted', 'memory server is full', '127.0.0.1:2');
    const m = this.region(region.id);
    pages.forEach((p, i) => m.set(p, copy.subarray(i * region.pageSize, (i + 1) * region.pageSize)));
    this.writtenPages += pages.length;
  }

  async sync(): Promise<void> {
    this.syncs++;
  }

  async deleteRegion(regionId: string): Promise<void> {
    this.data.delete(regionId);
  }

  async close(): Promise<void> {}
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
