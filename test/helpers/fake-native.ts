// A fake kernel + FaultThread + PageCache behind the same interfaces as the real bindings
// (daemon/native.ts, daemon/pager/ops.ts), so pager and evictor logic can be tested fast and
// deterministically (temporal's MockNativeWorker).
//
// The model: a memfd is a map page → bytes (absent = hole). A mapping (one attachment) has a
// per-page write-protect bit that exists independently of the page (shmem pte markers), poison
// markers, and threads blocked in faults. A "process" accesses pages with access(): a hole raises a
// MISSING fault, a write to a protected page a WP fault; the access waits until woken, then retries —
// as the kernel does. By default punching a hole drops the markers of that page in every mapping
// (the pessimistic reading of the kernel), so the pager must re-protect where it matters.

import { NativeError, type CopyResult, type DataRange, type FaultEvent, type FaultRegistration, type FaultThreadStats, type IoctlOutcome, type NativeFaultThread, type NativePageCache, type PageCacheStats } from '../../daemon/native';
import type { PagerOps } from '../../daemon/pager/ops';

export interface FakeMapping {
  uffd: number;
  memfd: number;
  base: bigint;
  length: number;
  /** Registered for write-protect (else WP bits are ignored, as for MISSING-only registration). */
  wpCapable: boolean;
  wp: Set<number>;
  poison: Set<number>;
  waiters: Map<number, Set<{ wake: () => void; fail: (e: Error) => void }>>;
  dead: boolean;
  thread: FakeFaultThread | null;
  /** Faults raised while no fault thread reads this uffd: read when one is added (if still blocked). */
  unread: { page: number; write: boolean; wp: boolean; waiter: object }[];
}

interface FakeMemfd {
  size: number;
  pages: Map<number, Buffer>;
  maxPresent: number;
}

export type Injected = 'again' | 'exists' | 'ESRCH' | 'EBADF' | 'EINVAL' | 'ENOENT';

export class FakeKernel implements PagerOps {
  readonly pageSize: number;
  punchKeepsMarkers = false;
  readonly memfds = new Map<number, FakeMemfd>();
  readonly mappings = new Map<number, FakeMapping>();
  /** Every op, in order: 'copy 3 5 wp', 'pread 3 5', 'punch 3 5', 'write-back' markers are added by tests. */
  readonly calls: string[] = [];
  private readonly injections: { op: string; uffd: number | null; outcome: Injected }[] = [];
  private nextFd = 100;
  poisonSupported = true;
  poison: PagerOps['poison'];
  /**
   * Asynchronous copies (PagerOps.copyAsync): null (the default) offers none, so the pager copies
   * synchronously; asyncCopies() offers them, each held until releaseCopies() runs it as copy() would
   * and calls its done (the kernel's copy on a pool thread, finishing when the test says).
   */
  copyAsync: PagerOps['copyAsync'] = null;
  private readonly heldCopies: Array<() => void> = [];
  private readonly heldDone: Array<(err: Error | null, result: CopyResult | null) => void> = [];

  constructor(pageSize = 4096) {
    this.pageSize = pageSize;
    this.poison = (uffd, start, length, dontWake) => this.doPoison(uffd, start, length, dontWake);
  }

  asyncCopies(): void {
    this.copyAsync = (uffd, dst, data, wp, dontWake, done) => {
      this.calls.push(`copy-async ${uffd} ${data.length / this.pageSize}`);
      this.heldDone.push(done);
      this.heldCopies.push(() => {
        let res;
        try {
          res = this.copy(uffd, dst, data, wp, dontWake);
        } catch (e) {
          done(e as Error, null);
          return;
        }
        done(null, res);
      });
    };
  }

  /** Runs the held asynchronous copies, oldest first; returns how many. */
  releaseCopies(): number {
    const held = this.heldCopies.splice(0);
    this.heldDone.splice(0);
    for (const run of held) run();
    return held.length;
  }

  /** Ends the held asynchronous copies with err, copying nothing; returns how many. */
  failCopies(err: Error): number {
    const held = this.heldDone.splice(0);
    this.heldCopies.splice(0);
    for (const done of held) done(err, null);
    return held.length;
  }

