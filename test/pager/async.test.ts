// The pager's side of async dirty tracking, over the fake kernel and a fake PAGEMAP_SCAN: what the
// scans report becomes dirty and is written back, a process that cannot be scanned makes every
// resident page dirty, async regions are never evicted, and only async regions take WP_ASYNC.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { AsyncWpOps } from '../../daemon/pager/async-wp';
import { page, PS, Rig } from './rig';

class FakeScan implements AsyncWpOps {
  readonly calls: string[] = [];
  /** Pages (region indexes) the next `written` reports; then cleared (the scan re-protects them). */
  next: number[] = [];
  base = 0n;
  covers = true;
  fail: Error | null = null;
  open(pid: number): number {
    this.calls.push(`open ${pid}`);
    return 900;
  }
  close(fd: number): void {
    this.calls.push(`close ${fd}`);
  }
  written(): { start: bigint; end: bigint }[] {
    this.calls.push('written');
    if (this.fail !== null) throw this.fail;
    const out = this.next.map((p) => ({ start: this.base + BigInt(p * PS), end: this.base + BigInt((p + 1) * PS) }));
    this.next = [];
    return out;
  }
  covered(): boolean {
    this.calls.push('covered');
    return this.covers;
  }
}

function asyncRig(scan: FakeScan, budgetPages = 0): Rig {
  const rig = new Rig({ pages: 16, budgetPages, pager: { asyncWp: scan } });
  rig.pager.region(rig.key).cfg.dirtyTracking = 'async';
  return rig;
}

function attachAsync(rig: Rig, scan: FakeScan) {
  const m = rig.kernel.map(rig.memfd);
  scan.base = m.base;
  const attachment = 1;
  rig.pager.attach({ attachment, region: rig.key, uffd: m.uffd, pid: 4242, base: m.base, length: m.length, writeProtect: true, asyncWp: true });
  rig.thread.add({ attachment, uffd: m.uffd, pidfd: null, region: rig.key, start: m.base, length: m.length, pageSize: PS, writeProtect: true });
  return Object.assign(m, { attachment });
}

test('async: writes the scan reports become dirty, sync writes exactly them back, and nothing is ever evicted', async () => {
  const scan = new FakeScan();
  const rig = asyncRig(scan, 4); // a budget the pager must not act on: async regions are never evicted
  const a = attachAsync(rig, scan);
  assert.deepEqual(scan.calls, ['open 4242', 'written']); // armed at attach
  assert.equal(rig.pager.attachmentTracking(a.attachment), 'async');
  for (let p = 0; p < 8; p++) await rig.done(rig.read(a, p));
  assert.deepEqual([rig.stats().residentPages, rig.stats().dirtyPages, rig.stats().evicted.clean], [8, 0, 0]);
  // The process writes pages 2 and 5 without faulting (async WP): the memfd changes, the pager does not know.
  rig.kernel.fillBehind(rig.memfd, 2, page(0x22));
  rig.kernel.fillBehind(rig.memfd, 5, page(0x55));
  scan.next = [2, 5];
  await rig.pager.sync(rig.key);
  assert.deepEqual(rig.store.page(rig.regionId, 2), page(0x22));
  assert.deepEqual(rig.store.page(rig.regionId, 5), page(0x55));
  assert.equal(rig.stats().writeBack.pages, 2);
  assert.equal(rig.stats().dirtyPages, 0);
  assert.equal(rig.pager.evictAll(rig.key), 0);
  assert.equal(rig.stats().residentPages, 8);
  assert.equal(rig.stats().faults.wp, 0);
  // The drain scans too.
  rig.kernel.fillBehind(rig.memfd, 7, page(0x77));
  scan.next = [7];
  assert.deepEqual(await rig.pager.drain(1000), { complete: true, dirtyLeft: 0 });
  assert.deepEqual(rig.store.page(rig.regionId, 7), page(0x77));
});

test('async: a process that cannot be scanned (gone, or unmapped) leaves every resident page dirty', async () => {
  const scan = new FakeScan();
  const rig = asyncRig(scan);
  const a = attachAsync(rig, scan);
  for (let p = 0; p < 6; p++) await rig.done(rig.read(a, p));
  scan.covers = false; // a scan that walked no VMA reports nothing, and proves nothing
  assert.equal(rig.pager.collectWritten(rig.key), 6);
  assert.equal(rig.log.count('async attachment could not be scanned (process gone or region unmapped): every resident page counts as dirty'), 1);
  await rig.pager.sync(rig.key);
  scan.covers = true;
  scan.fail = Object.assign(new Error('PAGEMAP_SCAN: ESRCH'), { code: 'ESRCH' });
  rig.pager.detach(a.attachment);
  assert.equal(rig.stats().dirtyPages, 6);
  assert.deepEqual(scan.calls.slice(-2), ['written', 'close 900']);
});

test('async: a uffd without WP_ASYNC (EPERM at arming) is served by WP faults; WP_ASYNC where nothing can scan is refused', async () => {
  const scan = new FakeScan();
  scan.fail = Object.assign(new Error('PAGEMAP_SCAN: EPERM'), { code: 'EPERM' });
  const rig = asyncRig(scan);
  const a = attachAsync(rig, scan);
  assert.equal(rig.pager.attachmentTracking(a.attachment), 'wp');
  assert.equal(rig.log.count('the process registered without WP_ASYNC: its writes are tracked with write-protect faults'), 1);
  await rig.done(rig.read(a, 1));
  await rig.done(rig.write(a, 1, page(9)));
  assert.deepEqual([rig.stats().faults.wp, rig.stats().dirtyPages], [1, 1]);
  assert.equal(rig.pager.evictAll(rig.key), 0, 'the region is still async: never evicted');

  // No PAGEMAP_SCAN in this daemon: an async uffd's writes could not be seen at all.
  const blind = new Rig({ pages: 16 });
  const m = blind.kernel.map(blind.memfd);
  assert.throws(() => blind.pager.attach({ attachment: 1, region: blind.key, uffd: m.uffd, pid: 77, base: m.base, length: m.length, writeProtect: true, asyncWp: true }), {
    message: 'attach region "test": pid 77 negotiated WP_ASYNC, but this daemon cannot scan for written pages (PAGEMAP_SCAN)',
  });
});

test('async: a reattach whose uffd kept WP_ASYNC on a region that is wp now keeps the region from eviction while attached', async () => {
  const scan = new FakeScan();
  const rig = new Rig({ pages: 16, pager: { asyncWp: scan } });
  const a = attachAsync(rig, scan);
  assert.equal(rig.log.count('the process tracks writes asynchronously from an earlier attach: the region is not evicted while it is attached'), 1);
  for (let p = 0; p < 4; p++) await rig.done(rig.read(a, p));
  assert.equal(rig.pager.evictAll(rig.key), 0);
  rig.pager.detach(a.attachment);
  // Scanned at detach (nothing written): clean, and evictable again.
  assert.equal(rig.pager.evictAll(rig.key), 4);
});
