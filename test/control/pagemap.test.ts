// RegionPageMap and `farmem region heatmap`: the control service in this process with a test
// pager, a real client and the real CLI; plus a misbehaving server for the client's own checks.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { DaemonService, listenControl, PAGE_MAP_WINDOW } from '../../daemon/control';
import { NoPagerRuntime, PAGE_DIRTY, PAGE_RESIDENT, type RegionPageMap } from '../../daemon/runtime';
import { ControlClient, ControlError, farmem } from '../../client/control';
import { renderHeatmap } from '../../client/heatmap';
import { createLogger } from '../../daemon/log';
import { farmemAsync, startInProcess, type InProcess } from './inproc';
import { peerCredUnavailable, tempDir } from '../helpers/farmemd';
import { isRoot } from '../helpers/env';

let p: InProcess;
before(async () => {
  p = await startInProcess();
});
after(() => p.close());

const caller = () => ({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!(), groups: [] });

/** A map whose every page differs from its neighbours: state cycles through 0..3, faults grow. */
function patterned(pages: number, pageSize = 4096): RegionPageMap {
  const state = new Uint8Array(pages);
  const faults = new Uint32Array(pages);
  for (let i = 0; i < pages; i++) {
    state[i] = i % 4;
    faults[i] = (i * 2654435761) >>> 0;
  }
  faults[pages - 1] = 0xffffffff;
  return { pageSize, pages, state, faults };
}

async function region(name: string, pages: number, pageSize = 4096): Promise<void> {
  await p.daemon.createRegion(caller(), {
    name, sizeBytes: pages * pageSize, pageSize, residentBytes: null, servers: [], replicas: null, prefetch: null, onUnavailable: null, ownerUid: null, ownerGid: null, mode: null,
  });
}

async function rejects(fn: () => Promise<unknown>, code: string, message: string): Promise<void> {
  await assert.rejects(fn, (e: unknown) => {
    assert.ok(e instanceof ControlError, String(e));
    assert.equal(e.message, message);
    assert.equal(e.code, code);
    return true;
  });
}

test('the whole page map comes back byte for byte, window after window', async () => {
  const pages = PAGE_MAP_WINDOW + 37_856;
  await region('big', pages);
  const map = patterned(pages);
  p.runtime.maps.set('big', map);
  const got = await p.client.regionPageMap('big');
  assert.equal(got.region.name, 'big');
  assert.equal(got.pages, pages);
  assert.equal(got.pageSize, 4096);
  assert.ok(Buffer.from(got.state).equals(Buffer.from(map.state)));
  assert.ok(Buffer.from(got.faults.buffer).equals(Buffer.from(map.faults.buffer)));

  const first = await p.client.regionPageMapWindow('big');
  assert.equal(first.state.length, PAGE_MAP_WINDOW, 'a window is capped');
  assert.equal(first.faults.length, PAGE_MAP_WINDOW);
  const tail = await p.client.regionPageMapWindow('big', pages - 3, 100);
  assert.equal(Number(tail.firstPage), pages - 3);
  assert.deepEqual([...tail.state], [...map.state.subarray(pages - 3)]);
  assert.deepEqual(tail.faults, [...map.faults.subarray(pages - 3)]);
  const none = await p.client.regionPageMapWindow('big', pages);
  assert.equal(none.state.length, 0);
});

test('RegionPageMap refusals, each with its whole message', async () => {
  await region('small', 16);
  await rejects(() => p.client.regionPageMap('ghost'), 'NOT_FOUND', 'heatmap region "ghost": no such region (farmem region list shows them)');
  await rejects(() => p.client.regionPageMap('small'), 'FAILED_PRECONDITION', 'heatmap region "small": the pager (test pager (no fault threads)) keeps no page map of this region');
  p.runtime.maps.set('small', patterned(16));
  await rejects(() => p.client.regionPageMapWindow('small', 17), 'INVALID_ARGUMENT', 'Expected a page from 0 to 16 for first_page but received 17');
  await rejects(() => p.client.regionPageMapWindow('small', 0, 0), 'INVALID_ARGUMENT', 'Expected 1 or more for max_pages but received 0');

  p.runtime.maps.set('small', { ...patterned(16), state: new Uint8Array(3) });
  await rejects(
    () => p.client.regionPageMap('small'),
    'INTERNAL',
    'farmemd: heatmap region "small": the pager returned 3 states and 16 fault counts for 16 pages of 4096 bytes; the region has 16 pages of 4096 bytes',
  );
  assert.ok(p.lines.some((l) => l.level === 50 && l.method === 'RegionPageMap' && l.msg === 'control call failed'), 'an INTERNAL failure is logged');

  const pager = p.daemon.runtime;
  p.daemon.runtime = new NoPagerRuntime();
  try {
    await rejects(
      () => p.client.regionPageMap('small'),
      'FAILED_PRECONDITION',
      'heatmap region "small": no pager is attached to this daemon: faults are not served and nothing is counted, so there is no page map to draw',
    );
  } finally {
    p.daemon.runtime = pager;
  }
});

