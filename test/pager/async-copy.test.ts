// Guesses copied off the JS thread (PagerOps.copyAsync): the pages stay in flight until the copy is
// done, so a fault on one waits for it and is resumed by the copy; they count against the budget
// meanwhile; what a copy could not install goes the synchronous way. The fake kernel holds each
// asynchronous copy until the test releases it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { FaultInfo, Prefetcher } from '../../daemon/prefetch/types';
import { NativeError } from '../../daemon/native';
import { page, Rig } from './rig';

/** Guesses the next `n` pages after every fault, and records the feedback. */
class NextN implements Prefetcher {
  readonly name = 'next-n';
  readonly used: number[] = [];
  readonly wasted: number[] = [];
  constructor(private readonly n: number) {}
  onFault(f: FaultInfo): number[] {
    return Array.from({ length: this.n }, (_, i) => f.page + 1 + i);
  }
  onPrefetchUsed(p: number): void { this.used.push(p); }
  onPrefetchWasted(p: number): void { this.wasted.push(p); }
  reset(): void {}
}

const tick = () => new Promise((resolve) => setImmediate(resolve));

async function until(rig: Rig, what: string, ok: () => boolean): Promise<void> {
  for (let i = 0; i < 10_000 && !ok(); i++) await tick();
  assert.ok(ok(), what);
}

function filled(rig: Rig, pages: number): void {
  rig.store.data.set(rig.regionId, new Map(Array.from({ length: pages }, (_, p) => [p, page(p + 1)] as [number, Buffer])));
}

/** A 16-page region whose first fault (page 0) is served and has sent its 4 guesses to a held copy. */
async function copyOut(): Promise<{ rig: Rig; a: ReturnType<Rig['attach']>; pf: NextN }> {
  const pf = new NextN(4);
  const rig = new Rig({ pages: 16, prefetcher: pf });
  rig.kernel.asyncCopies();
  filled(rig, 16);
  const a = rig.attach();
  await rig.read(a, 0);
  await until(rig, 'the copy is out', () => rig.kernel.calls.includes(`copy-async ${a.uffd} 4`));
  return { rig, a, pf };
}

/** A read of page p, one of the guesses being copied: checked to wait for the copy (`read` ends with it). */
async function readDuringCopy(rig: Rig, a: ReturnType<Rig['attach']>, p: number): Promise<{ read: Promise<Buffer> }> {
  let got: Buffer | null = null;
  const read = rig.read(a, p).then((b) => (got = b));
  for (let i = 0; i < 50; i++) await tick();
  assert.equal(got, null, `the read of page ${p} waits while its page is being copied`);
  return { read };
}

test('guesses copied off the JS thread: in flight until the copy is done, then resident and untouched', async () => {
  const pf = new NextN(4);
  const rig = new Rig({ pages: 16, prefetcher: pf });
  rig.kernel.asyncCopies();
  filled(rig, 16);
  const a = rig.attach();
  const r0 = rig.read(a, 0);
  await until(rig, 'the run of guesses is handed to a copy', () => rig.kernel.calls.includes(`copy-async ${a.uffd} 4`));
  assert.deepEqual(await r0, page(1), 'the faulting page itself is installed at once');
  assert.equal(rig.stats().residentPages, 1, 'guesses are not resident before their copy is done');
  assert.equal(rig.stats().inFlight, 4);
  assert.equal(rig.kernel.releaseCopies(), 1);
  await rig.settle();
  const s = rig.stats();
  assert.equal(s.residentPages, 5);
  assert.equal(s.inFlight, 0);
  assert.equal(s.prefetch.issued, 4);
  for (let p = 1; p <= 4; p++) assert.deepEqual(await rig.done(rig.read(a, p)), page(p + 1), `page ${p}`);
  assert.equal(rig.store.readPages, 5, 'no page read twice, and reads of installed guesses raise no fault');
});

