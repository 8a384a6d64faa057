// Messages to a full service-manager socket: they go MSG_DONTWAIT, so a busy systemd (its datagram
// queue full) makes a send fail with EAGAIN. FDSTORE=1 must still reach the store once the queue
// drains (or a crash of farmemd plus its processes loses pages never written back), and so must READY=1.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fdpass, memfd, sdNotify } from '../../daemon/native';
import { FdStore } from '../../daemon/lifecycle/fdstore';
import { createNotifier } from '../../daemon/lifecycle/notify';
import { NOTIFY_RETRY_MS } from '../../daemon/lifecycle/retry-send';
import { createLogger } from '../../daemon/log';

/** A manager socket nobody reads yet, filled until the next send would fail with EAGAIN. */
function fullManager(t: TestContext): { sock: number; drain(): string[]; fds: number[] } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'farmem-notify-'));
  const p = path.join(dir, 'notify');
  const sock = fdpass.dgramBind(p);
  const saved = process.env.NOTIFY_SOCKET;
  process.env.NOTIFY_SOCKET = p;
  const fds: number[] = [];
  t.after(() => {
    if (saved === undefined) delete process.env.NOTIFY_SOCKET;
    else process.env.NOTIFY_SOCKET = saved;
    for (const fd of fds) memfd.close(fd);
    memfd.close(sock);
    fs.rmSync(dir, { recursive: true, force: true });
  });
  let filled = 0;
  for (;;) {
    try {
      sdNotify.send('STATUS=filler');
      filled++;
    } catch (e) {
      assert.equal((e as { code?: string }).code, 'EAGAIN', (e as Error).message);
      break;
    }
    assert.ok(filled < 100_000, 'the manager socket never filled up');
  }
  return {
    sock,
    fds,
    drain() {
      const texts: string[] = [];
      for (let r = fdpass.recv(sock, { timeoutMs: 0 }); r !== null; r = fdpass.recv(sock, { timeoutMs: 0 })) {
        texts.push(r.payload.toString());
        fds.push(...r.fds);
      }
      return texts;
    },
  };
}

test('FDSTORE=1 over a full manager socket is retried until the manager reads it', async (t) => {
  const m = fullManager(t);
  const store = new FdStore(createLogger({ level: 'fatal', pretty: false }), process.env);
  const region = memfd.create('retry', 4096);
  t.after(() => memfd.close(region));
  store.store('region-r1', region);
  assert.equal(store.retrying, 1, 'a full socket leaves a retry waiting');
  assert.ok(m.drain().every((x) => x === 'STATUS=filler'));
  await new Promise((r) => setTimeout(r, NOTIFY_RETRY_MS[0]! + 50));
  assert.deepEqual(m.drain(), ['FDSTORE=1\nFDNAME=region-r1']);
  assert.equal(m.fds.length, 1, 'the memfd came with the retried message');
  assert.equal(store.retrying, 0);
});

test('remove() while a store is still being retried cancels it and removes the name', async (t) => {
  const m = fullManager(t);
  const store = new FdStore(createLogger({ level: 'fatal', pretty: false }), process.env);
  const region = memfd.create('retry', 4096);
  t.after(() => memfd.close(region));
  store.store('region-r2', region);
  m.drain();
  store.remove('region-r2');
  assert.equal(store.retrying, 0);
  await new Promise((r) => setTimeout(r, NOTIFY_RETRY_MS[0]! + 50));
  assert.deepEqual(m.drain(), ['FDSTOREREMOVE=1\nFDNAME=region-r2'], 'the stale store was never sent after the remove');
  assert.equal(m.fds.length, 0);
});

test('READY=1 over a full manager socket is retried: systemd would otherwise fail the start', async (t) => {
  const m = fullManager(t);
  const notifier = createNotifier(createLogger({ level: 'fatal', pretty: false }), process.env);
  assert.equal(notifier.enabled, true);
  assert.equal(notifier.notify('READY=1\nSTATUS=serving'), false, 'not sent yet');
  m.drain();
  await new Promise((r) => setTimeout(r, NOTIFY_RETRY_MS[0]! + 50));
  assert.deepEqual(m.drain(), ['READY=1\nSTATUS=serving']);
});
