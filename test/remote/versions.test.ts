// Page versions end to end through the pool: a write that times out on a server and lands there late,
// after a newer write put newer bytes there, leaves the newer bytes (real memory servers on port 0,
// real clients, a TCP proxy holding one server's traffic); the daemon's version clock never goes back,
// across restarts too; repair copies pages with their stored versions.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import pino from 'pino';
import { MemoryServer } from '../../daemon/memserver/server';
import { MemoryServerClient } from '../../daemon/remote/client';
import { groupOf, pagesPerGroup, rank } from '../../daemon/remote/placement';
import { MemoryPool, type PoolMember } from '../../daemon/remote/pool';
import { PageStoreError, type PageStore, type ReadOptions, type ReadResult, type RegionRef, type WriteOptions } from '../../daemon/remote/types';
import { VersionClock } from '../../daemon/remote/versions';
import { StallProxy } from '../e2e/fixture';
import { randomPages } from '../memserver/fixture';

const logger = pino({ level: 'silent' });
const PS = 4096;

interface After {
  after(fn: () => Promise<void> | void): void;
}

async function server(t: After): Promise<MemoryServer> {
  const s = await MemoryServer.start({ listen: '127.0.0.1:0', capacityBytes: 64 * 1024 * 1024, dataDir: null, logger });
  t.after(() => s.stop(200));
  return s;
}

function tmp(t: After): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-versions-'));
  t.after(() => fs.rmSync(d, { recursive: true, force: true }));
  return d;
}

/**
 * A member's store that counts the writes it sends, and can be pointed at a new client: what the pool
 * does when it resets a partitioned server's connection (the old one may still deliver what it had).
 */
class SwitchableStore implements PageStore {
  sentWrites = 0;
  /** Refuses calls at once (between losing the old connection and opening a new one). */
  refusing = false;
  constructor(public current: MemoryServerClient, private readonly all: MemoryServerClient[] = [current]) {}
  switchTo(c: MemoryServerClient): void {
    this.current = c;
    this.refusing = false;
    this.all.push(c);
  }
  private check(): void {
    if (this.refusing) throw new PageStoreError('unavailable', 'connection refused', null);
  }
  async read(region: RegionRef, pages: readonly number[], opts?: ReadOptions): Promise<ReadResult> {
    this.check();
    return this.current.read(region, pages, opts);
  }
  async write(region: RegionRef, pages: readonly number[], data: Buffer, opts?: WriteOptions): Promise<void> {
    this.check();
    this.sentWrites++;
    return this.current.write(region, pages, data, opts);
  }
  sync(region: RegionRef): Promise<void> {
    return this.current.sync(region);
  }
  deleteRegion(id: string): Promise<void> {
    return this.current.deleteRegion(id);
  }
  async close(): Promise<void> {
    await Promise.all(this.all.map((c) => c.close()));
  }
}

