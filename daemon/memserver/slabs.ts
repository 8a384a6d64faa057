// Pages off the JS heap: per page size, large slabs (Buffers allocated outside the heap) cut into slots;
// per region, a Map page index → slot number (small integers, no object per page). A size class's
// slabs grow geometrically (1 MiB, 2 MiB, ... up to 64 MiB), so a page size in use holds at most one
// partly used slab, and the capacity is not stranded in one class's empty slots; all slabs together
// never exceed the capacity (empty slabs are given back when another page size needs room).
//
// Page versions: each slab has a Float64Array parallel to its slots holding the version of the page
// in each slot (integers below 2^53; 0 = unversioned). A versioned write does not apply a page whose
// stored version is higher, so a write that reaches the server late (timed out and retried elsewhere
// by its daemon, then overtaken by a newer write-back or a repair copy) cannot overwrite newer bytes.
// 8 bytes per slot, off the JS heap like the slabs, and no object per page.
import { formatBytes } from './units';

const DEFAULT_SLAB_BYTES = 64 * 1024 * 1024;
const FIRST_SLAB_BYTES = 1024 * 1024;

export interface Refusal {
  /** gRPC status code. */
  code: number;
  message: string;
}

export interface RegionIndex {
  pageSize: number;
  pages: Map<number, number>;
}

class SizeClass {
  readonly slotsPerSlab: number;
  readonly slabs: (Buffer | null)[] = [];
  /** Per slab, the stored version of the page in each of its slots (parallel to slabs). */
  readonly versions: (Float64Array | null)[] = [];
  readonly used: number[] = [];
  readonly free: number[] = [];
  constructor(readonly pageSize: number, slabBytes: number) {
    this.slotsPerSlab = Math.max(1, Math.floor(slabBytes / pageSize));
  }
  slabOf(slot: number): Buffer {
    return this.slabs[Math.floor(slot / this.slotsPerSlab)]!;
  }
  offsetOf(slot: number): number {
    return (slot % this.slotsPerSlab) * this.pageSize;
  }
  versionOf(slot: number): number {
    return this.versions[Math.floor(slot / this.slotsPerSlab)]![slot % this.slotsPerSlab]!;
  }
  setVersion(slot: number, v: number): void {
    this.versions[Math.floor(slot / this.slotsPerSlab)]![slot % this.slotsPerSlab] = v;
  }
}

const RESOURCE_EXHAUSTED = 8;
/**
 * How long a deleted region's id refuses writes, and how many such ids are kept at most. Region ids
 * are never reused (farmemd makes a UUID per region), so this only catches late writes: one that
 * timed out at the daemon before the delete can still be in a socket queue (TCP retries for up to
 * ~15 minutes through a partition), and applied after the delete it would recreate the region's
 * pages here with nobody left to free them.
 */
export const TOMBSTONE_MS = 60 * 60 * 1000;
export const MAX_TOMBSTONES = 1 << 16;

export class SlabStore {
  readonly regions = new Map<string, RegionIndex>();
  private readonly classes = new Map<number, SizeClass>();
  usedBytes = 0;
  allocatedBytes = 0;
  /** Pages of the last write() not applied because a newer version was stored (they count as written). */
  lastSuperseded = 0;
  /** Deleted region id → when (ms), oldest first: writes to them are not applied (see TOMBSTONE_MS). */
  private readonly deleted = new Map<string, number>();

  constructor(readonly capacityBytes: number, private readonly slabBytes = DEFAULT_SLAB_BYTES) {}

  private sizeClass(pageSize: number): SizeClass {
    let c = this.classes.get(pageSize);
    if (c === undefined) {
      c = new SizeClass(pageSize, Math.min(this.slabBytes, Math.max(pageSize, this.capacityBytes)));
      this.classes.set(pageSize, c);
    }
    return c;
  }

  /** A free slot, allocating a slab within the capacity if needed; null when none can be had. */
  private takeSlot(c: SizeClass): number | null {
    for (;;) {
      const s = c.free.pop();
      if (s === undefined) break;
      const slab = Math.floor(s / c.slotsPerSlab);
      if (c.slabs[slab] === null) continue; // released slab: its slots are stale
      c.used[slab]!++;
      return s;
    }
    let room = this.capacityBytes - this.allocatedBytes;
    if (room < c.pageSize) {
      this.releaseEmptySlabs();
      room = this.capacityBytes - this.allocatedBytes;
    }
    const grow = Math.max(c.pageSize, Math.min(c.slotsPerSlab * c.pageSize, FIRST_SLAB_BYTES * 2 ** c.slabs.length));
    const slots = Math.min(grow / c.pageSize, Math.floor(room / c.pageSize));
    if (slots < 1) return null;
    const slab = c.slabs.length;
    c.slabs.push(Buffer.allocUnsafeSlow(slots * c.pageSize));
    c.versions.push(new Float64Array(slots));
    c.used.push(1);
    this.allocatedBytes += slots * c.pageSize;
    const base = slab * c.slotsPerSlab;
    for (let i = slots - 1; i >= 1; i--) c.free.push(base + i);
    return base;
  }

