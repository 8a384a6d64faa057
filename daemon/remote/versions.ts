// Page versions for write-backs. Memory servers refuse to let a lower version overwrite a higher one
// (memory.proto, WritePages.versions), so a write that times out and lands late, after a newer
// write-back or a repair copy, cannot turn a replica stale. That only holds if versions never go back:
// every write-back of a page must get a higher version than any earlier one of this daemon, in this
// life or a previous one. A version that went back would be worse than none: the servers would
// silently keep the older bytes.
//
// The choice: a hybrid logical clock in microseconds, next = max(last + 1, wall clock in µs), with a
// persisted ceiling. It needs no coordination between the daemon's pools (one clock per state file)
// and stays below 2^53 (a JS number, a Float64Array slot on the server) until the year 2255. A
// persisted epoch with a counter in the low bits would need the counter's width fixed up front: 2^53
// leaves room for either many restarts or many writes per life, not both.
// Across restarts: before issuing versions up to a ceiling, the ceiling is written (fsync, rename) to
// the state dir; a restarted daemon starts above the last ceiling, so even a wall clock that went back
// (or versions that ran ahead of it in a burst) cannot make it reissue a lower version. A ceiling is
// reserved RESERVE_US ahead (about 18 minutes of wall clock): the disk is touched once per reserve.
// Without a state dir the wall clock alone keeps versions increasing across restarts.
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomicSync } from '../util/atomic-write';

/** Versions reserved past the persisted ceiling at a time (~18 min of wall clock). */
export const RESERVE_US = 2 ** 30;

function nowUs(): number {
  return Date.now() * 1000;
}

const clocks = new Map<string, VersionClock>();

export class VersionClock {
  private last: number;
  private ceiling: number;

  /**
   * file: where the ceiling is kept (null: memory only). Throws when the file holds something other
   * than a version: starting below versions already issued would lose writes.
   */
  constructor(readonly file: string | null, private readonly reserveUs = RESERVE_US, private readonly now: () => number = nowUs) {
    const floor = file === null ? 0 : readCeiling(file);
    this.last = Math.max(floor, this.now());
    this.ceiling = this.last;
    this.reserve(this.last);
  }

  /** The one clock of a state file in this process (every pool of the daemon shares it). */
  static forFile(file: string | null): VersionClock {
    if (file === null) return new VersionClock(null);
    const key = path.resolve(file);
    let c = clocks.get(key);
    if (c === undefined) {
      c = new VersionClock(key);
      clocks.set(key, c);
    }
    return c;
  }

  /** A version higher than every one issued before (by this clock, or by the daemon before a restart). */
  next(): number {
    const v = Math.max(this.last + 1, this.now());
    if (v > this.ceiling) this.reserve(v);
    this.last = v;
    return v;
  }

  /** The highest version issued so far. */
  get current(): number {
    return this.last;
  }

  private reserve(from: number): void {
    const ceiling = from + this.reserveUs;
    if (this.file !== null) writeCeiling(this.file, ceiling);
    this.ceiling = ceiling;
  }
}

function readCeiling(file: string): number {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return 0;
    throw new Error(`page versions: read ${file}: ${e instanceof Error ? e.message : String(e)}`);
  }
  const v = Number(text.trim());
  if (text.trim() === '' || !Number.isSafeInteger(v) || v < 0) {
    throw new Error(`page versions: Expected a version ceiling (an integer below 2^53) in ${file} but received ${JSON.stringify(text.slice(0, 40))} (remove the file to start from the wall clock)`);
  }
  return v;
}

function writeCeiling(file: string, ceiling: number): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeFileAtomicSync(file, `${ceiling}\n`);
}