async function until(what: string, cond: () => boolean): Promise<void> {
  for (let i = 0; !cond(); i++) {
    if (i > 1000) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/**
 * Three real servers, A behind a proxy that can hold its traffic, in a pool with R = 2; p is a page of
 * a group that A holds (among its top two in rendezvous order).
 */
async function raceRig(t: After, regionId: string, suspectAfter: number) {
  const [a, b, c] = [await server(t), await server(t), await server(t)];
  const proxy = await new StallProxy(a.address).start();
  t.after(() => proxy.close());
  const aStore = new SwitchableStore(new MemoryServerClient({ address: proxy.address }));
  const member = (id: string, store: PageStore): PoolMember => ({ id, weight: 1, store, health: async () => true });
  const pool = new MemoryPool([member(a.address, aStore), member(b.address, new MemoryServerClient({ address: b.address })), member(c.address, new MemoryServerClient({ address: c.address }))], {
    logger, replicas: 2, writeDeadlineMs: 300, readDeadlineMs: 300, downAfterMs: 60_000, suspectAfter, repairBytesPerSecond: 1e12,
  });
  t.after(() => pool.close());
  const region: RegionRef = { id: regionId, pageSize: PS };
  const perGroup = pagesPerGroup(PS);
  const ids = [a.address, b.address, c.address].map((id) => ({ id, weight: 1 }));
  let g = 0;
  while (!rank(ids, region.id, g).slice(0, 2).includes(a.address)) g++;
  const p = g * perGroup;
  assert.equal(groupOf(p, perGroup), g);
  const direct = new MemoryServerClient({ address: a.address });
  t.after(() => direct.close());
  const onA = async () => (await direct.read(region, [p])).present.get(p)!;
  return { a, proxy, aStore, pool, region, p, onA };
}

test('a write that times out and lands late, after a newer write reached the server, leaves the newer bytes', async (t) => {
  const { a, proxy, aStore, pool, region, p, onA } = await raceRig(t, 'b3c9a7d2-0000-4000-8000-00000000ace1', 100);
  const [d1, d2, d3] = [randomPages(1, PS), randomPages(1, PS), randomPages(1, PS)];
  await pool.write(region, [p], d1);
  // A's connection goes silent (a partition: nothing is lost, it is only held); the write to it
  // times out and goes to the third server instead.
  proxy.stall();
  await pool.write(region, [p], d2);
  assert.ok(proxy.heldBytes > PS, 'the write to A is held on its old connection');
  // The pool reaches A again on a new connection and writes newer bytes there.
  aStore.switchTo(new MemoryServerClient({ address: a.address }));
  await pool.write(region, [p], d3);
  assert.ok((await onA()).equals(d3), 'A holds the newest bytes');

  // Now the old connection delivers the write that timed out (and any repair copy held with it).
  proxy.resume();
  await until('A to have handled every write sent to it', () => a.metrics.writesTotal >= aStore.sentWrites);
  const now = await onA();
  assert.ok(!now.equals(d2), 'A holds the late write\'s (stale) bytes');
  assert.ok(now.equals(d3), 'A still holds the newest bytes');
  assert.ok(a.metrics.pagesSuperseded >= 1, 'the late write reached A and was superseded');
  assert.ok((await pool.read(region, [p])).present.get(p)!.equals(d3));
});

test('a write that times out and lands late, after repair copied the newer bytes there, leaves them', async (t) => {
  // suspectAfter 1: once A timed out, writes go to the other servers and only repair brings A the page.
  const { a, proxy, aStore, pool, region, p, onA } = await raceRig(t, 'b3c9a7d2-0000-4000-8000-00000000ace5', 1);
  const [d1, d2, d3] = [randomPages(1, PS), randomPages(1, PS), randomPages(1, PS)];
  await pool.write(region, [p], d1);
  proxy.stall();
  await pool.write(region, [p], d2); // times out on A (held), acknowledged by the two others
  assert.ok(proxy.heldBytes > PS, 'the write to A is held on its old connection');
  // A's old connection is given up (its held bytes stay in flight); a new one is not up yet.
  aStore.refusing = true;
  await pool.write(region, [p], d3); // A is suspect and refusing: the others take it
  assert.ok(!(await onA()).equals(d3), 'the newer write went to A directly');
  // The pool reaches A again on a new connection.
  aStore.switchTo(new MemoryServerClient({ address: a.address }));
  const before = aStore.sentWrites;
  await pool.checkHealth(); // A answers its health check: back up, repair brings it the group
  // Repair (scheduled by the writes off A) copies the newest bytes to A on the new connection.
  await until('repair to copy the newest bytes to A', () => aStore.sentWrites > before && pool.repairStatus().underReplicatedGroups === 0 && !pool.repairStatus().running);
  assert.ok((await onA()).equals(d3), 'repair put the newest bytes on A');

  proxy.resume();
  await until('A to have handled every write sent to it', () => a.metrics.writesTotal >= aStore.sentWrites);
  const now = await onA();
  assert.ok(!now.equals(d2), 'A holds the late write\'s (stale) bytes');
  assert.ok(now.equals(d3), 'A still holds the newest bytes');
  // A is a holder of the page again: reads from it must see the newest bytes.
  assert.ok((await pool.read(region, [p])).present.get(p)!.equals(d3));
});

test('repair copies each page with its stored version: a late copy never overwrites a newer write', async (t) => {
  const [a, b] = [await server(t), await server(t)];
  const region: RegionRef = { id: 'b3c9a7d2-0000-4000-8000-00000000ace2', pageSize: PS };
  const ca = new MemoryServerClient({ address: a.address });
  const cb = new MemoryServerClient({ address: b.address });
  const pool = new MemoryPool([{ id: a.address, weight: 1, store: ca, health: async () => true }, { id: b.address, weight: 1, store: cb, health: async () => true }], {
    logger, replicas: 1, versionClock: new VersionClock(null), repairBytesPerSecond: 1e12,
  });
  t.after(() => pool.close());
  const pages = Array.from({ length: 16 }, (_, i) => i);
  const data = randomPages(16, PS);
  await pool.write(region, pages, data);
  await pool.write(region, [3], randomPages(1, PS)); // page 3 gets a higher version than the rest
  const holder = (await ca.read(region, pages)).present.size === 16 ? ca : cb;
  const read = await holder.read(region, pages, { versions: true });
  const versions = pages.map((q) => read.versions!.get(q)!);
  assert.ok(versions.every((v) => v > 0), 'every page written through the pool is versioned');
  assert.ok(versions[3]! > versions[0]!, 'a later write of a page has a higher version');
  assert.equal(new Set(versions.filter((_, i) => i !== 3)).size, 1, 'one version for every page of a write');
  // Remove the holder: repair moves the pages to the other server, each with its stored version.
  const other = holder === ca ? cb : ca;
  await pool.removeMember(holder === ca ? a.address : b.address);
  const moved = await other.read(region, pages, { versions: true });
  assert.deepEqual(pages.map((q) => moved.versions!.get(q)), versions);
  pages.forEach((q) => q !== 3 && assert.ok(moved.present.get(q)!.equals(data.subarray(q * PS, (q + 1) * PS))));
  // A copy of page 0 as repair would have sent it earlier (its version then) is superseded by a newer write.
  await pool.write(region, [0], randomPages(1, PS));
  const now = (await other.read(region, [0])).present.get(0)!;
  await other.write(region, [0], data.subarray(0, PS), { versions: [versions[0]!] });
  assert.ok((await other.read(region, [0])).present.get(0)!.equals(now), 'an older copy overwrote a newer write');
});

test('the version clock only goes up: within a life, past its reserve, and across restarts with the wall clock going back', (t) => {
  const file = path.join(tmp(t), 'state', 'page-versions');
  let wall = 5_000_000;
  const c1 = new VersionClock(file, 1000, () => wall);
  const seen: number[] = [];
  for (let i = 0; i < 2500; i++) seen.push(c1.next()); // faster than the wall clock: runs ahead of it
  wall += 10; // a little wall time passes: still below what was issued
  seen.push(c1.next());
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i]! > seen[i - 1]!, `version ${i} went down`);
  assert.equal(seen[0], 5_000_001);
  // The persisted ceiling moved ahead as the reserve was used up.
  const ceiling = Number(fs.readFileSync(file, 'utf8'));
  assert.ok(ceiling >= seen.at(-1)!, `ceiling ${ceiling} below the last version ${seen.at(-1)}`);
  // A restart with the wall clock far back (or a burst that ran ahead of it): still above every version issued.
  const c2 = new VersionClock(file, 1000, () => 10);
  assert.ok(c2.next() > seen.at(-1)!);
  // With the wall clock ahead, versions follow it (µs).
  const c3 = new VersionClock(file, 1000, () => 9_000_000_000);
  assert.equal(c3.next(), 9_000_000_000 + 1);
  // One clock per state file in a process: the daemon's pools share it.
  assert.equal(VersionClock.forFile(file), VersionClock.forFile(path.join(path.dirname(file), '.', 'page-versions')));
});