  createMemfd(sizeBytes: number): number {
    const fd = this.nextFd++;
    this.memfds.set(fd, { size: sizeBytes, pages: new Map(), maxPresent: 0 });
    return fd;
  }

  /** A process maps the memfd and registers it with a new uffd. */
  map(memfd: number, opts: { writeProtect?: boolean } = {}): FakeMapping {
    const mf = this.memfd(memfd);
    const uffd = this.nextFd++;
    const m: FakeMapping = {
      uffd, memfd, base: 0x7f00_0000_0000n + BigInt(uffd) * 0x1_0000_0000n, length: mf.size,
      wpCapable: opts.writeProtect ?? true, wp: new Set(), poison: new Set(), waiters: new Map(), dead: false, thread: null, unread: [],
    };
    this.mappings.set(uffd, m);
    return m;
  }

  /** The process dies: its ioctls fail with ESRCH from now on; its blocked accesses fail. */
  kill(m: FakeMapping): void {
    m.dead = true;
    for (const set of m.waiters.values()) for (const w of set) w.fail(new Error('killed'));
    m.waiters.clear();
  }

  /** Makes the next `op` ('copy', 'zeropage', 'writeProtect', 'wake', 'punch') on uffd (or any) answer `outcome`. */
  inject(op: string, outcome: Injected, uffd: number | null = null): void {
    this.injections.push({ op, uffd, outcome });
  }

  /** Fills a page another way (pwrite into the memfd), e.g. while a fault on it waits. */
  fillBehind(memfd: number, page: number, data: Buffer): void {
    this.put(this.memfd(memfd), page, Buffer.from(data));
  }

  present(memfd: number, page: number): Buffer | null {
    const b = this.memfd(memfd).pages.get(page);
    return b === undefined ? null : Buffer.from(b);
  }

  presentCount(memfd: number): number {
    return this.memfd(memfd).pages.size;
  }

  maxPresent(memfd: number): number {
    return this.memfd(memfd).maxPresent;
  }

  /** Threads blocked in faults, over all mappings. */
  blocked(): number {
    let n = 0;
    for (const m of this.mappings.values()) for (const s of m.waiters.values()) n += s.size;
    return n;
  }

  /**
   * The process touches a page: resolves with the page's bytes after the access (a write copies
   * `data` at `offset` first), when it would resume; rejects with 'SIGBUS' on a poisoned page.
   */
  async access(m: FakeMapping, page: number, write: { offset: number; data: Buffer } | null = null): Promise<Buffer> {
    if (page < 0 || page * this.pageSize >= m.length) throw new Error(`access outside the mapping: page ${page}`);
    for (;;) {
      if (m.dead) throw new Error('killed');
      if (m.poison.has(page)) throw new Error('SIGBUS');
      const mem = this.memfd(m.memfd).pages.get(page);
      if (mem === undefined) {
        await this.fault(m, page, write !== null, false);
        continue;
      }
      if (write !== null && m.wpCapable && m.wp.has(page)) {
        await this.fault(m, page, true, true);
        continue;
      }
      if (write !== null) write.data.copy(mem, write.offset);
      return Buffer.from(mem);
    }
  }

