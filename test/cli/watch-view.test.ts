// The numbers of `farmem stats --watch`, from hand-made snapshots: rates, restarts, no pager.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { farmem } from '../../client/control';
import { duration, intervalLabel, renderWatch, watchView, type Snapshot } from '../../client/cli/watch-view';
import { fit } from '../../client/cli/watch';

const NO_PAGER = 'no pager is attached to this daemon: faults are not served and nothing is counted';
const T0 = new Date('2030-01-02T03:04:05Z');
const clock = (d: Date) => d.toTimeString().slice(0, 8);

function snap(o: { pid?: number; uptime: number; pager?: boolean; cacheHit?: number; remote?: number; zero?: number; hits?: number; misses?: number; inBytes?: number; outBytes?: number; dbFaults?: number; dbIn?: number }): Snapshot {
  const pager = o.pager ?? true;
  const daemon = farmem.v1.DaemonStatsResponse.create({
    version: '0.1.0', pid: o.pid ?? 100, uptimeSeconds: o.uptime, state: 'RUNNING', regions: 2, pager, pagerDetail: pager ? 'pager (2 fault threads)' : NO_PAGER,
    attachments: pager ? 3 : 0,
    cacheCapacityBytes: pager ? 256 << 20 : 0, cacheBytes: pager ? 12 << 20 : 0, cacheHits: o.hits ?? 0, cacheMisses: o.misses ?? 0,
    residentBytes: pager ? 40 << 20 : 0, faults: { cacheHit: o.cacheHit ?? 0, remote: o.remote ?? 0, zero: o.zero ?? 0 },
    remoteBytesIn: o.inBytes ?? 0, remoteBytesOut: o.outBytes ?? 0, dirtyPages: pager ? 120 : 0,
  });
  const region = (name: string, id: string, accessible: boolean) => ({ id, name, sizeBytes: 1 << 30, pageSize: 4096 });
  return {
    time: T0,
    daemon,
    regions: [
      {
        summary: { region: region('db', 'id-db', true), attachments: 2, residentPages: 1024, dirtyPages: 12, accessible: true },
        stats: pager ? { pager: true, residentPages: 1024, dirtyPages: 12, faults: { remote: o.dbFaults ?? 0 }, remoteBytesIn: o.dbIn ?? 0 } : { pager: false, detail: NO_PAGER },
      },
      { summary: { region: region('other', 'id-other', false), attachments: 0, accessible: false }, stats: null },
    ],
    servers: [{ address: '10.0.0.2:7070', state: 'up', usedBytes: 1 << 20, capacityBytes: 1 << 30, regions: 1, weight: 1, detail: '' }],
  };
}

test('rates are counter differences over the daemon clock', () => {
  const a = snap({ uptime: 10, cacheHit: 1000, remote: 500, zero: 7, hits: 100, misses: 100, inBytes: 1e6, outBytes: 0, dbFaults: 50, dbIn: 0 });
  const b = snap({ uptime: 12, cacheHit: 1200, remote: 600, zero: 27, hits: 400, misses: 200, inBytes: 5e6, outBytes: 1e6, dbFaults: 250, dbIn: 2e6 });
  const v = watchView(a, b);
  assert.equal(v.intervalSeconds, 2);
  assert.deepEqual(v.pager!.faultsPerSecond, { total: 160, cacheHit: 100, remote: 50, zero: 10, writeProtect: 0, sigbus: 0 });
  assert.equal(v.pager!.hitRatio, 0.75);
  assert.equal(v.pager!.hitRatioSinceStart, 400 / 600);
  assert.equal(v.pager!.remoteInMBps, 2);
  assert.equal(v.pager!.remoteOutMBps, 0.5);
  assert.deepEqual(v.regions[0], { name: 'db', sizeBytes: 1 << 30, accessible: true, attachments: 2, residentPages: 1024, dirtyPages: 12, faultsPerSecond: 100, remoteInMBps: 1, remoteOutMBps: 0 });
  assert.deepEqual(v.regions[1], { name: 'other', sizeBytes: 1 << 30, accessible: false, attachments: 0, residentPages: null, dirtyPages: null, faultsPerSecond: null, remoteInMBps: null, remoteOutMBps: null });
  assert.equal(
    renderWatch(v, { intervalMs: 2000 }),
    [
      `farmemd 0.1.0  pid 100  RUNNING  up 12s  2 regions  ${clock(T0)}  (every 2s)`,
      'pager: pager (2 fault threads)',
      '',
      'faults/s    160.0 total: 100.0 cache hit, 50.0 remote, 10.0 zero, 0.0 wp, 0.0 sigbus',
      'hit ratio   75.0% (since start 66.7%)',
      'remote      in 2.00 MB/s, out 0.50 MB/s',
      'memory      cache 12.0 MiB of 256.0 MiB, resident 40.0 MiB (cap none), 120 dirty pages, 3 attachments',
      '',
      'REGION                SIZE  ATTACHED  RESIDENT  DIRTY  FAULTS/S  IN MB/S  OUT MB/S',
      'db                 1.0 GiB         2      1024     12     100.0     1.00      0.00',
      'other (no access)  1.0 GiB         0         -      -         -        -         -',
      '',
      'SERVER         STATE     USED  CAPACITY  REGIONS  KIND    DETAIL',
      '10.0.0.2:7070  up     1.0 MiB   1.0 GiB        1  remote',
    ].join('\n'),
  );
});

