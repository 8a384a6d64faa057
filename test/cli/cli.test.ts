// The farmem CLI against a real farmemd: output, --json, exit codes and messages.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { farmem, peerCredUnavailable, startFarmemd, tempDir, type Farmemd } from '../helpers/farmemd';
import { isRoot } from '../helpers/env';
import os from 'node:os';

/** What farmemd's pager says it is: one fault thread per vCPU, pinned (the defaults). */
const PAGER = `pager (${os.availableParallelism()} fault thread${os.availableParallelism() === 1 ? '' : 's'}, pinned)`;

let d: Farmemd;
before(async () => {
  d = await startFarmemd({ config: 'socket_mode = 0o666\n' });
});
after(async () => {
  await d.stop('SIGKILL');
  fs.rmSync(d.dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
});

test('create, list, show, resize, delete with --json', async () => {
  let r = farmem(d.socket, ['region', 'create', 'json1', '--size', '8MiB', '--page-size', '64KiB', '--mode', '640', '--prefetch', 'stride', '--on-unavailable', 'sigbus', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const created = JSON.parse(r.stdout);
  assert.deepEqual({ ...created, id: '', createdAt: '' }, {
    id: '', name: 'json1', sizeBytes: 8 << 20, pageSize: 65536, residentBytes: 0, servers: [], replicas: 1, prefetch: 'stride', warmOnAttach: false,
    onUnavailable: 'sigbus', dirtyTracking: 'wp', ownerUid: process.getuid!(), ownerGid: process.getgid!(), mode: '0640', createdAt: '',
  });
  r = farmem(d.socket, ['region', 'show', 'json1', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const shown = JSON.parse(r.stdout);
  assert.equal(shown.id, created.id);
  // The pager serves every region from its creation: live numbers, all true zeros.
  assert.deepEqual(shown.stats, {
    pager: true, residentPages: 0, dirtyPages: 0, faults: { cacheHit: 0, remote: 0, zero: 0, writeProtect: 0, sigbus: 0 }, cacheHits: 0, cacheMisses: 0,
    prefetchAccuracy: 0, prefetchCoverage: 0, prefetchedPages: 0, evictedPages: 0, writtenBackPages: 0, writeBackStalled: false, writeBackStalls: 0, prefetchUsedPages: 0, prefetchWastedPages: 0, prefetchWastedBytes: 0, prefetchPolicy: 'stride', dirtyTracking: 'wp', dirtyTrackingNote: '', remoteBytesIn: 0, remoteBytesOut: 0, faultP50Us: 0, faultP99Us: 0, attachments: [],
  });
  r = farmem(d.socket, ['region', 'resize', 'json1', '--resident', '1MiB', '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).residentBytes, 1 << 20);
  r = farmem(d.socket, ['region', 'list', '--json']);
  const row = (JSON.parse(r.stdout) as Array<Record<string, unknown>>).find((x) => x.name === 'json1')!;
  assert.equal(row.residentBytes, 1 << 20);
  assert.equal(row.accessible, true);
  r = farmem(d.socket, ['region', 'delete', 'json1', '--json']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).pagesFreed, 0);
  // Its memory server is down: deleted here all the same, and the pages left there are a warning.
  const left = 'region "json1" deleted, but its pages could not be freed on the memory servers: delete region "json1": memory server 127.0.0.1:1 unavailable: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1.';
  for (let i = 0; i < 100 && !d.lines.some((l) => l.msg === left); i++) await new Promise((res) => setTimeout(res, 20));
  assert.deepEqual(d.lines.filter((l) => l.region === 'json1' && l.level === 40).map((l) => l.msg), [left]);
  r = farmem(d.socket, ['region', 'show', 'json1']);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, 'farmem: show region "json1": no such region (farmem region list shows them)\n');
});

test('readable tables', () => {
  assert.equal(farmem(d.socket, ['region', 'create', 'table1', '--size', '1GiB']).status, 0);
  const r = farmem(d.socket, ['region', 'list']);
  assert.equal(r.status, 0, r.stderr);
  const [head, ...rows] = r.stdout.trimEnd().split('\n');
  assert.match(head!, /^NAME\s+SIZE\s+PAGE\s+RESIDENT\s+OWNER\s+MODE\s+ATTACHED\s+ID$/);
  assert.ok(rows.some((l) => /^table1\s+1\.0 GiB\s+4\.0 KiB\s+unlimited\s+\d+:\d+\s+0600\s+0\s+[0-9a-f-]{36}$/.test(l)), r.stdout);
  const s = farmem(d.socket, ['region', 'show', 'table1']);
  assert.match(s.stdout, /^size:\s+1\.0 GiB \(1073741824 bytes, 262144 pages of 4\.0 KiB\)$/m);
  assert.equal(s.status, 0, s.stderr);
  assert.match(s.stdout, /^dirty tracking:\s+wp$/m);
  assert.match(s.stdout, /^warm on attach:\s+off$/m);
  assert.equal(s.stdout.split('\n').slice(12).join('\n'), [
    'resident pages:          0',
    'dirty pages:             0',
    'faults:                  0 cache hit, 0 remote, 0 zero, 0 write-protect, 0 sigbus',
    'fault latency:           p50 0 µs, p99 0 µs',
    'cache hit ratio:         -',
    'prefetch:                auto (now none): 0 pages, 0 seen used (or walked past by their stream), accuracy 0.0%, coverage 0.0%, wasted 0',
    'evicted / written back:  0 / 0 pages',
    'write-back:              ok (0 stall(s) so far)',
    'remote in / out:         0 / 0',
    '',
    'attachments: none',
    '',
  ].join('\n'));
});

test('stats and servers', () => {
  let r = farmem(d.socket, ['stats', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.state, 'RUNNING');
  assert.equal(s.socket, d.socket);
  assert.equal(s.pid, d.child.pid);
  assert.equal(s.pager, true);
  assert.equal(s.pagerDetail, PAGER);
  assert.equal(s.stateDir, d.stateDir);
  r = farmem(d.socket, ['servers', '--json']);
  assert.equal(r.status, 0, r.stderr);
  const [srv] = JSON.parse(r.stdout);
  assert.equal(srv.address, '127.0.0.1:1');
  assert.equal(srv.state, 'down');
  assert.equal(srv.embedded, false);
  assert.match(srv.detail, /ECONNREFUSED/);
  r = farmem(d.socket, ['stats']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`^pager: {20}${PAGER.replace(/[()]/g, '\\$&')}$`, 'm'));
  r = farmem(d.socket, ['servers']);
  // The regions made above use the daemon's pool: it holds this server, and nothing was written.
  assert.ok(['up', 'suspect', 'down'].includes(srv.pool.state), JSON.stringify(srv.pool));
  assert.deepEqual([srv.pool.underReplicatedGroups, srv.pool.pendingGroups, srv.pool.repairedGroups, srv.pool.copiedBytes, srv.pool.draining, srv.pool.discardedPages, srv.pool.discardsPending], [0, 0, 0, 0, false, 0, 0]);
  assert.match(r.stdout, /^ADDRESS\s+STATE\s+POOL\s+LATENCY\s+FAILS\s+UNDER-REPL\s+PENDING\s+REPAIRED\s+COPIED\s+DISCARDED\s+USED\s+CAPACITY\s+REGIONS\s+WEIGHT\s+KIND\s+DETAIL\n127\.0\.0\.1:1\s+down\s+(up|suspect|down)\s/);
});

test('usage errors exit 2', () => {
  const cases: Array<[string[], string]> = [
    [['region', 'create', 'x', '--size', '1x'], `error: option '--size <size>' argument '1x' is invalid. Expected a size in bytes (e.g. 4096, 4KiB, 256MiB, 1GiB) for --size but received "1x"\n(run with --help for usage)\n`],
    [['region', 'create', 'x'], "error: required option '--size <size>' not specified\n(run with --help for usage)\n"],
    [['region', 'frob'], "error: unknown command 'frob'\n(run with --help for usage)\n"],
    [['region', 'create', 'x', '--size', '1GiB', '--replicas', 'two'], `error: option '--replicas <n>' argument 'two' is invalid. Expected an integer from 1 to 16 for --replicas but received "two"\n(run with --help for usage)\n`],
    [['region', 'create', 'Bad_Name', '--size', '1GiB'], `farmem: Expected 1 to 63 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit, for region name but received "Bad_Name"\n`],
    [['region', 'create', 'odd', '--size', '1000'], 'farmem: Expected a multiple of the page size (4KiB) from 4KiB to 64TiB for size but received 1000\n'],
  ];
  for (const [args, stderr] of cases) {
    const r = farmem(d.socket, args);
    assert.equal(r.stderr, stderr, args.join(' '));
    assert.equal(r.status, 2, args.join(' '));
  }
});

test('refusals exit 1 and say why', () => {
  assert.equal(farmem(d.socket, ['region', 'create', 'dup', '--size', '4KiB']).status, 0);
  let r = farmem(d.socket, ['region', 'create', 'dup', '--size', '4KiB']);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /^farmem: create region "dup": a region of that name already exists \(id [0-9a-f-]{36}\)\n$/);
  r = farmem(d.socket, ['region', 'delete', 'ghost']);
  assert.equal(r.status, 1);
  assert.equal(r.stderr, 'farmem: delete region "ghost": no such region (farmem region list shows them)\n');
  // Sync really asks the region's memory server to make the region durable; nothing listens on
  // 127.0.0.1:2. (Its own server: a fresh pool, so the server is not yet declared down, which
  // would leave nothing to ask.)
  assert.equal(farmem(d.socket, ['region', 'create', 'far', '--size', '4KiB', '--server', '127.0.0.1:2']).status, 0);
  r = farmem(d.socket, ['region', 'sync', 'far']);
  assert.equal(r.stderr, 'farmem: sync region "far": memory server 127.0.0.1:2 unavailable: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:2.\n');
  assert.equal(r.status, 1);
  // Evict drops clean resident pages: a region nobody touched has none, and that is no failure.
  r = farmem(d.socket, ['region', 'evict', 'dup']);
  assert.equal(r.stderr, '');
  assert.equal(r.status, 0);
  assert.equal(r.stdout, 'evict "dup": 0 pages (0): dropped 0 clean page(s)\n');
});

test('daemon not running: exit 1 and how to start it', () => {
  const dir = tempDir('nodaemon');
  try {
    const sock = path.join(dir, 'none.sock');
    const r = farmem(sock, ['region', 'list']);
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `farmem: connect ${sock}: ENOENT — is farmemd running? start it with: npm start (or systemctl start farmemd)\n`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  }
});

test('--help documents the exit codes', () => {
  const r = farmem(null, ['--help']);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /Exit codes:\n  0  success\n  1  failure: farmemd refused \(unknown region, permission denied, \.\.\.\) or is unreachable\n  2  usage error/);
});

const aclSkip = isRoot() ? peerCredUnavailable() : 'needs root (to run the CLI as nobody and create a region owned by root)';
test('another uid is refused on a private region, by name and reason', { skip: aclSkip ?? false }, () => {
  fs.chmodSync(d.dir, 0o755);
  assert.equal(farmem(d.socket, ['region', 'create', 'private', '--size', '4KiB']).status, 0);
  const nobody = { uid: 65534, gid: 65534 };
  let r = farmem(d.socket, ['region', 'show', 'private'], nobody);
  assert.equal(r.status, 1, r.stderr);
  assert.equal(r.stderr, 'farmem: show region "private": permission denied: uid 65534 is neither its owner (uid 0) nor in its group (gid 0), and mode 0600 gives others no read and write\n');
  r = farmem(d.socket, ['region', 'delete', 'private'], nobody);
  assert.equal(r.stderr, 'farmem: delete region "private": permission denied: uid 65534 is not its owner (uid 0) and only the owner or root may do this\n');
  r = farmem(d.socket, ['region', 'create', 'givenaway', '--size', '4KiB', '--owner', '0'], nobody);
  assert.equal(r.stderr, 'farmem: create region "givenaway": permission denied: only root may create a region owned by another user (uid 0)\n');
  // nobody may create its own region, and sees it as its own.
  r = farmem(d.socket, ['region', 'create', 'mine', '--size', '4KiB', '--json'], nobody);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).ownerUid, 65534);
  r = farmem(d.socket, ['region', 'list', '--json'], nobody);
  const acc = Object.fromEntries((JSON.parse(r.stdout) as Array<{ name: string; accessible: boolean }>).map((x) => [x.name, x.accessible]));
  assert.equal(acc.private, false);
  assert.equal(acc.mine, true);
});
