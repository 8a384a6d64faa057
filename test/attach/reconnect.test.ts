// The daemon goes away while processes are attached: their faults wait, and when an attach socket
// is back on the same path, libfarmem and the Node API reconnect on their own, re-send the same
// uffd (and memfd), and the processes continue with the right bytes.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { test } from 'node:test';

import { AttachServer } from '../../daemon/attach';
import { memfd } from '../../daemon/native';
import { userfaultfdUnavailable } from '../helpers/env';
import { patternPage } from '../helpers/pattern';
import { fmattach, nodeChild, setup, until } from './fixture';
import { regionSpec } from './host';

const skip = userfaultfdUnavailable() ?? false;
const PS = 4096;
const sha = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex').slice(0, 16);

test('libfarmem reattaches after the daemon side restarts; faults made meanwhile complete', { skip }, async (t) => {
  const env = setup();
  t.after(() => env.cleanup());
  const r = env.host.addRegion(regionSpec('rc', 32 * PS));
  const run = fmattach(env.sock, ['--region', 'rc', '--pages', '16', '--op', 'write,verify', '--seed', '9', '--pause']);
  t.after(() => run.child.kill('SIGKILL'));
  await run.line((l) => l === '{"ready":"write"}');
  assert.equal(env.host.live.size, 1);

  env.server.close(); // the daemon is gone: the host stops serving that uffd
  assert.deepEqual(env.host.detached.map((d) => d.reason), ['shutdown']);
  await until(() => run.stderr().includes('lost farmemd'), 'libfarmem to notice the hang-up');
  run.child.stdin!.write('go\n'); // its first write now faults with nobody to answer: it waits
  await until(() => run.stderr().includes('reattach: connect'), 'a failed reconnect attempt');
  assert.equal(run.lines.length, 1, 'no op completed while the daemon was away');

  env.server = new AttachServer({ path: env.sock, host: env.host });
  await run.line((l) => l.includes('"op":"write"'));
  await run.line((l) => l === '{"ready":"verify"}');
  run.child.stdin!.write('go\n');
  const d = await run.done;
  assert.equal(d.code, 0, d.stderr);
  assert.equal(JSON.parse(run.lines[3]).mismatches, 0);
  assert.match(d.stderr, /libfarmem: region "rc": reattached to farmemd \(attachment 2\)/);
  const again = env.host.registered[1];
  assert.equal(again.reattach, true);
  assert.ok(again.token.equals(env.host.registered[0].token), 'the attachment token survives the reconnect');
  for (let p = 0; p < 16; p++) {
    const b = Buffer.alloc(PS);
    memfd.pread(r.memfd, b, p * PS);
    assert.ok(b.equals(patternPage(9n, p, PS)), `page ${p}`);
  }
});

test('the Node API reattaches after the daemon side restarts while its main thread waits in a fault', { skip }, async (t) => {
  const env = setup();
  t.after(() => env.cleanup());
  env.host.addRegion(regionSpec('nr', 16 * PS), (p) => patternPage(4n, p, PS));
  const run = nodeChild(env.sock, ['pause-read', 'nr', '8']);
  t.after(() => run.child.kill('SIGKILL'));
  await run.line((l) => l.includes('"ready"'));
  env.server.close();
  await until(() => run.stderr().includes('lost farmemd'), 'the watcher to notice the hang-up');
  run.child.stdin!.write('go\n'); // the main thread faults and waits: only the worker can reconnect
  await until(() => run.stderr().includes('reattach "nr": connect'), 'a failed reconnect attempt');
  env.server = new AttachServer({ path: env.sock, host: env.host });
  const d = await run.done;
  assert.equal(d.code, 0, d.stderr);
  assert.deepEqual(JSON.parse(run.lines[1]).sha, Array.from({ length: 8 }, (_, p) => sha(patternPage(4n, p, PS))));
  assert.match(d.stderr, /farmem: region "nr": reattached to farmemd \(attachment 2\)/);
  assert.equal(env.host.registered[1].reattach, true);
});
