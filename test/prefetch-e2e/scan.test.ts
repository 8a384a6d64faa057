// Real faults through a real farmemd: data written, written back and evicted, then read again with
// each prefetcher. A sequential scan (and a stride-4 one) must mostly hit, the figures `farmem
// region show` reports must say so, and Prometheus must export the same figures.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { userfaultfdUnavailable } from '../helpers/env';
import { delta, startDaemon, type Daemon } from './fixture';

const PAGES = 4096; // a 16 MiB region of 4 KiB pages
const skip = userfaultfdUnavailable() ?? false;

/** Writes the region, makes it clean and drops it, then runs `pattern` over it with verify. */
function scan(d: Daemon, name: string, prefetch: string, pattern: string) {
  d.cli(['region', 'create', name, '--size', '16MiB', '--resident', '4MiB', '--prefetch', prefetch]);
  d.fmattach(['--region', name, '--pages', String(PAGES), '--op', 'write', '--seed', '11']);
  d.cli(['region', 'sync', name]);
  d.cli(['region', 'evict', name]);
  const before = d.show(name);
  const [res] = d.fmattach(['--region', name, '--pages', String(PAGES), '--op', 'verify', '--seed', '11', '--pattern', pattern]);
  assert.equal(res!.mismatches, 0, `${prefetch} ${pattern}: bytes read back differ`);
  const after = d.show(name);
  return { before, after, run: delta(before, after) };
}

test('a sequential scan of an evicted region mostly hits with readahead, trend and auto; stride 4 with stride', { skip, timeout: 180_000 }, async (t) => {
  const d = await startDaemon('1MiB');
  t.after(() => d.stop());
  for (const [prefetch, pattern] of [['readahead', 'seq'], ['trend', 'seq'], ['auto', 'seq'], ['stride', 'stride:4'], ['trend', 'stride:4']] as const) {
    const name = `${prefetch}-${pattern.replace(':', '')}`;
    const { after, run } = scan(d, name, prefetch, pattern);
    const msg = `${name}: ${JSON.stringify(run)}`;
    // Coverage from the daemon's own counters: faults avoided ÷ faults that would have happened.
    // Measured under this 4 MiB budget (the machine busy): readahead 0.95-0.98, stride 0.95-0.96,
    // auto 0.82-0.94 (it first watches 16-64 faults, and its windows still race the cache at times).
    const floor = prefetch === 'auto' ? 0.75 : 0.85;
    assert.ok(run.coverage >= floor, msg);
    assert.ok(run.remote <= PAGES * (1 - floor), msg);
    // Guesses installed straight into the region and read without a fault are invisible to the
    // pager; when one is evicted, the policy says whether a stream walked over it (a use). trend says
    // so of the guesses a fault past its window claimed. Measured: readahead and stride 0.96-1.0,
    // trend 0.97-0.99 (0.78 before it answered whereIs), auto 0.86-0.94.
    assert.ok(run.accuracy >= (prefetch === 'auto' ? 0.8 : 0.9), msg);
    const s = after.stats;
    assert.equal(s.prefetchWastedBytes, s.prefetchWastedPages * 4096);
    assert.ok(Math.abs(s.prefetchAccuracy - s.prefetchUsedPages / s.prefetchedPages) < 1e-9, msg);
    assert.ok(s.prefetchCoverage > 0 && s.prefetchCoverage <= 1, msg);
    assert.equal(after.prefetch, prefetch);
    // auto says which policy it runs now (none again once the process left: its streams ended).
    if (prefetch === 'auto') assert.equal(s.prefetchPolicy, 'none', msg);
    else assert.equal(s.prefetchPolicy, prefetch);
  }

  // Prometheus exports the same per-region figures.
  const text = await d.scrape();
  const s = d.show('readahead-seq').stats;
  const metric = (line: string) => Number(text.split('\n').find((l) => l.startsWith(line + ' '))?.slice(line.length + 1));
  assert.equal(metric('farmem_region_prefetch_pages{region="readahead-seq",outcome="issued"}'), s.prefetchedPages);
  assert.equal(metric('farmem_region_prefetch_pages{region="readahead-seq",outcome="used"}'), s.prefetchUsedPages);
  assert.equal(metric('farmem_region_prefetch_pages{region="readahead-seq",outcome="wasted"}'), s.prefetchWastedPages);
  assert.equal(metric('farmem_region_prefetch_wasted_bytes{region="readahead-seq"}'), s.prefetchWastedBytes);
  assert.equal(metric('farmem_region_prefetch_accuracy{region="readahead-seq"}'), s.prefetchAccuracy);
  assert.equal(metric('farmem_region_prefetch_coverage{region="readahead-seq"}'), s.prefetchCoverage);

  // The human view shows them too.
  const text2 = d.cli(['region', 'show', 'readahead-seq']).stdout;
  assert.match(text2, /prefetch: +readahead: \d+ pages, \d+ seen used \(or walked past by their stream\), accuracy \d+(\.\d)?%, coverage \d+(\.\d)?%, wasted /);
});

