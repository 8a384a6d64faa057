// PAGEMAP_SCAN through the addon, against real processes: the test's own and a child application
// (test/workloads/dirty_child.c) whose memfd region is registered with its own uffd. Also the
// kernel facts the evictor's correctness rests on: an async-WP write after "scan says clean" is not
// blocked (so a punch can lose it), a sync-WP write waits until the handler lets it go.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { NativeError, pagemapOpen, pagemapScan } from '../../daemon/native';
import { rootUnavailable, userfaultfdUnavailable } from '../helpers/env';

const PAGE = 4096n;
const CHILD = path.join(__dirname, '..', '..', '..', 'test', 'workloads', 'bin', 'dirty_child');

function scanUnavailable(): string | null {
  const r = rootUnavailable() ?? userfaultfdUnavailable();
  if (r !== null) return r;
  if (!fs.existsSync(CHILD)) return `${CHILD} is not built (npm run build)`;
  const [a, b] = stackRange();
  const fd = pagemapOpen(process.pid);
  try {
    pagemapScan(fd, a, b, { categoryMask: ['PRESENT'] });
    return null;
  } catch (e) {
    return `this kernel has no PAGEMAP_SCAN (Linux 6.7+): ${(e as Error).message}`;
  } finally {
    fs.closeSync(fd);
  }
}
const skip = scanUnavailable() ?? false;

function stackRange(): [bigint, bigint] {
  const line = fs.readFileSync('/proc/self/maps', 'utf8').split('\n').find((l) => l.endsWith('[stack]'));
  assert.ok(line, 'no [stack] in /proc/self/maps');
  const [a, b] = line.split(' ')[0]!.split('-');
  return [BigInt(`0x${a}`), BigInt(`0x${b}`)];
}

/** The child application, driven one command line at a time. */
class App {
  readonly proc: ChildProcessWithoutNullStreams;
  private readonly lines: string[] = [];
  private waiter: ((l: string) => void) | null = null;
  base = 0n;
  memfd = -1;

  constructor(mode: 'sync' | 'async', pages: number) {
    this.proc = spawn(CHILD, [mode, String(pages)]);
    this.proc.stderr.on('data', (d: Buffer) => process.stderr.write(d));
    readline.createInterface({ input: this.proc.stdout }).on('line', (l) => {
      if (this.waiter) {
        const w = this.waiter;
        this.waiter = null;
        w(l);
      } else this.lines.push(l);
    });
  }

  static async start(mode: 'sync' | 'async', pages: number): Promise<App> {
    const app = new App(mode, pages);
    const ready = (await app.next()).split(' ');
    assert.equal(ready[0], 'ready', ready.join(' '));
    app.base = BigInt(`0x${ready[1]}`);
    app.memfd = Number(ready[2]);
    return app;
  }

  next(): Promise<string> {
    const l = this.lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((resolve) => (this.waiter = resolve));
  }

  /** Lines already printed and not yet taken. */
  pending(): string[] {
    return [...this.lines];
  }

  async do(cmd: string, expect: string): Promise<void> {
    this.proc.stdin.write(`${cmd}\n`);
    assert.equal(await this.next(), expect);
  }

  page(p: number): bigint {
    return this.base + BigInt(p) * PAGE;
  }

  /** The page as the daemon sees it: pread on the memfd, which never allocates a hole. */
  pread(p: number): Buffer {
    const fd = fs.openSync(`/proc/${this.proc.pid}/fd/${this.memfd}`, 'r');
    try {
      const b = Buffer.alloc(Number(PAGE));
      fs.readSync(fd, b, 0, b.length, p * Number(PAGE));
      return b;
    } finally {
      fs.closeSync(fd);
    }
  }

  stop(): void {
    this.proc.kill('SIGKILL');
  }
}

function pages(app: App, regions: { start: bigint; end: bigint }[]): number[] {
  const out: number[] = [];
  for (const r of regions) for (let a = r.start; a < r.end; a += PAGE) out.push(Number((a - app.base) / PAGE));
  return out;
}

const written = { categoryMask: ['WRITTEN' as const] };
const rearm = { categoryMask: ['WRITTEN' as const], wpMatching: true, checkWpAsync: true };

test('pagemapScan on the test process itself finds its present stack pages', { skip }, () => {
  const [a, b] = stackRange();
  const fd = pagemapOpen(process.pid);
  try {
    const r = pagemapScan(fd, a, b, { categoryMask: ['PRESENT'], returnMask: ['PRESENT', 'FILE'] });
    assert.equal(r.walkEnd, b);
    assert.ok(r.regions.length > 0);
    for (const x of r.regions) {
      assert.ok(x.start >= a && x.end <= b && x.start < x.end);
      assert.deepEqual(x.categories, ['PRESENT']);
    }
  } finally {
    fs.closeSync(fd);
  }
});

