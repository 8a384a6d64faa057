// The placement journal on a real file system: records survive a reopen, a torn tail is cut off,
// concurrent appends share one flush, compaction folds the log into a snapshot, and a leftover log
// of an interrupted compaction is never replayed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Journal } from '../../daemon/remote/journal';
import { applyOp, changes, decodeOp, decodeSnapshot, emptyState, encodeOp, encodeSnapshot, type PlacementOp } from '../../daemon/remote/placement-state';

function tmp(t: { after(fn: () => void): void }): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-journal-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

const rec = (i: number) => Buffer.from(`record ${i}`);
const texts = (bs: Buffer[]) => bs.map((b) => b.toString());

test('appended records come back on reopen, in order', async (t) => {
  const dir = tmp(t);
  const { journal, contents } = Journal.open(dir, 'r1');
  assert.deepEqual(contents, { snapshot: null, records: [], tornBytes: 0 });
  for (let i = 0; i < 5; i++) await journal.append(rec(i));
  await journal.close();
  const again = Journal.open(dir, 'r1');
  assert.deepEqual(texts(again.contents.records), ['record 0', 'record 1', 'record 2', 'record 3', 'record 4']);
  assert.equal(again.contents.tornBytes, 0);
  await again.journal.close();
});

test('appends made together share one flush (group commit)', async (t) => {
  const dir = tmp(t);
  const { journal } = Journal.open(dir, 'g');
  await Promise.all(Array.from({ length: 100 }, (_, i) => journal.append(rec(i))));
  assert.equal(journal.flushes, 1);
  await journal.append(rec(100));
  assert.equal(journal.flushes, 2);
  await journal.close();
  assert.equal(Journal.open(dir, 'g').contents.records.length, 101);
});

test('a torn tail (a crash mid-append) is cut off; the log goes on after the last whole record', async (t) => {
  const dir = tmp(t);
  const { journal } = Journal.open(dir, 'torn');
  for (let i = 0; i < 3; i++) await journal.append(rec(i));
  await journal.close();
  const file = path.join(dir, 'torn.0.log');
  const whole = fs.statSync(file).size;
  // Half of a fourth record's frame, then a record whose checksum is wrong.
  fs.appendFileSync(file, Buffer.from([40, 0, 0, 0, 1, 2]));
  let r = Journal.open(dir, 'torn');
  assert.deepEqual(texts(r.contents.records), ['record 0', 'record 1', 'record 2']);
  assert.equal(r.contents.tornBytes, 6);
  assert.equal(fs.statSync(file).size, whole);
  await r.journal.append(rec(3));
  await r.journal.close();
  const bad = Buffer.from('corrupted!');
  const head = Buffer.alloc(8);
  head.writeUInt32LE(bad.length, 0);
  head.writeUInt32LE(12345, 4);
  fs.appendFileSync(file, Buffer.concat([head, bad]));
  r = Journal.open(dir, 'torn');
  assert.deepEqual(texts(r.contents.records), ['record 0', 'record 1', 'record 2', 'record 3']);
  assert.equal(r.contents.tornBytes, 8 + bad.length);
  await r.journal.close();
});

test('compaction folds the log into a snapshot; appends after it (and during it) are kept', async (t) => {
  const dir = tmp(t);
  const { journal } = Journal.open(dir, 'c');
  for (let i = 0; i < 10; i++) await journal.append(rec(i));
  assert.ok(journal.size > 0);
  const during = journal.append(rec(10)); // pending when the snapshot is taken: folded into it
  const compacted = journal.compact(() => Buffer.from('state after 11 records'));
  await Promise.all([during, compacted]);
  assert.equal(journal.size, 0);
  await journal.append(rec(11));
  await journal.close();
  assert.deepEqual(fs.readdirSync(dir).sort(), ['c.1.log', 'c.snap']);
  const r = Journal.open(dir, 'c');
  assert.equal(r.contents.snapshot!.toString(), 'state after 11 records');
  assert.deepEqual(texts(r.contents.records), ['record 11']);
  await r.journal.remove();
  assert.deepEqual(fs.readdirSync(dir), []);
});

test('a log left by an interrupted compaction is ignored and deleted, never replayed over the snapshot', async (t) => {
  const dir = tmp(t);
  const { journal } = Journal.open(dir, 'i');
  await journal.append(rec(0));
  const old = fs.readFileSync(path.join(dir, 'i.0.log'));
  await journal.compact(() => Buffer.from('snap'));
  await journal.close();
  // The crash came after the snapshot's rename, before the old log was removed.
  fs.writeFileSync(path.join(dir, 'i.0.log'), old);
  const r = Journal.open(dir, 'i');
  assert.equal(r.contents.snapshot!.toString(), 'snap');
  assert.deepEqual(r.contents.records, []);
  assert.equal(fs.existsSync(path.join(dir, 'i.0.log')), false);
  await r.journal.close();
});

test('a snapshot that is not one is refused with the file named', (t) => {
  const dir = tmp(t);
  fs.writeFileSync(path.join(dir, 'x.snap'), 'garbage');
  assert.throws(() => Journal.open(dir, 'x'), { message: `journal ${path.join(dir, 'x.snap')}: Expected a snapshot (magic, generation, one checksummed record) but received 7 byte(s) that are not one` });
});

test('an append after close is refused', async (t) => {
  const dir = tmp(t);
  const { journal } = Journal.open(dir, 'z');
  await journal.close();
  await assert.rejects(journal.append(rec(0)), { message: 'journal z: closed' });
});

