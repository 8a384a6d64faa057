import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AutoPrefetcher } from '../../daemon/prefetch';
import * as sim from '../helpers/prefetch-sim';

const REGION = 1 << 16;
const make = () => new AutoPrefetcher({ regionPages: REGION, maxWindow: 64 });

test('auto picks a policy that fits each pattern', () => {
  const cases: Array<[string, sim.Access[], string[]]> = [
    ['sequential', sim.sequential(0, 3000), ['readahead']],
    ['reverse', sim.reverse(50000, 3000), ['readahead']],
    ['stride 4', sim.strided(0, 4, 3000), ['stride', 'trend']],
    ['stride 7', sim.strided(0, 7, 3000), ['stride', 'trend']],
    ['two streams, one tid', sim.interleave(sim.sequential(0, 1500), sim.sequential(30000, 1500)), ['readahead', 'stride']],
    ['two strides, one tid', sim.interleave(sim.strided(0, 4, 1500), sim.strided(30001, 7, 1500)), ['stride']],
    ['uniform random', sim.uniformRandom(REGION, 3000, 7), ['none']],
  ];
  for (const [name, pattern, fits] of cases) {
    const p = make();
    sim.simulate(p, pattern);
    assert.ok(fits.includes(p.current()), `${name}: picked ${p.current()} (scores ${JSON.stringify(p.scores())})`);
  }
});

test('auto keeps readahead on a long scan with the daemon\'s windows (readahead far larger than the others)', () => {
  // farmemd gives readahead up to 256 pages and the others 64. Readahead's newest guesses lie up to two
  // windows ahead of the scan; written off after a fixed 256 accesses, they made readahead's score fall
  // below zero mid-scan, and auto ran the rest of every sequential scan with stride's 64-page windows.
  for (const readaheadMaxWindow of [256, 1024]) {
    const p = new AutoPrefetcher({ regionPages: REGION, maxWindow: 64, readaheadMaxWindow });
    for (let part = 0; part < 40; part++) {
      sim.simulate(p, sim.sequential(part * 256, 256));
      if (part === 0) continue; // the first choice is made after 64 accesses
      assert.equal(p.current(), 'readahead', `window ${readaheadMaxWindow}, after ${(part + 1) * 256} pages: ${p.current()} (scores ${JSON.stringify(p.scores())})`);
      assert.ok(p.scores().readahead! >= 0.9, `window ${readaheadMaxWindow}, after ${(part + 1) * 256} pages: scores ${JSON.stringify(p.scores())}`);
    }
  }
});

test('auto guesses nothing until a candidate has shown it pays: a plain scan after 16 accesses, a mixed pattern after 64', () => {
  const p = make();
  assert.deepEqual(p.scores(), { readahead: null, stride: null, trend: null });
  for (let i = 0; i < 15; i++) assert.deepEqual(p.onFault({ page: i, hit: false, tid: 1, write: false }), []);
  assert.equal(p.current(), 'none');
  // The 16th access of a scan: readahead predicted 14 of 16 (more than 3 in 4), it starts at once.
  const first = p.onFault({ page: 15, hit: false, tid: 1, write: false });
  assert.equal(p.current(), 'readahead');
  assert.ok(first.length > 0 && first.every((q) => q > 15), JSON.stringify(first));

  // Every other access a random page: stride scores about half, below the early bar; it is chosen
  // at the first full choice, after 64 accesses.
  const q = make();
  const random = sim.uniformRandom(REGION, 40, 9).map((a) => a.page + 100_000);
  for (let i = 0; i < 63; i++) {
    const page = i % 2 === 0 ? 1000 + 4 * (i / 2) : random[(i - 1) / 2]!;
    assert.deepEqual(q.onFault({ page, hit: false, tid: 1, write: false }), [], `access ${i + 1}`);
  }
  assert.equal(q.current(), 'none');
  q.onFault({ page: 1000 + 4 * 32, hit: false, tid: 1, write: false });
  assert.notEqual(q.current(), 'none', JSON.stringify(q.scores()));
});

test('auto moves to none when a scan turns into random access, and back when a scan starts again', () => {
  const p = make();
  const scan = sim.simulate(p, sim.sequential(0, 2000));
  assert.equal(p.current(), 'readahead');
  assert.ok(scan.coverage > 0.95);
  const random = sim.simulate(p, sim.uniformRandom(REGION, 2000, 3).map((a) => ({ ...a, page: 10000 + (a.page % 50000) })));
  assert.equal(p.current(), 'none');
  // Guesses are made only while the scan's momentum lasts: a few windows at most.
  assert.ok(random.issuedPages <= 300, `issued ${random.issuedPages} pages on random access`);
  sim.simulate(p, sim.sequential(60000, 1000));
  assert.equal(p.current(), 'readahead');
});

test('auto ignores a use reported twice and uses of pages it never asked for', () => {
  const p = make();
  sim.simulate(p, sim.sequential(0, 200));
  const before = JSON.stringify(p.scores());
  assert.deepEqual(p.onPrefetchUsed(40000), []);
  assert.deepEqual(p.onFault({ page: 100, hit: true, tid: 1, write: false }), []); // touched already
  assert.equal(JSON.stringify(p.scores()), before);
  p.reset();
  assert.equal(p.current(), 'none');
  assert.deepEqual(p.scores(), { readahead: null, stride: null, trend: null });
});

