// Durability with --data-dir: an append-only journal of writes, page discards and region deletes. Writes are
// acknowledged from memory and appended in the background (writev, batched); Sync waits until
// everything acknowledged before it is in the file and fdatasync'd. On start the journal is replayed
// (a torn tail from a crash is cut off at the first bad record: it was never synced), and rewritten
// from the live pages when it has grown to more than twice their size.
//
// Record: u32 magic | u32 crc32(rest) | u32 rest length | rest = u8 type | u8 region length | u16 v |
//         u32 page size | u32 count | region | count × f64 page index | [versions] | count × page size bytes.
// Type WRITE (v = 0) is an unversioned write; type VWRITE carries page versions: v = 1, one f64
// version for every page, or v = 2, count × f64 versions. Replaying a VWRITE applies the same
// "a lower version never overwrites a higher one" rule in the same order, so the store comes back
// with the same bytes and versions: a stale write is still refused after a restart. (A server older
// than versions stops its replay at the first VWRITE, as at a torn tail: do not downgrade a data dir.)
// Type DISCARD (4) frees pages (no data, no versions), as a daemon does once a group has moved away.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import type pino from 'pino';
import type { SlabStore } from './slabs';

const MAGIC = 0x314a4d46; // "FMJ1"
const PREFIX = 12;
const FIXED = 12;
const WRITE = 1;
const DELETE = 2;
const VWRITE = 3;
const ONE_VERSION = 1;
const PAGE_VERSIONS = 2;
/** Pages freed (no data): an older server replaying this stops at it, as at a torn tail. */
const DISCARD = 4;
const COMPACT_MIN_BYTES = 64 * 1024 * 1024;
const IOV_MAX = 1024;

function header(type: number, region: string, pageSize: number, pages: readonly number[], versions: readonly number[] | null, dataLen: number): Buffer {
  const regionLen = Buffer.byteLength(region);
  const nv = versions === null ? 0 : versions.length;
  const h = Buffer.allocUnsafe(PREFIX + FIXED + regionLen + pages.length * 8 + nv * 8);
  h.writeUInt32LE(MAGIC, 0);
  h.writeUInt32LE(h.length - PREFIX + dataLen, 8);
  h.writeUInt8(nv === 0 ? type : VWRITE, 12);
  h.writeUInt8(regionLen, 13);
  h.writeUInt16LE(nv === 0 ? 0 : nv === 1 ? ONE_VERSION : PAGE_VERSIONS, 14);
  h.writeUInt32LE(pageSize, 16);
  h.writeUInt32LE(pages.length, 20);
  h.write(region, 24, 'utf8');
  let at = 24 + regionLen;
  for (let i = 0; i < pages.length; i++, at += 8) h.writeDoubleLE(pages[i]!, at);
  for (let i = 0; i < nv; i++, at += 8) h.writeDoubleLE(versions![i]!, at);
  return h;
}

/** versions (writes only): null/empty, one for every page, or one per page. */
function record(type: number, region: string, pageSize: number, pages: readonly number[], data: readonly Buffer[] | null, versions: readonly number[] | null = null): Buffer[] {
  let dataLen = 0;
  if (data !== null) for (const d of data) dataLen += d.length;
  const h = header(type, region, pageSize, pages, versions !== null && versions.length > 0 ? versions : null, dataLen);
  let crc = zlib.crc32(h.subarray(PREFIX));
  if (data !== null) for (const d of data) crc = zlib.crc32(d, crc);
  h.writeUInt32LE(crc, 4);
  return data === null ? [h] : [h, ...data];
}

export class Journal {
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private writing: Promise<void> | null = null;
  private failed: Error | null = null;
  private size: number;
  private drainWaiters: (() => void)[] = [];

  private constructor(
    private fd: number,
    private readonly file: string,
    private readonly store: SlabStore,
    private readonly logger: pino.Logger,
    size: number,
    /** Above this many queued bytes, callers should wait for whenDrained() (backpressure). */
    readonly highWaterBytes: number,
    /** Compact once the file exceeds twice the live pages plus this. */
    private readonly compactMinBytes: number,
  ) {
    this.size = size;
  }