test('the first refresh, a restart and a counter going back have no rates', () => {
  const first = watchView(null, snap({ uptime: 5, cacheHit: 10 }));
  assert.equal(first.intervalSeconds, null);
  assert.equal(first.pager!.faultsPerSecond, null);
  assert.equal(first.pager!.hitRatio, null);
  assert.equal(first.regions[0]!.faultsPerSecond, null);
  assert.equal(first.regions[0]!.residentPages, 1024, 'levels need no interval');
  assert.match(renderWatch(first, { intervalMs: 1000 }), /^faults\/s {4}- \(rates from the next refresh\)$/m);

  const restarted = watchView(snap({ pid: 100, uptime: 50 }), snap({ pid: 200, uptime: 51 }));
  assert.equal(restarted.intervalSeconds, null, 'another pid: another daemon');
  assert.equal(watchView(snap({ uptime: 50 }), snap({ uptime: 3 })).intervalSeconds, null, 'the clock went back');

  const reset = watchView(snap({ uptime: 1, cacheHit: 100, inBytes: 10 }), snap({ uptime: 2, cacheHit: 5, inBytes: 20 }));
  assert.equal(reset.pager!.faultsPerSecond, null);
  assert.equal(reset.pager!.remoteInMBps, 10 / 1e6);
});

test('without a pager: says so, and shows no number it did not count', () => {
  const v = watchView(snap({ uptime: 1, pager: false }), snap({ uptime: 2, pager: false }));
  assert.equal(v.pager, null);
  assert.equal(v.intervalSeconds, null);
  assert.equal(v.regions[0]!.residentPages, null);
  const text = renderWatch(v, { intervalMs: 500 });
  assert.equal(text.split('\n')[1], `pager: none — ${NO_PAGER}`);
  assert.doesNotMatch(text, /faults\/s|hit ratio|MB\/s,/);
  assert.match(text, /^db {17}1\.0 GiB {9}2 {9}- {6}- {9}- {8}- {9}-$/m);
});

test('durations and intervals read as people write them', () => {
  assert.deepEqual([duration(59.9), duration(61), duration(3725), duration(90061)], ['59s', '1m01s', '1h02m', '1d01h']);
  assert.deepEqual([intervalLabel(250), intervalLabel(1000), intervalLabel(1500), intervalLabel(120_000), intervalLabel(3_600_000)], ['250ms', '1s', '1500ms', '2m', '1h']);
});

test('on a terminal the view is cut to the screen', () => {
  const text = ['header', 'a'.repeat(30), 'x', 'y', 'z'].join('\n');
  assert.deepEqual(fit(text, { rows: 10, columns: 80 }), ['header', 'a'.repeat(30), 'x', 'y', 'z']);
  assert.deepEqual(fit(text, { rows: 4, columns: 10 }), ['header', `${'a'.repeat(9)}…`, '… 3 more l']);
  assert.deepEqual(fit(text, { rows: 4, columns: 80 }), ['header', 'a'.repeat(30), '… 3 more lines (a taller terminal shows them)']);
});