  private freeSlot(c: SizeClass, slot: number): void {
    c.used[Math.floor(slot / c.slotsPerSlab)]!--;
    c.free.push(slot);
  }

  /** Gives the capacity held by empty slabs back, so another page size can use it. */
  private releaseEmptySlabs(): void {
    for (const c of this.classes.values()) {
      let released = false;
      for (let i = 0; i < c.slabs.length; i++) {
        const slab = c.slabs[i];
        if (slab && c.used[i] === 0) {
          this.allocatedBytes -= slab.length;
          c.slabs[i] = null;
          c.versions[i] = null;
          released = true;
        }
      }
      if (released) {
        const keep = c.free.filter((s) => c.slabs[Math.floor(s / c.slotsPerSlab)] !== null);
        c.free.length = 0;
        c.free.push(...keep);
      }
    }
  }

  /**
   * Stores pages (data = pages.length * pageSize bytes in order, in one buffer or several consecutive
   * ones), all or nothing: when the capacity
   * cannot hold the new pages, nothing changes and the refusal names the capacity.
   * The caller has validated region, page size, indexes and length.
   * versions: null/empty (unversioned: applied, stored as version 0), one for every page, or one per
   * page. A page whose stored version is higher than its new one is left as it is (lastSuperseded
   * counts them); an equal version is rewritten (a retry or a repair copy of the same bytes).
   */
  write(regionId: string, pageSize: number, pages: readonly number[], data: Buffer | readonly Buffer[], versions: readonly number[] | null = null): Refusal | null {
    this.lastSuperseded = 0;
    if (this.isDeleted(regionId)) {
      // Late: the region was deleted after this write was sent. Its newest state is "gone", so the
      // write is superseded like one with an older version: acknowledged, not applied.
      this.lastSuperseded = pages.length;
      return null;
    }
    let region = this.regions.get(regionId);
    const created = region === undefined;
    if (region === undefined) region = { pageSize, pages: new Map() };
    const c = this.sizeClass(pageSize);
    const map = region.pages;
    const added: number[] = [];
    for (let i = 0; i < pages.length; i++) {
      const p = pages[i]!;
      if (map.has(p)) continue;
      const slot = this.usedBytes + (added.length + 1) * pageSize <= this.capacityBytes ? this.takeSlot(c) : null;
      if (slot === null) {
        for (const q of added) {
          this.freeSlot(c, map.get(q)!);
          map.delete(q);
        }
        return {
          code: RESOURCE_EXHAUSTED,
          message: `write of ${pages.length} pages (${formatBytes(pages.length * pageSize)}) to region "${regionId}": capacity ${formatBytes(this.capacityBytes)} exhausted (${formatBytes(this.usedBytes)} used)`,
        };
      }
      map.set(p, slot);
      c.setVersion(slot, 0); // a reused slot keeps the version of the page it held before
      added.push(p);
    }
    if (created) this.regions.set(regionId, region);
    this.usedBytes += added.length * pageSize;
    const nv = versions === null ? 0 : versions.length;
    const one = nv === 1 ? versions![0]! : 0;
    let superseded = 0;
    if (Buffer.isBuffer(data)) {
      for (let i = 0; i < pages.length; i++) {
        const slot = map.get(pages[i]!)!;
        const v = nv === 0 ? 0 : nv === 1 ? one : versions![i]!;
        if (v !== 0 && c.versionOf(slot) > v) {
          superseded++;
          continue;
        }
        c.setVersion(slot, v);
        data.copy(c.slabOf(slot), c.offsetOf(slot), i * pageSize, (i + 1) * pageSize);
      }
      this.lastSuperseded = superseded;
      return null;
    }
    // The bytes as the chunks they arrived in: a page may straddle two (or more) of them.
    let part = 0;
    let from = 0;
    for (let i = 0; i < pages.length; i++) {
      const slot = map.get(pages[i]!)!;
      const v = nv === 0 ? 0 : nv === 1 ? one : versions![i]!;
      const skip = v !== 0 && c.versionOf(slot) > v;
      if (skip) superseded++;
      else c.setVersion(slot, v);
      const slab = c.slabOf(slot);
      let at = c.offsetOf(slot);
      let need = pageSize;
      while (need > 0) {
        const p = data[part]!;
        const n = Math.min(need, p.length - from);
        if (!skip) p.copy(slab, at, from, from + n);
        at += n;
        need -= n;
        from += n;
        if (from === p.length) {
          part++;
          from = 0;
        }
      }
    }
    this.lastSuperseded = superseded;
    return null;
  }