test('async WP: never-populated pages read as written until the first matching scan arms them', { skip }, async (t) => {
  const app = await App.start('async', 4);
  t.after(() => app.stop());
  const fd = pagemapOpen(app.proc.pid!);
  t.after(() => fs.closeSync(fd));
  const end = app.page(4);
  // Registering protects nothing: every page reads as written.
  assert.deepEqual(pagemapScan(fd, app.base, end, written), { regions: [{ start: app.base, end, categories: ['WRITTEN'] }], walkEnd: end });
  assert.deepEqual(pages(app, pagemapScan(fd, app.base, end, rearm).regions), [0, 1, 2, 3]);
  assert.deepEqual(pagemapScan(fd, app.base, end, written).regions, []);

  await app.do('write 2 7', 'wrote 2');
  assert.deepEqual(pagemapScan(fd, app.base, end, { categoryMask: ['WRITTEN'], returnMask: ['WRITTEN', 'PRESENT', 'FILE'] }).regions, [
    { start: app.page(2), end: app.page(3), categories: ['WRITTEN', 'FILE', 'PRESENT'] },
  ]);
  assert.deepEqual(pages(app, pagemapScan(fd, app.base, end, rearm).regions), [2]);
  assert.deepEqual(pagemapScan(fd, app.base, end, written).regions, []);
});

test('async WP: the scan finds exactly the written pages across more regions than one ioctl returns, and maxPages stops the walk', { skip }, async (t) => {
  const n = 2048;
  const app = await App.start('async', n);
  t.after(() => app.stop());
  const fd = pagemapOpen(app.proc.pid!);
  t.after(() => fs.closeSync(fd));
  const end = app.page(n);
  pagemapScan(fd, app.base, end, rearm);
  // Every other page from page 1: 1024 separate regions, twice the addon's vec of 512.
  await app.do(`writen 1 ${n / 2} 2 9`, 'wrote 1');
  const part = pagemapScan(fd, app.base, end, { ...written, maxPages: 10 });
  assert.deepEqual(pages(app, part.regions), [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]);
  // The kernel stops somewhere after the 10th match; the rest of the walk continues from there.
  assert.ok(part.walkEnd > app.page(19) && part.walkEnd < end, String(part.walkEnd - app.base));
  const rest = pagemapScan(fd, part.walkEnd, end, written);
  assert.equal(rest.walkEnd, end);
  assert.deepEqual([...pages(app, part.regions), ...pages(app, rest.regions)], Array.from({ length: n / 2 }, (_, i) => 2 * i + 1));
  const all = pagemapScan(fd, app.base, end, rearm);
  assert.equal(all.walkEnd, end);
  assert.deepEqual(pages(app, all.regions), Array.from({ length: n / 2 }, (_, i) => 2 * i + 1));
  assert.deepEqual(pagemapScan(fd, app.base, end, written).regions, []);
});

test('async WP cannot guard an eviction: a write after the scan re-protected the page is not blocked, and the punch loses it', { skip }, async (t) => {
  const app = await App.start('async', 4);
  t.after(() => app.stop());
  const fd = pagemapOpen(app.proc.pid!);
  t.after(() => fs.closeSync(fd));
  const end = app.page(4);
  pagemapScan(fd, app.base, end, rearm);
  await app.do('write 1 65', 'wrote 1');
  // Evictor: scan says page 1 is dirty and re-protects it; read it for write-back.
  assert.deepEqual(pages(app, pagemapScan(fd, app.base, end, rearm).regions), [1]);
  const saved = app.pread(1);
  assert.ok(saved.every((b) => b === 65));
  // The application writes again: nothing blocks it (no handler exists), the store lands at once.
  await app.do('write 1 66', 'wrote 1');
  assert.ok(app.pread(1).every((b) => b === 66));
  // The evictor punches, believing the saved copy is current: the 66s are gone from everywhere.
  await app.do('punch 1', 'punched 1');
  await app.do('read 1', 'read 1 0 0');
  assert.ok(saved.every((b) => b === 65), 'the written-back copy never had the second write');
});

