// RegionState's queue of untouched prefetched pages (the evictor's first victims): oldest first,
// one entry per page however often it comes and goes, and the PREF flag always in step with it.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PREF, RegionState, type RegionConfig } from '../../daemon/pager/state';
import { rng } from './rig';

function region(pages: number): RegionState {
  return new RegionState({ key: 1, name: 'q', ref: { id: 'q', pageSize: 4096 }, sizeBytes: pages * 4096, residentBytes: 0 } as RegionConfig);
}

test('prefetched pages come out oldest first; a taken page is skipped and counted out', () => {
  const r = region(64);
  for (const p of [5, 3, 9, 1]) r.addPrefetched(p);
  r.addPrefetched(3); // already there: keeps its place
  assert.deepEqual([...r.prefetched()], [5, 3, 9, 1]);
  assert.equal(r.takePrefetched(3), true);
  assert.equal(r.takePrefetched(3), false);
  assert.equal(r.takePrefetched(7), false);
  assert.equal(r.has(3, PREF), false);
  assert.deepEqual([...r.prefetched()], [5, 9, 1]);
  // Taking while walking (settlePassed does) leaves the walk intact.
  const seen: number[] = [];
  for (const p of r.prefetched()) {
    seen.push(p);
    r.takePrefetched(p);
  }
  assert.deepEqual(seen, [5, 9, 1]);
  assert.deepEqual([...r.prefetched()], []);
});

test('model check: random adds and takes over a small region, through many compactions, never lose or repeat a page', () => {
  const pages = 5000;
  const r = region(pages);
  // The walk must have been through compactions (and growth) for this to check anything.
  const spy = r as unknown as { compactPrefetched(): void };
  const compact = spy.compactPrefetched.bind(r);
  let compactions = 0;
  spy.compactPrefetched = () => {
    compactions++;
    compact();
  };
  const live = new Set<number>();
  /** Pages in the order of their first add; those never taken since keep that order in the walk. */
  const firsts: number[] = [];
  const added = new Set<number>();
  const taken = new Set<number>();
  const rand = rng(7);
  for (let step = 0; step < 60_000; step++) {
    const p = Math.floor(rand() * pages);
    // Phases: mostly adds, mostly takes (stale entries pile up), then a mix.
    if (rand() < (step < 20_000 ? 0.8 : step < 40_000 ? 0.2 : 0.55)) {
      r.addPrefetched(p);
      if (!added.has(p)) firsts.push(p);
      added.add(p);
      live.add(p);
    } else {
      assert.equal(r.takePrefetched(p), live.delete(p), `take of page ${p} at step ${step}`);
      taken.add(p);
    }
    if (step % 997 === 0) {
      const walk = [...r.prefetched()];
      assert.equal(new Set(walk).size, walk.length, `a page walked twice at step ${step}`);
      assert.deepEqual(new Set(walk), live, `the walk at step ${step}`);
      for (let q = 0; q < pages; q++) assert.equal(r.has(q, PREF), live.has(q), `PREF of page ${q} at step ${step}`);
      const pos = new Map(walk.map((q, i) => [q, i]));
      const kept = firsts.filter((q) => !taken.has(q));
      for (let i = 1; i < kept.length; i++) assert.ok(pos.get(kept[i - 1]!)! < pos.get(kept[i]!)!, `order of ${kept[i - 1]} and ${kept[i]} at step ${step}`);
    }
  }
  assert.ok(compactions >= 5, `only ${compactions} compactions`);
});
