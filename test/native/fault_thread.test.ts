// The FaultThread against the real kernel: fmwork children fault; JS resolves misses through the
// uffd they passed; cache hits are installed on the fault thread with no JS in the path.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addon, FaultThread, NativeError, PageCache, type FaultEvent } from '../../daemon/native';
import { userfaultfdUnavailable } from '../helpers/env';
import { startFmwork, type FmworkChild } from '../helpers/fmwork_child';
import { expectedChecksum, patternPage } from '../helpers/pattern';

const skip = userfaultfdUnavailable() ?? false;
const P = 4096;
const SEED = 77n;

type Fault = Extract<FaultEvent, { kind: 'pagefault' }>;

/** Collects events; resolves the misses of `child` (if given) with the pattern page, from JS. */
function collector(resolveFor: () => FmworkChild | null) {
  const events: FaultEvent[] = [];
  const waiters: { pred: (e: FaultEvent[]) => boolean; resolve: () => void }[] = [];
  const onEvents = (batch: FaultEvent[]) => {
    const child = resolveFor();
    for (const e of batch) {
      events.push(e);
      if (e.kind === 'pagefault' && e.resolved === null && child !== null) {
        const r = addon().uffdCopy(child.uffd, e.address, patternPage(SEED, e.page, P), false, false);
        assert.ok(r.outcome === 'done' || r.outcome === 'exists', `copy of page ${e.page}: ${r.outcome}`);
      }
    }
    for (const w of [...waiters]) if (w.pred(events)) (waiters.splice(waiters.indexOf(w), 1), w.resolve());
  };
  const until = (pred: (e: FaultEvent[]) => boolean) =>
    pred(events) ? Promise.resolve() : new Promise<void>((resolve) => waiters.push({ pred, resolve }));
  return { events, onEvents, until };
}

const faults = (evs: FaultEvent[], attachment: number) => evs.filter((e): e is Fault => e.kind === 'pagefault' && e.attachment === attachment);

function reg(child: FmworkChild, attachment: number, region: number, pidfd: number | null = null) {
  return { attachment, uffd: child.uffd, pidfd, region, start: child.address, length: child.length, pageSize: P, writeProtect: false };
}

test('JS resolves misses through the uffd; the child reads exactly those bytes', { skip }, async (t) => {
  const pages = 48;
  let child: FmworkChild | null = null;
  const c = collector(() => child);
  const ft = new FaultThread({ cpu: null, cache: null, onEvents: c.onEvents });
  t.after(() => ft.stop());
  child = await startFmwork({ pages, memfd: true, pattern: 'random:5', op: 'verify', seed: Number(SEED) });
  t.after(() => child!.close());
  ft.add(reg(child, 1, 3));
  child.go();
  const r = await child.done;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json!.mismatches, 0);
  assert.equal(r.json!.checksum, expectedChecksum('random:5', pages, 1, (i) => patternPage(SEED, i, P)));
  const f = faults(c.events, 1);
  assert.deepEqual(f.map((e) => e.page).sort((a, b) => a - b), [...Array(pages).keys()]);
  for (const e of f) {
    assert.equal(e.resolved, null);
    assert.equal(e.address, child.address + BigInt(e.page * P));
    assert.equal(e.write, false);
    assert.equal(e.wp, false);
    assert.equal(e.tid, child.pid, 'THREAD_ID: the faulting thread is fmwork main thread');
  }
  // The daemon side sees the installed bytes through the shared memfd without faulting them in.
  const buf = Buffer.alloc(P);
  addon().pread(child.memfd!, buf, 5 * P);
  assert.deepEqual(buf, patternPage(SEED, 5, P));
  const s = ft.stats();
  assert.equal(s.faults, pages);
  assert.equal(s.cacheHits, 0);
  assert.ok(s.events >= pages && s.batches >= 1 && s.batches <= s.events);
});

test('cache hits are installed on the fault thread without JS; misses still reach JS', { skip }, async (t) => {
  const pages = 64;
  const cache = new PageCache(1 << 20);
  let child: FmworkChild | null = null;
  let copiesFromJs = 0;
  const c = collector(() => child);
  const onEvents = (batch: FaultEvent[]) => {
    copiesFromJs += batch.filter((e) => e.kind === 'pagefault' && e.resolved === null).length;
    c.onEvents(batch);
  };
  const ft = new FaultThread({ cpu: 0, cache, onEvents });
  t.after(() => ft.stop());
  child = await startFmwork({ pages, memfd: true, pattern: 'seq', op: 'verify', seed: Number(SEED) });
  t.after(() => child!.close());
  for (let p = 0; p < pages; p += 2) cache.put(9, p, patternPage(SEED, p, P)); // even pages cached
  cache.put(10, 1, Buffer.alloc(P, 0xee)); // another region's page 1: must not be used
  ft.add(reg(child, 2, 9));
  child.go();
  const r = await child.done;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json!.mismatches, 0);
  await c.until((evs) => faults(evs, 2).length === pages); // cache hits are reported lazily (held up to 2 ms)
  const f = faults(c.events, 2);
  assert.equal(f.length, pages);
  for (const e of f) assert.equal(e.resolved, e.page % 2 === 0 ? 'cache' : null, `page ${e.page}`);
  assert.equal(copiesFromJs, pages / 2);
  assert.equal(ft.stats().cacheHits, pages / 2);
  const cs = cache.stats();
  assert.equal(cs.hits, pages / 2);
  assert.equal(cs.misses, pages / 2);
  assert.equal(cs.entries, 1, 'hits left the cache (exclusive of resident pages); region 10 stayed');
  assert.equal(cache.has(10, 1), true);
});