test('a fault on a guess being copied waits for the copy, is resumed by it, and counts as used', async () => {
  const { rig, a, pf } = await copyOut();
  const { read: r2 } = await readDuringCopy(rig, a, 2);
  assert.equal(rig.stats().faults.joined, 1, 'the fault joined the page in flight (no second read)');
  // The held copies: 1-4, and 5-6 (guessed on the fault at 2).
  assert.equal(rig.kernel.releaseCopies(), 2);
  assert.deepEqual(await rig.done(r2), page(3));
  assert.deepEqual(pf.used, [2]);
  const copies = rig.kernel.calls.filter((c) => c.startsWith(`copy ${a.uffd} 2`));
  assert.equal(copies.length, 1, `page 2 was copied once: ${rig.kernel.calls.join(', ')}`);
  // 2 was touched: not an untouched guess (those are evicted first and reported wasted).
  rig.pager.evictAll(rig.key);
  assert.ok(!pf.wasted.includes(2), `wasted ${pf.wasted}`);
});

test('guesses being copied count against the budget: the next ones go to the cache', async () => {
  const pf = new NextN(4);
  // A budget of 8 pages: the low watermark leaves room for the first run of guesses only.
  const rig = new Rig({ pages: 64, budgetPages: 8, prefetcher: pf });
  rig.kernel.asyncCopies();
  filled(rig, 64);
  const a = rig.attach();
  await rig.read(a, 0);
  await until(rig, 'the first copy is out', () => rig.kernel.calls.filter((c) => c.startsWith('copy-async')).length === 1);
  // A second fault while the first run is still being copied: no room left for its guesses.
  await rig.read(a, 20);
  for (let i = 0; i < 50; i++) await tick();
  assert.equal(rig.kernel.calls.filter((c) => c.startsWith('copy-async')).length, 1, 'no second run copied in');
  assert.ok([21, 22, 23, 24].every((p) => rig.cache!.has(rig.key, p)), 'staged in the cache instead');
  rig.kernel.releaseCopies();
  await rig.settle();
  assert.ok(rig.stats().residentPages <= 8, `resident ${rig.stats().residentPages}`);
});

test('a copy that meets a page already there installs the rest synchronously; a process gone mid-copy loses nothing', async () => {
  const { rig, a } = await copyOut();
  // Page 2 gets into the memfd another way before the copy runs.
  rig.kernel.memfds.get(rig.memfd)!.pages.set(2, page(99));
  rig.kernel.releaseCopies();
  await rig.settle();
  assert.equal(rig.stats().inFlight, 0);
  assert.deepEqual(await rig.done(rig.read(a, 2)), page(99), 'never overwritten');
  assert.deepEqual(await rig.done(rig.read(a, 3)), page(4), 'the rest of the run went in');

  // The process goes away while a run is being copied: the copy fails (gone), and the guesses are
  // placed as for an attachment that is gone (staged in the cache for the next process), not lost.
  const { rig: rig2, a: b } = await copyOut();
  rig2.kernel.kill(b);
  rig2.kernel.releaseCopies();
  await rig2.settle();
  assert.deepEqual(rig2.gone, [b.attachment]);
  assert.equal(rig2.stats().inFlight, 0);
  assert.ok([1, 2, 3, 4].every((p) => rig2.cache!.has(rig2.key, p)), 'staged for the next process');
});

test('a copy that fails for another reason than a process gone leaves no page in flight: they go in one by one', async () => {
  const { rig, a } = await copyOut();
  const { read: r3 } = await readDuringCopy(rig, a, 3);
  // The copies out (1-4, and the guesses of the fault on 3) all fail.
  assert.equal(rig.kernel.failCopies(new NativeError('UFFDIO_COPY: Cannot allocate memory (ENOMEM)', 'ENOMEM', 12, 'ioctl(UFFDIO_COPY)')), 2);
  assert.deepEqual(await rig.done(r3), page(4), 'the waiting fault is served');
  await rig.settle();
  rig.kernel.releaseCopies();
  await rig.settle();
  assert.equal(rig.stats().inFlight, 0);
  for (const p of [1, 2, 4]) assert.deepEqual(await rig.done(rig.read(a, p)), page(p + 1), `page ${p}`);
  assert.ok(rig.log.lines.some((l) => l.level === 'warn' && /off the JS thread failed/.test(l.msg)), 'said in the log');
});
