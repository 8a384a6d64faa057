// Real faults across processes: fmwork (the C workload) faults in its own memory; the test resolves
// the faults through the uffd fmwork sent it, exactly as farmemd does.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { uffd, memfd, NativeError, type UffdEvent } from '../../daemon/native';
import { userfaultfdUnavailable } from '../helpers/env';
import { startFmwork, type FmworkChild } from '../helpers/fmwork';
import { expectedChecksum, patternPage } from '../helpers/pattern';

const skip = userfaultfdUnavailable() ?? false;
const PS = 4096;

/** Polls the child's uffd and hands every event to `on` until the child exits. */
function serve(w: FmworkChild, on: (e: UffdEvent) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let done = false;
    void w.result.then(() => {
      done = true;
    });
    const tick = () => {
      try {
        for (const e of uffd.readEvents(w.uffd, 64)) on(e);
      } catch (err) {
        reject(err);
        return;
      }
      if (done) resolve();
      else setTimeout(tick, 0);
    };
    tick();
  });
}

function pageOf(w: FmworkChild, e: UffdEvent): number {
  assert.equal(e.kind, 'pagefault');
  return Number(((e as { address: bigint }).address - w.address) / BigInt(PS));
}

test('anonymous memory: every fault resolved with UFFDIO_COPY, the child reads exactly those bytes', { skip }, async (t) => {
  const w = await startFmwork({ pages: 48, pattern: 'random:3', op: 'read' });
  t.after(() => w.dispose());
  const seen = new Set<number>();
  w.go();
  await serve(w, (e) => {
    const p = pageOf(w, e);
    seen.add(p);
    const r = uffd.copy(w.uffd, w.address + BigInt(p * PS), patternPage(11n, p, PS));
    assert.equal(r.outcome, 'done');
    assert.equal(r.bytes, PS);
  });
  const { code, json } = await w.result;
  assert.equal(code, 0);
  assert.equal(seen.size, 48);
  assert.equal(json!.checksum, expectedChecksum('random:3', 48, 1, (p) => patternPage(11n, p, PS)));
});

test('shared memfd: the daemon side sees installed pages in its own mapping; a punched hole faults again', { skip }, async (t) => {
  const pages = 16;
  const fd = memfd.create('fm-test', pages * PS);
  const map = memfd.mmapShared(fd, pages * PS, false);
  t.after(() => {
    memfd.munmap(map.address, map.length);
    memfd.close(fd);
  });
  const w = await startFmwork({ pages, pattern: 'seq', op: 'read', memfd: fd, repeat: 2 });
  t.after(() => w.dispose());
  const faults: number[] = [];
  w.go();
  await serve(w, (e) => {
    const p = pageOf(w, e);
    faults.push(p);
    if (faults.length === pages) {
      // The child waits on its last page of pass 1: drop every other page so pass 2 faults again.
      for (let q = 0; q < pages - 1; q++) assert.ok(map.buffer.subarray(q * PS, (q + 1) * PS).equals(patternPage(5n, q, PS)), `page ${q} in the test's mapping`);
      memfd.punchHole(fd, 0, (pages - 1) * PS);
      assert.deepEqual(memfd.dataRanges(fd), []);
    }
    assert.equal(uffd.copy(w.uffd, w.address + BigInt(p * PS), patternPage(5n, p, PS)).outcome, 'done');
  });
  const { code, json } = await w.result;
  assert.equal(code, 0);
  assert.deepEqual(faults, [...Array(pages).keys(), ...Array(pages - 1).keys()]);
  assert.equal(json!.checksum, expectedChecksum('seq', pages, 2, (p) => patternPage(5n, p, PS)));
  assert.deepEqual(memfd.dataRanges(fd), [{ offset: 0, length: pages * PS }]);
});

test('write-protect: a write to a page installed write-protected raises a WP fault; clearing it lets the write land', { skip }, async (t) => {
  const pages = 8;
  const fd = memfd.create('fm-wp', pages * PS);
  t.after(() => memfd.close(fd));
  const w = await startFmwork({ pages, pattern: 'seq', op: 'write', seed: 9, memfd: fd, wp: true });
  t.after(() => w.dispose());
  const kinds: string[] = [];
  w.go();
  await serve(w, (e) => {
    assert.equal(e.kind, 'pagefault');
    const f = e as Extract<UffdEvent, { kind: 'pagefault' }>;
    const p = pageOf(w, e);
    const at = w.address + BigInt(p * PS);
    if (f.wp) {
      kinds.push(`wp:${p}`);
      assert.equal(uffd.writeProtect(w.uffd, at, PS, false), 'done');
    } else {
      kinds.push(`missing${f.write ? '-write' : ''}:${p}`);
      // Installed protected even though the fault is a write: the write must then raise WP.
      assert.equal(uffd.copy(w.uffd, at, Buffer.alloc(PS), { wp: true }).outcome, 'done');
    }
  });
  const { code } = await w.result;
  assert.equal(code, 0);
  assert.deepEqual(kinds, [...Array(pages).keys()].flatMap((p) => [`missing-write:${p}`, `wp:${p}`]));
  const buf = Buffer.alloc(PS);
  for (let p = 0; p < pages; p++) {
    memfd.pread(fd, buf, p * PS);
    assert.ok(buf.equals(patternPage(9n, p, PS)), `page ${p} holds what the child wrote`);
  }
});