test('farmem region prefetch changes the policy of a live region from the next fault', { skip, timeout: 120_000 }, async (t) => {
  const d = await startDaemon('1MiB');
  t.after(() => d.stop());
  scan(d, 'sw', 'readahead', 'seq');
  const off = JSON.parse(d.cli(['region', 'prefetch', 'sw', 'none', '--json']).stdout) as { prefetch: string };
  assert.equal(off.prefetch, 'none');
  d.cli(['region', 'evict', 'sw']);
  let before = d.show('sw');
  d.fmattach(['--region', 'sw', '--pages', String(PAGES), '--op', 'verify', '--seed', '11']);
  let after = d.show('sw');
  assert.equal(after.prefetch, 'none');
  assert.equal(after.stats.prefetchPolicy, 'none');
  assert.equal(delta(before, after).issued, 0);

  assert.equal(d.cli(['region', 'prefetch', 'sw', 'trend']).stdout, 'region "sw": prefetch trend\n');
  d.cli(['region', 'evict', 'sw']);
  before = d.show('sw');
  d.fmattach(['--region', 'sw', '--pages', String(PAGES), '--op', 'verify', '--seed', '11']);
  after = d.show('sw');
  assert.equal(after.stats.prefetchPolicy, 'trend');
  assert.ok(delta(before, after).coverage >= 0.85, JSON.stringify(delta(before, after)));

  const bad = d.cli(['region', 'prefetch', 'sw', 'bogus'], true);
  assert.equal(bad.status, 2);
  assert.equal(bad.stderr, 'farmem: Expected auto, none, readahead, stride, trend for prefetch but received "bogus"\n');
  assert.equal(d.show('sw').prefetch, 'trend');
});

test('wrong guesses never change the bytes a process reads', { skip, timeout: 180_000 }, async (t) => {
  const d = await startDaemon('1MiB');
  t.after(() => d.stop());
  // readahead guesses on the first adjacent pair; random writes and reads make most guesses wrong,
  // while eviction under a 1 MiB budget keeps writing back and dropping pages under them.
  d.cli(['region', 'create', 'rnd', '--size', '16MiB', '--resident', '1MiB', '--prefetch', 'readahead']);
  d.fmattach(['--region', 'rnd', '--pages', String(PAGES), '--op', 'write', '--seed', '23', '--pattern', 'random:7']);
  const [a] = d.fmattach(['--region', 'rnd', '--pages', String(PAGES), '--op', 'verify', '--seed', '23', '--pattern', 'random:8']);
  assert.equal(a!.mismatches, 0);
  d.cli(['region', 'evict', 'rnd']);
  const [b] = d.fmattach(['--region', 'rnd', '--pages', String(PAGES), '--op', 'verify,write,verify', '--seed', '23', '--pattern', 'reverse']);
  assert.equal(b!.mismatches, 0);
  const [c] = d.fmattach(['--region', 'rnd', '--pages', String(PAGES), '--op', 'verify', '--seed', '23', '--pattern', 'stride:3']);
  assert.equal(c!.mismatches, 0);

  // trend stays quiet on random access: few guesses, so little waste.
  d.cli(['region', 'create', 'quiet', '--size', '16MiB', '--resident', '4MiB', '--prefetch', 'trend']);
  d.fmattach(['--region', 'quiet', '--pages', String(PAGES), '--op', 'write', '--seed', '5', '--pattern', 'random:3']);
  d.cli(['region', 'sync', 'quiet']);
  d.cli(['region', 'evict', 'quiet']);
  const before = d.show('quiet');
  const [q] = d.fmattach(['--region', 'quiet', '--pages', String(PAGES), '--op', 'verify', '--seed', '5', '--pattern', 'random:4']);
  assert.equal(q!.mismatches, 0);
  const run = delta(before, d.show('quiet'));
  assert.ok(run.issued <= PAGES * 0.05, JSON.stringify(run));
});