test('placement state: ops replayed from records equal the live state, and a snapshot round-trips it', () => {
  const live = emptyState();
  const ops = [
    { t: 'w', g: 0, p: [0, 1, 2], a: ['A', 'B'] },
    { t: 'w', g: 1, p: [16, 17], a: ['B', 'C'] },
    { t: 'w', g: 0, p: [1], a: ['A', 'C'] }, // B missed this write: page 1 is off its holders
    { t: 'w', g: 0, p: [2], a: ['B', 'A'] }, // back on its holders
    { t: 'w', g: 2, p: [32], a: ['C'] }, // C is the only copy (R=1): losing C keeps it
    { t: 'l', s: 'C' },
    { t: 'h', g: 1, h: ['B', 'A'] },
  ] satisfies PlacementOp[];
  const offs = ops.map((op) => applyOp(live, op));
  assert.deepEqual(offs, [false, false, true, false, false, false, false]);
  assert.deepEqual(live.override, new Map([[1, ['A']]]));
  assert.deepEqual(live.holders, new Map([[0, ['A', 'B']], [1, ['B', 'A']], [2, ['C']]]));
  const replayed = emptyState();
  for (const op of ops) applyOp(replayed, decodeOp(encodeOp(op)));
  assert.deepEqual(replayed, live);
  assert.deepEqual(decodeSnapshot(encodeSnapshot(live), 16), live);
  assert.deepEqual(decodeSnapshot(encodeSnapshot(emptyState()), 16), emptyState());
});

/** The placement state a journal holds: its snapshot, then its records replayed. */
function loadState(dir: string, name: string): { journal: Journal; state: ReturnType<typeof emptyState> } {
  const { journal, contents } = Journal.open(dir, name);
  const state = contents.snapshot === null ? emptyState() : decodeSnapshot(contents.snapshot, 16);
  for (const r of contents.records) applyOp(state, decodeOp(r));
  return { journal, state };
}

test('placement state: old copies still to discard survive a reopen and compaction, and their discard record clears them', async (t) => {
  const dir = tmp(t);
  let { journal, state } = loadState(dir, 'st');
  const record = async (op: PlacementOp) => {
    applyOp(state, op);
    await journal.append(encodeOp(op));
  };
  await record({ t: 'w', g: 0, p: [0, 1], a: ['A'] });
  await record({ t: 'w', g: 1, p: [16], a: ['A', 'C'] });
  await record({ t: 'h', g: 0, h: ['B'], d: ['A'] }); // moved A → B: A still holds an old copy
  await record({ t: 'h', g: 1, h: ['B', 'C'], d: ['A'] });
  assert.deepEqual(state.stale, new Map([[0, ['A']], [1, ['A']]]));
  await journal.close();
  ({ journal, state } = loadState(dir, 'st')); // a crash before any discard: replayed from the log
  assert.deepEqual(state.stale, new Map([[0, ['A']], [1, ['A']]]));
  await record({ t: 'd', g: 1, s: 'A' }); // A acknowledged the discard of group 1
  assert.equal(changes(state, { t: 'd', g: 1, s: 'A' }), false); // (again: nothing to record)
  await journal.compact(() => encodeSnapshot(state));
  await journal.close();
  ({ journal, state } = loadState(dir, 'st')); // from the snapshot alone
  assert.deepEqual(state.stale, new Map([[0, ['A']]]));
  assert.deepEqual(state.holders, new Map([[0, ['B']], [1, ['B', 'C']]]));
  await record({ t: 'd', g: 0, s: 'A' });
  await journal.close();
  ({ journal, state } = loadState(dir, 'st'));
  assert.deepEqual(state.stale, new Map());
  // A group that moves back to a server with a pending discard makes its copy current again.
  await record({ t: 'h', g: 0, h: ['A'], d: ['B'] });
  await record({ t: 'h', g: 0, h: ['C'], d: ['A'] });
  assert.deepEqual(state.stale, new Map([[0, ['B', 'A']]]));
  await record({ t: 'h', g: 0, h: ['A'] });
  assert.deepEqual(state.stale, new Map([[0, ['B']]]));
  await journal.close();
  ({ journal, state } = loadState(dir, 'st'));
  assert.deepEqual(state.stale, new Map([[0, ['B']]]));
  await journal.close();
  // A snapshot of a daemon that did not know stale copies yet loads as none.
  assert.deepEqual(decodeSnapshot(Buffer.from('{"v":1,"servers":["A"],"written":"AQ==","holders":[[0,0]],"override":[]}'), 16).stale, new Map());
});

test('placement state: a record that is not one is refused', () => {
  assert.throws(() => decodeOp(Buffer.from('{"t":"x"}')), { message: 'Expected a placement record (w, h, l or d) but received {"t":"x"}' });
  assert.throws(() => decodeSnapshot(Buffer.from('{"v":2}'), 16), { message: 'Expected a placement snapshot (v 1) but received {"v":2}' });
  assert.throws(() => decodeSnapshot(Buffer.from('{"v":1,"servers":[],"written":"","holders":[[0,3]],"override":[]}'), 16), { message: 'Expected a server index below 0 for a placement snapshot but received 3' });
  assert.throws(() => decodeSnapshot(Buffer.from('{"v":1,"servers":[],"written":"","holders":[],"override":[],"stale":7}'), 16), { message: 'Expected a list of stale copies for a placement snapshot but received 7' });
});
