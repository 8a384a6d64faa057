// End to end: real processes attach through libfarmem (fmattach) and the Node API, their page
// faults arrive through the uffd they sent, and the test host installs the pages.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';

import { attach } from '../../client/attach';
import { memfd } from '../../daemon/native';
import { userfaultfdUnavailable } from '../helpers/env';
import { patternPage } from '../helpers/pattern';
import { fmattach, nodeChild, setup } from './fixture';
import { regionSpec } from './host';

const skip = userfaultfdUnavailable() ?? false;
const PS = 4096;
const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex').slice(0, 16);

test('fmattach writes a pattern through libfarmem; a second fmattach and a Node process see it', { skip }, async (t) => {
  const env = setup();
  t.after(() => env.cleanup());
  const r = env.host.addRegion(regionSpec('db', 64 * PS));

  const w = await fmattach(env.sock, ['--region', 'db', '--pages', '32', '--op', 'write', '--seed', '11']).done;
  assert.equal(w.code, 0, w.stderr);
  const wrote = JSON.parse(w.stdout);
  assert.equal(wrote.mismatches, 0);
  assert.equal(wrote.region_bytes, 64 * PS);
  assert.equal(env.host.faults, 32, 'each first touch is one MISSING fault served through the sent uffd');
  // The bytes are in the region's memfd, which the daemon shares.
  for (let p = 0; p < 32; p++) {
    const b = Buffer.alloc(PS);
    memfd.pread(r.memfd, b, p * PS);
    assert.ok(b.equals(patternPage(11n, p, PS)), `page ${p}`);
  }

  const v = await fmattach(env.sock, ['--region', 'db', '--pages', '32', '--op', 'verify', '--seed', '11']).done;
  assert.equal(v.code, 0, v.stderr);
  assert.equal(JSON.parse(v.stdout).checksum, wrote.checksum);

  const n = await nodeChild(env.sock, ['read', 'db', '32']).done;
  assert.equal(n.code, 0, n.stderr);
  const got = JSON.parse(n.stdout);
  assert.equal(got.size, 64 * PS);
  assert.equal(got.regionId, r.spec.id);
  assert.deepEqual(got.sha, Array.from({ length: 32 }, (_, p) => sha(patternPage(11n, p, PS))));
  assert.deepEqual(env.host.detached.map((d) => d.reason), ['detach', 'detach', 'detach']);
  assert.equal(env.server.stats().connections, 0);
});

test('a Node process reads the bytes the daemon installs on its faults', { skip }, async (t) => {
  const env = setup();
  t.after(() => env.cleanup());
  env.host.addRegion(regionSpec('nd', 16 * PS), (p) => patternPage(5n, p, PS));
  const n = await nodeChild(env.sock, ['read', 'nd', '16']).done;
  assert.equal(n.code, 0, n.stderr);
  assert.deepEqual(JSON.parse(n.stdout).sha, Array.from({ length: 16 }, (_, p) => sha(patternPage(5n, p, PS))));
  assert.equal(env.host.faults, 16);
  const reg = env.host.registered[0];
  assert.equal(reg.length, 16 * PS);
  assert.ok(reg.features.includes('MISSING_SHMEM') && reg.features.includes('THREAD_ID'));
  assert.equal(reg.reattach, false);
});

test('two processes attached at once see each other\'s writes', { skip }, async (t) => {
  const env = setup();
  t.after(() => env.cleanup());
  env.host.addRegion(regionSpec('both', 16 * PS));
  const reader = nodeChild(env.sock, ['pause-read', 'both', '8']);
  await reader.line((l) => l.includes('"ready"'));
  const w = await fmattach(env.sock, ['--region', 'both', '--pages', '8', '--op', 'write', '--seed', '21']).done;
  assert.equal(w.code, 0, w.stderr);
  reader.child.stdin!.write('go\n');
  const n = await reader.done;
  assert.equal(n.code, 0, n.stderr);
  assert.deepEqual(JSON.parse(n.stdout.split('\n')[1]).sha, Array.from({ length: 8 }, (_, p) => sha(patternPage(21n, p, PS))));
});

test('the Node API refuses to run inside the daemon, and bad names', () => {
  // Any process that runs an AttachServer is marked as the daemon; this test process does (setup).
  const env = setup();
  try {
    assert.throws(() => attach('db', { socket: env.sock }), { name: 'AttachError', code: 'EDEADLK', message: 'attach "db": refused inside farmemd (its own faults would wait on itself)' });
    assert.throws(() => attach(''), { name: 'TypeError', message: 'Expected a region name of 1 to 255 bytes for name but received ""' });
    assert.throws(() => attach('db', { socket: '' }), { name: 'TypeError', message: 'Expected a socket path for opts.socket but received ""' });
  } finally {
    env.cleanup();
  }
});
