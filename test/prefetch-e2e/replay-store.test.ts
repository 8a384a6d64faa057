// The replay store and warm-up loop on their own: recordings per attachment, saved per region (the
// latest run wins), read back; warm-up walks the recording in order, in batches, and stops on abort.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ReplayStore, runWarmup, type Recording } from '../../daemon/prefetch';

test('ReplayStore records each attachment, saves the latest run per region, and loads it back', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-replay-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  const store = new ReplayStore(path.join(dir, 'replay'));
  assert.equal(store.load('r1'), null);
  store.begin(1, 'r1', 100, 4096);
  store.begin(2, 'r2', 100, 4096);
  for (const p of [5, 6, 5, 7, 99, 100, -1]) store.touch('r1', 1, p);
  store.touch('r1', null, 42); // a prefetched page used: every recorder of r1
  store.touch('r2', 2, 3);
  assert.deepEqual(await store.end(1), { file: store.fileOf('r1'), pages: 5 });
  assert.deepEqual(Array.from(store.load('r1')!.pages), [5, 6, 7, 99, 42]);
  assert.equal(await store.end(1), null); // already ended

  // A run that touched nothing leaves the last recording alone; a new run replaces it.
  store.begin(3, 'r1', 100, 4096);
  assert.equal(await store.end(3), null);
  assert.deepEqual(Array.from(store.load('r1')!.pages), [5, 6, 7, 99, 42]);
  store.begin(4, 'r1', 100, 4096);
  store.touch('r1', 4, 9);
  await store.end(4);
  assert.deepEqual(Array.from(store.load('r1')!.pages), [9]);
  assert.equal(store.load('r2'), null); // still recording
  await store.end(2);
  assert.deepEqual(store.load('r2'), { pageSize: 4096, regionPages: 100, pages: new Uint32Array([3]) });
  store.remove('r1');
  assert.equal(store.load('r1'), null);

  fs.writeFileSync(store.fileOf('bad'), 'FMRP');
  assert.throws(() => store.load('bad'), { message: `Expected at least 28 bytes for ${store.fileOf('bad')} but received 4 bytes` });
});

test('runWarmup fetches in first-touch order, batch by batch, and stops when aborted', async () => {
  const rec: Recording = { pageSize: 4096, regionPages: 1000, pages: Uint32Array.from({ length: 600 }, (_, i) => 999 - i) };
  const seen: number[][] = [];
  const reports: number[] = [];
  const done = await runWarmup(rec, async (b) => (seen.push(b), b.length - 1), (p) => reports.push(p.batchesDone), new AbortController().signal, { batchPages: 256, depth: 2 });
  assert.deepEqual(seen.map((b) => b.length), [256, 256, 88]);
  assert.deepEqual(seen.flat(), Array.from(rec.pages));
  assert.deepEqual(reports, [1, 2, 3]);
  assert.deepEqual(done, { batchesDone: 3, batches: 3, pagesFetched: 597, pagesDone: 600, pagesTotal: 600 });

  const ac = new AbortController();
  let calls = 0;
  const cut = await runWarmup(rec, async (b) => (++calls === 1 && ac.abort(), b.length), () => {}, ac.signal, { batchPages: 100, depth: 1 });
  assert.equal(cut.batchesDone, 1);
  assert.equal(calls, 1);
  await assert.rejects(runWarmup(rec, async () => 0, () => {}, ac.signal, { batchPages: 0 }), { message: 'Expected a positive integer for batchPages but received 0' });
});
