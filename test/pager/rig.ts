// A pager over the fake kernel, fault thread, page cache and store, with helpers to run a fake
// process and wait until everything is quiet.

import { Pager, type PagerLog, type PagerOptions } from '../../daemon/pager';
import type { Prefetcher } from '../../daemon/prefetch/types';
import type { OnUnavailable } from '../../daemon/regions/types';
import { FakeFaultThread, FakeKernel, FakePageCache, type FakeMapping } from '../helpers/fake-native';
import { FakeStore } from '../helpers/fake-store';

export const PS = 4096;

export class MemoryLog implements PagerLog {
  readonly lines: { level: string; msg: string; obj: object }[] = [];
  debug(obj: object, msg: string): void { this.lines.push({ level: 'debug', msg, obj }); }
  info(obj: object, msg: string): void { this.lines.push({ level: 'info', msg, obj }); }
  warn(obj: object, msg: string): void { this.lines.push({ level: 'warn', msg, obj }); }
  error(obj: object, msg: string): void { this.lines.push({ level: 'error', msg, obj }); }
  count(msg: string): number {
    return this.lines.filter((l) => l.msg === msg).length;
  }
}

export interface RigOptions {
  pages?: number;
  budgetPages?: number;
  cacheBytes?: number | null;
  prefetcher?: Prefetcher | null;
  onUnavailable?: OnUnavailable;
  pager?: Partial<PagerOptions>;
}

export class Rig {
  readonly kernel = new FakeKernel(PS);
  readonly cache: FakePageCache | null;
  readonly store = new FakeStore();
  readonly log = new MemoryLog();
  readonly pager: Pager;
  readonly thread: FakeFaultThread;
  readonly memfd: number;
  readonly key = 7;
  readonly regionId = '00000000-0000-4000-8000-000000000007';
  readonly pages: number;
  readonly gone: number[] = [];
  private nextAttachment = 1;

  constructor(o: RigOptions = {}) {
    this.pages = o.pages ?? 64;
    this.cache = o.cacheBytes === null ? null : new FakePageCache(o.cacheBytes ?? 1 << 20);
    this.pager = new Pager({
      ops: this.kernel, cache: this.cache, log: this.log, retryInitialMs: 1, retryMaxMs: 4,
      onAttachmentGone: (id) => {
        this.gone.push(id);
        this.thread.remove(id);
      },
      ...o.pager,
    });
    this.thread = new FakeFaultThread(this.kernel, this.cache, this.pager.onEvents);
    this.memfd = this.kernel.createMemfd(this.pages * PS);
    this.pager.addRegion({
      key: this.key, name: 'test', ref: { id: this.regionId, pageSize: PS }, sizeBytes: this.pages * PS,
      residentBytes: (o.budgetPages ?? 0) * PS, onUnavailable: o.onUnavailable ?? 'wait', memfd: this.memfd,
      store: this.store, prefetcher: o.prefetcher ?? null,
    });
  }

  /** A process attaches: maps the memfd, registers, the daemon adds it to the pager and the fault thread. */
  attach(opts: { writeProtect?: boolean } = {}): FakeMapping & { attachment: number } {
    const m = this.kernel.map(this.memfd, opts);
    const attachment = this.nextAttachment++;
    const info = { attachment, region: this.key, uffd: m.uffd, pid: 4000 + attachment, base: m.base, length: m.length, writeProtect: m.wpCapable };
    this.pager.attach(info);
    this.thread.add({ attachment, uffd: m.uffd, pidfd: null, region: this.key, start: m.base, length: m.length, pageSize: PS, writeProtect: m.wpCapable });
    return Object.assign(m, { attachment });
  }

  read(m: FakeMapping, page: number): Promise<Buffer> {
    return this.kernel.access(m, page);
  }

  write(m: FakeMapping, page: number, data: Buffer, offset = 0): Promise<Buffer> {
    return this.kernel.access(m, page, { offset, data });
  }

  stats() {
    return this.pager.stats(this.key);
  }

  /** Waits until the pager, the fault thread and the store have nothing left to do. */
  async settle(): Promise<void> {
    let quiet = 0;
    for (let i = 0; i < 100_000; i++) {
      await new Promise((resolve) => setImmediate(resolve));
      if (this.pager.busy() || this.thread.busy() || this.store.pendingWrites > 0) {
        quiet = 0;
        if (i % 50 === 49) await new Promise((resolve) => setTimeout(resolve, 1)); // let backoff timers fire
      } else if (++quiet >= 3) {
        return;
      }
    }
    throw new Error('the pager never became idle');
  }

  /** Awaits a process access, failing if it is still blocked once everything is quiet (a lost wake-up). */
  async done<T>(p: Promise<T>): Promise<T> {
    let settled = false;
    const watched = p.finally(() => (settled = true));
    await this.settle();
    if (!settled) throw new Error(`an access is still blocked with the pager idle (${this.kernel.blocked()} blocked)`);
    return watched;
  }
}

/** A page of `byte`, or a page whose bytes derive from a seed. */
export function page(byte: number): Buffer {
  return Buffer.alloc(PS, byte);
}

/** A deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
