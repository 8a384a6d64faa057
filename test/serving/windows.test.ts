// The prefetch windows a region's policy gets: readahead up to 4 MiB (a scan keeps about as much on
// the way as the raw stream's four reads), the others 64 pages, readahead under auto 256 pages (auto
// fetches the windows a candidate it takes up believes were sent) until auto runs it alone (then
// 4 MiB), all at most 1/16 of a budget.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { prefetchOptions } from '../../daemon/serving/runtime';

const spec = (prefetch: 'auto' | 'readahead' | 'stride' | 'trend', residentBytes = 0) => ({ prefetch, sizeBytes: 1 << 30, pageSize: 4096, residentBytes });

test('prefetch windows: readahead 1024 pages, under auto 256 (1024 alone), the others 64, at most 1/16 of a resident budget', () => {
  const w = (s: ReturnType<typeof spec>) => {
    const o = prefetchOptions(s);
    return [o.readaheadMaxWindow, o.aloneMaxWindow, o.maxWindow, o.regionPages];
  };
  assert.deepEqual(w(spec('readahead')), [1024, 1024, 64, 262144]);
  assert.deepEqual(w(spec('auto')), [256, 1024, 64, 262144]);
  assert.deepEqual(w(spec('stride')), [1024, 1024, 64, 262144]);
  // A 4 MiB budget: 1024 pages, windows of 64.
  assert.deepEqual(w(spec('readahead', 4 << 20)), [64, 64, 64, 262144]);
  assert.deepEqual(w(spec('auto', 4 << 20)), [64, 64, 64, 262144]);
  // Never below 16 pages.
  assert.deepEqual(w(spec('readahead', 64 << 10)), [16, 16, 16, 262144]);
});