test('a version file that holds something else stops the daemon from guessing a floor', (t) => {
  const file = path.join(tmp(t), 'page-versions');
  fs.writeFileSync(file, 'garbage\n');
  assert.throws(() => new VersionClock(file), { message: `page versions: Expected a version ceiling (an integer below 2^53) in ${file} but received "garbage\\n" (remove the file to start from the wall clock)` });
  fs.rmSync(file);
  fs.mkdirSync(file);
  assert.throws(() => new VersionClock(file), { message: `page versions: read ${file}: EISDIR: illegal operation on a directory, read` });
});

test('the pool refuses versions that match neither one nor every page', async () => {
  const pool = new MemoryPool([], { logger, versionClock: new VersionClock(null) });
  const region: RegionRef = { id: 'b3c9a7d2-0000-4000-8000-00000000ace4', pageSize: PS };
  await assert.rejects(pool.write(region, [1, 2, 3], randomPages(3, PS), { versions: [1, 2] }), {
    name: 'PageStoreError', message: `write ${region.id}: Expected one version, or one per page (3) for versions but received 2`,
  });
  await pool.close();
});

test('after a daemon restart with its state dir, writes still apply though the wall clock went back', async (t) => {
  const s = await server(t);
  const dir = tmp(t);
  const region: RegionRef = { id: 'b3c9a7d2-0000-4000-8000-00000000ace3', pageSize: PS };
  const file = path.join(dir, 'page-versions');
  const pool = (clock: VersionClock) => new MemoryPool([{ id: s.address, weight: 1, store: new MemoryServerClient({ address: s.address }), health: async () => true }], { logger, replicas: 1, stateDir: dir, versionClock: clock });
  const first = pool(new VersionClock(file, 1000, () => 2_000_000_000_000_000));
  await first.write(region, [1], randomPages(1, PS));
  await first.close();
  const second = pool(new VersionClock(file, 1000, () => 1_000_000_000_000_000)); // the wall clock went back
  t.after(() => second.close());
  const latest = randomPages(1, PS);
  await second.write(region, [1], latest);
  assert.ok((await second.read(region, [1])).present.get(1)!.equals(latest), 'the restarted daemon\'s write was applied');
  assert.equal(s.metrics.pagesSuperseded, 0);
});