  private fault(m: FakeMapping, page: number, write: boolean, wp: boolean): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let set = m.waiters.get(page);
      if (set === undefined) m.waiters.set(page, (set = new Set()));
      const w = { wake: resolve, fail: reject };
      set.add(w);
      // Queued after the waiter exists, as in the kernel: a wake before the handler reads it still wakes.
      if (m.thread !== null) m.thread.raise(m, page, write, wp);
      else m.unread.push({ page, write, wp, waiter: w });
    });
  }

  private wakeRange(m: FakeMapping, first: number, count: number): void {
    for (let p = first; p < first + count; p++) {
      const set = m.waiters.get(p);
      if (set === undefined) continue;
      m.waiters.delete(p);
      for (const w of set) w.wake();
    }
  }

  // ---------------------------------------------------------------------------------------------
  // PagerOps.

  copy(uffd: number, dst: bigint, data: Buffer, wp: boolean, dontWake: boolean): CopyResult {
    const { m, first, count } = this.range('copy', uffd, dst, data.length);
    const inj = this.injected('copy', uffd);
    if (inj === 'again') return { outcome: 'again', bytes: 0 };
    const mf = this.memfd(m.memfd);
    for (let i = 0; i < count; i++) {
      const p = first + i;
      if (mf.pages.has(p) || inj === 'exists') return { outcome: 'exists', bytes: i * this.pageSize };
      this.put(mf, p, Buffer.from(data.subarray(i * this.pageSize, (i + 1) * this.pageSize)));
      m.poison.delete(p);
      if (wp) m.wp.add(p);
      else m.wp.delete(p);
      this.calls.push(`copy ${m.uffd} ${p}${wp ? ' wp' : ''}`);
    }
    if (!dontWake) this.wakeRange(m, first, count);
    return { outcome: 'done', bytes: data.length };
  }

  zeropage(uffd: number, dst: bigint, length: number, dontWake: boolean): CopyResult {
    const { m, first, count } = this.range('zeropage', uffd, dst, length);
    const inj = this.injected('zeropage', uffd);
    if (inj === 'again') return { outcome: 'again', bytes: 0 };
    const mf = this.memfd(m.memfd);
    for (let i = 0; i < count; i++) {
      const p = first + i;
      if (mf.pages.has(p) || inj === 'exists') return { outcome: 'exists', bytes: i * this.pageSize };
      this.put(mf, p, Buffer.alloc(this.pageSize));
      m.poison.delete(p);
      m.wp.delete(p); // UFFDIO_ZEROPAGE has no WP mode: the page is writable
      this.calls.push(`zeropage ${m.uffd} ${p}`);
    }
    if (!dontWake) this.wakeRange(m, first, count);
    return { outcome: 'done', bytes: length };
  }

  wake(uffd: number, start: bigint, length: number): void {
    const { m, first, count } = this.range('wake', uffd, start, length);
    this.injected('wake', uffd);
    this.wakeRange(m, first, count);
  }

  writeProtect(uffd: number, start: bigint, length: number, protect: boolean, dontWake: boolean): IoctlOutcome {
    const { m, first, count } = this.range('writeProtect', uffd, start, length);
    // As the kernel (userfaultfd_writeprotect): protect with DONTWAKE is EINVAL.
    if (protect && dontWake) throw Object.assign(new Error('UFFDIO_WRITEPROTECT: Invalid argument (EINVAL)'), { code: 'EINVAL', errno: 22, syscall: 'UFFDIO_WRITEPROTECT' });
    if (this.injected('writeProtect', uffd) === 'again') return 'again';
    for (let p = first; p < first + count; p++) {
      if (protect) m.wp.add(p);
      else m.wp.delete(p);
    }
    if (count === 1) this.calls.push(`${protect ? 'protect' : 'unprotect'} ${m.uffd} ${first}`);
    if (!protect && !dontWake) this.wakeRange(m, first, count);
    return 'done';
  }

  private doPoison(uffd: number, start: bigint, length: number, dontWake: boolean): CopyResult {
    const { m, first, count } = this.range('poison', uffd, start, length);
    // Like the kernel: no poison over any pte marker, a uffd-wp one included (EEXIST, no wake).
    for (let p = first; p < first + count; p++) if (m.wp.has(p)) return { outcome: 'exists', bytes: 0 };
    for (let p = first; p < first + count; p++) m.poison.add(p);
    if (!dontWake) this.wakeRange(m, first, count);
    return { outcome: 'done', bytes: length };
  }

  pread(memfd: number, buffer: Buffer, offset: number): number {
    const mf = this.memfd(memfd);
    const p = this.pageOf(offset);
    const b = mf.pages.get(p);
    if (b === undefined) buffer.fill(0);
    else b.copy(buffer, 0, 0, buffer.length);
    this.calls.push(`pread ${memfd} ${p}`);
    return buffer.length;
  }

  punchHole(memfd: number, offset: number, length: number): void {
    const mf = this.memfd(memfd);
    this.injected('punch', null);
    const first = this.pageOf(offset);
    for (let p = first; p < first + length / this.pageSize; p++) {
      mf.pages.delete(p);
      this.calls.push(`punch ${memfd} ${p}`);
      if (!this.punchKeepsMarkers) for (const m of this.mappings.values()) if (m.memfd === memfd) m.wp.delete(p);
    }
  }

  hasData(memfd: number, offset: number): boolean {
    return this.memfd(memfd).pages.has(this.pageOf(offset));
  }

  dataRanges(memfd: number): DataRange[] {
    const pages = [...this.memfd(memfd).pages.keys()].sort((a, b) => a - b);
    return pages.map((p) => ({ offset: p * this.pageSize, length: this.pageSize }));
  }

  // ---------------------------------------------------------------------------------------------

  private memfd(fd: number): FakeMemfd {
    const mf = this.memfds.get(fd);
    if (mf === undefined) throw new NativeError(`memfd ${fd}: Bad file descriptor (EBADF)`, 'EBADF', 9, 'pread');
    return mf;
  }

  private put(mf: FakeMemfd, p: number, b: Buffer): void {
    mf.pages.set(p, b);
    mf.maxPresent = Math.max(mf.maxPresent, mf.pages.size);
  }

  private pageOf(offset: number): number {
    if (offset % this.pageSize !== 0) throw new Error(`unaligned offset ${offset}`);
    return offset / this.pageSize;
  }

  private range(op: string, uffd: number, start: bigint, length: number): { m: FakeMapping; first: number; count: number } {
    const m = this.mappings.get(uffd);
    if (m === undefined) throw new NativeError(`${op}: Bad file descriptor (EBADF)`, 'EBADF', 9, `ioctl(UFFDIO_${op.toUpperCase()})`);
    if (m.dead) throw new NativeError(`${op}: No such process (ESRCH)`, 'ESRCH', 3, `ioctl(UFFDIO_${op.toUpperCase()})`);
    const off = start - m.base;
    if (off < 0n || off % BigInt(this.pageSize) !== 0n || length % this.pageSize !== 0 || Number(off) + length > m.length) {
      throw new Error(`${op}: bad range ${start} + ${length}`);
    }
    return { m, first: Number(off) / this.pageSize, count: length / this.pageSize };
  }

  private injected(op: string, uffd: number | null): Injected | null {
    const i = this.injections.findIndex((x) => x.op === op && (x.uffd === null || x.uffd === uffd));
    if (i < 0) return null;
    const [inj] = this.injections.splice(i, 1);
    const out = inj!.outcome;
    if (out === 'ESRCH' || out === 'EBADF' || out === 'EINVAL' || out === 'ENOENT') {
      const errno = { ESRCH: 3, EBADF: 9, EINVAL: 22, ENOENT: 2 }[out];
      throw new NativeError(`${op}: injected (${out})`, out, errno, `ioctl(UFFDIO_${op.toUpperCase()})`);
    }
    return out;
  }
}

