// Real server on port 0, real client: pages round-trip, absent pages, many clients, capacity, deletes.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MemoryServerClient } from '../../daemon/remote/client';
import { PageStoreError } from '../../daemon/remote/types';
import { randomPages, startServer } from './fixture';

test('random pages round-trip at 4 KiB and 64 KiB, never-written pages come back absent', async (t) => {
  const { server } = await startServer(t);
  const c = new MemoryServerClient({ address: server.address, streams: 2 });
  t.after(() => c.close());
  for (const pageSize of [4096, 65536]) {
    const region = { id: `r-${pageSize}`, pageSize };
    const pages = [0, 7, 3, 1000, 2 ** 20];
    const data = randomPages(pages.length, pageSize);
    await c.write(region, pages, data);
    const r = await c.read(region, [3, 4, 2 ** 20, 0, 7, 1000, 5]);
    assert.deepEqual(r.absent, [4, 5]);
    assert.deepEqual([...r.present.keys()], [3, 2 ** 20, 0, 7, 1000]);
    pages.forEach((p, i) => assert.ok(r.present.get(p)!.equals(data.subarray(i * pageSize, (i + 1) * pageSize)), `page ${p}`));
  }
  // overwrite one page, the others stay
  const region = { id: 'r-4096', pageSize: 4096 };
  const fresh = randomPages(1, 4096);
  await c.write(region, [7], fresh);
  assert.ok((await c.read(region, [7])).present.get(7)!.equals(fresh));
  const unknown = await c.read({ id: 'never-written', pageSize: 4096 }, [1, 2]);
  assert.deepEqual(unknown, { present: new Map(), absent: [1, 2] });
});

test('concurrent clients on many regions keep every page apart', async (t) => {
  const { server } = await startServer(t, { metricsListen: '127.0.0.1:0' });
  const clients = Array.from({ length: 4 }, () => new MemoryServerClient({ address: server.address, streams: 2 }));
  t.after(() => Promise.all(clients.map((c) => c.close())));
  const expected = new Map<string, Buffer>();
  await Promise.all(clients.flatMap((c, ci) => Array.from({ length: 8 }, async (_, ri) => {
    const region = { id: `c${ci}-r${ri}`, pageSize: 4096 };
    for (let b = 0; b < 4; b++) {
      const pages = Array.from({ length: 16 }, (_, i) => b * 16 + i);
      const data = randomPages(16, 4096);
      pages.forEach((p, i) => expected.set(`${region.id}/${p}`, data.subarray(i * 4096, (i + 1) * 4096)));
      await c.write(region, pages, data);
    }
  })));
  await Promise.all(clients.flatMap((c, ci) => Array.from({ length: 8 }, async (_, ri) => {
    const region = { id: `c${ci}-r${ri}`, pageSize: 4096 };
    const r = await c.read(region, Array.from({ length: 64 }, (_, i) => i));
    assert.equal(r.absent.length, 0);
    for (const [p, b] of r.present) assert.ok(b.equals(expected.get(`${region.id}/${p}`)!), `${region.id}/${p}`);
  })));
  const stats = await clients[0]!.stats();
  assert.equal(stats.usedBytes, 4 * 8 * 64 * 4096);
  assert.equal(stats.regions.length, 32);
  assert.equal(stats.durable, false);
  assert.match(stats.metricsText, /farmem_memserver_requests_total\{op="write",code="0"\} 128/);
  const scraped = await (await fetch(`http://${server.metricsAddress}/metrics`)).text();
  assert.match(scraped, /farmem_memserver_pages_total\{op="write"\} 2048/);
  assert.match(scraped, /farmem_memserver_used_bytes 8388608/);
});

test('a write past the capacity is refused whole with RESOURCE_EXHAUSTED naming the capacity; stored pages are unharmed', async (t) => {
  const { server } = await startServer(t, { capacityBytes: 16 * 4096 });
  const c = new MemoryServerClient({ address: server.address });
  t.after(() => c.close());
  const region = { id: 'full', pageSize: 4096 };
  const first = randomPages(12, 4096);
  await c.write(region, Array.from({ length: 12 }, (_, i) => i), first);
  const more = randomPages(8, 4096);
  await assert.rejects(c.write(region, [10, 11, 12, 13, 14, 15, 16, 17], more), (e: unknown) => {
    assert.ok(e instanceof PageStoreError);
    assert.equal(e.kind, 'exhausted');
    assert.equal(e.server, server.address);
    assert.equal(e.message, `write 8 pages of region "full" on ${server.address}: write of 8 pages (32 KiB) to region "full": capacity 64 KiB exhausted (48 KiB used)`);
    return true;
  });
  const r = await c.read(region, Array.from({ length: 18 }, (_, i) => i));
  assert.deepEqual(r.absent, [12, 13, 14, 15, 16, 17]);
  for (let i = 0; i < 12; i++) assert.ok(r.present.get(i)!.equals(first.subarray(i * 4096, (i + 1) * 4096)));
  // overwrites need no new room; the last free pages can still be filled
  await c.write(region, [0, 12, 13, 14, 15], randomPages(5, 4096));
  assert.equal(server.usedBytes, 16 * 4096);
  // deleting frees room for a region with another page size
  await c.deleteRegion('full');
  assert.equal(server.usedBytes, 0);
  await c.write({ id: 'big', pageSize: 65536 }, [0], randomPages(1, 65536));
  assert.equal(server.usedBytes, 65536);
  await c.deleteRegion('never-there'); // nothing stored: as deleted as it gets
});
