// A durable append-only record log with group commit, compacted into a snapshot.
//
// Files, for a journal named N in dir D: `D/N.snap` (the snapshot: a generation number and the
// caller's bytes) and `D/N.<gen>.log` (records appended since that snapshot). Only the log of the
// snapshot's generation is replayed: a crash between writing a new snapshot and removing the old
// log can never replay records the snapshot already contains.
//
// Record frame: u32 length, u32 crc32 of the payload, payload. A torn or corrupt tail (a crash
// mid-append) ends the log at the last whole record and is cut off on open: those records were
// never acknowledged (append resolves only after fdatasync).
//
// Group commit: every append made while a flush is writing waits for the next flush, which writes
// all of them with one writev and one fdatasync.
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';

const SNAP_MAGIC = 0x464d534e; // "FMSN"

export interface JournalContents {
  snapshot: Buffer | null;
  records: Buffer[];
  /** Bytes of torn tail cut off the log (0 when it ended cleanly). */
  tornBytes: number;
}

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
}

function frame(payload: Buffer): Buffer {
  const head = Buffer.allocUnsafe(8);
  head.writeUInt32LE(payload.length, 0);
  head.writeUInt32LE(zlib.crc32(payload), 4);
  return Buffer.concat([head, payload]);
}

/** Whole records of a log, and where the last whole one ends. */
export function parseRecords(buf: Buffer): { records: Buffer[]; end: number } {
  const records: Buffer[] = [];
  let off = 0;
  while (off + 8 <= buf.length) {
    const len = buf.readUInt32LE(off);
    const crc = buf.readUInt32LE(off + 4);
    if (off + 8 + len > buf.length) break;
    const payload = buf.subarray(off + 8, off + 8 + len);
    if (zlib.crc32(payload) !== crc) break;
    records.push(payload);
    off += 8 + len;
  }
  return { records, end: off };
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

export class Journal {
  private fd: number;
  private gen: number;
  private logBytes = 0;
  private pending: Buffer[] = [];
  private waiters: Waiter[] = [];
  private snapshotWanted: (() => Buffer) | null = null;
  private flushing: Promise<void> | null = null;
  private closed = false;
  /** fdatasyncs of the log so far (group commit shares one among concurrent appends). */
  flushes = 0;

  private constructor(
    readonly dir: string,
    readonly name: string,
    gen: number,
    fd: number,
    logBytes: number,
  ) {
    this.gen = gen;
    this.fd = fd;
    this.logBytes = logBytes;
  }

  /** Opens (creating) the journal; returns it with what it holds. Synchronous: called at startup. */
  static open(dir: string, name: string): { journal: Journal; contents: JournalContents } {
    fs.mkdirSync(dir, { recursive: true });
    const snapFile = path.join(dir, `${name}.snap`);
    let gen = 0;
    let snapshot: Buffer | null = null;
    if (fs.existsSync(snapFile)) {
      const b = fs.readFileSync(snapFile);
      const { records } = parseRecords(b.subarray(8));
      if (b.length < 8 || b.readUInt32LE(0) !== SNAP_MAGIC || records.length !== 1) {
        throw new Error(`journal ${snapFile}: Expected a snapshot (magic, generation, one checksummed record) but received ${b.length} byte(s) that are not one`);
      }
      gen = b.readUInt32LE(4);
      snapshot = records[0]!;
    }
    // Logs of other generations are leftovers of an interrupted compaction.
    for (const f of fs.readdirSync(dir)) {
      const m = f.startsWith(`${name}.`) && f.endsWith('.log') ? /^(\d+)$/.exec(f.slice(name.length + 1, -4)) : null;
      if (m && Number(m[1]) !== gen) fs.rmSync(path.join(dir, f), { force: true });
    }
    const logFile = path.join(dir, `${name}.${gen}.log`);
    const fd = fs.openSync(logFile, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600);
    const buf = fs.readFileSync(logFile);
    const { records, end } = parseRecords(buf);
    if (end < buf.length) {
      fs.ftruncateSync(fd, end);
      fs.fsyncSync(fd);
    }
    return { journal: new Journal(dir, name, gen, fd, end), contents: { snapshot, records, tornBytes: buf.length - end } };
  }

  /** Bytes in the current log (what compaction would fold into the snapshot). */
  get size(): number {
    return this.logBytes;
  }

  /** Appends a record; resolves once it is on disk (shared fdatasync with every concurrent append). */
  append(payload: Buffer): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`journal ${this.name}: closed`));
    this.pending.push(frame(payload));
    return this.wait();
  }

  /**
   * Replaces the log by a snapshot. `take` is called when the snapshot is written, and must return
   * the state including every record appended so far (appends still pending are folded into it).
   */
  compact(take: () => Buffer): Promise<void> {
    if (this.closed) return Promise.reject(new Error(`journal ${this.name}: closed`));
    this.snapshotWanted = take;
    return this.wait();
  }

  /** Waits for pending appends, then closes the log. */
  async close(): Promise<void> {
    if (this.closed) return;
    while (this.flushing) await this.flushing;
    this.closed = true;
    fs.closeSync(this.fd);
  }

  /** Closes and deletes every file of the journal. */
  async remove(): Promise<void> {
    await this.close().catch(() => undefined);
    Journal.removeFiles(this.dir, this.name);
  }

  /** Deletes every file of a journal that is not open (nothing when there is none). */
  static removeFiles(dir: string, name: string): void {
    if (!fs.existsSync(dir)) return;
    for (const f of fs.readdirSync(dir)) {
      if (f === `${name}.snap` || f === `${name}.snap.tmp` || (f.startsWith(`${name}.`) && f.endsWith('.log'))) fs.rmSync(path.join(dir, f), { force: true });
    }
  }

  private wait(): Promise<void> {
    const p = new Promise<void>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (this.flushing === null) this.flushing = this.loop();
    return p;
  }

  /** Flushes until nothing waits; clears `flushing` in the same tick it finds nothing left. */
  private async loop(): Promise<void> {
    // Let the appends of this turn of the event loop join the first flush.
    await new Promise((r) => setImmediate(r));
    for (;;) {
      if (this.waiters.length === 0) {
        this.flushing = null;
        return;
      }
      const waiters = this.waiters.splice(0);
      try {
        if (this.snapshotWanted !== null) {
          const take = this.snapshotWanted;
          this.snapshotWanted = null;
          this.pending = []; // in the snapshot
          await this.writeSnapshot(take());
        } else {
          const bufs = this.pending.splice(0);
          const bytes = bufs.reduce((a, b) => a + b.length, 0);
          await new Promise<void>((res, rej) => fs.writev(this.fd, bufs, this.logBytes, (e) => (e ? rej(e) : res())));
          await new Promise<void>((res, rej) => fs.fdatasync(this.fd, (e) => (e ? rej(e) : res())));
          this.flushes++;
          this.logBytes += bytes;
        }
        for (const w of waiters) w.resolve();
      } catch (e) {
        const err = new Error(`journal ${path.join(this.dir, this.name)}: ${e instanceof Error ? e.message : String(e)}`);
        for (const w of waiters) w.reject(err);
      }
    }
  }

  private async writeSnapshot(state: Buffer): Promise<void> {
    const next = this.gen + 1;
    const head = Buffer.allocUnsafe(8);
    head.writeUInt32LE(SNAP_MAGIC, 0);
    head.writeUInt32LE(next, 4);
    const snapFile = path.join(this.dir, `${this.name}.snap`);
    const tmp = `${snapFile}.tmp`;
    const newLog = path.join(this.dir, `${this.name}.${next}.log`);
    const oldLog = path.join(this.dir, `${this.name}.${this.gen}.log`);
    // The new (empty) log exists before the snapshot that names it.
    const fd = fs.openSync(newLog, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_TRUNC, 0o600);
    await fs.promises.writeFile(tmp, Buffer.concat([head, frame(state)]), { mode: 0o600 });
    const tfd = fs.openSync(tmp, 'r');
    try {
      await new Promise<void>((res, rej) => fs.fsync(tfd, (e) => (e ? rej(e) : res())));
    } finally {
      fs.closeSync(tfd);
    }
    fs.renameSync(tmp, snapFile);
    fsyncDir(this.dir);
    fs.closeSync(this.fd);
    this.fd = fd;
    this.gen = next;
    this.logBytes = 0;
    fs.rmSync(oldLog, { force: true });
  }
}
