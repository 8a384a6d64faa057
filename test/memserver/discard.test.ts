// Discard: a daemon frees the pages it no longer places on a server (a moved group's old copy).
// Freed pages read absent, the rest keep their bytes, Stats shows the room given back, and with a
// data dir a restart does not bring them back (also after a journal compaction).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { MemoryServerClient } from '../../daemon/remote/client';
import { PageStoreError } from '../../daemon/remote/types';
import { captureLogger, randomPages, startServer, tmpDir } from './fixture';

const page = (data: Buffer, i: number, ps = 4096) => data.subarray(i * ps, (i + 1) * ps);

test('discard frees only the pages asked (skipping those not stored); the region goes with its last page', async (t) => {
  const { server } = await startServer(t);
  const c = new MemoryServerClient({ address: server.address });
  t.after(() => c.close());
  const region = { id: 'moved', pageSize: 4096 };
  const data = randomPages(10, 4096);
  await c.write(region, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9], data);
  assert.equal(await c.discard(region, [2, 3, 4, 100]), 3);
  assert.equal(await c.discard(region, [2]), 0);
  assert.equal(await c.discard({ id: 'never', pageSize: 4096 }, [1]), 0);
  const s = await c.stats();
  assert.deepEqual(s.regions, [{ region: 'moved', pages: 7, pageSize: 4096 }]);
  assert.equal(s.usedBytes, 7 * 4096);
  const got = await c.read(region, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual(got.absent, [2, 3, 4]);
  for (const p of [0, 1, 5, 6, 7, 8, 9]) assert.ok(got.present.get(p)!.equals(page(data, p)), `page ${p}`);
  // The freed slots take new pages.
  const more = randomPages(3, 4096);
  await c.write(region, [20, 21, 22], more);
  assert.ok((await c.read(region, [21])).present.get(21)!.equals(page(more, 1)));
  assert.equal(await c.discard(region, [0, 1, 5, 6, 7, 8, 9, 20, 21, 22]), 10);
  const after = await c.stats();
  assert.deepEqual(after.regions, []);
  assert.equal(after.usedBytes, 0);
});

test('discard refuses a bad region id or page index with the whole message', async (t) => {
  const { server } = await startServer(t);
  const c = new MemoryServerClient({ address: server.address });
  t.after(() => c.close());
  const a = server.address;
  await assert.rejects(c.discard({ id: 'bad id', pageSize: 4096 }, [1]), (e: unknown) => {
    assert.ok(e instanceof PageStoreError);
    assert.equal(e.kind, 'invalid');
    assert.equal(e.message, `discard 1 page of region "bad id" on ${a}: INVALID_ARGUMENT: Expected a region id (1-128 characters of A-Z a-z 0-9 . _ -) for region but received "bad id"`);
    return true;
  });
  await c.write({ id: 'big', pageSize: 65536 }, [0], randomPages(1, 65536));
  await assert.rejects(c.discard({ id: 'big', pageSize: 65536 }, [0, 2 ** 24]), (e: unknown) => {
    assert.ok(e instanceof PageStoreError);
    assert.equal((e as PageStoreError & { code?: number }).code, grpc.status.OUT_OF_RANGE);
    assert.equal(e.message, `discard 2 pages of region "big" on ${a}: OUT_OF_RANGE: Expected page indexes below 16777216 for pages but received 16777216`);
    return true;
  });
  assert.equal((await c.stats()).usedBytes, 65536); // refused whole: nothing freed
});

test('discard needs the token like every call', async (t) => {
  const { server, lines } = await startServer(t, { token: 's3cret' });
  const none = new MemoryServerClient({ address: server.address });
  t.after(() => none.close());
  await assert.rejects(none.discard({ id: 'r', pageSize: 4096 }, [1]), {
    message: `discard 1 page of region "r" on ${server.address}: UNAUTHENTICATED: farmem-memserver: missing authorization metadata (Bearer token)`,
  });
  assert.ok(lines.some((l) => l.msg === 'refused unauthenticated call' && l.method === 'Discard'));
});

test('with a data dir, discarded pages stay freed after a restart, also after the journal was compacted', async (t) => {
  const dir = tmpDir(t);
  const region = { id: 'durable', pageSize: 4096 };
  const data = randomPages(64, 4096);
  const all = Array.from({ length: 64 }, (_, i) => i);
  {
    const { server } = await startServer(t, { dataDir: dir });
    const c = new MemoryServerClient({ address: server.address });
    await c.write(region, all, data);
    await c.write(region, all, data); // the journal holds more than twice the live pages: the third start compacts it
    assert.equal(await c.discard(region, all.filter((p) => p % 2 === 1)), 32);
    // A write after the discard wins over it on replay (page 1 comes back with new bytes).
    await c.write(region, [1], page(data, 63));
    await c.sync(region);
    await c.close();
    await server.stop(1000);
  }
  const check = async (server: { address: string }) => {
    const c = new MemoryServerClient({ address: server.address });
    try {
      const got = await c.read(region, all);
      assert.deepEqual(got.absent, all.filter((p) => p % 2 === 1 && p !== 1));
      for (const p of all.filter((x) => x % 2 === 0)) assert.ok(got.present.get(p)!.equals(page(data, p)), `page ${p}`);
      assert.ok(got.present.get(1)!.equals(page(data, 63)));
      assert.equal((await c.stats()).usedBytes, 33 * 4096);
      return c;
    } catch (e) {
      await c.close();
      throw e;
    }
  };
  {
    const { server } = await startServer(t, { dataDir: dir });
    const c = await check(server);
    await c.close();
    await server.stop(1000);
  }
  // Compaction rewrites the journal from the live pages: the freed ones are simply not in it.
  const { server, lines } = await startServer(t, { dataDir: dir, journalCompactBytes: 0 });
  assert.ok(lines.some((l) => l.msg === 'journal: compacted'));
  const c = await check(server);
  await c.close();
});

test('a server without Discard (older version) frees nothing: the client resolves 0 and says so once', async (t) => {
  const bare = new grpc.Server();
  const port = await new Promise<number>((res, rej) => bare.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (e, p) => (e ? rej(e) : res(p))));
  t.after(() => bare.forceShutdown());
  const { logger, lines } = captureLogger();
  const c = new MemoryServerClient({ address: `127.0.0.1:${port}`, logger });
  t.after(() => c.close());
  assert.equal(await c.discard({ id: 'r', pageSize: 4096 }, [1, 2]), 0);
  assert.equal(await c.discard({ id: 'r', pageSize: 4096 }, [3]), 0);
  assert.deepEqual(lines.filter((l) => l.level === 40).map((l) => l.msg), ['memory server does not implement Discard (older version): old copies of moved groups stay on it']);
});
