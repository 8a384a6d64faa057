// test/helpers/pattern.ts must compute exactly what fmwork_pattern.h computes.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { expectedChecksum, fnv1a, FNV_OFFSET, pageOrder, patternPage, patternWord, workloadBin } from '../helpers/pattern';

const fmpattern = (...args: string[]): string[] => execFileSync(workloadBin('fmpattern'), args, { encoding: 'utf8' }).trim().split('\n');

test('pattern words agree with C', () => {
  for (const [seed, page] of [[0n, 0], [7n, 3], [0xffffffffffffffffn, 123456]] as const) {
    const c = fmpattern('words', seed.toString(), String(page), '512');
    const ts = patternPage(seed, page, 4096);
    const words = new BigUint64Array(ts.buffer, ts.byteOffset, 512);
    assert.deepEqual(Array.from(words, (w) => w.toString(16).padStart(16, '0')), c);
    assert.equal(patternWord(seed, page, 511), words[511]);
  }
});

test('page orders agree with C and are permutations', () => {
  for (const p of ['seq', 'reverse', 'stride:3', 'stride:100', 'random:0', 'random:42']) {
    const ts = pageOrder(p, 37);
    assert.deepEqual(ts.map(String), fmpattern('order', p, '37'), p);
    assert.deepEqual([...ts].sort((a, b) => a - b), Array.from({ length: 37 }, (_, i) => i), p);
  }
  assert.throws(() => pageOrder('stride:0', 4), { name: 'TypeError', message: 'Expected seq|reverse|stride:K|random:SEED|zipf:SEED for pattern but received "stride:0"' });
});

test('zipf:SEED agrees with C and is skewed: the hottest page takes about its zipf(0.99) share', () => {
  for (const [p, n] of [['zipf:0', 37], ['zipf:42', 37], ['zipf:7', 5000]] as const) {
    assert.deepEqual(pageOrder(p, n).map(String), fmpattern('order', p, String(n)), p);
  }
  const n = 5000;
  const counts = new Map<number, number>();
  for (const page of pageOrder('zipf:7', n)) counts.set(page, (counts.get(page) ?? 0) + 1);
  let h = 0;
  for (let i = 1; i <= n; i++) h += i ** -0.99;
  const top = Math.max(...counts.values());
  // Expected n / H(n) ≈ 546 draws of rank 1; a binomial sd is ~22, so 400..700 cannot be chance.
  assert.ok(top > 0.75 * (n / h) && top < 1.3 * (n / h), `hottest page drawn ${top} times`);
  assert.ok(counts.size < n * 0.6, `${counts.size} distinct pages of ${n}`);
});

test('checksum agrees with C', () => {
  const ts = expectedChecksum('random:9', 20, 2, (p) => patternPage(5n, p, 4096));
  assert.deepEqual([ts], fmpattern('checksum', '5', 'random:9', '20', '4096', '2'));
});

test('fnv1a matches the reference vectors', () => {
  // Published FNV-1a 64 test vectors.
  assert.equal(fnv1a(FNV_OFFSET, Buffer.from('')), 0xcbf29ce484222325n);
  assert.equal(fnv1a(FNV_OFFSET, Buffer.from('a')), 0xaf63dc4c8601ec8cn);
  assert.equal(fnv1a(FNV_OFFSET, Buffer.from('foobar')), 0x85944171f73967e8n);
});
