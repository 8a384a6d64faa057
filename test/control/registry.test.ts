import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { RegionRegistry, type NewRegion } from '../../daemon/regions';
import { tempDir } from '../helpers/farmemd';

const base: NewRegion = { name: 'db', sizeBytes: 1 << 30, pageSize: 4096, residentBytes: 0, servers: [], replicas: 1, prefetch: 'auto', onUnavailable: 'wait', dirtyTracking: 'auto', ownerUid: 1000, ownerGid: 1000, mode: 0o600 };

async function withRegistry(fn: (dir: string, r: RegionRegistry) => Promise<void>): Promise<void> {
  const dir = tempDir('reg');
  try {
    await fn(dir, await RegionRegistry.open(path.join(dir, 'state')));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  }
}

test('regions persist with stable ids across a reopen', async () => {
  await withRegistry(async (dir, r) => {
    const a = await r.create(base, 1);
    const b = await r.create({ ...base, name: 'cache.v2', residentBytes: 256 << 20 }, 1);
    assert.match(a.id, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    assert.notEqual(a.id, b.id);
    await r.update('db', { residentBytes: 8192 });
    const again = await RegionRegistry.open(path.join(dir, 'state'));
    assert.deepEqual(again.list().map((s) => [s.name, s.id, s.residentBytes]), [
      ['cache.v2', b.id, 256 << 20],
      ['db', a.id, 8192],
    ]);
    await again.delete('cache.v2');
    assert.deepEqual((await RegionRegistry.open(path.join(dir, 'state'))).list().map((s) => s.name), ['db']);
    // No temporary file is left behind by the atomic writes; the file is private.
    assert.deepEqual(fs.readdirSync(path.join(dir, 'state')), ['regions.json']);
    assert.equal(fs.statSync(path.join(dir, 'state', 'regions.json')).mode & 0o777, 0o600);
  });
});

test('concurrent creates are applied one at a time and all persist', async () => {
  await withRegistry(async (dir, r) => {
    await Promise.all(Array.from({ length: 8 }, (_, i) => r.create({ ...base, name: `r${i}` }, 1)));
    assert.equal((await RegionRegistry.open(path.join(dir, 'state'))).list().length, 8);
  });
});

test('bad names, sizes and settings are refused with what was expected', async () => {
  await withRegistry(async (_dir, r) => {
    const cases: Array<[Partial<NewRegion>, string]> = [
      [{ name: 'Bad' }, `Expected 1 to 63 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit, for region name but received "Bad"`],
      [{ name: '-x' }, `Expected 1 to 63 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit, for region name but received "-x"`],
      [{ name: 'a'.repeat(64) }, `Expected 1 to 63 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit, for region name but received "${'a'.repeat(64)}"`],
      [{ name: '' }, `Expected 1 to 63 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit, for region name but received ""`],
      [{ sizeBytes: 0 }, 'Expected a multiple of the page size (4KiB) from 4KiB to 64TiB for size but received 0'],
      [{ sizeBytes: 5000 }, 'Expected a multiple of the page size (4KiB) from 4KiB to 64TiB for size but received 5000'],
      [{ sizeBytes: 128 * 1024 ** 4 }, 'Expected a multiple of the page size (4KiB) from 4KiB to 64TiB for size but received 140737488355328'],
      [{ sizeBytes: 4 << 20, pageSize: 2 << 20 }, ''],
      [{ sizeBytes: 3 << 20, pageSize: 2 << 20 }, 'Expected a multiple of the page size (2MiB) from 2MiB to 64TiB for size but received 3145728'],
      [{ pageSize: 3000 }, 'Expected a power of two from 4KiB to 2MiB for page size but received 3000'],
      [{ pageSize: 4 << 20 }, 'Expected a power of two from 4KiB to 2MiB for page size but received 4194304'],
      [{ residentBytes: 100 }, 'Expected 0 (unlimited) or a multiple of the page size (4KiB) for resident budget but received 100'],
      [{ servers: ['nohost'] }, 'Expected host:port or unix:PATH for memory server but received "nohost"'],
      [{ servers: ['a:1'], replicas: 2 }, 'Expected at most 1 (the number of memory servers) for replicas but received 2'],
      [{ replicas: 0 }, 'Expected an integer from 1 to 16 for replicas but received 0'],
      [{ prefetch: 'magic' }, 'Expected auto, none, readahead, stride, trend for prefetch but received "magic"'],
      [{ onUnavailable: 'panic' }, 'Expected wait or sigbus for on-unavailable but received "panic"'],
      [{ dirtyTracking: 'lazy' }, 'Expected wp, async, auto for dirty tracking but received "lazy"'],
      [{ dirtyTracking: 'async', residentBytes: 1 << 20 }, 'create region "ok18": Expected no resident budget (0) for a region with dirty tracking async but received 1MiB: ' +
        'async write-protect cannot block a write between the read-back and the hole punch of an eviction, so that write would be lost; use --dirty-tracking wp (or auto) for a region with a resident budget'],
      [{ dirtyTracking: 'async' }, ''],
      [{ mode: 0o1777 }, 'Expected a file mode from 0 to 0o777 for mode but received 1023'],
    ];
    let i = 0;
    for (const [patch, message] of cases) {
      const n = { ...base, name: `ok${i++}`, ...patch };
      if (message === '') await r.create(n, 1);
      else await assert.rejects(r.create(n, 1), { name: 'RegionError', kind: 'invalid', message });
    }
  });
});

test('dirty tracking persists; registries from before it read as wp; an async region refuses a budget', async () => {
  await withRegistry(async (dir, r) => {
    await r.create({ ...base, name: 'as', dirtyTracking: 'async' }, 1);
    await assert.rejects(r.update('as', { residentBytes: 4096 }), {
      kind: 'invalid',
      message: 'resize region "as": Expected no resident budget (0) for a region with dirty tracking async but received 4KiB: ' +
        'async write-protect cannot block a write between the read-back and the hole punch of an eviction, so that write would be lost; use --dirty-tracking wp (or auto) for a region with a resident budget',
    });
    const again = await RegionRegistry.open(path.join(dir, 'state'));
    assert.equal(again.get('as')!.dirtyTracking, 'async');
    // A file written before the property existed.
    const file = path.join(dir, 'state', 'regions.json');
    const json = JSON.parse(fs.readFileSync(file, 'utf8')) as { regions: Array<Record<string, unknown>> };
    for (const x of json.regions) delete x.dirtyTracking;
    fs.writeFileSync(file, JSON.stringify(json));
    assert.equal((await RegionRegistry.open(path.join(dir, 'state'))).get('as')!.dirtyTracking, 'wp');
  });
});

test('duplicates, unknown regions and a corrupt registry', async () => {
  await withRegistry(async (dir, r) => {
    const a = await r.create(base, 1);
    await assert.rejects(r.create(base, 1), { kind: 'exists', message: `create region "db": a region of that name already exists (id ${a.id})` });
    await assert.rejects(r.delete('nope'), { kind: 'not-found', message: 'delete region "nope": no such region (farmem region list shows them)' });
    assert.throws(() => r.require('NOPE', 'show'), { kind: 'invalid' });
    const file = path.join(dir, 'state', 'regions.json');
    fs.writeFileSync(file, '{"version": 1, "regions": [{"name": 3}]}');
    await assert.rejects(RegionRegistry.open(path.join(dir, 'state')), (e: Error) => {
      assert.match(e.message, new RegExp(`^region registry ${file}: regions\\.0\\.id: .+; restore it from a backup or move it away to start empty$`));
      return true;
    });
    fs.writeFileSync(file, '{');
    await assert.rejects(RegionRegistry.open(path.join(dir, 'state')), (e: Error) => {
      assert.match(e.message, new RegExp(`^region registry ${file}: not JSON \\(.+\\); restore it from a backup or move it away to start empty$`));
      return true;
    });
  });
});

test('a state dir that cannot be created is named', async () => {
  const dir = tempDir('noreg');
  try {
    const file = path.join(dir, 'file');
    fs.writeFileSync(file, '');
    await assert.rejects(RegionRegistry.open(path.join(file, 'state')), {
      message: `state dir ${file}/state: ENOTDIR: cannot create it (pass --state-dir or set state_dir)`,
    });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  }
});

test('warm on attach persists, defaults to off (older registries too) and refuses a non-boolean', async () => {
  await withRegistry(async (dir, r) => {
    const plain = await r.create(base, 1);
    assert.equal(plain.warmOnAttach, undefined);
    const warm = await r.create({ ...base, name: 'warm', warmOnAttach: true }, 1);
    assert.equal(warm.warmOnAttach, true);
    await r.update('db', { warmOnAttach: true });
    await r.update('warm', { warmOnAttach: false });
    const again = await RegionRegistry.open(path.join(dir, 'state'));
    assert.deepEqual(again.list().map((s) => [s.name, s.warmOnAttach]), [['db', true], ['warm', false]]);
    await assert.rejects(again.update('db', { warmOnAttach: 'yes' as unknown as boolean }), { message: 'Expected true or false for warm-on-attach but received "yes"' });
    // A registry written before the property existed loads with it off.
    const file = path.join(dir, 'state', 'regions.json');
    const json = JSON.parse(fs.readFileSync(file, 'utf8')) as { regions: Array<Record<string, unknown>> };
    for (const s of json.regions) delete s.warmOnAttach;
    fs.writeFileSync(file, JSON.stringify(json));
    const old = await RegionRegistry.open(path.join(dir, 'state'));
    assert.deepEqual(old.list().map((s) => s.warmOnAttach === true), [false, false]);
  });
});
