// The embedded memory server on port 0 comes back on the address it had (the placement record names
// servers by address), and on a fresh one when that address is taken.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Writable } from 'node:stream';
import { createLogger } from '../../daemon/log';
import { startEmbeddedServerSticky } from '../../daemon/embedded';
import { tempDir } from '../helpers/farmemd';

test('an embedded server on port 0 restarts on its previous address, or a new one when that is taken', async (t) => {
  const dir = tempDir('embedded');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const lines: Array<Record<string, unknown>> = [];
  const logger = createLogger({ level: 'info', pretty: false, destination: new Writable({ write: (c, _e, cb) => { for (const l of String(c).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>); cb(); } }) });
  const opts = { listen: '127.0.0.1:0', capacityBytes: 1 << 20, dataDir: path.join(dir, 'data'), logger, stateDir: dir };
  const first = await startEmbeddedServerSticky(opts);
  assert.equal(fs.readFileSync(path.join(dir, 'embedded-address'), 'utf8'), first.address);
  await first.stop(100);
  const second = await startEmbeddedServerSticky(opts);
  assert.equal(second.address, first.address);
  await second.stop(100);
  // Someone else took the port meanwhile.
  const squatter = net.createServer();
  const port = Number(first.address.split(':')[1]);
  await new Promise<void>((res) => squatter.listen(port, '127.0.0.1', () => res()));
  t.after(() => squatter.close());
  const third = await startEmbeddedServerSticky(opts);
  t.after(() => third.stop(100));
  assert.notEqual(third.address, first.address);
  assert.equal(fs.readFileSync(path.join(dir, 'embedded-address'), 'utf8'), third.address);
  assert.ok(lines.some((l) => l.msg === `embedded memory server: its previous address ${first.address} is taken; pages it kept are not found where the placement record says`));
});
