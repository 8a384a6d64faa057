// REAP-style replay through a real farmemd: a run's first-touch order is recorded when it detaches;
// `farmem region warm` then fetches that working set before the next run asks, so the next run's
// faults are served from the native page cache (or never happen), and its bytes are still right.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { userfaultfdUnavailable } from '../helpers/env';
import { parseRecording } from '../../daemon/prefetch';
import { delta, flushCache, pausedAttach, recordingOf, startDaemon } from './fixture';

const PAGES = 1024; // a 4 MiB region; the 6 MiB cache can stage its whole working set
const skip = userfaultfdUnavailable() ?? false;


test('replay after a recorded run turns most faults into cache hits, bytes verified', { skip, timeout: 120_000 }, async (t) => {
  const d = await startDaemon('6MiB');
  t.after(() => d.stop());
  d.cli(['region', 'create', 'rp', '--size', '4MiB', '--prefetch', 'none']);

  const refused = d.cli(['region', 'warm', 'rp'], true);
  assert.equal(refused.status, 1);
  assert.equal(refused.stderr.trim(), 'farmem: warm region "rp": no recorded run yet (a process must attach and detach first)');
  const unknown = d.cli(['region', 'warm', 'nope'], true);
  assert.equal(unknown.status, 1);
  assert.match(unknown.stderr, /region "nope"/);

  // The recorded run touches pages in a random order: replay must follow it, not a scan.
  d.fmattach(['--region', 'rp', '--pages', String(PAGES), '--op', 'write', '--seed', '3', '--pattern', 'random:9']);
  const rec = await recordingOf(d, 'rp', PAGES);
  assert.equal(rec.regionPages, PAGES);
  assert.notDeepEqual(Array.from(rec.pages.subarray(0, 8)), [0, 1, 2, 3, 4, 5, 6, 7]);
  d.cli(['region', 'sync', 'rp']);
  d.cli(['region', 'evict', 'rp']);
  flushCache(d, 2048);

  const before = d.show('rp');
  const warm = JSON.parse(d.cli(['region', 'warm', 'rp', '--json']).stdout) as { pagesDone: number; pagesTotal: number; bytesDone: number; message: string };
  assert.equal(warm.pagesTotal, PAGES);
  assert.equal(warm.pagesDone, PAGES);
  assert.match(warm.message, new RegExp(`^warmed: walked ${PAGES} of ${PAGES} recorded page\\(s\\), fetched \\d+$`));
  const [res] = d.fmattach(['--region', 'rp', '--pages', String(PAGES), '--op', 'verify', '--seed', '3', '--pattern', 'random:9']);
  assert.equal(res!.mismatches, 0);
  const run = delta(before, d.show('rp'));
  const msg = JSON.stringify(run);
  // Every page of the run was evicted; without replay each would be a remote fault.
  assert.ok(run.remote + run.zero <= PAGES * 0.1, msg);
  assert.ok(run.issued >= PAGES * 0.9, msg);
  // The fault thread holds cache-hit events back and hands them over in bunches; those still held
  // when the process exits are dropped with its attachment, so the count trails the real hits.
  assert.ok(run.cacheHit >= PAGES * 0.5 && run.used === run.cacheHit, msg);

  // A damaged recording is refused with the reason, and the daemon goes on serving.
  const id = (JSON.parse(d.cli(['region', 'show', 'rp', '--json']).stdout) as { id: string }).id;
  const file = path.join(d.stateDir, 'replay', `${id}.fmrp`);
  const good = fs.readFileSync(file);
  fs.writeFileSync(file, Buffer.concat([Buffer.from('XXXX'), good.subarray(4)]));
  const bad = d.cli(['region', 'warm', 'rp'], true);
  assert.equal(bad.status, 1);
  assert.equal(bad.stderr.trim(), `farmem: warm region "rp": Expected magic "FMRP" for ${file} but received "XXXX"`);
  d.cli(['region', 'show', 'rp']);
});

test('warm with a process attached installs the working set before it is touched', { skip, timeout: 120_000 }, async (t) => {
  const d = await startDaemon('1MiB');
  t.after(() => d.stop());
  d.cli(['region', 'create', 'live', '--size', '4MiB', '--prefetch', 'none']);
  d.fmattach(['--region', 'live', '--pages', String(PAGES), '--op', 'write', '--seed', '4', '--pattern', 'reverse']);
  await recordingOf(d, 'live', PAGES);
  d.cli(['region', 'sync', 'live']);
  d.cli(['region', 'evict', 'live']);
  flushCache(d, 512);
  const before = d.show('live');

  // The process attaches and waits before its verify pass; warm runs while it is attached.
  const reader = await pausedAttach(d, ['--region', 'live', '--pages', String(PAGES), '--op', 'verify', '--seed', '4', '--pattern', 'reverse'], t);
  d.cli(['region', 'warm', 'live']);
  const warmed = d.show('live');
  const res = await reader.go();
  assert.equal(res.mismatches, 0);
  // The 1 MiB cache holds 256 pages: most of the 1024 went straight into the region.
  assert.ok(warmed.stats.prefetchedPages - before.stats.prefetchedPages >= PAGES * 0.9);
  const run = delta(before, d.show('live'));
  assert.ok(run.remote + run.zero <= PAGES * 0.1, JSON.stringify(run));
});

test('a process still attached when farmemd stops keeps its recording: the next daemon can warm from it', { skip, timeout: 120_000 }, async (t) => {
  const d = await startDaemon('1MiB');
  t.after(() => d.stop());
  d.cli(['region', 'create', 'held', '--size', '4MiB', '--prefetch', 'none']);
  const id = (JSON.parse(d.cli(['region', 'show', 'held', '--json']).stdout) as { id: string }).id;
  const file = path.join(d.stateDir, 'replay', `${id}.fmrp`);
  // The writer finishes its pass, then waits attached before its verify pass: it never detaches.
  const writer = await pausedAttach(d, ['--region', 'held', '--pages', String(PAGES), '--op', 'write,verify', '--seed', '6', '--pattern', 'random:4'], t, 'verify');
  assert.equal(fs.existsSync(file), false, 'no recording while the run is attached');
  await d.terminate();
  writer.kill();
  const rec = parseRecording(fs.readFileSync(file));
  assert.equal(rec.pages.length, PAGES);
  assert.notDeepEqual(Array.from(rec.pages.subarray(0, 8)), [0, 1, 2, 3, 4, 5, 6, 7]);
});