/** The FaultThread: answers MISSING faults from the cache itself (copy, WP unless a write), hands the rest to JS in batches. */
export class FakeFaultThread implements NativeFaultThread {
  private readonly kernel: FakeKernel;
  private readonly cache: NativePageCache | null;
  private readonly onEvents: (events: FaultEvent[]) => void;
  private readonly regs = new Map<number, FaultRegistration>();
  private queue: FaultEvent[] = [];
  private scheduled = false;
  private readonly counters: FaultThreadStats = { faults: 0, cacheHits: 0, batches: 0, events: 0 };

  constructor(kernel: FakeKernel, cache: NativePageCache | null, onEvents: (events: FaultEvent[]) => void) {
    this.kernel = kernel;
    this.cache = cache;
    this.onEvents = onEvents;
  }

  add(reg: FaultRegistration): void {
    const m = this.kernel.mappings.get(reg.uffd);
    if (m === undefined) throw new Error(`no mapping for uffd ${reg.uffd}`);
    this.regs.set(reg.uffd, reg);
    m.thread = this;
    // A fault woken before anyone read it is not delivered (the kernel builds the message at read time).
    const unread = m.unread;
    m.unread = [];
    for (const u of unread) if (m.waiters.get(u.page)?.has(u.waiter as never)) this.raise(m, u.page, u.write, u.wp);
  }