test('a write fault on a write-protect registration installs the cached page writable', { skip }, async (t) => {
  const pages = 16;
  const cache = new PageCache(1 << 20);
  const c = collector(() => null);
  const ft = new FaultThread({ cpu: null, cache, onEvents: c.onEvents });
  t.after(() => ft.stop());
  const child = await startFmwork({ pages, memfd: true, op: 'write', seed: 3, wp: true });
  t.after(() => child.close());
  for (let p = 0; p < pages; p++) cache.put(1, p, Buffer.alloc(P, p));
  ft.add({ ...reg(child, 3, 1), writeProtect: true });
  child.go();
  const r = await child.done;
  assert.equal(r.code, 0, r.stderr);
  // Had the page been installed write-protected, each write would have raised a WP fault that
  // nobody resolves, and fmwork would hang instead of exiting.
  await c.until((evs) => faults(evs, 3).length === pages);
  const f = faults(c.events, 3);
  assert.equal(f.length, pages);
  assert.ok(f.every((e) => e.write && !e.wp && e.resolved === 'cache'));
  assert.equal(r.json!.checksum, expectedChecksum('seq', pages, 1, (i) => patternPage(3n, i, P)));
});

test('adding and removing uffds while the thread runs', { skip }, async (t) => {
  const pages = 8;
  let current: FmworkChild | null = null;
  const c = collector(() => current);
  const ft = new FaultThread({ cpu: null, cache: null, onEvents: c.onEvents });
  t.after(() => ft.stop());
  const a = await startFmwork({ pages, memfd: true, op: 'verify', seed: Number(SEED) });
  t.after(() => a.close());
  const b = await startFmwork({ pages, memfd: true, op: 'verify', seed: Number(SEED) });
  t.after(() => b.close());
  ft.add(reg(a, 10, 1));
  ft.add(reg(b, 11, 1));
  assert.equal(ft.remove(11), true);
  assert.equal(ft.remove(11), false);
  current = a;
  a.go();
  assert.equal((await a.done).json!.mismatches, 0);
  assert.equal(ft.remove(10), true);
  // b faults after its uffd was removed: the thread must not see it. Serve b by hand from JS.
  b.go();
  let served = 0;
  while (served < pages) {
    for (const e of addon().uffdReadEvents(b.uffd, 64)) {
      assert.equal(e.kind, 'pagefault');
      if (e.kind !== 'pagefault') continue;
      const page = Number((e.address - b.address) / BigInt(P));
      addon().uffdCopy(b.uffd, e.address & ~BigInt(P - 1), patternPage(SEED, page, P), false, false);
      served++;
    }
    await new Promise((r) => setTimeout(r, 1));
  }
  assert.equal((await b.done).json!.mismatches, 0);
  assert.equal(faults(c.events, 11).length, 0);
  assert.equal(faults(c.events, 10).length, pages);
  // the same id can be added again once removed
  ft.add(reg(b, 10, 1));
  assert.equal(ft.remove(10), true);
});

test('the child dying while watched is a gone event, not a crash', { skip }, async (t) => {
  const c = collector(() => null);
  const ft = new FaultThread({ cpu: null, cache: null, onEvents: c.onEvents });
  t.after(() => ft.stop());
  const child = await startFmwork({ pages: 4, memfd: true });
  t.after(() => child.close());
  const pidfd = addon().pidfdOpen(child.pid);
  t.after(() => addon().closeFd(pidfd));
  ft.add(reg(child, 20, 1, pidfd));
  child.go();
  await c.until((evs) => faults(evs, 20).length === 1); // blocked in its first fault, unresolved
  child.proc.kill('SIGKILL');
  await c.until((evs) => evs.some((e) => e.kind === 'gone'));
  const gone = c.events.filter((e) => e.kind === 'gone');
  assert.deepEqual(gone, [{ kind: 'gone', attachment: 20, reason: 'exited', detail: null }]);
  assert.equal(ft.remove(20), true);
});

