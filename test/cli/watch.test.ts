// `farmem stats --watch` end to end: against a real farmemd child (its real pager, nothing
// attached), against the control service in-process with a test pager or none, piped (one block per refresh) and on a terminal (tmux).
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { FARMEM, startFarmemd, tempDir, type Farmemd } from '../helpers/farmemd';
import { farmemAsync, startInProcess } from '../control/inproc';
import os from 'node:os';
import { NoPagerRuntime, type RegionStatsSnapshot, type RuntimeStats } from '../../daemon/runtime';

const NO_PAGER = 'no pager is attached to this daemon: faults are not served and nothing is counted';
/** What farmemd's pager says it is: one fault thread per vCPU, pinned (the defaults). */
const PAGER = `pager (${os.availableParallelism()} fault thread${os.availableParallelism() === 1 ? '' : 's'}, pinned)`;
const esc = (s: string) => s.replace(/[()]/g, '\\$&');

let d: Farmemd;
before(async () => {
  d = await startFarmemd();
});
after(async () => {
  await d.stop('SIGKILL');
  fs.rmSync(d.dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
});

test('piped: --count N prints N blocks, each with the pager and its true zeros', async () => {
  const r = await farmemAsync(d.socket, ['stats', '--watch', '--interval', '100ms', '--count', '3']);
  assert.equal(r.stderr, '');
  assert.equal(r.status, 0);
  assert.equal(r.stdout.includes('\x1b'), false, 'no terminal control when piped');
  const heads = r.stdout.split('\n').filter((l) => l.startsWith('farmemd '));
  assert.equal(heads.length, 3);
  for (const h of heads) assert.match(h, new RegExp(`^farmemd \\d+\\.\\d+\\.\\d+  pid ${d.child.pid}  RUNNING  up \\d+s  0 regions  \\d\\d:\\d\\d:\\d\\d  \\(every 100ms\\)$`));
  assert.equal(r.stdout.split('\n').filter((l) => l === `pager: ${PAGER}`).length, 3);
  const blocks = r.stdout.split(/\n\n(?=farmemd )/);
  assert.equal(blocks.length, 3);
  // Nothing attached, nothing faulted: the first refresh has no rates yet, the next ones true zeros.
  const body = (b: string) => b.split('\n').slice(3, 9).join('\n');
  assert.equal(body(blocks[0]!), [
    'faults/s    - (rates from the next refresh)',
    'hit ratio   - (since start -)',
    'remote      in - MB/s, out - MB/s',
    'memory      cache 0 of 256.0 MiB, resident 0 (cap none), 0 dirty pages, 0 attachments',
    '',
    'no regions',
  ].join('\n'));
  for (const b of blocks.slice(1)) {
    assert.equal(body(b), [
      'faults/s    0.0 total: 0.0 cache hit, 0.0 remote, 0.0 zero, 0.0 wp, 0.0 sigbus',
      'hit ratio   - (since start -)',
      'remote      in 0.00 MB/s, out 0.00 MB/s',
      'memory      cache 0 of 256.0 MiB, resident 0 (cap none), 0 dirty pages, 0 attachments',
      '',
      'no regions',
    ].join('\n'));
  }
  assert.match(r.stdout, /^SERVER\s+STATE\s+USED\s+CAPACITY\s+REGIONS\s+KIND\s+DETAIL\n127\.0\.0\.1:1\s+down\s/m);
  assert.ok(r.stdout.endsWith('\n\n'));
});

test('piped with --json: one JSON object per line and refresh', async () => {
  const r = await farmemAsync(d.socket, ['stats', '--watch', '--json', '--interval', '100ms', '--count', '2']);
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout.trimEnd().split('\n').map((l) => JSON.parse(l));
  assert.equal(lines.length, 2);
  for (const v of lines) {
    assert.deepEqual(v.daemon.pager, true);
    assert.equal(v.daemon.pagerDetail, PAGER);
    assert.deepEqual(v.servers.map((x: { address: string }) => x.address), ['127.0.0.1:1']);
  }
  const [first, second] = lines;
  assert.equal(first.intervalSeconds, null);
  assert.deepEqual(first.pager, {
    attachments: 0, faultsPerSecond: null, hitRatio: null, hitRatioSinceStart: null, remoteInMBps: null, remoteOutMBps: null,
    cacheBytes: 0, cacheCapacityBytes: 256 << 20, residentBytes: 0, residentCapBytes: 0, dirtyPages: 0,
  });
  assert.ok(second.intervalSeconds > 0);
  assert.deepEqual(second.pager.faultsPerSecond, { total: 0, cacheHit: 0, remote: 0, zero: 0, writeProtect: 0, sigbus: 0 });
  assert.equal(second.pager.remoteInMBps, 0);
  assert.equal(second.pager.remoteOutMBps, 0);
  for (const v of lines) {
    assert.equal(v.servers[0].address, '127.0.0.1:1');
  }
});

test('Ctrl-C (SIGINT) ends the view with exit 0', async () => {
  let sent = false;
  const r = await farmemAsync(d.socket, ['stats', '--watch', '--interval', '100ms'], {
    onStdout: (all, child) => {
      // >= 2: on a loaded machine two refreshes can arrive in one chunk with a third.
      if (!sent && all.split('\n').filter((l) => l.startsWith('farmemd ')).length >= 2) {
        sent = true;
        child.kill('SIGINT');
      }
    },
  });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '');
});

