// `farmem demo` against a real farmemd (non-TTY: plain progress lines, then the summary).
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import { test } from 'node:test';

import { userfaultfdUnavailable } from '../helpers/env';
import { FARMEM } from '../helpers/farmemd';
import { pageOrder, parseOrder } from '../../client/cli/demo-pattern';
import { cli, farmemd, memoryServer } from './fixture';

const skip = userfaultfdUnavailable() ?? false;

test('farmem demo creates its region, pages it through the memory server and checks every byte', { skip }, async (t) => {
  const ms = await memoryServer(t);
  const d = await farmemd(t, ms.address);

  const r = await cli(d, ['demo', '--size', '4MiB', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines[0], 'region "demo" did not exist: created it (4.0 MiB, resident budget 1.0 MiB)');
  assert.equal(lines[1], `attached "demo" through ${d.attachSocket}; 1024 pages of 4.0 KiB, seq order, seed 1`);
  assert.deepEqual(lines.filter((l) => l.startsWith('write: ')).at(-1), 'write: 1024/1024 pages (100%)');
  assert.ok(lines.includes('writing the dirty pages back and dropping them from this host'));
  assert.deepEqual(lines.filter((l) => l.startsWith('verify: ')).at(-1), 'verify: 1024/1024 pages (100%)');
  assert.equal(lines.length, 2 + 5 + 1 + 5, r.stderr); // no warnings or other noise

  const s = JSON.parse(r.stdout);
  assert.equal(s.created, true);
  assert.equal(s.pages, 1024);
  assert.equal(s.verified, true);
  assert.equal(s.mismatches, 0);
  // A fresh region: every first write is a zero fault (or a write-protect fault on a page the
  // prefetcher installed); the read-back after the drop comes from the cache or the memory server.
  assert.equal(s.write.faults.remote, 0);
  assert.ok(s.write.faults.zero > 0);
  assert.ok(s.verify.faults.remote > 0, 'pages come back from the memory server');
  assert.equal(s.verify.faults.zero, 0, 'every page was written');
  assert.ok(s.remoteBytesOut >= 1024 * 4096, 'every page was written back');
  assert.ok(s.remoteBytesIn >= s.verify.faults.remote * 4096);
  assert.ok(s.write.pagesPerSecond > 0 && s.verify.pagesPerSecond > 0);
  assert.ok(s.faultP99Us >= s.faultP50Us && s.faultP50Us > 0);

  // Again, as a table, on the region that now exists, in random order over part of it.
  const again = await cli(d, ['demo', '--pages', '100', '--pattern', 'random:7', '--seed', '3']);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stderr.split('\n')[0], 'using region "demo" (4.0 MiB, resident budget 1.0 MiB)');
  assert.match(again.stdout, /^region: +demo \(100 pages of 4\.0 KiB, random:7 order\)$/m);
  assert.match(again.stdout, /^verification: +ok: all 100 pages read back exactly as written$/m);
  assert.match(again.stdout, /^ {2}cache hit ratio: +\d+\.\d%$/m);
});

test('farmem demo: bad flags are usage errors', async (t) => {
  const ms = await memoryServer(t);
  const d = await farmemd(t, ms.address);
  const bad = await cli(d, ['demo', '--pattern', 'zigzag']);
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr, 'farmem: Expected seq, random or random:SEED for --pattern but received "zigzag"\n');
  const big = await cli(d, ['demo', '--size', '1MiB', '--pages', '257']);
  assert.equal(big.code, 2);
  assert.equal(big.stderr, 'region "demo" did not exist: created it (1.0 MiB, resident budget 256.0 KiB)\nfarmem: Expected at most 256 pages (the size of region "demo") for --pages but received 257\n');
});

test('demo page orders: random:SEED is a seeded permutation, bad orders are refused', () => {
  const seq = pageOrder({ kind: 'seq' }, 1000);
  assert.deepEqual([...seq], Array.from({ length: 1000 }, (_, i) => i));
  const r = pageOrder({ kind: 'random', seed: 7 }, 1000);
  assert.deepEqual([...r].sort((a, b) => a - b), [...seq]);
  assert.notDeepEqual([...r], [...seq]);
  assert.deepEqual([...pageOrder({ kind: 'random', seed: 7 }, 1000)], [...r]);
  assert.notDeepEqual([...pageOrder({ kind: 'random', seed: 8 }, 1000)], [...r]);
  assert.deepEqual(parseOrder('random:12'), { kind: 'random', seed: 12 });
  for (const bad of ['', 'rand', 'random:', 'random:-1', 'random:1x', 'stride:2']) assert.equal(parseOrder(bad), null, bad);
});

const scriptMissing = (() => {
  try {
    execFileSync('script', ['--version'], { stdio: 'ignore' });
    return false;
  } catch {
    return 'util-linux script(1) is not installed: no terminal to run the demo on';
  }
})();

test('farmem demo on a terminal: a progress bar redrawn in place', { skip: skip || scriptMissing }, async (t) => {
  const ms = await memoryServer(t);
  const d = await farmemd(t, ms.address);
  // script(1) gives the CLI a pseudo-terminal; its output is the terminal's bytes.
  const cmd = [process.execPath, FARMEM, '--socket', d.socket, 'demo', '--size', '1MiB'].map((a) => `'${a}'`).join(' ');
  const out = await new Promise<{ code: number; stdout: string }>((res) =>
    execFile('script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, FARMEM_SOCKET: '' }, timeout: 60_000 }, (e, stdout) => res({ code: e === null ? 0 : Number(e.code), stdout })),
  );
  assert.equal(out.code, 0, out.stdout);
  assert.match(out.stdout, /\rwrite   \[#{30}\] 100% 256\/256 pages\r?\n/);
  assert.match(out.stdout, /\rverify  \[#{30}\] 100% 256\/256 pages\r?\n/);
  assert.doesNotMatch(out.stdout, /^write: \d+\/\d+ pages/m, 'no plain progress lines on a terminal');
  assert.match(out.stdout, /verification: +ok: all 256 pages read back exactly as written/);
});
