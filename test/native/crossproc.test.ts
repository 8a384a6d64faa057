// A child process (fmwork) faults; the test resolves the faults through the child's uffd, received
// over a seqpacket socket, and checks the bytes the child saw (its checksum) and, with a shared
// memfd, the bytes in the test's own mapping.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { memfd, uffd, type UffdEvent } from '../../daemon/native';
import { userfaultfdUnavailable } from '../helpers/env';
import { startFmwork, type FmworkChild } from '../helpers/fmwork';
import { expectedChecksum, patternPage } from '../helpers/pattern';

/** True when the process sleeps outside any system call: here, in its userfaultfd fault. */
function sleepingInFault(pid: number): boolean {
  const state = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
  return (state === 'S' || state === 'D') && fs.readFileSync(`/proc/${pid}/syscall`, 'utf8').startsWith('-1 ');
}

const skip = userfaultfdUnavailable() ?? false;
const PS = 4096;

async function nextFault(child: FmworkChild): Promise<Extract<UffdEvent, { kind: 'pagefault' }>> {
  const e = await child.nextEvent();
  assert.equal(e.kind, 'pagefault', `expected a pagefault event, got ${JSON.stringify(e, (_k, v) => (typeof v === 'bigint' ? String(v) : v))}`);
  return e as Extract<UffdEvent, { kind: 'pagefault' }>;
}

test('anonymous memory: every read fault resolved by UFFDIO_COPY shows the child exactly those bytes', { skip }, async (t) => {
  const pages = 24;
  const child = await startFmwork(['--pages', String(pages), '--pattern', 'random:5', '--op', 'read']);
  t.after(() => child.close());
  child.go();
  const seen: number[] = [];
  for (let i = 0; i < pages; i++) {
    const f = await nextFault(child);
    assert.equal(f.write, false);
    assert.equal(f.wp, false);
    assert.equal(f.minor, false);
    assert.equal(f.tid, child.pid); // single-threaded: the faulting thread is the main thread
    assert.equal(f.address % BigInt(PS), 0n);
    const page = child.pageOf(f.address);
    seen.push(page);
    assert.deepEqual(uffd.copy(child.uffd, f.address, patternPage(11n, page, PS)), { outcome: 'done', bytes: PS });
  }
  const r = await child.exited;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json?.checksum, expectedChecksum('random:5', pages, 1, (p) => patternPage(11n, p, PS)));
  assert.deepEqual([...seen].sort((a, b) => a - b), Array.from({ length: pages }, (_, i) => i));
});

test('anonymous memory: write faults carry the write flag; zeropage then the child writes its pattern', { skip }, async (t) => {
  const pages = 8;
  const child = await startFmwork(['--pages', String(pages), '--pattern', 'stride:3', '--op', 'write', '--seed', '4']);
  t.after(() => child.close());
  child.go();
  for (let i = 0; i < pages; i++) {
    const f = await nextFault(child);
    assert.equal(f.write, true);
    assert.deepEqual(uffd.zeropage(child.uffd, f.address, PS), { outcome: 'done', bytes: PS });
  }
  const r = await child.exited;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json?.checksum, expectedChecksum('stride:3', pages, 1, (p) => patternPage(4n, p, PS)));
});

test('verify: the child counts pages that differ from its pattern and exits 1', { skip }, async (t) => {
  const pages = 4;
  const child = await startFmwork(['--pages', String(pages), '--op', 'verify', '--seed', '9']);
  t.after(() => child.close());
  child.go();
  for (let i = 0; i < pages; i++) {
    const f = await nextFault(child);
    const page = child.pageOf(f.address);
    // Page 2 gets another seed's bytes.
    uffd.copy(child.uffd, f.address, patternPage(page === 2 ? 10n : 9n, page, PS));
  }
  const r = await child.exited;
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.json?.mismatches, 1);
});

test('one UFFDIO_COPY of several contiguous pages resolves the fault and installs them all', { skip }, async (t) => {
  const pages = 8;
  const child = await startFmwork(['--pages', String(pages), '--op', 'read']);
  t.after(() => child.close());
  child.go();
  const f = await nextFault(child);
  assert.equal(child.pageOf(f.address), 0);
  const all = Buffer.concat(Array.from({ length: pages }, (_, p) => patternPage(1n, p, PS)));
  assert.deepEqual(uffd.copy(child.uffd, child.addr, all), { outcome: 'done', bytes: pages * PS });
  const r = await child.exited;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json?.checksum, expectedChecksum('seq', pages, 1, (p) => patternPage(1n, p, PS)));
  assert.deepEqual(uffd.readEvents(child.uffd), []); // no other page faulted
});