  remove(attachment: number): boolean {
    let found = false;
    for (const [uffd, reg] of this.regs) {
      if (reg.attachment !== attachment) continue;
      found = true;
      this.regs.delete(uffd);
      const m = this.kernel.mappings.get(uffd);
      if (m !== undefined) m.thread = null;
    }
    return found;
  }

  setAffinity(): void {}

  stats(): FaultThreadStats {
    return { ...this.counters };
  }

  stop(): void {
    this.regs.clear();
  }

  /** true while events wait to be handed to JS. */
  busy(): boolean {
    return this.queue.length > 0;
  }

  /** The process died: tell JS as the real thread does when the pidfd fires. */
  gone(m: FakeMapping): void {
    const reg = this.regs.get(m.uffd);
    if (reg === undefined) return;
    this.push({ kind: 'gone', attachment: reg.attachment, reason: 'exited', detail: null });
  }

  // Called from FakeKernel when a process faults ("from the fault thread").
  raise(m: FakeMapping, page: number, write: boolean, wp: boolean): void {
    const reg = this.regs.get(m.uffd);
    if (reg === undefined) return;
    this.counters.faults++;
    const address = m.base + BigInt(page) * BigInt(reg.pageSize);
    let resolved: 'cache' | null = null;
    if (!wp && this.cache !== null) {
      const data = this.cache.get(reg.region, page);
      if (data !== null) {
        const r = this.kernel.copy(m.uffd, address, data, reg.writeProtect && !write, false);
        if (r.outcome === 'done') {
          resolved = 'cache';
          this.counters.cacheHits++;
        }
      }
    }
    this.push({ kind: 'pagefault', attachment: reg.attachment, page, address, write, wp, minor: false, tid: 1000 + m.uffd, resolved });
  }

  private push(e: FaultEvent): void {
    this.queue.push(e);
    this.counters.events++;
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const batch = this.queue;
      this.queue = [];
      this.counters.batches++;
      this.onEvents(batch);
    });
  }
}

/** The native page cache: an LRU over (region, page) with a byte budget. Entries are copies. */
export class FakePageCache implements NativePageCache {
  private readonly map = new Map<string, Buffer>();
  private capacity: number;
  private bytes = 0;
  private readonly c = { hits: 0, misses: 0, inserts: 0, evictions: 0 };

  constructor(capacityBytes: number) {
    this.capacity = capacityBytes;
  }

  put(region: number, page: number, data: Buffer): boolean {
    if (data.length > this.capacity) return false;
    this.delete(region, page);
    this.map.set(`${region}:${page}`, Buffer.from(data));
    this.bytes += data.length;
    this.c.inserts++;
    this.shrink();
    return true;
  }

  get(region: number, page: number): Buffer | null {
    const k = `${region}:${page}`;
    const b = this.map.get(k);
    if (b === undefined) {
      this.c.misses++;
      return null;
    }
    this.map.delete(k);
    this.map.set(k, b);
    this.c.hits++;
    return Buffer.from(b);
  }

  has(region: number, page: number): boolean {
    return this.map.has(`${region}:${page}`);
  }

  delete(region: number, page: number): boolean {
    const k = `${region}:${page}`;
    const b = this.map.get(k);
    if (b === undefined) return false;
    this.map.delete(k);
    this.bytes -= b.length;
    return true;
  }

  dropRegion(region: number): number {
    let n = 0;
    for (const k of [...this.map.keys()]) {
      if (k.startsWith(`${region}:`)) {
        this.bytes -= this.map.get(k)!.length;
        this.map.delete(k);
        n++;
      }
    }
    return n;
  }

  setCapacity(bytes: number): void {
    this.capacity = bytes;
    this.shrink();
  }

  capacityBytes(): number {
    return this.capacity;
  }

  stats(): PageCacheStats {
    return { ...this.c, entries: this.map.size, bytes: this.bytes, capacityBytes: this.capacity };
  }

  private shrink(): void {
    while (this.bytes > this.capacity) {
      const [k, b] = this.map.entries().next().value as [string, Buffer];
      this.map.delete(k);
      this.bytes -= b.length;
      this.c.evictions++;
    }
  }
}