  /** Opens (creating) dir/journal, replays it into the store, and compacts it when worthwhile. */
  static async open(dir: string, store: SlabStore, logger: pino.Logger, highWaterBytes = 64 * 1024 * 1024, compactMinBytes = COMPACT_MIN_BYTES): Promise<Journal> {
    fs.mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'journal');
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_APPEND, 0o600);
    const { records, end, torn } = replay(fd, file, store);
    if (torn) {
      logger.warn({ file, validBytes: end }, 'journal: cut a torn tail after the last whole record (never synced)');
      fs.ftruncateSync(fd, end);
      fs.fdatasyncSync(fd);
    }
    logger.info({ file, records, bytes: end, pages: store.usedBytes, regions: store.regions.size }, 'journal: replayed');
    const j = new Journal(fd, file, store, logger, end, highWaterBytes, compactMinBytes);
    if (j.shouldCompact()) await j.compact();
    return j;
  }

  get backlogBytes(): number {
    return this.pendingBytes;
  }

  /**
   * data: the page bytes, in one buffer or several consecutive ones (kept, not copied, until written);
   * versions: as given to SlabStore.write (null: unversioned).
   */
  appendWrite(region: string, pageSize: number, pages: readonly number[], data: Buffer | readonly Buffer[], versions: readonly number[] | null = null): void {
    this.enqueue(record(WRITE, region, pageSize, pages, Buffer.isBuffer(data) ? [data] : data, versions));
  }

  appendDiscard(region: string, pages: readonly number[]): void {
    this.enqueue(record(DISCARD, region, 0, pages, null));
  }

  appendDelete(region: string): void {
    this.enqueue(record(DELETE, region, 0, [], null));
  }

  /** Resolves once the queued bytes are below the high-water mark. */
  whenDrained(): Promise<void> {
    if (this.pendingBytes < this.highWaterBytes) return Promise.resolve();
    return new Promise((resolve) => this.drainWaiters.push(resolve));
  }

  /** Everything appended so far is in the file and on disk when this resolves. */
  async sync(): Promise<void> {
    await this.flush();
    if (this.failed) throw this.failed;
    await new Promise<void>((resolve, reject) => fs.fdatasync(this.fd, (e) => (e ? reject(e) : resolve())));
  }

  async close(): Promise<void> {
    await this.sync();
    fs.closeSync(this.fd);
  }

  private enqueue(bufs: Buffer[]): void {
    for (const b of bufs) {
      this.pending.push(b);
      this.pendingBytes += b.length;
    }
    if (this.writing === null) this.writing = this.drain();
  }

  private async flush(): Promise<void> {
    while (this.writing !== null) await this.writing;
  }

  private async drain(): Promise<void> {
    try {
      while (this.pending.length > 0 && this.failed === null) {
        const batch = this.pending.splice(0, IOV_MAX);
        const bytes = batch.reduce((n, b) => n + b.length, 0);
        await writeAll(this.fd, batch);
        this.pendingBytes -= bytes;
        this.size += bytes;
        if (this.pendingBytes < this.highWaterBytes) this.drainWaiters.splice(0).forEach((w) => w());
        if (this.pending.length === 0 && this.shouldCompact()) await this.compact();
      }
    } catch (e) {
      this.failed = new Error(`journal ${this.file}: ${e instanceof Error ? e.message : String(e)}`);
      this.logger.error({ err: this.failed }, 'journal: write failed; Sync will fail from now on');
    } finally {
      this.writing = null;
      this.drainWaiters.splice(0).forEach((w) => w());
    }
  }

  private shouldCompact(): boolean {
    return this.size > 2 * this.store.usedBytes + this.compactMinBytes;
  }

  /** Rewrites the journal from the live pages. Appends queued meanwhile go to the new file after. */
  private async compact(): Promise<void> {
    const tmp = `${this.file}.compact`;
    const fd = fs.openSync(tmp, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC | fs.constants.O_APPEND, 0o600);
    let size = 0;
    const put = async (bufs: Buffer[]) => {
      await writeAll(fd, bufs);
      size += bufs.reduce((n, b) => n + b.length, 0);
    };
    try {
      for (const [id, region] of this.store.regions) {
        const keys = Array.from(region.pages.keys());
        const per = Math.max(1, Math.floor((1 << 20) / region.pageSize));
        for (let i = 0; i < keys.length; i += per) {
          const r = this.store.read(id, keys.slice(i, i + per));
          if (r.present.length === 0) continue;
          const data = Buffer.allocUnsafe(r.present.length * region.pageSize);
          r.fill(data, 0);
          await put(record(WRITE, id, region.pageSize, r.present, [data], r.versions));
        }
      }
      // Deleted regions stay deleted (their late writes are not applied) across a restart.
      for (const id of this.store.deletedRegions()) await put(record(DELETE, id, 0, [], null));
      fs.fdatasyncSync(fd);
      fs.renameSync(tmp, this.file);
      const dirFd = fs.openSync(path.dirname(this.file), 'r');
      fs.fsyncSync(dirFd);
      fs.closeSync(dirFd);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    fs.closeSync(this.fd);
    this.logger.info({ file: this.file, before: this.size, after: size }, 'journal: compacted');
    this.fd = fd;
    this.size = size;
  }
}