test('stop() joins the thread; it is idempotent; later calls are refused', { skip }, async () => {
  const ft = new FaultThread({ cpu: 1 % 2, cache: null, onEvents: () => undefined });
  ft.setAffinity(0);
  ft.setAffinity(null);
  ft.stop();
  ft.stop();
  assert.deepEqual(ft.stats(), { faults: 0, cacheHits: 0, batches: 0, events: 0 });
  assert.throws(() => ft.add({ attachment: 1, uffd: 0, pidfd: null, region: 0, start: 4096n, length: 4096, pageSize: 4096, writeProtect: false }), {
    message: 'watch attachment 1: the fault thread is stopped',
  });
  assert.throws(() => ft.setAffinity(0), { message: 'set affinity: the fault thread is stopped' });
});

test('add errors: a taken attachment id, a bad fd, an fd epoll refuses', { skip }, async (t) => {
  const ft = new FaultThread({ cpu: null, cache: null, onEvents: () => undefined });
  t.after(() => ft.stop());
  const fd = addon().uffdOpen(true, false).fd;
  t.after(() => addon().closeFd(fd));
  const memfd = addon().memfdCreate('not-pollable', 4096);
  t.after(() => addon().closeFd(memfd));
  const r = { attachment: 5, uffd: fd, pidfd: null, region: 0, start: 4096n, length: 4096, pageSize: 4096, writeProtect: false };
  ft.add(r);
  assert.throws(() => ft.add(r), (e: unknown) => {
    assert.ok(e instanceof NativeError);
    assert.equal(e.code, 'EEXIST');
    assert.equal(e.message, 'watch attachment 5: File exists (EEXIST)');
    return true;
  });
  assert.throws(() => ft.add({ ...r, attachment: 6, uffd: 999999 }), { code: 'EBADF', message: 'watch attachment 6: Bad file descriptor (EBADF)' });
  assert.throws(() => ft.add({ ...r, attachment: 7, pidfd: 999998 }), { code: 'EBADF', message: 'watch attachment 7: Bad file descriptor (EBADF)' });
  // a regular file cannot be epolled
  assert.throws(() => ft.add({ ...r, attachment: 8, uffd: memfd }), { code: 'EPERM', message: 'watch attachment 8: Operation not permitted (EPERM)' });
  assert.equal(ft.remove(8), false);
  assert.equal(ft.remove(6), false);
  assert.equal(ft.remove(7), false);
});

test('bad arguments are refused with a message naming them', () => {
  const ok = { cpu: null, cache: null, onEvents: () => undefined };
  assert.throws(() => new FaultThread({ ...ok, cpu: -1 }), { name: 'TypeError', message: 'Expected a CPU number from 0 to 1023 or null for cpu but received -1' });
  assert.throws(() => new FaultThread({ ...ok, cache: {} as PageCache }), { message: 'Expected a PageCache or null for cache but received an object' });
  assert.throws(() => new FaultThread({ ...ok, onEvents: 1 as unknown as () => void }), { message: 'Expected a function for onEvents but received 1' });
  assert.throws(() => new FaultThread(null as unknown as typeof ok), { message: 'Expected an options object for opts but received null' });
  const ft = new FaultThread(ok);
  try {
    const r = { attachment: 1, uffd: 3, pidfd: null, region: 0, start: 4096n, length: 4096, pageSize: 4096, writeProtect: false };
    assert.throws(() => ft.add({ ...r, attachment: -2 }), { message: 'Expected an integer from 0 to 4294967295 for reg.attachment but received -2' });
    assert.throws(() => ft.add({ ...r, uffd: 1.5 }), { message: 'Expected a file descriptor (integer >= 0) for reg.uffd but received 1.5' });
    assert.throws(() => ft.add({ ...r, pidfd: -1 }), { message: 'Expected a file descriptor (integer >= 0) for reg.pidfd but received -1' });
    assert.throws(() => ft.add({ ...r, pageSize: 3000 }), { message: 'Expected a power of two from 4096 to 1073741824 for reg.pageSize but received 3000' });
    assert.throws(() => ft.add({ ...r, start: 4097n }), { message: 'Expected a page-aligned address (bigint) for page size 4096 for reg.start but received 4097n' });
    assert.throws(() => ft.add({ ...r, start: 4096 as unknown as bigint }), { message: 'Expected a page-aligned address (bigint) for page size 4096 for reg.start but received 4096' });
    assert.throws(() => ft.add({ ...r, length: 100 }), { message: 'Expected a positive multiple of 4096 for reg.length but received 100' });
    assert.throws(() => ft.add({ ...r, writeProtect: 'yes' as unknown as boolean }), { message: 'Expected a boolean for reg.writeProtect but received "yes"' });
    assert.throws(() => ft.add(null as unknown as typeof r), { message: 'Expected a registration object for reg but received null' });
    assert.throws(() => ft.remove(-1), { message: 'Expected an integer from 0 to 4294967295 for attachment but received -1' });
    assert.throws(() => ft.setAffinity(1024), { message: 'Expected a CPU number from 0 to 1023 or null for cpu but received 1024' });
  } finally {
    ft.stop();
  }
});
