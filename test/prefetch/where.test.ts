// whereIs: what the evictor asks a policy about an installed guess (behind a stream: read without a
// fault; ahead: about to be read), and auto's newest-window-first order that the pager's window
// markers depend on.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AutoPrefetcher, ReadaheadPrefetcher, StridePrefetcher, TrendPrefetcher } from '../../daemon/prefetch';

const miss = (page: number, tid = 1) => ({ page, hit: false, tid, write: false });

test('readahead: pages a stream walked over are behind, pages it asked for and has not reached are ahead', () => {
  const p = new ReadaheadPrefetcher({ regionPages: 1 << 20, maxWindow: 64 });
  assert.equal(p.whereIs(5), null); // no stream yet
  p.onFault(miss(100));
  const first = p.onFault(miss(101)); // a stream from 101: 102..117
  assert.deepEqual([first[0], first[first.length - 1]], [102, 117]);
  assert.equal(p.whereIs(99), null); // before the stream began
  assert.equal(p.whereIs(101), 'behind');
  assert.equal(p.whereIs(110), 'ahead');
  assert.equal(p.whereIs(118), null); // not asked for
  assert.ok(p.onPrefetchUsed(102).length > 0); // its marker: the next window
  for (let q = 103; q <= 110; q++) p.onPrefetchUsed(q);
  assert.equal(p.whereIs(105), 'behind');
  assert.equal(p.whereIs(111), 'ahead');
  assert.equal(p.whereIs(130), 'ahead');
  assert.equal(p.whereIs(500), null);
  p.reset();
  assert.equal(p.whereIs(105), null);
});

test('readahead: a reverse stream is behind above its newest page and ahead below it', () => {
  const p = new ReadaheadPrefetcher({ regionPages: 1 << 20, maxWindow: 64 });
  p.onFault(miss(1000));
  p.onFault(miss(999));
  assert.equal(p.whereIs(1000), null); // the fault that started it came before its origin
  assert.equal(p.whereIs(999), 'behind');
  assert.equal(p.whereIs(990), 'ahead');
  assert.equal(p.whereIs(1001), null);
});

test('stride: only pages on the stride count, and a stream pushed out of the thread still knows what it walked over', () => {
  const p = new StridePrefetcher({ regionPages: 1 << 20, maxWindow: 64 });
  for (const q of [0, 4, 8]) p.onFault(miss(q));
  for (const q of [12, 16, 20, 24]) p.onPrefetchUsed(q);
  assert.equal(p.whereIs(16), 'behind');
  assert.equal(p.whereIs(17), null);
  assert.equal(p.whereIs(28), 'ahead');
  // Four more strided walks (the thread keeps 4 streams): the first one is retired.
  for (let s = 1; s <= 4; s++) for (const q of [100_000 * s, 100_000 * s + 3, 100_000 * s + 6]) p.onFault(miss(q));
  assert.equal(p.streamsOf(1).length, 4);
  assert.equal(p.whereIs(16), 'behind');
  assert.equal(p.whereIs(28), null); // what it left ahead is no one's now
});

test('trend: a guess the stream walked over (claimed by the fault past it) is behind, its last window ahead', () => {
  const p = new TrendPrefetcher({ regionPages: 1 << 20, maxWindow: 8 });
  for (const q of [100, 101]) assert.deepEqual(p.onFault(miss(q)), []);
  assert.deepEqual(p.onFault(miss(102)), [103]); // a trend of +1, no hits yet: one page
  assert.equal(p.whereIs(103), 'ahead');
  assert.equal(p.whereIs(102), null); // faulted, never a guess
  // The process read 103 without a fault (installed) and faults on 104: 103 was walked over.
  const next = p.onFault(miss(104));
  assert.deepEqual(next, [105, 106]);
  assert.equal(p.whereIs(103), 'behind');
  assert.equal(p.whereIs(105), 'ahead');
  assert.equal(p.whereIs(106), 'ahead');
  // A reported use is behind too; a jump elsewhere claims nothing, and its window replaces the old.
  p.onPrefetchUsed(105);
  assert.equal(p.whereIs(105), 'behind');
  p.onFault(miss(5000));
  assert.equal(p.whereIs(106), null); // left ahead by a window that is no more: no one's
  assert.equal(p.whereIs(103), 'behind');
  p.reset();
  assert.equal(p.whereIs(103), null);
});

test('auto answers for its candidates, and puts the running policy\'s newest window first', () => {
  const a = new AutoPrefetcher({ regionPages: 1 << 20, maxWindow: 64, readaheadMaxWindow: 64 });
  let out: number[] = [];
  let q = 0;
  for (; a.current() !== 'readahead'; q++) out = a.onFault(miss(q));
  assert.ok(out.length > 0);
  assert.equal(a.whereIs(q - 2), 'behind');
  assert.equal(a.whereIs(out[out.length - 1]!), 'ahead');
  // The scan reads the installed window without a fault and faults right past it: auto replays the
  // walked-over window as uses (which decides a window) and then the fault (which decides the next).
  const past = out[out.length - 1]! + 1;
  const next = a.onFault(miss(past));
  assert.ok(next.length > 0);
  assert.equal(a.whereIs(past - 1), 'behind');
  // A pager holding the first page back sees the touch of that page: it must send for more.
  const head = next[0]!;
  assert.ok(head > past + 1, `the newest window comes first: ${next.slice(0, 4).join(',')}…`);
  assert.ok(a.onFault({ page: head, hit: true, tid: 1, write: false }).length > 0);
});

test('auto: a scan seen only through its window markers and cache hits keeps readahead scoring high', () => {
  // What a pager under a resident budget reports: a window installed directly is read without a fault
  // except its held first page; a window staged in the cache faults page by page. Each of those
  // touches comes as a use, then as a hit fault.
  const a = new AutoPrefetcher({ regionPages: 1 << 20, maxWindow: 64, readaheadMaxWindow: 64 });
  let q = 0;
  let out: number[] = [];
  for (; a.current() !== 'readahead'; q++) out = a.onFault(miss(q));
  const windows: number[][] = [out];
  let staged = false;
  let low = Infinity;
  while (windows.length > 0 && q < 6000) {
    const w = windows.shift()!.sort((x, y) => x - y);
    staged = !staged;
    for (const p of w) {
      let next: number[] = [];
      // The pager reports a use first, then the fault (hit) that showed it.
      if (staged || p === w[0]) next = [...a.onPrefetchUsed(p), ...a.onFault({ page: p, hit: true, tid: 1, write: false })];
      if (next.length > 0) windows.push(next);
      q = p;
    }
    const s = a.scores().readahead;
    if (s !== null && q > 1000) low = Math.min(low, s);
  }
  assert.ok(q >= 6000, `the scan went on to page ${q}`);
  assert.equal(a.current(), 'readahead');
  assert.ok(low >= 0.8, `readahead's score fell to ${low}`);
});
