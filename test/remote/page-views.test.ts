// PageViews: a read answer's consecutive pages as a Map made on demand. It must answer exactly as
// the eager Map it replaces, before and after anything turns it into one.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PageViews } from '../../daemon/remote/page-views';
import { randomPages } from '../memserver/fixture';

const PS = 4096;

function eager(first: number, count: number, data: Buffer): Map<number, Buffer> {
  const m = new Map<number, Buffer>();
  for (let i = 0; i < count; i++) m.set(first + i, data.subarray(i * PS, (i + 1) * PS));
  return m;
}

function same(a: Map<number, Buffer>, b: Map<number, Buffer>): void {
  assert.equal(a.size, b.size);
  assert.deepEqual([...a.keys()], [...b.keys()]);
  for (const [p, bytes] of b) assert.ok(a.get(p)!.equals(bytes), `page ${p}`);
}

test('has, get, size and span answer from the run; nothing outside it is there', () => {
  const data = randomPages(8, PS);
  const v = new PageViews(100, 8, data, PS);
  assert.ok(v instanceof Map);
  assert.equal(v.size, 8);
  for (const p of [99, 108, 100.5, -1, NaN]) {
    assert.equal(v.has(p), false, `has ${p}`);
    assert.equal(v.get(p), undefined, `get ${p}`);
  }
  for (let i = 0; i < 8; i++) {
    assert.equal(v.has(100 + i), true);
    assert.ok(v.get(100 + i)!.equals(data.subarray(i * PS, (i + 1) * PS)));
    assert.equal(v.get(100 + i)!.length, PS);
  }
  assert.ok(v.span(102, 3)!.equals(data.subarray(2 * PS, 5 * PS)));
  assert.equal(v.span(102, 3)!.buffer, data.buffer, 'a view, not a copy');
  assert.equal(v.span(106, 3), undefined);
  assert.equal(v.span(99, 2), undefined);
  assert.equal(v.span(100, 0), undefined);
  assert.equal(v.holdsExactly([100, 101, 102, 103, 104, 105, 106, 107]), true);
  assert.equal(v.holdsExactly([100, 101, 102, 103, 104, 105, 107, 106]), false);
  assert.equal(v.holdsExactly([100, 101]), false);
  assert.throws(() => new PageViews(0, 2, data, PS), /Expected 8192 bytes for 2 pages of 4096 but received 32768/);
});

test('iteration, set, delete and clear behave as on the eager Map, which it then becomes', () => {
  const data = randomPages(5, PS);
  same(new PageViews(7, 5, data, PS), eager(7, 5, data));
  // Each way in turns it into a plain Map with the same entries.
  for (const use of [(m: Map<number, Buffer>) => [...m], (m: Map<number, Buffer>) => [...m.entries()], (m: Map<number, Buffer>) => [...m.values()], (m: Map<number, Buffer>) => m.forEach(() => {})]) {
    const v = new PageViews(7, 5, data, PS);
    use(v);
    same(v, eager(7, 5, data));
    assert.equal(v.span(7, 2), undefined, 'no run once it is a plain Map');
    assert.equal(v.holdsExactly([7, 8, 9, 10, 11]), false);
  }
  const v = new PageViews(7, 5, data, PS);
  const e = eager(7, 5, data);
  const extra = randomPages(1, PS);
  v.set(50, extra);
  e.set(50, extra);
  assert.equal(v.delete(9), e.delete(9));
  assert.equal(v.delete(9), false);
  same(v, e);
  assert.equal(v.has(9), false);
  assert.ok(v.get(50)!.equals(extra));
  v.clear();
  assert.equal(v.size, 0);
  assert.equal(v.get(7), undefined);
});
