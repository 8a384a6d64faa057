import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatSize, humanSize, parseSize, tryParseSize } from '../../daemon/util/size';

test('sizes with binary units and plain bytes', () => {
  assert.equal(parseSize('4096', 'x'), 4096);
  assert.equal(parseSize('4KiB', 'x'), 4096);
  assert.equal(parseSize('256MiB', 'x'), 256 * 1024 * 1024);
  assert.equal(parseSize('1GiB', 'x'), 1024 ** 3);
  assert.equal(parseSize('2TiB', 'x'), 2 * 1024 ** 4);
  assert.equal(parseSize('1.5KiB', 'x'), 1536);
  assert.equal(parseSize(' 8 MiB ', 'x'), 8 * 1024 * 1024);
  assert.equal(parseSize(0, 'x'), 0);
  assert.equal(parseSize('12B', 'x'), 12);
});

test('bad sizes are refused with the name and the value', () => {
  assert.throws(() => parseSize('1GB', '--size'), { message: 'Expected a size in bytes (e.g. 4096, 4KiB, 256MiB, 1GiB) for --size but received "1GB"' });
  assert.throws(() => parseSize('-1', 'cache_size'), { message: 'Expected a size in bytes (e.g. 4096, 4KiB, 256MiB, 1GiB) for cache_size but received "-1"' });
  assert.throws(() => parseSize(1.5, 'n'), { message: 'Expected a size in bytes (e.g. 4096, 4KiB, 256MiB, 1GiB) for n but received 1.5' });
  assert.equal(tryParseSize('0.1KiB'), null);
  assert.equal(tryParseSize('kib'), null);
  assert.equal(tryParseSize(''), null);
});

test('sizes print back exactly and for people', () => {
  assert.equal(formatSize(1024 ** 3), '1GiB');
  assert.equal(formatSize(6144), '6KiB');
  assert.equal(formatSize(1000), '1000B');
  assert.equal(humanSize(512), '512 B');
  assert.equal(humanSize(1536 * 1024 * 1024), '1.5 GiB');
});