test('shared memfd: the test sees installed pages in its own mapping, and a punched hole faults again', { skip }, async (t) => {
  const pages = 6;
  const fd = memfd.create('farmem-test-region', pages * PS);
  const map = memfd.map(fd, pages * PS);
  t.after(() => {
    memfd.unmap(map);
    memfd.close(fd);
  });
  const child = await startFmwork(['--memfd', '--pages', String(pages), '--op', 'read', '--repeat', '2'], { memfd: fd });
  t.after(() => child.close());
  child.go();
  // Pass 1 faults every page; while the child waits on the last one, punch holes over the others,
  // so pass 2 faults on them again and gets the second contents.
  for (let i = 0; i < pages; i++) {
    const f = await nextFault(child);
    const page = child.pageOf(f.address);
    assert.equal(page, i);
    if (i === pages - 1) {
      assert.deepEqual(memfd.dataRanges(fd), [{ offset: 0, length: (pages - 1) * PS }]);
      for (let p = 0; p < pages - 1; p++) {
        assert.ok(map.buffer.subarray(p * PS, (p + 1) * PS).equals(patternPage(1n, p, PS)), `page ${p} in the test's mapping`);
      }
      memfd.punchHole(fd, 0, (pages - 1) * PS);
      assert.deepEqual(memfd.dataRanges(fd), []);
    }
    uffd.copy(child.uffd, f.address, patternPage(1n, page, PS));
  }
  for (let i = 0; i < pages - 1; i++) {
    const f = await nextFault(child);
    assert.equal(child.pageOf(f.address), i);
    uffd.copy(child.uffd, f.address, patternPage(2n, i, PS));
  }
  const r = await child.exited;
  assert.equal(r.code, 0, r.stderr);
  const pass1 = (p: number) => patternPage(1n, p, PS);
  const pass2 = (p: number) => patternPage(p === pages - 1 ? 1n : 2n, p, PS);
  const expected = expectedChecksum('seq', pages, 1, pass1);
  // The checksum runs over both passes: recompute it over pass1 then pass2 contents.
  let turn = 0;
  const both = expectedChecksum('seq', pages, 2, (p) => (turn++ < pages ? pass1(p) : pass2(p)));
  assert.notEqual(both, expected);
  assert.equal(r.json?.checksum, both);
  const check = Buffer.alloc(PS);
  memfd.pread(fd, check, 0);
  assert.ok(check.equals(patternPage(2n, 0, PS)));
});

test('shared memfd with WP: a write to a page installed write-protected raises a WP fault that clearing WP resolves', { skip }, async (t) => {
  const pages = 3;
  const fd = memfd.create('farmem-test-wp', pages * PS);
  const map = memfd.map(fd, pages * PS);
  t.after(() => {
    memfd.unmap(map);
    memfd.close(fd);
  });
  const child = await startFmwork(['--memfd', '--wp', '--pages', String(pages), '--op', 'write', '--seed', '3'], { memfd: fd });
  t.after(() => child.close());
  child.go();
  for (let i = 0; i < pages; i++) {
    const missing = await nextFault(child);
    assert.deepEqual([child.pageOf(missing.address), missing.write, missing.wp], [i, true, false]);
    assert.deepEqual(uffd.copy(child.uffd, missing.address, Buffer.alloc(PS), { wp: true }), { outcome: 'done', bytes: PS });
    const wp = await nextFault(child);
    assert.deepEqual([child.pageOf(wp.address), wp.write, wp.wp], [i, true, true]);
    assert.equal(uffd.writeProtect(child.uffd, wp.address, PS, false), 'done');
  }
  const r = await child.exited;
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.json?.checksum, expectedChecksum('seq', pages, 1, (p) => patternPage(3n, p, PS)));
  for (let p = 0; p < pages; p++) assert.ok(map.buffer.subarray(p * PS, (p + 1) * PS).equals(patternPage(3n, p, PS)), `page ${p}`);
});

test('shared memfd: a page filled by pwrite while the child waits makes UFFDIO_COPY say exists; wake lets the child go on', { skip }, async (t) => {
  const pages = 2;
  const fd = memfd.create('farmem-test-eexist', pages * PS);
  t.after(() => memfd.close(fd));
  const child = await startFmwork(['--memfd', '--pages', String(pages), '--op', 'read'], { memfd: fd });
  t.after(() => child.close());
  assert.equal(sleepingInFault(child.pid), false, 'waiting for "go" in recvmsg is not a fault');
  child.go();
  const f = await nextFault(child);
  assert.equal(child.pageOf(f.address), 0);
  assert.equal(memfd.pwrite(fd, patternPage(7n, 0, PS), 0), PS);
  assert.deepEqual(uffd.copy(child.uffd, f.address, patternPage(8n, 0, PS)), { outcome: 'exists', bytes: 0 });
  assert.equal(sleepingInFault(child.pid), true, 'the child still waits in its fault after EEXIST');
  uffd.wake(child.uffd, f.address, PS);
  const f2 = await nextFault(child);
  assert.equal(child.pageOf(f2.address), 1);
  uffd.copy(child.uffd, f2.address, patternPage(7n, 1, PS));
  const r = await child.exited;
  assert.equal(r.code, 0, r.stderr);
  // The child saw the pwritten bytes, not the copy's.
  assert.equal(r.json?.checksum, expectedChecksum('seq', pages, 1, (p) => patternPage(7n, p, PS)));
});

test('after the child exits, ioctls on its uffd fail with ESRCH', { skip }, async (t) => {
  const child = await startFmwork(['--pages', '2', '--op', 'read']);
  t.after(() => child.close());
  child.go();
  const f = await nextFault(child);
  process.kill(child.pid, 'SIGKILL');
  const r = await child.exited;
  assert.equal(r.code, null);
  assert.throws(() => uffd.copy(child.uffd, f.address, Buffer.alloc(PS)), {
    name: 'NativeError',
    code: 'ESRCH',
    message: 'UFFDIO_COPY: No such process (ESRCH)',
  });
});