test('EEXIST: a page filled another way while the child waits is "exists", and a wake resumes the child', { skip }, async (t) => {
  const pages = 4;
  const fd = memfd.create('fm-eexist', pages * PS);
  t.after(() => memfd.close(fd));
  const w = await startFmwork({ pages, pattern: 'seq', op: 'read', memfd: fd });
  t.after(() => w.dispose());
  w.go();
  await serve(w, (e) => {
    const p = pageOf(w, e);
    const at = w.address + BigInt(p * PS);
    memfd.pwrite(fd, patternPage(2n, p, PS), p * PS);
    assert.deepEqual(uffd.copy(w.uffd, at, patternPage(2n, p, PS)), { outcome: 'exists', bytes: 0 });
    uffd.wake(w.uffd, at, PS);
  });
  const { code, json } = await w.result;
  assert.equal(code, 0);
  assert.equal(json!.checksum, expectedChecksum('seq', pages, 1, (p) => patternPage(2n, p, PS)));
});

test('a child that died while faulting: the ioctl says ESRCH (teardown, not a crash)', { skip }, async (t) => {
  const w = await startFmwork({ pages: 4, pattern: 'seq', op: 'read' });
  t.after(() => w.dispose());
  w.go();
  let ev: UffdEvent[] = [];
  for (let i = 0; i < 2000 && ev.length === 0; i++) {
    ev = uffd.readEvents(w.uffd, 8);
    if (ev.length === 0) await new Promise((r) => setTimeout(r, 1));
  }
  assert.equal(ev[0]?.kind, 'pagefault');
  w.child.kill('SIGKILL');
  const r = await w.result;
  assert.equal(r.signal, 'SIGKILL');
  assert.throws(() => uffd.copy(w.uffd, w.address, Buffer.alloc(PS)), (e: unknown) => e instanceof NativeError && e.code === 'ESRCH' && e.syscall === 'UFFDIO_COPY');
});

test('uffd bindings: every error names what was wrong', { skip }, async (t) => {
  const w = await startFmwork({ pages: 2, pattern: 'seq', op: 'read' });
  t.after(() => w.dispose());
  // Outside the registered range.
  assert.throws(() => uffd.copy(w.uffd, w.address + BigInt(1 << 30), Buffer.alloc(PS)), (e: unknown) => e instanceof NativeError && e.code === 'ENOENT');
  assert.throws(() => uffd.copy(w.uffd, w.address + 1n, Buffer.alloc(PS)), { message: `Expected a page-aligned bigint address for dst but received ${w.address + 1n}n` });
  assert.throws(() => uffd.copy(w.uffd, w.address, Buffer.alloc(100)), { message: 'Expected a non-negative multiple of 4096 for src.length but received 100' });
  assert.throws(() => uffd.copy(-1, w.address, Buffer.alloc(PS)), { message: 'Expected a file descriptor (an integer >= 0) for fd but received -1' });
  assert.throws(() => uffd.copy(w.uffd, 4096 as unknown as bigint, Buffer.alloc(PS)), { message: 'Expected a page-aligned bigint address for dst but received 4096' });
  assert.throws(() => uffd.register(w.uffd, w.address, PS, ['bogus' as 'wp']), { message: `Expected a non-empty array of 'missing' | 'wp' | 'minor' for modes but received ["bogus"]` });
  const fd = memfd.create('fm-closed', PS);
  memfd.close(fd);
  assert.throws(() => uffd.wake(fd, w.address, PS), (e: unknown) => e instanceof NativeError && e.code === 'EBADF' && e.message === 'UFFDIO_WAKE: Bad file descriptor (EBADF)');
  assert.throws(() => memfd.pread(fd, Buffer.alloc(PS), 0), (e: unknown) => e instanceof NativeError && e.code === 'EBADF');
});

test('uffd open and API: features by name, ioctls by name', { skip }, () => {
  const u = uffd.open({ nonBlocking: true, allowUserModeOnly: false });
  try {
    assert.equal(u.userModeOnly, false);
    assert.equal(u.warning, null);
    const api = uffd.api(u.fd, ['MISSING_SHMEM', 'WP_HUGETLBFS_SHMEM', 'THREAD_ID']);
    for (const f of ['MISSING_SHMEM', 'WP_HUGETLBFS_SHMEM', 'THREAD_ID'] as const) assert.ok(api.features.includes(f), f);
    assert.ok(api.ioctls.includes('REGISTER') && api.ioctls.includes('API'));
    assert.throws(() => uffd.api(u.fd, ['THREAD_ID']), (e: unknown) => e instanceof NativeError && e.code === 'EINVAL');
    const fd = memfd.create('fm-reg', 4 * PS);
    const m = memfd.mmapShared(fd, 4 * PS, true);
    try {
      const reg = uffd.register(u.fd, m.address, 4 * PS, ['missing', 'wp']);
      for (const i of ['COPY', 'ZEROPAGE', 'WAKE', 'WRITEPROTECT']) assert.ok(reg.ioctls.includes(i), i);
      assert.deepEqual(uffd.readEvents(u.fd), []);
      assert.equal(uffd.zeropage(u.fd, m.address, PS).outcome, 'done');
      assert.equal(uffd.zeropage(u.fd, m.address, PS).outcome, 'exists');
      uffd.unregister(u.fd, m.address, 4 * PS);
    } finally {
      memfd.munmap(m.address, m.length);
      memfd.close(fd);
    }
  } finally {
    memfd.close(u.fd);
  }
});
