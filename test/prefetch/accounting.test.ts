import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PrefetchAccounting } from '../../daemon/prefetch';

test('accounting counts issued, used and wasted pages once each', () => {
  const a = new PrefetchAccounting(4096);
  assert.deepEqual(a.snapshot(), {
    issuedPages: 0, usedPages: 0, wastedPages: 0, outstandingPages: 0, faults: 0, accuracy: 0, coverage: 0, wastedBytes: 0,
  });
  for (const p of [1, 2, 3, 4, 4]) a.issue(p);
  assert.equal(a.use(1), true);
  assert.equal(a.use(1), false); // reported twice
  assert.equal(a.use(9), false); // never issued
  assert.equal(a.use(2), true);
  assert.equal(a.use(3), true);
  assert.equal(a.waste(4), true);
  assert.equal(a.waste(4), false);
  assert.equal(a.waste(1), false); // already used
  a.fault();
  assert.deepEqual(a.snapshot(), {
    issuedPages: 4, usedPages: 3, wastedPages: 1, outstandingPages: 0, faults: 1, accuracy: 0.75, coverage: 0.75, wastedBytes: 4096,
  });
});

test('accounting with a capacity drops the oldest outstanding page as wasted', () => {
  const a = new PrefetchAccounting(65536, 2);
  assert.deepEqual(a.issue(10), []);
  assert.deepEqual(a.issue(11), []);
  assert.deepEqual(a.issue(12), [10]);
  assert.equal(a.isOutstanding(10), false);
  assert.equal(a.isOutstanding(12), true);
  a.writeOffOutstanding();
  const s = a.snapshot();
  assert.equal(s.wastedPages, 3);
  assert.equal(s.wastedBytes, 3 * 65536);
  assert.equal(s.outstandingPages, 0);
});
