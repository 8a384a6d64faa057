// Every policy against every pattern in the simulator: what it must detect, and where it must stay quiet.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPrefetcher, ReadaheadPrefetcher, type PrefetchPolicy } from '../../daemon/prefetch';
import * as sim from '../helpers/prefetch-sim';

const REGION = 1 << 16;
const N = 4000;

const patterns: Record<string, sim.Access[]> = {
  sequential: sim.sequential(100, N),
  reverse: sim.reverse(60000, N),
  'stride 4': sim.strided(10, 4, N),
  'stride 7': sim.strided(10, 7, N),
  'stride -5': sim.strided(50000, -5, N),
  'two streams, two tids': sim.interleave(sim.sequential(0, N / 2, 1), sim.reverse(40000, N / 2, 2)),
  'two streams, one tid': sim.interleave(sim.sequential(0, N / 2, 1), sim.sequential(30000, N / 2, 1)),
  'two strides, one tid': sim.interleave(sim.strided(0, 4, N / 2, 1), sim.strided(30001, 7, N / 2, 1)),
  'uniform random': sim.uniformRandom(REGION, N, 42),
  'zipf 0.99': sim.zipf(REGION, 3 * N, 0.99, 42),
};

// What each policy is for: the patterns it must cover (coverage ≥ 95%, accuracy ≥ 90%); on every
// other pattern it must stay quiet (at most 5% extra pages).
const detects: Record<Exclude<PrefetchPolicy, 'none'>, string[]> = {
  readahead: ['sequential', 'reverse', 'two streams, two tids', 'two streams, one tid'],
  stride: ['sequential', 'reverse', 'stride 4', 'stride 7', 'stride -5', 'two streams, two tids', 'two streams, one tid', 'two strides, one tid'],
  // Leap's vote sees one delta history per thread: one thread interleaving two streams has no majority.
  trend: ['sequential', 'reverse', 'stride 4', 'stride 7', 'stride -5', 'two streams, two tids'],
  auto: ['sequential', 'reverse', 'stride 4', 'stride 7', 'stride -5', 'two streams, two tids', 'two streams, one tid', 'two strides, one tid'],
};

for (const mode of ['notify', 'cache', 'both', 'silent'] as const) {
  for (const [policy, covered] of Object.entries(detects)) {
    for (const [name, pattern] of Object.entries(patterns)) {
      const must = covered.includes(name);
      test(`${policy} ${must ? 'covers' : 'stays quiet on'} ${name} (uses reported by ${mode})`, () => {
        const p = createPrefetcher(policy as PrefetchPolicy, { regionPages: REGION, maxWindow: 64 });
        const r = sim.simulate(p, pattern, { mode });
        const summary = `coverage ${r.coverage.toFixed(3)}, accuracy ${r.accuracy.toFixed(3)}, extra ${r.extraRatio.toFixed(3)}`;
        if (must) {
          // auto first watches 64 accesses before it guesses: 2 points of coverage on 4000 accesses.
          assert.ok(r.coverage >= 0.95, `coverage: ${summary}`);
          assert.ok(r.accuracy >= 0.9, `accuracy: ${summary}`);
        } else {
          assert.ok(r.extraRatio <= 0.05, `extra pages: ${summary}`);
        }
      });
    }
  }
}

for (const evict of ['oldest', 'newest'] as const) {
  test(`with a cache of 40 guesses that drops the ${evict} first, guessing still pays and waste stays bounded`, () => {
    for (const policy of ['readahead', 'stride', 'trend', 'auto'] as const) {
      const p = createPrefetcher(policy, { regionPages: REGION, maxWindow: 64 });
      const r = sim.simulate(p, patterns['two streams, two tids']!, { capacity: 40, evict });
      const summary = `${policy}: coverage ${r.coverage.toFixed(3)}, wasted ${r.wastedPages} for ${r.accesses} accesses`;
      assert.ok(r.coverage >= 0.8, summary);
      assert.ok(r.wastedPages <= 2 * r.accesses, summary);
    }
  });
}

test('none never guesses', () => {
  const p = createPrefetcher('none', { regionPages: REGION, maxWindow: 64 });
  for (const pattern of Object.values(patterns)) {
    const r = sim.simulate(p, pattern);
    assert.equal(r.issuedPages, 0);
    assert.equal(r.coverage, 0);
  }
  assert.deepEqual(p.onPrefetchUsed(3), []);
  assert.equal(p.current?.(), 'none');
});

test('guesses stay inside the region and are never repeated while outstanding', () => {
  for (const policy of ['readahead', 'stride', 'trend'] as const) {
    const p = createPrefetcher(policy, { regionPages: 1000, maxWindow: 64 });
    const asked = new Set<number>();
    const record = (pages: number[] | void) => {
      for (const q of pages ?? []) {
        assert.ok(q >= 0 && q < 1000, `${policy} guessed ${q}`);
        assert.ok(!asked.has(q), `${policy} guessed ${q} twice`);
        asked.add(q);
      }
    };
    // Forward towards the end and backward towards 0, faulting on every page (no use reported).
    for (let i = 960; i < 1000; i++) record(p.onFault({ page: i, hit: false, tid: 1, write: false }));
    for (let i = 40; i >= 0; i--) record(p.onFault({ page: i, hit: false, tid: 2, write: false }));
    assert.ok(asked.size > 0, `${policy} guessed nothing`);
  }
});

test('a wasted guess shrinks the stream back to its smallest window', () => {
  const p = new ReadaheadPrefetcher({ regionPages: REGION, maxWindow: 64 });
  // Stream on tid 7: 10000, 10001 → first window of 16 pages (64 KiB).
  p.onFault({ page: 10000, hit: false, tid: 7, write: false });
  const first = p.onFault({ page: 10001, hit: false, tid: 7, write: false });
  assert.deepEqual(first, Array.from({ length: 16 }, (_, i) => 10002 + i));
  // Reaching the window's first page sends the next one, twice as big.
  const second = p.onPrefetchUsed(10002);
  assert.deepEqual(second, Array.from({ length: 32 }, (_, i) => 10018 + i));
  assert.deepEqual(p.streamsOf(7), [[1, 32]]);
  p.onPrefetchWasted(10030);
  assert.deepEqual(p.streamsOf(7), [[1, 16]]);
  // A waste reported for a page that is not an outstanding guess changes nothing.
  p.onPrefetchWasted(10030);
  p.onPrefetchWasted(5);
  assert.deepEqual(p.streamsOf(7), [[1, 16]]);
});

test('reset forgets every stream', () => {
  for (const policy of ['readahead', 'stride', 'trend'] as const) {
    const p = createPrefetcher(policy, { regionPages: REGION, maxWindow: 64 });
    for (let i = 0; i < 10; i++) p.onFault({ page: i, hit: false, tid: 1, write: false });
    p.reset();
    // One fault after a reset is no stream.
    assert.deepEqual(p.onFault({ page: 10, hit: false, tid: 1, write: false }), [], policy);
  }
});
