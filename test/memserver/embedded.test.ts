// startMemoryServer: what farmemd uses to run a memory server on loopback when its config names none.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startMemoryServer } from '../../daemon/memserver';
import { MemoryServerClient } from '../../daemon/remote/client';
import { PageStoreError } from '../../daemon/remote/types';
import { captureLogger, randomPages } from './fixture';

test('startMemoryServer binds port 0 on loopback, serves, and stops', async () => {
  const { logger, lines } = captureLogger();
  const s = await startMemoryServer({ listen: '127.0.0.1:0', capacityBytes: 1 << 20, dataDir: null, token: 'tk', logger });
  assert.match(s.address, /^127\.0\.0\.1:[1-9]\d*$/);
  const c = new MemoryServerClient({ address: s.address, token: 'tk', deadlineMs: 2000 });
  try {
    const data = randomPages(2, 4096);
    await c.write({ id: 'e', pageSize: 4096 }, [0, 1], data);
    assert.ok((await c.read({ id: 'e', pageSize: 4096 }, [1])).present.get(1)!.equals(data.subarray(4096)));
    await s.stop(500);
    assert.ok(lines.some((l) => l.msg === 'memory server stopped'));
    await assert.rejects(c.read({ id: 'e', pageSize: 4096 }, [1]), (e: unknown) => e instanceof PageStoreError && e.kind === 'unavailable');
  } finally {
    await c.close();
  }
});

test('startMemoryServer refuses an address it cannot bind, naming it', async () => {
  const { logger } = captureLogger();
  const a = await startMemoryServer({ listen: '127.0.0.1:0', capacityBytes: 1 << 20, dataDir: null, logger });
  try {
    await assert.rejects(startMemoryServer({ listen: a.address, capacityBytes: 1 << 20, dataDir: null, logger }), {
      message: `listen ${a.address}: No address added out of total 1 resolved errors: [listen EADDRINUSE: address already in use ${a.address}]`,
    });
  } finally {
    await a.stop();
  }
});