test('farmemd going away mid-watch: said in the view, exit 1 when the last refresh failed', async (t) => {
  const gone = await startFarmemd();
  t.after(async () => {
    await gone.stop('SIGKILL');
    fs.rmSync(gone.dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  });
  let killed = false;
  const r = await farmemAsync(gone.socket, ['stats', '--watch', '--interval', '300ms', '--count', '3'], {
    onStdout: () => {
      if (!killed) void gone.stop('SIGKILL');
      killed = true;
    },
  });
  assert.equal(r.stderr, 'farmem: stats --watch: the last refresh could not reach farmemd\n');
  assert.equal(r.status, 1);
  const [ok, ...failed] = r.stdout.trimEnd().split('\n\n').filter((b) => b.startsWith('farmemd ') || b.startsWith('farmem: '));
  assert.match(ok!, /^farmemd /);
  assert.equal(failed.length, 2, r.stdout);
  // The refresh in flight when farmemd died may see the connection reset; the next finds no one.
  assert.match(failed[0]!, /^farmem: connect .*: (ECONNREFUSED|read ECONNRESET) — is farmemd running\?/);
  assert.equal(failed[1], `farmem: connect ${gone.socket}: ECONNREFUSED — is farmemd running? start it with: npm start (or systemctl start farmemd)\n(trying again every refresh)`);
});

test('--interval and --count: usage errors exit 2', async () => {
  const cases: Array<[string[], string]> = [
    [['stats', '--count', '2'], 'error: --interval and --count need --watch\n(run with --help for usage)\n'],
    [['stats', '--watch', '--interval', '10ms'], `error: option '--interval <duration>' argument '10ms' is invalid. Expected a duration from 100ms to 1h (e.g. 1s, 500ms, 2m) for --interval but received "10ms"\n(run with --help for usage)\n`],
    [['stats', '--watch', '--count', '0'], `error: option '--count <n>' argument '0' is invalid. Expected an integer from 1 to 1000000000 for --count but received "0"\n(run with --help for usage)\n`],
  ];
  for (const [args, stderr] of cases) {
    const r = await farmemAsync(d.socket, args);
    assert.equal(r.stderr, stderr, args.join(' '));
    assert.equal(r.status, 2, args.join(' '));
  }
});

test('without a pager (in-process, NoPagerRuntime): each block says so, and shows no rates', async (t) => {
  const p = await startInProcess();
  t.after(() => p.close());
  await p.daemon.useRuntime(new NoPagerRuntime());
  const r = await farmemAsync(p.socket, ['stats', '--watch', '--interval', '100ms', '--count', '2']);
  assert.equal(r.stderr, '');
  assert.equal(r.status, 0);
  assert.equal(r.stdout.split('\n').filter((l) => l === `pager: none — ${NO_PAGER}`).length, 2);
  assert.equal(r.stdout.split('\n').filter((l) => l.startsWith('farmemd ')).length, 2);
  assert.doesNotMatch(r.stdout, /faults\/s/);
  const j = await farmemAsync(p.socket, ['stats', '--watch', '--json', '--interval', '100ms', '--count', '2']);
  assert.equal(j.status, 0, j.stderr);
  for (const v of j.stdout.trimEnd().split('\n').map((l) => JSON.parse(l))) {
    assert.equal(v.daemon.pager, false);
    assert.equal(v.daemon.pagerDetail, NO_PAGER);
    assert.equal(v.pager, null);
    assert.equal(v.intervalSeconds, null);
  }
});

test('with a pager: the second refresh has rates, regions have resident and dirty pages', async (t) => {
  const p = await startInProcess();
  t.after(() => p.close());
  const faults = { cacheHit: 1000, remote: 100, zero: 10, writeProtect: 1, sigbus: 0 };
  const rt: RuntimeStats = {
    attachments: 1, cacheCapacityBytes: 64 << 20, cacheBytes: 1 << 20, cacheHits: 1000, cacheMisses: 100, residentBytes: 8 << 20, faults: { ...faults },
    remoteBytesIn: 0, remoteBytesOut: 0, dirtyPages: 7, evictions: 0, writebacks: 0,
  };
  p.runtime.daemonStats = rt;
  await p.daemon.createRegion({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!(), groups: [] }, {
    name: 'hot', sizeBytes: 1 << 24, pageSize: null, residentBytes: null, servers: [], replicas: null, prefetch: null, onUnavailable: null, ownerUid: null, ownerGid: null, mode: null,
  });
  const hot: RegionStatsSnapshot = {
    residentPages: 2048, dirtyPages: 7, faults: { ...faults }, cacheHits: 1000, cacheMisses: 100, prefetchAccuracy: 0, prefetchCoverage: 0, prefetchedPages: 0,
    evictedPages: 0, writtenBackPages: 0, remoteBytesIn: 0, remoteBytesOut: 0, attachments: [{ pid: 4242, uid: 0, since: new Date().toISOString(), comm: 'db' }], faultP50Us: 0, faultP99Us: 0,
  };
  p.runtime.regions.set('hot', hot);
  let bumped = false;
  const r = await farmemAsync(p.socket, ['stats', '--watch', '--interval', '300ms', '--count', '2'], {
    onStdout: () => {
      // Work happens between the two refreshes: 5000 remote faults, 20 MB in.
      if (bumped) return;
      bumped = true;
      rt.faults.remote += 5000;
      rt.remoteBytesIn += 20e6;
      hot.faults.remote += 5000;
      hot.remoteBytesIn += 20e6;
    },
  });
  assert.equal(r.status, 0, r.stderr);
  const [first, second] = r.stdout.split(/\n\n(?=farmemd )/);
  assert.match(first!, /^pager: test pager \(no fault threads\)$/m);
  assert.match(first!, /^faults\/s {4}- \(rates from the next refresh\)$/m);
  assert.match(first!, /^memory {6}cache 1\.0 MiB of 64\.0 MiB, resident 8\.0 MiB \(cap none\), 7 dirty pages, 1 attachment$/m);
  assert.match(first!, /^hot\s+16\.0 MiB\s+1\s+2048\s+7\s+-\s+-\s+-$/m);
  const rate = /^faults\/s {4}(\d+\.\d) total: 0\.0 cache hit, (\d+\.\d) remote, 0\.0 zero, 0\.0 wp, 0\.0 sigbus$/m.exec(second!);
  assert.ok(rate, second);
  assert.equal(rate[1], rate[2]);
  assert.ok(Number(rate[2]) > 0);
  assert.match(second!, /^remote {6}in \d+\.\d\d MB\/s, out 0\.00 MB\/s$/m);
  assert.match(second!, /^hit ratio {3}- \(since start 90\.9%\)$/m, 'no cache lookup in the interval');
  const row = /^hot\s+16\.0 MiB\s+1\s+2048\s+7\s+(\d+\.\d)\s+(\d+\.\d\d)\s+0\.00$/m.exec(second!);
  assert.ok(row, second);
  assert.equal(row[1], rate[2], 'the only region has all the faults');
});

function tmux(sock: string, ...args: string[]): string {
  return execFileSync('tmux', ['-L', sock, ...args], { encoding: 'utf8' });
}
const tmuxMissing = (() => {
  try {
    execFileSync('tmux', ['-V'], { stdio: 'ignore' });
    return null;
  } catch {
    return 'tmux is not installed (apt-get install tmux)';
  }
})();

async function until(what: string, fn: () => boolean): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (fn()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('on a terminal: redraws in place, Ctrl-C exits 0', { skip: tmuxMissing ?? false }, async (t) => {
  const sock = `farmem-test-${crypto.randomBytes(4).toString('hex')}`;
  const dir = tempDir('tty');
  const raw = path.join(dir, 'raw');
  t.after(() => {
    try {
      tmux(sock, 'kill-server');
    } catch {
      /* already gone */
    }
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  });
  const cmd = `${process.execPath} ${FARMEM} --socket ${d.socket} stats --watch --interval 100ms; echo "exit=$?"; sleep 60`;
  tmux(sock, 'new-session', '-d', '-x', '160', '-y', '40', '-s', 'w', `sh -c 'exec 2>&1; trap : INT; ${cmd}'`);
  tmux(sock, 'pipe-pane', '-t', 'w', `cat >> ${raw}`);
  const screen = () => tmux(sock, 'capture-pane', '-p', '-t', 'w');
  const redraws = () => (fs.existsSync(raw) ? fs.readFileSync(raw, 'latin1').split('\x1b[H').length - 1 : 0);
  await until('three redraws', () => redraws() >= 3);
  const s = screen();
  assert.equal(s.split('\n').filter((l) => l.startsWith('farmemd ')).length, 1, `one view on the screen, drawn over:\n${s}`);
  assert.match(s, new RegExp(`^pager: ${esc(PAGER)}$`, 'm'));
  tmux(sock, 'send-keys', '-t', 'w', 'C-c');
  // The terminal echoes ^C before the shell prints the status.
  await until('the exit status', () => /exit=\d+$/m.test(screen()));
  assert.match(screen(), /^(\^C)?exit=0$/m);
});