  /**
   * Looks pages up. present/absent keep the order asked; fill() copies the present pages' bytes,
   * concatenated, into out at `at` (call it before any later write or delete). versions: the present
   * pages' stored versions in the same order, or null when they are all 0 (unversioned).
   */
  read(regionId: string, pages: readonly number[]): { present: number[]; absent: number[]; versions: number[] | null; fill: (out: Buffer, at: number) => void } {
    const region = this.regions.get(regionId);
    const present: number[] = [];
    const absent: number[] = [];
    const slots: number[] = [];
    if (region === undefined) return { present, absent: pages.slice(), versions: null, fill: () => undefined };
    const c = this.sizeClass(region.pageSize);
    let versions: number[] | null = null;
    for (let i = 0; i < pages.length; i++) {
      const slot = region.pages.get(pages[i]!);
      if (slot === undefined) absent.push(pages[i]!);
      else {
        const v = c.versionOf(slot);
        if (v !== 0 && versions === null) versions = new Array<number>(present.length).fill(0);
        if (versions !== null) versions.push(v);
        present.push(pages[i]!);
        slots.push(slot);
      }
    }
    const ps = region.pageSize;
    const fill = (out: Buffer, at: number) => {
      for (let i = 0; i < slots.length; i++) {
        const off = c.offsetOf(slots[i]!);
        c.slabOf(slots[i]!).copy(out, at + i * ps, off, off + ps);
      }
    };
    return { present, absent, versions, fill };
  }

  /** One page's bytes as a view of its slab (valid until the next write or delete). */
  view(regionId: string, page: number): Buffer | null {
    const region = this.regions.get(regionId);
    const slot = region?.pages.get(page);
    if (region === undefined || slot === undefined) return null;
    const c = this.sizeClass(region.pageSize);
    const off = c.offsetOf(slot);
    return c.slabOf(slot).subarray(off, off + region.pageSize);
  }

  /**
   * Frees some pages of a region (those it does not hold are skipped); the region goes with its
   * last page. Returns how many were freed.
   */
  discard(regionId: string, pages: readonly number[]): number {
    const region = this.regions.get(regionId);
    if (region === undefined) return 0;
    const c = this.sizeClass(region.pageSize);
    let n = 0;
    for (const p of pages) {
      const slot = region.pages.get(p);
      if (slot === undefined) continue;
      this.freeSlot(c, slot);
      region.pages.delete(p);
      n++;
    }
    this.usedBytes -= n * region.pageSize;
    if (region.pages.size === 0) this.regions.delete(regionId);
    return n;
  }

  /**
   * Frees every page of a region and keeps its id as deleted (see TOMBSTONE_MS), also when this server
   * held none of its pages; returns how many were freed, or null when it held none.
   */
  deleteRegion(regionId: string, now = Date.now()): number | null {
    this.deleted.delete(regionId);
    this.deleted.set(regionId, now);
    if (this.deleted.size > MAX_TOMBSTONES) this.deleted.delete(this.deleted.keys().next().value as string);
    const region = this.regions.get(regionId);
    if (region === undefined) return null;
    const c = this.sizeClass(region.pageSize);
    for (const slot of region.pages.values()) this.freeSlot(c, slot);
    const n = region.pages.size;
    this.usedBytes -= n * region.pageSize;
    this.regions.delete(regionId);
    return n;
  }

  /** A region deleted within TOMBSTONE_MS. */
  isDeleted(regionId: string, now = Date.now()): boolean {
    this.forgetDeleted(now);
    return this.deleted.has(regionId);
  }

  /** The ids of regions deleted within TOMBSTONE_MS, oldest first (the journal's compaction keeps them). */
  deletedRegions(now = Date.now()): string[] {
    this.forgetDeleted(now);
    return [...this.deleted.keys()];
  }

  /** Forgets the ids deleted more than TOMBSTONE_MS ago (the oldest come first). */
  private forgetDeleted(now: number): void {
    for (const [id, at] of this.deleted) {
      if (now - at <= TOMBSTONE_MS) break;
      this.deleted.delete(id);
    }
  }
}
