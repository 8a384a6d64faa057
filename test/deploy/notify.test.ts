// The daemon's side of Type=notify: farmemd run as systemd would run it, with NOTIFY_SOCKET naming a
// fake manager (a datagram socket this test binds) and WATCHDOG_USEC set: READY=1 with STATUS once
// serving, WATCHDOG=1 pings at half the interval, STOPPING=1 on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fdpass, memfd } from '../../daemon/native';
import { FARMEMD } from '../helpers/farmemd';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Collects datagrams until `until` matches one or the deadline passes. */
async function collect(fd: number, got: string[], until: (m: string) => boolean, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    const m = fdpass.recv(fd, { timeoutMs: 0 });
    if (m === null) {
      await sleep(10);
      continue;
    }
    const s = m.payload.toString();
    got.push(s);
    if (until(s)) return;
  }
  assert.fail(`no matching notification within ${ms} ms; got ${JSON.stringify(got)}`);
}

test('farmemd under systemd: READY=1 with STATUS once serving, WATCHDOG=1 pings, STOPPING=1 on SIGTERM', async (t) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-notify-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  const notify = path.join(dir, 'notify');
  const manager = fdpass.dgramBind(notify);
  t.after(() => memfd.close(manager));
  const child = spawn(
    process.execPath,
    [FARMEMD, '--socket', path.join(dir, 'farmemd.sock'), '--state-dir', path.join(dir, 'state'), '--embedded-listen', '127.0.0.1:0'],
    { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, NOTIFY_SOCKET: notify, WATCHDOG_USEC: '200000' } },
  );
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  t.after(() => child.kill('SIGKILL'));
  const got: string[] = [];
  await collect(manager, got, (m) => m.startsWith('READY=1'), 20_000);
  assert.ok(fs.existsSync(path.join(dir, 'farmemd.sock')), 'READY came before the control socket existed');
  assert.match(got.at(-1)!, /^READY=1\nSTATUS=serving 0 region\(s\) on .*farmemd\.sock$/);
  // Pings at half of WATCHDOG_USEC (100 ms): a few within a second.
  const before = got.length;
  await collect(manager, got, () => got.slice(before).filter((m) => m === 'WATCHDOG=1').length >= 3, 3000);
  child.kill('SIGTERM');
  await collect(manager, got, (m) => m.startsWith('STOPPING=1'), 10_000);
  assert.match(got.at(-1)!, /^STOPPING=1\nSTATUS=draining: received SIGTERM$/);
  assert.equal(await exited, 0);
  assert.equal(got.filter((m) => m.startsWith('READY=1')).length, 1, 'READY=1 is sent once');
});