/** A scan driven as the pager does: a guessed page's touch is a reported use, any other a fault. */
function scanner(p: AutoPrefetcher) {
  const guessed = new Set<number>();
  const touch = (page: number): number[] => {
    const used = guessed.delete(page);
    if (!used) touch.faults++;
    const out = used ? p.onPrefetchUsed(page) : p.onFault({ page, hit: false, tid: 1, write: false });
    for (const q of out) guessed.add(q);
    return out;
  };
  touch.faults = 0;
  touch.guessed = guessed;
  return touch;
}

test('auto runs a policy alone once it proved itself for a whole scoring window, with readahead\'s larger windows', () => {
  const p = new AutoPrefetcher({ regionPages: REGION, maxWindow: 64, readaheadMaxWindow: 256, aloneMaxWindow: 1024 });
  const touch = scanner(p);
  const alone: number[] = [];
  let shadowed = 0;
  for (let page = 0; page < 20000; page++) {
    const out = touch(page);
    if (out.length === 0) continue;
    if (p.committed()) alone.push(out.length);
    else shadowed = Math.max(shadowed, out.length);
  }
  assert.equal(p.current(), 'readahead');
  assert.ok(p.committed(), 'a plain scan is left to readahead alone');
  assert.ok(shadowed <= 256, `windows while the shadows run: at most 256, saw ${shadowed}`);
  assert.equal(Math.max(...alone), 1024, `windows alone: ${alone.join(' ')}`);
  assert.ok(p.scores().readahead! >= 0.9, JSON.stringify(p.scores()));
});

test('auto alone goes back to running every candidate on the first fault its policy did not ask for, or the first waste', () => {
  const p = new AutoPrefetcher({ regionPages: REGION, maxWindow: 64, readaheadMaxWindow: 256, aloneMaxWindow: 1024 });
  const touch = scanner(p);
  for (let page = 0; page < 5000; page++) touch(page);
  assert.ok(p.committed());
  // A fault far from the scan: not one of readahead's guesses.
  touch(60000);
  assert.equal(p.committed(), false);
  assert.equal(p.current(), 'readahead', 'the running policy stays');
  // The scan goes on. readahead's guesses still ahead of it count as its own: it keeps the score a
  // scan deserves, without a fault, and is left alone again after a warm-up and a scoring window.
  let lowest = Infinity;
  const faults = touch.faults;
  for (let page = 5000; page < 6000; page++) {
    touch(page);
    const s = p.scores().readahead;
    if (s !== null && s !== undefined) lowest = Math.min(lowest, s);
  }
  assert.equal(touch.faults, faults, 'no fault on the scan');
  assert.equal(p.current(), 'readahead');
  assert.ok(lowest >= 0.9, `readahead's lowest score after the shadows resumed: ${lowest}`);
  assert.ok(p.committed(), 'alone again');

  // One of its guesses wasted: they stopped paying somewhere.
  const far = Math.max(...touch.guessed);
  p.onPrefetchWasted(far);
  assert.equal(p.committed(), false);
});

test('auto never leaves a policy alone on random or zipf access', () => {
  for (const [name, pattern] of [
    ['uniform random', sim.uniformRandom(REGION, 20000, 5)],
    ['zipf 0.99', sim.zipf(REGION, 20000, 0.99, 13)],
  ] as const) {
    const p = new AutoPrefetcher({ regionPages: REGION, maxWindow: 64, readaheadMaxWindow: 256, aloneMaxWindow: 1024 });
    for (let i = 0; i < pattern.length; i += 500) {
      sim.simulate(p, pattern.slice(i, i + 500));
      assert.equal(p.committed(), false, `${name}, after ${i + 500} accesses: ${p.current()} ${JSON.stringify(p.scores())}`);
    }
  }
});

test('auto alone takes a fault on a page its policy guessed long ago, which its streams walked past, as a new pattern', () => {
  // A scan left to readahead alone; then a strided pass over the same pages. Readahead still
  // remembers most of them as its guesses (a scan's walked-over guesses are never reported), but no
  // stream of it is about to reach them: they are not what it is waiting for.
  const p = new AutoPrefetcher({ regionPages: REGION, maxWindow: 64, readaheadMaxWindow: 256, aloneMaxWindow: 1024 });
  // As farmemd's pager reports a scan over installed guesses: only a window's first page (held back)
  // is seen used; the reads of the rest raise no fault.
  const markers = new Set<number>();
  const installed = new Set<number>();
  for (let page = 0; page < 8000; page++) {
    if (installed.delete(page)) continue;
    const out = markers.delete(page) ? p.onPrefetchUsed(page) : p.onFault({ page, hit: false, tid: 1, write: false });
    if (out.length > 0) markers.add(out[0]!);
    for (const q of out.slice(1)) installed.add(q);
  }
  assert.ok(p.committed());
  p.onFault({ page: 5000, hit: false, tid: 1, write: false });
  assert.equal(p.committed(), false, 'a fault behind every stream is not one of its expected pages');
  for (let i = 0; i < 900; i++) p.onFault({ page: 5001 + 3 * i, hit: false, tid: 1, write: false });
  assert.notEqual(p.current(), 'readahead', `a strided pass is not left to readahead (${p.current()}, ${JSON.stringify(p.scores())})`);
});
