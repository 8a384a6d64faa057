// kill -9 of farmemd in the middle of a move, as it sends the second discard of an old copy: with
// one copy per page (R=1) a discard that came before the new holder was on record would lose the
// group for good. The restarted daemon (same state dir) finds every page, finishes the move, and
// sends the discards the dead one never got answered (they are in the placement journal): the old
// server is left holding no garbage.
import assert from 'node:assert/strict';
import { test } from 'node:test';

import { userfaultfdUnavailable } from '../helpers/env';
import { fmattach } from '../attach/fixture';
import type { MemoryServer } from '../../daemon/memserver/server';
import { cli, cliJson, farmemd, memoryServer, tempDir, writeBackAndDrop, type Daemon } from './fixture';

const skip = userfaultfdUnavailable() ?? false;

interface ServerJson {
  address: string;
  pool: { state: string; pendingGroups: number; repairing: boolean; underReplicatedGroups: number } | null;
}

const pagesOf = (ms: MemoryServer, region: string) => ms.usedBytes === 0 ? 0 : (ms as unknown as { store: { regions: Map<string, { pages: Map<number, number> }> } }).store.regions.get(region)?.pages.size ?? 0;

test('kill -9 of farmemd at a discard of a move: nothing is lost, the restarted daemon finishes the move and frees every old copy', { skip }, async (t) => {
  const [ms1, ms2] = await Promise.all([memoryServer(t), memoryServer(t)]);
  // Shared by both daemons: removed only once the second one is dead (it writes into it until then).
  let d2: Daemon | null = null;
  const stateDir = tempDir(t, 'state', async () => {
    const c = d2?.child;
    if (c === undefined || c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise((res) => c.once('exit', res));
    c.kill('SIGKILL');
    await gone;
  });
  const d1 = await farmemd(t, ms1.address, { args: ['--state-dir', stateDir] });
  const PAGES = 2048;
  const created = await cli(d1, ['region', 'create', 'mv', '--size', '8MiB', '--resident', '1MiB', '--prefetch', 'none', '--mode', '666']);
  assert.equal(created.code, 0, created.stderr);
  const id = (await cliJson<{ id: string }>(d1, ['region', 'show', 'mv'])).id;
  const w = await fmattach(d1.attachSocket, ['--region', 'mv', '--pages', String(PAGES), '--op', 'write', '--seed', '41']).done;
  assert.equal(w.code, 0, w.stderr);
  await writeBackAndDrop(d1, 'mv');
  const stored = pagesOf(ms1, id);
  assert.ok(stored >= PAGES - 16, `${stored} pages stored`);

  // The first Discard lands (its group is then only on the new server: the restart must read it
  // there). The crash: as the second one arrives, and it (and any other the daemon had on its way)
  // never reaches the server — the daemon died sending it, after the move was on record.
  const store = (ms1 as unknown as { store: { discard(region: string, pages: readonly number[]): number } }).store;
  const discard = store.discard.bind(store);
  let discards = 0;
  let killed = false;
  store.discard = (region, pages) => {
    if (++discards === 1) return discard(region, pages);
    if (!killed) {
      killed = true;
      d1.child.kill('SIGKILL');
    }
    return 0;
  };
  const exited = new Promise((res) => d1.child.once('exit', res));
  const added = await cli(d1, ['servers', 'add', ms2.address]);
  assert.equal(added.code, 0, added.stderr);
  // (Bounded: a move that never discards would otherwise leave this waiting forever.)
  const noDiscard = setTimeout(() => d1.child.kill('SIGKILL'), 60_000);
  await exited;
  clearTimeout(noDiscard);
  assert.equal(killed, true, 'the move discarded fewer than 2 groups within 60 s');
  assert.ok(pagesOf(ms1, id) < stored, 'the first discard freed pages');
  store.discard = discard;

  d2 = await farmemd(t, ms1.address, { args: ['--state-dir', stateDir] });
  // A written page that no server has makes its fault wait forever (servers answer, so it is not
  // "unavailable"): a bound turns that hang into a failure.
  const run = fmattach(d2.attachSocket, ['--region', 'mv', '--pages', String(PAGES), '--op', 'verify', '--seed', '41']);
  const bound = setTimeout(() => run.child.kill('SIGKILL'), 60_000);
  const v = await run.done;
  clearTimeout(bound);
  assert.equal(v.code, 0, v.stderr);
  assert.equal(JSON.parse(v.stdout).mismatches, 0);
  let servers: ServerJson[] = [];
  for (let i = 0; i < 600; i++) {
    servers = await cliJson<ServerJson[]>(d2, ['servers']);
    if (servers.length === 2 && servers.every((s) => s.pool !== null && s.pool.state === 'up' && s.pool.pendingGroups === 0 && !s.pool.repairing)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.deepEqual(servers.map((s) => s.address).sort(), [ms1.address, ms2.address].sort()); // the add was kept
  assert.ok(servers.every((s) => s.pool?.pendingGroups === 0 && !s.pool.repairing), JSON.stringify(servers));
  const on1 = pagesOf(ms1, id);
  const on2 = pagesOf(ms2, id);
  assert.ok(on2 > 0 && on1 > 0, `${on1} + ${on2}`);
  // Every page exactly once: the old copies of the groups whose discard the dead daemon never got
  // answered were freed by the restarted one (the old server's own count says so too).
  assert.equal(on1 + on2, stored, `${on1} + ${on2} pages for ${stored}`);
  assert.equal(ms1.usedBytes + ms2.usedBytes, stored * 4096);
  await writeBackAndDrop(d2, 'mv'); // read every page from where the finished move put it
  const again = await fmattach(d2.attachSocket, ['--region', 'mv', '--pages', String(PAGES), '--op', 'verify', '--seed', '41']).done;
  assert.equal(again.code, 0, again.stderr);
  assert.equal(JSON.parse(again.stdout).mismatches, 0);
});
