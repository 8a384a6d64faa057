// farmemd end to end: processes attach regions through libfarmem (fmattach) and the Node API, their
// pages go to a real memory server and come back from it after the daemon dropped them (a 1 MiB
// page cache, `farmem region evict`), and the region stats and /metrics count what happened.
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';

import { userfaultfdUnavailable } from '../helpers/env';
import { fmattach, start } from '../attach/fixture';
import { cli, farmemd, memoryServer, regionStats, scrape, settledStats, writeBackAndDrop, type Daemon } from './fixture';

const skip = userfaultfdUnavailable() ?? false;
const PS = 4096;

function nodeChild(d: Daemon, args: string[]) {
  return start(process.execPath, [path.join(__dirname, 'node_child.js'), d.attachSocket, ...args]);
}

function c(d: Daemon, args: string[], opts: { uid?: number } = {}) {
  return fmattach(d.attachSocket, args, opts);
}

test('paging end to end (real farmemd, memory server, faults)', { skip }, async (t) => {
  const ms = await memoryServer(t);
  const d = await farmemd(t, ms.address);
  const created = (name: string, size: string, extra: string[] = []) =>
    cli(d, ['region', 'create', name, '--size', size, '--prefetch', 'none', '--mode', '666', ...extra]).then((r) => assert.equal(r.code, 0, r.stderr));

  await t.test('a C process writes a pattern; another reads it back exactly from the memory server', async () => {
    const pages = 2048; // 8 MiB against a 1 MiB cache
    await created('cw', '8MiB');
    const w = await c(d, ['--region', 'cw', '--pages', String(pages), '--op', 'write', '--seed', '7']).done;
    assert.equal(w.code, 0, w.stderr);
    const wrote = JSON.parse(w.stdout);
    assert.equal(wrote.mismatches, 0);
    await writeBackAndDrop(d, 'cw');

    const s0 = await regionStats(d, 'cw');
    const m0 = await scrape(d);
    // The reader stays attached (paused before a last, fault-free read) while the counts are taken:
    // cache hits reach the pager in held-back batches, and ones that arrive after the process is
    // gone are dropped (a known race, see the report).
    const run = c(d, ['--region', 'cw', '--pages', String(pages), '--op', 'verify,read', '--seed', '7', '--pause']);
    await run.line((l) => l.includes('"ready":"verify"'));
    run.child.stdin!.write('go\n');
    const verified = JSON.parse(await run.line((l) => l.includes('"op":"verify"')));
    assert.equal(verified.mismatches, 0);
    assert.equal(verified.checksum, wrote.checksum);
    await run.line((l) => l.includes('"ready":"read"'));
    const s1 = await settledStats(d, 'cw', (s) => s.faults.remote + s.faults.cacheHit - s0.faults.remote - s0.faults.cacheHit >= pages);
    const m1 = await scrape(d);
    run.child.stdin!.write('go\n');
    const v = await run.done;
    assert.equal(v.code, 0, v.stderr);

    // Every page was dropped, so each first read is one fault: from the 1 MiB cache or remote.
    const remote = s1.faults.remote - s0.faults.remote;
    const hits = s1.faults.cacheHit - s0.faults.cacheHit;
    assert.equal(remote + hits, pages);
    assert.ok(remote >= pages - (1024 * 1024) / PS, `remote faults ${remote}: the cache holds at most 256 pages`);
    assert.equal(s1.faults.zero - s0.faults.zero, 0, 'every page was written: none is absent');
    assert.equal(s1.remoteBytesIn - s0.remoteBytesIn, remote * PS);
    assert.ok(s1.faultP50Us > 0 && s1.faultP99Us >= s1.faultP50Us, `p50 ${s1.faultP50Us} µs, p99 ${s1.faultP99Us} µs`);

    // /metrics moved by the same amounts.
    const delta = (k: string) => (m1.get(k) ?? 0) - (m0.get(k) ?? 0);
    assert.equal(delta('farmem_faults_total{kind="remote"}'), remote);
    assert.equal(delta('farmem_faults_total{kind="cache_hit"}'), hits);
    assert.equal(delta('farmem_faults_total{kind="zero"}'), 0);
    assert.equal(delta('farmem_remote_bytes_total{direction="in"}'), remote * PS);
    assert.equal(delta('farmem_fault_service_seconds_count{kind="remote"}'), remote);
    assert.equal(m1.get('farmem_region_resident_pages{region="cw"}'), pages);
    assert.equal(m1.get('farmem_region_resident_bytes{region="cw"}'), pages * PS);
    assert.equal(m1.get('farmem_region_dirty_pages{region="cw"}'), 0);
    assert.equal(m1.get('farmem_attachments'), 1, 'the reader is still attached');
    assert.ok((m1.get('farmem_cache_bytes') ?? -1) <= 1024 * 1024);
    // The write pass: every page was written back once (sync), nothing since.
    assert.equal(m1.get('farmem_writeback_pages_total'), pages);
    assert.equal(m1.get('farmem_remote_bytes_total{direction="out"}'), pages * PS);
  });

  await t.test('a Node process does the same through the Node API, and C reads what Node wrote', async () => {
    await created('nw', '2MiB');
    const w = await nodeChild(d, ['write', 'nw', '512', '9']).done;
    assert.equal(w.code, 0, w.stderr);
    await writeBackAndDrop(d, 'nw');
    const s0 = await regionStats(d, 'nw');
    const run = nodeChild(d, ['verify', 'nw', '512', '9', '--hold']);
    assert.deepEqual(JSON.parse(await run.line((l) => l.includes('"op"'))), { op: 'verify', pages: 512, mismatches: 0 });
    const s1 = await settledStats(d, 'nw', (s) => s.faults.remote + s.faults.cacheHit - s0.faults.remote - s0.faults.cacheHit >= 512);
    run.child.stdin!.write('go\n');
    const v = await run.done;
    assert.equal(v.code, 0, v.stderr);
    assert.equal(s1.faults.remote - s0.faults.remote + s1.faults.cacheHit - s0.faults.cacheHit, 512);
    assert.ok(s1.faults.remote - s0.faults.remote >= 256);

    await writeBackAndDrop(d, 'nw');
    const cv = await c(d, ['--region', 'nw', '--pages', '512', '--op', 'verify', '--seed', '9']).done;
    assert.equal(cv.code, 0, cv.stderr);
    assert.equal(JSON.parse(cv.stdout).mismatches, 0);
  });

  await t.test('two processes attached at once see each other\'s writes', async () => {
    await created('both', '1MiB');
    // Node attached and waiting; C writes; Node then reads what C wrote.
    const reader = nodeChild(d, ['verify', 'both', '64', '21', '--pause']);
    await reader.line((l) => l.includes('"ready"'));
    const w = await c(d, ['--region', 'both', '--pages', '64', '--op', 'write', '--seed', '21']).done;
    assert.equal(w.code, 0, w.stderr);
    reader.child.stdin!.write('go\n');
    const r = await reader.done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(JSON.parse(r.stdout.split('\n')[1]!).mismatches, 0);

    // C attached (and has read every page: they are mapped in it), Node overwrites them: C sees the new bytes.
    const cr = c(d, ['--region', 'both', '--pages', '64', '--op', 'verify,verify', '--seed', '21', '--pause']);
    await cr.line((l) => l.includes('"ready"'));
    cr.child.stdin!.write('go\n');
    await cr.line((l) => l.includes('"mismatches":0'));
    await cr.line((l) => l.includes('"ready"'));
    const nw = await nodeChild(d, ['write', 'both', '64', '22']).done;
    assert.equal(nw.code, 0, nw.stderr);
    cr.child.stdin!.write('go\n');
    const out = await cr.done;
    assert.equal(out.code, 1, 'the second verify (seed 21) must see seed 22 everywhere');
    assert.equal(JSON.parse(out.stdout.trim().split('\n').at(-1)!).mismatches, 64);
    const again = await c(d, ['--region', 'both', '--pages', '64', '--op', 'verify', '--seed', '22']).done;
    assert.equal(again.code, 0, again.stderr);
  });
});