test('farmem region heatmap writes the SVG of the page map', async () => {
  await region('pic', 40);
  const state = new Uint8Array(40);
  const faults = new Uint32Array(40);
  for (let i = 0; i < 10; i++) state[i] = PAGE_RESIDENT;
  for (let i = 10; i < 15; i++) state[i] = PAGE_RESIDENT | PAGE_DIRTY;
  for (let i = 0; i < 40; i++) faults[i] = i < 20 ? 3 : 0;
  p.runtime.maps.set('pic', { pageSize: 4096, pages: 40, state, faults });
  const expected = renderHeatmap({ regionName: 'pic', pageSize: 4096, pages: 40, state, faults }, { columns: 8 });
  const cwd = tempDir('heatmap');
  try {
    let r = await farmemAsync(p.socket, ['region', 'heatmap', 'pic', '--columns', '8'], { cwd });
    assert.equal(r.stderr, '');
    assert.equal(r.status, 0);
    const file = path.join(cwd, 'pic-heatmap.svg');
    assert.equal(r.stdout, `wrote ${file}: region "pic", 40 pages of 4.0 KiB, 15 resident, 5 dirty, 60 faults\n`);
    assert.equal(fs.readFileSync(file, 'utf8'), expected);

    r = await farmemAsync(p.socket, ['region', 'heatmap', 'pic', '--columns', '8', '-o', '-'], { cwd });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, expected);

    r = await farmemAsync(p.socket, ['region', 'heatmap', 'pic', '-o', 'named.svg', '--json'], { cwd });
    assert.equal(r.status, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout), { region: 'pic', file: path.join(cwd, 'named.svg'), pages: 40, pageSize: 4096, residentPages: 15, dirtyPages: 5, faults: 60 });
    assert.equal(fs.readFileSync(path.join(cwd, 'named.svg'), 'utf8'), renderHeatmap({ regionName: 'pic', pageSize: 4096, pages: 40, state, faults }));

    r = await farmemAsync(p.socket, ['region', 'heatmap', 'pic', '-o', 'missing/named.svg'], { cwd });
    assert.equal(r.status, 1);
    assert.equal(r.stderr, `farmem: heatmap region "pic": write ${path.join(cwd, 'missing', 'named.svg')}: ENOENT\n`);

    r = await farmemAsync(p.socket, ['region', 'heatmap', 'pic', '--columns', '0'], { cwd });
    assert.equal(r.status, 2);
    assert.equal(r.stderr, `error: option '--columns <n>' argument '0' is invalid. Expected an integer from 1 to 4096 for --columns but received "0"\n(run with --help for usage)\n`);
  } finally {
    fs.rmSync(cwd, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  }
});

const aclSkip = isRoot() ? peerCredUnavailable() : 'needs root (to run the CLI as nobody against a region owned by root)';
test('another uid may not see the page map of a private region', { skip: aclSkip ?? false }, async () => {
  await region('secret', 4);
  p.runtime.maps.set('secret', patterned(4));
  const r = await farmemAsync(p.socket, ['region', 'heatmap', 'secret', '-o', '-'], { uid: 65534 });
  assert.equal(r.stdout, '');
  assert.equal(r.stderr, `farmem: heatmap region "secret": permission denied: uid 65534 is neither its owner (uid 0) nor in its group (gid 0), and mode 0600 gives others no read and write\n`);
  assert.equal(r.status, 1);
});

test("the client checks farmemd's windows (a misbehaving server)", async (t) => {
  const dir = tempDir('badmap');
  const socket = path.join(dir, 'bad.sock');
  let calls = 0;
  let mode: 'grow' | 'gap' = 'grow';
  const impl = {
    RegionPageMap: (call: grpc.ServerUnaryCall<farmem.v1.RegionPageMapRequest, unknown>, cb: grpc.sendUnaryData<unknown>) => {
      calls++;
      const first = Number(call.request.firstPage);
      const pages = mode === 'grow' ? 4 + calls : 8;
      // 'gap' answers a window that starts past the page asked for.
      const start = mode === 'gap' && first > 0 ? first + 1 : first;
      const n = Math.min(2, pages - start);
      cb(null, farmem.v1.RegionPageMapResponse.create({ region: { name: 'r' }, pageSize: 4096, pages, firstPage: start, state: new Uint8Array(n), faults: new Array(n).fill(0) }));
    },
  };
  const server = await listenControl({
    path: socket, mode: 0o600, group: 'farmem', service: { RegionPageMap: DaemonService.RegionPageMap } as unknown as grpc.ServiceDefinition,
    impl: impl as unknown as grpc.UntypedServiceImplementation, logger: createLogger({ level: 'fatal', pretty: false }),
  });
  const c = await ControlClient.connect(socket);
  t.after(async () => {
    c.close();
    await server.close(100);
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  });
  await rejects(() => c.regionPageMap('r'), 'ABORTED', 'heatmap region "r": the region changed from 5 to 6 pages while its page map was read; try again');
  mode = 'gap';
  await rejects(() => c.regionPageMap('r'), 'INTERNAL', 'heatmap region "r": farmemd answered pages 3+2 with 2 fault counts when asked for page 2 of 8');
});