async function writeAll(fd: number, bufs: Buffer[]): Promise<void> {
  let rest = bufs;
  while (rest.length > 0) {
    const n = await new Promise<number>((resolve, reject) => fs.writev(fd, rest, (e, w) => (e ? reject(e) : resolve(w))));
    let skip = n;
    let i = 0;
    while (i < rest.length && skip >= rest[i]!.length) skip -= rest[i++]!.length;
    rest = rest.slice(i);
    if (skip > 0 && rest.length > 0) rest[0] = rest[0]!.subarray(skip);
  }
}

/** Applies every whole record of the file to the store; stops at the first torn or bad one. */
function replay(fd: number, file: string, store: SlabStore): { records: number; end: number; torn: boolean } {
  const total = fs.fstatSync(fd).size;
  let pos = 0;
  let records = 0;
  const prefix = Buffer.alloc(PREFIX);
  while (pos < total) {
    if (total - pos < PREFIX || fs.readSync(fd, prefix, 0, PREFIX, pos) !== PREFIX) break;
    const len = prefix.readUInt32LE(8);
    if (prefix.readUInt32LE(0) !== MAGIC || len < FIXED || pos + PREFIX + len > total) break;
    const rest = Buffer.allocUnsafe(len);
    if (fs.readSync(fd, rest, 0, len, pos + PREFIX) !== len) break;
    if (zlib.crc32(rest) !== prefix.readUInt32LE(4)) break;
    const type = rest.readUInt8(0);
    const regionLen = rest.readUInt8(1);
    const pageSize = rest.readUInt32LE(4);
    const count = rest.readUInt32LE(8);
    const region = rest.toString('utf8', FIXED, FIXED + regionLen);
    const pagesAt = FIXED + regionLen;
    const pages: number[] = [];
    for (let i = 0; i < count; i++) pages.push(rest.readDoubleLE(pagesAt + i * 8));
    if (type === WRITE || type === VWRITE) {
      const vkind = rest.readUInt16LE(2);
      const nv = type === WRITE ? 0 : vkind === ONE_VERSION ? 1 : vkind === PAGE_VERSIONS ? count : -1;
      if (nv < 0) break;
      const versions: number[] = [];
      const versionsAt = pagesAt + count * 8;
      if (versionsAt + nv * 8 > rest.length) break;
      for (let i = 0; i < nv; i++) versions.push(rest.readDoubleLE(versionsAt + i * 8));
      const data = rest.subarray(versionsAt + nv * 8);
      if (data.length !== count * pageSize) break;
      const existing = store.regions.get(region);
      if (existing !== undefined && existing.pageSize !== pageSize) store.deleteRegion(region);
      const refused = store.write(region, pageSize, pages, data, nv === 0 ? null : versions);
      if (refused) throw new Error(`replay ${file}: ${refused.message}`);
    } else if (type === DELETE) store.deleteRegion(region);
    else if (type === DISCARD) store.discard(region, pages);
    else break;
    pos += PREFIX + len;
    records++;
  }
  return { records, end: pos, torn: pos < total };
}
