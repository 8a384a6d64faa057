import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PageCache } from '../../daemon/native';

const P = 4096;
const page = (fill: number): Buffer => Buffer.alloc(P, fill);

test('put/get/has/delete keep the bytes off the JS heap and count hits and misses', () => {
  const c = new PageCache(4 * P);
  assert.equal(c.put(1, 7, page(0xab)), true);
  const src = page(0x11);
  c.put(2, 7, src);
  src.fill(0); // the cache holds its own copy
  assert.deepEqual(c.get(1, 7), page(0xab));
  assert.deepEqual(c.get(2, 7), page(0x11));
  assert.equal(c.get(1, 8), null);
  assert.equal(c.has(2, 7), true);
  assert.equal(c.has(3, 7), false);
  assert.equal(c.delete(2, 7), true);
  assert.equal(c.delete(2, 7), false);
  assert.deepEqual(c.stats(), { hits: 2, misses: 1, inserts: 2, evictions: 0, entries: 1, bytes: P, capacityBytes: 4 * P });
});

test('a put of an existing page replaces its bytes', () => {
  const c = new PageCache(4 * P);
  c.put(1, 0, page(1));
  c.put(1, 0, page(2));
  assert.deepEqual(c.get(1, 0), page(2));
  assert.equal(c.stats().entries, 1);
  assert.equal(c.stats().bytes, P);
});

test('the byte budget holds: inserts beyond it evict, oldest unreferenced first', () => {
  const c = new PageCache(3 * P);
  for (let i = 0; i < 3; i++) c.put(1, i, page(i));
  c.put(1, 3, page(3));
  assert.equal(c.has(1, 0), false, 'the oldest cold page leaves first');
  assert.deepEqual([1, 2, 3].map((i) => c.has(1, i)), [true, true, true]);
  const s = c.stats();
  assert.equal(s.evictions, 1);
  assert.equal(s.bytes, 3 * P);
  assert.equal(s.entries, 3);
});

test('CLOCK gives a referenced page a second chance', () => {
  const c = new PageCache(3 * P);
  for (let i = 0; i < 3; i++) c.put(1, i, page(i));
  assert.notEqual(c.get(1, 0), null); // reference page 0
  c.put(1, 3, page(3));
  c.put(1, 4, page(4));
  assert.equal(c.has(1, 0), true, 'the referenced page survived');
  assert.equal(c.has(1, 1), false);
  assert.equal(c.has(1, 2), false);
  assert.deepEqual(c.get(1, 4), page(4));
  assert.equal(c.stats().evictions, 2);
});

test('a scan of never-used pages does not flush a referenced one', () => {
  const c = new PageCache(8 * P);
  c.put(9, 0, page(0xee));
  for (let i = 1; i < 100; i++) {
    c.has(9, 0); // the pager keeps asking for page 0
    c.put(1, i, page(i & 0xff));
  }
  assert.deepEqual(c.get(9, 0), page(0xee));
  assert.equal(c.stats().bytes, 8 * P);
});

test('setCapacity evicts down to the new budget; a page larger than the budget is refused', () => {
  const c = new PageCache(8 * P);
  assert.equal(c.capacityBytes(), 8 * P);
  for (let i = 0; i < 8; i++) c.put(1, i, page(i));
  c.setCapacity(2 * P);
  assert.equal(c.capacityBytes(), 2 * P);
  const s = c.stats();
  assert.equal(s.entries, 2);
  assert.equal(s.bytes, 2 * P);
  assert.equal(s.evictions, 6);
  assert.equal(s.capacityBytes, 2 * P);
  assert.equal(c.put(1, 100, Buffer.alloc(3 * P)), false);
  assert.equal(c.has(1, 100), false);
  c.setCapacity(0);
  assert.equal(c.stats().entries, 0);
  assert.equal(c.put(1, 1, page(1)), false);
});

test('dropRegion removes only that region', () => {
  const c = new PageCache(16 * P);
  for (let i = 0; i < 5; i++) c.put(1, i, page(i));
  for (let i = 0; i < 3; i++) c.put(2, i, page(i));
  assert.equal(c.dropRegion(1), 5);
  assert.equal(c.dropRegion(1), 0);
  assert.equal(c.stats().entries, 3);
  assert.equal(c.has(2, 2), true);
  // freed slots are reused, and the budget still holds
  for (let i = 0; i < 20; i++) c.put(3, i, page(i));
  assert.equal(c.stats().bytes, 16 * P);
});

test('large page indexes and region ids are distinct keys', () => {
  const c = new PageCache(4 * P);
  c.put(0xffffffff, Number.MAX_SAFE_INTEGER, page(1));
  c.put(0, Number.MAX_SAFE_INTEGER, page(2));
  assert.deepEqual(c.get(0xffffffff, Number.MAX_SAFE_INTEGER), page(1));
  assert.deepEqual(c.get(0, Number.MAX_SAFE_INTEGER), page(2));
});

test('bad arguments are refused with a message naming them', () => {
  assert.throws(() => new PageCache(-1), { name: 'TypeError', message: 'Expected a non-negative integer for capacityBytes but received -1' });
  const c = new PageCache(P);
  assert.throws(() => c.put(-1, 0, page(0)), { message: 'Expected an integer from 0 to 4294967295 for region but received -1' });
  assert.throws(() => c.put(2 ** 32, 0, page(0)), { message: 'Expected an integer from 0 to 4294967295 for region but received 4294967296' });
  assert.throws(() => c.get(0, 1.5), { message: 'Expected a non-negative integer for page but received 1.5' });
  assert.throws(() => c.has(0, '1' as unknown as number), { message: 'Expected a non-negative integer for page but received "1"' });
  assert.throws(() => c.put(0, 0, Buffer.alloc(0)), { message: 'Expected a non-empty Buffer for data but received a Buffer of 0 bytes' });
  assert.throws(() => c.put(0, 0, 'x' as unknown as Buffer), { message: 'Expected a non-empty Buffer for data but received "x"' });
  assert.throws(() => c.setCapacity(NaN), { message: 'Expected a non-negative integer for bytes but received NaN' });
  assert.throws(() => c.delete(0, 2n as unknown as number), { message: 'Expected a non-negative integer for page but received 2n' });
  assert.throws(() => c.dropRegion(null as unknown as number), { message: 'Expected an integer from 0 to 4294967295 for region but received null' });
});
