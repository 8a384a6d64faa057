// With a data dir, synced pages survive a restart, kill -9 of a real server process, and a torn tail;
// SIGTERM finishes, flushes and exits 0.
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { MemoryServerClient } from '../../daemon/remote/client';
import { randomPages, spawnServer, startServer, tmpDir } from './fixture';

function exited(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve({ code: child.exitCode, signal: child.signalCode });
  return new Promise((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
}

test('in-process restart with the data dir keeps synced pages, deletes and page sizes', async (t) => {
  const dir = tmpDir(t);
  const region = { id: 'keep', pageSize: 8192 };
  const data = randomPages(32, 8192);
  const pages = Array.from({ length: 32 }, (_, i) => i * 3);
  {
    const { server } = await startServer(t, { dataDir: dir });
    const c = new MemoryServerClient({ address: server.address });
    await c.write(region, pages, data);
    await c.write({ id: 'gone', pageSize: 4096 }, [1], randomPages(1, 4096));
    await c.deleteRegion('gone');
    await c.sync(region);
    await c.close();
    await server.stop();
  }
  const { server, lines } = await startServer(t, { dataDir: dir });
  assert.ok(lines.some((l) => l.msg === 'journal: replayed' && l.records === 3));
  const c = new MemoryServerClient({ address: server.address });
  t.after(() => c.close());
  const r = await c.read(region, pages);
  pages.forEach((p, i) => assert.ok(r.present.get(p)!.equals(data.subarray(i * 8192, (i + 1) * 8192))));
  assert.deepEqual((await c.read({ id: 'gone', pageSize: 4096 }, [1])).absent, [1]);
  const s = await c.stats();
  assert.equal(s.durable, true);
  assert.deepEqual(s.regions, [{ region: 'keep', pages: 32, pageSize: 8192 }]);
});

test('after Sync, acknowledged pages survive kill -9 of the server process and a restart', async (t) => {
  const dir = tmpDir(t);
  const first = await spawnServer(t, ['--data-dir', dir, '--capacity', '64MiB']);
  const c1 = new MemoryServerClient({ address: first.address });
  const region = { id: 'crash', pageSize: 4096 };
  const expected = new Map<number, Buffer>();
  await Promise.all(Array.from({ length: 8 }, async (_, b) => {
    const pages = Array.from({ length: 64 }, (_, i) => b * 64 + i);
    const data = randomPages(64, 4096);
    await c1.write(region, pages, data);
    pages.forEach((p, i) => expected.set(p, data.subarray(i * 4096, (i + 1) * 4096)));
  }));
  await c1.sync(region);
  // more writes in flight, never synced: they may or may not survive, but must not harm the rest
  const unsynced = Array.from({ length: 20 }, (_, i) => c1.write(region, [i], randomPages(1, 4096)).catch(() => undefined));
  first.child.kill('SIGKILL');
  assert.deepEqual(await exited(first.child), { code: null, signal: 'SIGKILL' });
  await Promise.all(unsynced);
  await c1.close();

  const second = await spawnServer(t, ['--data-dir', dir, '--capacity', '64MiB']);
  const c2 = new MemoryServerClient({ address: second.address });
  t.after(() => c2.close());
  const r = await c2.read(region, [...expected.keys()].filter((p) => p >= 20));
  assert.equal(r.absent.length, 0);
  for (const [p, b] of r.present) assert.ok(b.equals(expected.get(p)!), `page ${p}`);
  const low = await c2.read(region, Array.from({ length: 20 }, (_, i) => i));
  assert.equal(low.present.size, 20); // either the synced or the later bytes, never missing
  second.child.kill('SIGTERM');
  assert.deepEqual(await exited(second.child), { code: 0, signal: null });
});

test('a torn tail is cut off at the last whole record', async (t) => {
  const dir = tmpDir(t);
  const region = { id: 'torn', pageSize: 4096 };
  const data = randomPages(2, 4096);
  {
    const { server } = await startServer(t, { dataDir: dir });
    const c = new MemoryServerClient({ address: server.address });
    await c.write(region, [0, 1], data);
    await c.sync(region);
    await c.close();
    await server.stop();
  }
  const file = path.join(dir, 'journal');
  const whole = fs.statSync(file).size;
  fs.appendFileSync(file, Buffer.from([0x46, 0x4d, 0x4a, 0x31, 1, 2, 3])); // a record cut short
  const { server, lines } = await startServer(t, { dataDir: dir });
  assert.ok(lines.some((l) => l.msg === 'journal: cut a torn tail after the last whole record (never synced)' && l.validBytes === whole));
  assert.equal(fs.statSync(file).size, whole);
  const c = new MemoryServerClient({ address: server.address });
  t.after(() => c.close());
  const r = await c.read(region, [0, 1]);
  assert.ok(r.present.get(1)!.equals(data.subarray(4096)));
});

test('SIGTERM finishes in-flight writes, flushes the journal and exits 0; without a data dir it says pages are memory only', async (t) => {
  const dir = tmpDir(t);
  const srv = await spawnServer(t, ['--data-dir', dir]);
  assert.equal(srv.lines.at(-1)!.msg, 'memory server listening: pages are journaled in the data dir (durable after Sync)');
  const c = new MemoryServerClient({ address: srv.address });
  const region = { id: 'term', pageSize: 4096 };
  const data = randomPages(64, 4096);
  await c.write(region, [0], data.subarray(0, 4096));
  // 63 writes in flight when SIGTERM arrives: those acknowledged must all be kept
  const acked: number[] = [];
  const writes = Array.from({ length: 63 }, (_, i) => c.write(region, [i + 1], data.subarray((i + 1) * 4096, (i + 2) * 4096)).then(() => acked.push(i + 1), () => undefined));
  srv.child.kill('SIGTERM');
  await Promise.all(writes);
  assert.deepEqual(await exited(srv.child), { code: 0, signal: null });
  assert.ok(srv.lines.some((l) => l.msg === 'memory server stopped'));
  await c.close();
  // no Sync was called, but a graceful stop flushes: every acknowledged page is there
  const again = await spawnServer(t, ['--data-dir', dir]);
  const c2 = new MemoryServerClient({ address: again.address });
  t.after(() => c2.close());
  const r = await c2.read(region, [0, ...acked]);
  assert.equal(r.present.size, acked.length + 1);
  for (const [p, b] of r.present) assert.ok(b.equals(data.subarray(p * 4096, (p + 1) * 4096)), `page ${p}`);
  again.child.kill('SIGKILL');
  const mem = await spawnServer(t, []);
  assert.equal(mem.lines.at(-1)!.msg, 'memory server listening: no data dir, pages are kept in memory only and lost when it stops');
  assert.equal(mem.lines.at(-1)!.durable, false);
  mem.child.kill('SIGTERM');
  assert.deepEqual(await exited(mem.child), { code: 0, signal: null });
});

test('the journal is compacted when it outgrows the live pages, and replays the same', async (t) => {
  const dir = tmpDir(t);
  const region = { id: 'churn', pageSize: 4096 };
  let last = randomPages(16, 4096);
  const pages = Array.from({ length: 16 }, (_, i) => i);
  {
    const { server, lines } = await startServer(t, { dataDir: dir, journalCompactBytes: 256 * 1024 });
    const c = new MemoryServerClient({ address: server.address });
    for (let i = 0; i < 40; i++) {
      last = randomPages(16, 4096);
      await c.write(region, pages, last); // the same 64 KiB over and over: 2.5 MiB of journal
    }
    await c.sync(region);
    assert.ok(lines.some((l) => l.msg === 'journal: compacted'));
    assert.ok(fs.statSync(path.join(dir, 'journal')).size < 2 * 64 * 1024 + 256 * 1024);
    await c.close();
    await server.stop();
  }
  const { server } = await startServer(t, { dataDir: dir });
  const c = new MemoryServerClient({ address: server.address });
  t.after(() => c.close());
  const r = await c.read(region, pages);
  pages.forEach((p) => assert.ok(r.present.get(p)!.equals(last.subarray(p * 4096, (p + 1) * 4096)), `page ${p}`));
});