test('a rescan of an evicted region the page cache still holds installs its guesses from the cache: no network, few faults', { skip, timeout: 120_000 }, async (t) => {
  // The cache (64 MiB) holds the whole 16 MiB region after `region evict`. The FaultThread could serve
  // every page from it, but a fault each; the policy's windows come out of the cache ahead of the scan
  // instead, and guesses the scan already faulted in are not sent for over the network.
  const d = await startDaemon('64MiB');
  t.after(() => d.stop());
  for (const prefetch of ['readahead', 'auto']) {
    const name = `again-${prefetch}`;
    d.cli(['region', 'create', name, '--size', '16MiB', '--prefetch', prefetch]);
    d.fmattach(['--region', name, '--pages', String(PAGES), '--op', 'write', '--seed', '31']);
    d.cli(['region', 'sync', name]);
    d.cli(['region', 'evict', name]);
    const before = d.show(name);
    const [res] = d.fmattach(['--region', name, '--pages', String(PAGES), '--op', 'verify', '--seed', '31', '--pace-us', '20']);
    assert.equal(res!.mismatches, 0, `${prefetch}: bytes read back differ`);
    const after = d.show(name);
    const run = delta(before, after);
    const msg = `${prefetch}: ${JSON.stringify({ ...run, remoteBytesIn: after.stats.remoteBytesIn - before.stats.remoteBytesIn })}`;
    // A guess whose page the FaultThread is installing at that very moment is neither cached nor in
    // the memfd yet, and goes out: a page or two (before, the policy's guesses after each hit went to
    // the network: about 100 pages of every such rescan).
    assert.ok(after.stats.remoteBytesIn - before.stats.remoteBytesIn <= PAGES * 4096 * 0.01, `next to nothing crosses the network: ${msg}`);
    assert.equal(run.remote, 0, msg);
    // Every page was a cache-hit fault before (4096 of 4096). The process works 20 µs a page (as a
    // real one does something with its bytes) and yields the CPU: a scan at memory speed outruns
    // the policy, whose cache-hit events reach it up to 2 ms late, and how far depends on the load
    // (a verify at full speed measured 1100-2700 cache hits here and 3656 on a loaded CI machine).
    // Paced: 16-57 cache hits, also with both cores busy with other work.
    assert.ok(run.cacheHit <= PAGES * 0.1, msg);
    assert.ok(run.issued >= PAGES * 0.8, msg);
    // Every page is read, so every guess was used; accuracy counts those the policy saw used or saw
    // its stream walk past. The FaultThread hands cache hits to the daemon up to 2 ms late, and those
    // of the last windows arrive after the process is gone and its streams with it: a lower bound.
    // Measured 0.745 (readahead: its last 4 MiB window is never seen used) and 0.93 (auto).
    assert.ok(run.accuracy >= 0.6, msg);
  }
});