test('sync WP guards an eviction: the writer waits in a WP fault through read, punch and refetch, and nothing is lost', { skip }, async (t) => {
  const app = await App.start('sync', 4);
  t.after(() => app.stop());
  const fd = pagemapOpen(app.proc.pid!);
  t.after(() => fs.closeSync(fd));
  await app.do('copywp 0 65', 'copied 0');
  await app.do('copywp 1 65', 'copied 1');
  // The installed pages are present, write-protected (not WRITTEN), in the memfd (FILE).
  assert.deepEqual(pagemapScan(fd, app.base, app.page(4), { categoryMask: ['PRESENT'], returnMask: ['PRESENT', 'WRITTEN', 'FILE'] }).regions, [
    { start: app.page(0), end: app.page(2), categories: ['FILE', 'PRESENT'] },
  ]);
  const saved = app.pread(1);
  // The write raises a WP fault; the writer sleeps in it.
  await app.do('write 1 66', 'wp-fault 1');
  assert.ok(app.pread(1).every((b) => b === 65), 'the store must not land while the fault is unresolved');
  await app.do('punch 1', 'punched 1');
  assert.deepEqual(app.pending(), [], 'the writer must still be blocked after the punch');
  // Woken after the punch, the writer faults MISSING and gets the written-back bytes, then writes.
  await app.do('wake 1', 'woken 1');
  assert.equal(await app.next(), 'missing-fault 1');
  assert.deepEqual(app.pending(), []);
  // The handler thread says 'copied' and the woken writer 'wrote': two threads, either order.
  app.proc.stdin.write(`copy 1 ${saved[0]}\n`);
  assert.deepEqual([await app.next(), await app.next()].sort(), ['copied 1', 'wrote 1']);
  await app.do('read 1', 'read 1 66 66');
  await app.do('read 0', 'read 0 65 65');
});

test('sync WP: a write waits until the handler resolves the fault', { skip }, async (t) => {
  const app = await App.start('sync', 2);
  t.after(() => app.stop());
  await app.do('copywp 0 1', 'copied 0');
  await app.do('write 0 2', 'wp-fault 0');
  assert.ok(app.pread(0).every((b) => b === 1));
  assert.deepEqual(app.pending(), []);
  await app.do('resolve 0', 'resolved 0');
  assert.equal(await app.next(), 'wrote 0');
  assert.ok(app.pread(0).every((b) => b === 2));
});

test('pagemapOpen of a process that does not exist is ENOENT', { skip: rootUnavailable() ?? false }, () => {
  assert.throws(() => pagemapOpen(2147483647), (e: unknown) => {
    assert.ok(e instanceof NativeError);
    assert.equal(e.message, 'open /proc/2147483647/pagemap: No such file or directory (ENOENT)');
    assert.equal(e.code, 'ENOENT');
    assert.equal(e.syscall, 'open /proc/2147483647/pagemap');
    return true;
  });
});

test('pagemapScan with checkWpAsync on memory without an async-WP uffd is EPERM', { skip }, () => {
  const [a, b] = stackRange();
  const fd = pagemapOpen(process.pid);
  try {
    assert.throws(() => pagemapScan(fd, a, b, { ...written, checkWpAsync: true }), {
      name: 'NativeError',
      code: 'EPERM',
      message: 'ioctl PAGEMAP_SCAN: Operation not permitted (EPERM)',
    });
  } finally {
    fs.closeSync(fd);
  }
});

test('pagemapOpen and pagemapScan reject bad arguments in TypeScript', () => {
  const bad = (f: () => unknown, message: string) => assert.throws(f, { name: 'TypeError', message });
  bad(() => pagemapOpen(0), 'Expected a positive process id for pid but received 0');
  bad(() => pagemapOpen(1.5), 'Expected a positive process id for pid but received 1.5');
  bad(() => pagemapScan(-1, 0n, 0n), 'Expected a file descriptor for fd but received -1');
  bad(() => pagemapScan(3, 4097n, 8192n, written), 'Expected a page-aligned address (bigint) for start but received 4097n');
  bad(() => pagemapScan(3, 4096 as unknown as bigint, 8192n, written), 'Expected a page-aligned address (bigint) for start but received 4096');
  bad(() => pagemapScan(3, 8192n, 4096n, written), 'Expected a page-aligned address (bigint) not below start (8192n) for end but received 4096n');
  bad(() => pagemapScan(3, 4096n, 8193n, written), 'Expected a page-aligned address (bigint) not below start (4096n) for end but received 8193n');
  bad(
    () => pagemapScan(3, 0n, 4096n, { categoryMask: ['DIRTY' as never] }),
    'Expected an array of WPALLOWED|WRITTEN|FILE|PRESENT|SWAPPED|PFNZERO|HUGE|SOFT_DIRTY|GUARD for opts.categoryMask but received ["DIRTY"]',
  );
  bad(() => pagemapScan(3, 0n, 4096n, { categoryMask: ['WRITTEN'], categoryInverted: ['PRESENT'] }), 'Expected categories of categoryMask or anyofMask for opts.categoryInverted but received ["PRESENT"]');
  bad(() => pagemapScan(3, 0n, 4096n, {}), 'Expected at least one category for opts.returnMask but received []');
  bad(() => pagemapScan(3, 0n, 4096n, { ...written, wpMatching: 1 as never }), 'Expected a boolean for opts.wpMatching but received 1');
  bad(() => pagemapScan(3, 0n, 4096n, { ...written, maxPages: -1 }), 'Expected a non-negative integer for opts.maxPages but received -1');
  bad(() => pagemapScan(3, 0n, 4096n, null as never), 'Expected an object for opts but received null');
});
