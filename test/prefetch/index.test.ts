import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrefetcher, isPrefetchPolicy, PREFETCH_POLICIES, type PrefetchPolicy } from '../../daemon/prefetch';

test('createPrefetcher makes each policy by name', () => {
  for (const name of PREFETCH_POLICIES) {
    const p = createPrefetcher(name, { regionPages: 100, maxWindow: 8 });
    assert.equal(p.name, name);
    assert.equal(p.current?.(), name === 'auto' ? 'none' : name);
  }
  assert.equal(isPrefetchPolicy('trend'), true);
  assert.equal(isPrefetchPolicy('leap'), false);
  assert.equal(isPrefetchPolicy(3), false);
});

test('createPrefetcher rejects bad names and options with a clear message', () => {
  assert.throws(() => createPrefetcher('leap' as PrefetchPolicy, { regionPages: 100, maxWindow: 8 }), {
    message: 'Expected one of auto, none, readahead, stride, trend for prefetch but received "leap"',
  });
  assert.throws(() => createPrefetcher('stride', { regionPages: 0, maxWindow: 8 }), {
    message: 'Expected a positive integer below 2^32 for regionPages but received 0',
  });
  assert.throws(() => createPrefetcher('stride', { regionPages: 2 ** 32, maxWindow: 8 }), {
    message: 'Expected a positive integer below 2^32 for regionPages but received 4294967296',
  });
  assert.throws(() => createPrefetcher('trend', { regionPages: 100, maxWindow: 1.5 }), {
    message: 'Expected a positive integer below 2^32 for maxWindow but received 1.5',
  });
  assert.throws(() => createPrefetcher('readahead', { regionPages: 100, maxWindow: 8, pageSize: 3000 }), {
    message: 'Expected a power of two for pageSize but received 3000',
  });
});
