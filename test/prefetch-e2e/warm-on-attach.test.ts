// Replay on attach through a real farmemd: a region created with --warm-on-attach replays its last
// recorded run whenever a process attaches, so that process finds its working set installed before
// it touches it — within the resident budget, bytes verified.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { userfaultfdUnavailable } from '../helpers/env';
import { delta, flushCache, pausedAttach, recordingOf, startDaemon, type Daemon, type RegionFigures } from './fixture';

const PAGES = 1024; // a 4 MiB region
const skip = userfaultfdUnavailable() ?? false;


/** Waits (bounded) until the region's figures satisfy `ok`: the warm-up runs in the background. */
async function until(d: Daemon, name: string, ok: (f: RegionFigures) => boolean): Promise<RegionFigures> {
  let f = d.show(name);
  for (let i = 0; i < 400 && !ok(f); i++) {
    await new Promise((r) => setTimeout(r, 25));
    f = d.show(name);
  }
  return f;
}

test('warm on attach: the next process finds its recorded working set installed, bytes verified', { skip, timeout: 120_000 }, async (t) => {
  const d = await startDaemon('1MiB');
  t.after(() => d.stop());
  d.cli(['region', 'create', 'wa', '--size', '4MiB', '--prefetch', 'none', '--warm-on-attach']);
  const shown = d.show('wa');
  assert.equal(shown.warmOnAttach, true);
  assert.match(d.cli(['region', 'show', 'wa']).stdout, /^warm on attach: +on \(replays the last recorded run when a process attaches\)$/m);

  // The first run has nothing to replay (it attaches as usual) and is recorded, in random order.
  d.fmattach(['--region', 'wa', '--pages', String(PAGES), '--op', 'write', '--seed', '6', '--pattern', 'random:5']);
  await recordingOf(d, 'wa', PAGES);
  d.cli(['region', 'sync', 'wa']);
  d.cli(['region', 'evict', 'wa']);
  flushCache(d, 512);
  const before = d.show('wa');
  assert.equal(before.stats.residentPages, 0);

  // Attached and not touching anything yet: the daemon brings the working set in by itself.
  const run = await pausedAttach(d, ['--region', 'wa', '--pages', String(PAGES), '--op', 'verify', '--seed', '6', '--pattern', 'random:5'], t);
  const warmed = await until(d, 'wa', (f) => f.stats.residentPages >= PAGES * 0.9);
  assert.ok(warmed.stats.residentPages >= PAGES * 0.9, JSON.stringify(warmed.stats));
  assert.equal((await run.go()).mismatches, 0);
  const after = d.show('wa');
  const r = delta(before, after);
  // Without the warm-up every one of these pages would be a remote fault.
  assert.ok(r.remote + r.zero <= PAGES * 0.1, JSON.stringify(r));
  assert.ok(r.issued >= PAGES * 0.9, JSON.stringify(r));

  // Off again: persisted in the registry, and shown.
  const off = JSON.parse(d.cli(['region', 'warm-on-attach', 'wa', 'off', '--json']).stdout) as { warmOnAttach: boolean };
  assert.equal(off.warmOnAttach, false);
  assert.equal(d.cli(['region', 'warm-on-attach', 'wa', 'off']).stdout.trim(), 'region "wa": warm on attach off');
  const reg = JSON.parse(fs.readFileSync(path.join(d.stateDir, 'regions.json'), 'utf8')) as { regions: Array<{ name: string; warmOnAttach?: boolean }> };
  assert.equal(reg.regions.find((x) => x.name === 'wa')!.warmOnAttach, false);
  assert.match(d.cli(['region', 'show', 'wa']).stdout, /^warm on attach: +off$/m);
  const bad = d.cli(['region', 'warm-on-attach', 'wa', 'maybe'], true);
  assert.equal(bad.status, 2);
  assert.equal(bad.stderr, "error: command-argument value 'maybe' is invalid for argument 'state'. Allowed choices are on, off.\n(run with --help for usage)\n");
});

test('warm on attach stays within the resident budget and never overwrites what the process has', { skip, timeout: 120_000 }, async (t) => {
  const d = await startDaemon('1MiB');
  t.after(() => d.stop());
  // Budget 1 MiB = 256 pages of the 1024 recorded: the rest can only be staged (1 MiB cache) or skipped.
  d.cli(['region', 'create', 'wb', '--size', '4MiB', '--resident', '1MiB', '--prefetch', 'none']);
  d.fmattach(['--region', 'wb', '--pages', String(PAGES), '--op', 'write', '--seed', '8', '--pattern', 'seq']);
  await recordingOf(d, 'wb', PAGES);
  d.cli(['region', 'sync', 'wb']);
  d.cli(['region', 'evict', 'wb']);
  flushCache(d, 512);
  d.cli(['region', 'warm-on-attach', 'wb', 'on']);
  const before = d.show('wb');

  const reader = await pausedAttach(d, ['--region', 'wb', '--pages', String(PAGES), '--op', 'verify', '--seed', '8', '--pattern', 'seq'], t);
  const warmed = await until(d, 'wb', (f) => f.stats.prefetchedPages - before.stats.prefetchedPages >= PAGES * 0.9);
  assert.ok(warmed.stats.prefetchedPages - before.stats.prefetchedPages >= PAGES * 0.9, JSON.stringify(warmed.stats));
  assert.ok(warmed.stats.residentPages > 0 && warmed.stats.residentPages <= 256, `resident ${warmed.stats.residentPages}, budget 256 pages`);
  assert.equal((await reader.go()).mismatches, 0);

  // A process that writes from its first instant races the warm-up: a page it already has is never
  // overwritten by the replayed (older) bytes.
  d.cli(['region', 'evict', 'wb']);
  d.fmattach(['--region', 'wb', '--pages', String(PAGES), '--op', 'write', '--seed', '9', '--pattern', 'seq']);
  const [check] = d.fmattach(['--region', 'wb', '--pages', String(PAGES), '--op', 'verify', '--seed', '9', '--pattern', 'seq']);
  assert.equal(check!.mismatches, 0);
});
