// The multi-host fixture itself: namespaces are made, reachable, partitionable, and cleaned up.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { TestHosts, netnsUnavailable } from '../helpers/netns';

function connectOnce(host: string, port: number, timeoutMs: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const timer = setTimeout(() => { s.destroy(); resolve('timeout'); }, timeoutMs);
    s.once('data', (d) => { clearTimeout(timer); s.destroy(); resolve(d.toString()); });
    s.once('error', (e: NodeJS.ErrnoException) => { clearTimeout(timer); resolve(e.code ?? 'error'); });
  });
}

test('test hosts: a server in a namespace is reachable, a partition cuts it, destroy removes all', { skip: netnsUnavailable() ?? false }, async (t) => {
  const hosts = new TestHosts();
  t.after(() => hosts.destroy());
  const [h0, h1] = hosts.create(2);
  assert.ok(h0 && h1);
  const port = 17000 + Math.floor(Math.random() * 1000);
  const server = hosts.spawn(h1, process.execPath, ['-e', `require('net').createServer(s=>s.end('hello from ns')).listen(${port}, '${h1.address}', ()=>console.log('up'))`]);
  await new Promise<void>((resolve, reject) => {
    server.stdout!.once('data', () => resolve());
    server.once('exit', (c) => reject(new Error(`server exited ${c}`)));
  });
  assert.equal(await connectOnce(h1.address, port, 2000), 'hello from ns');
  hosts.setLink(h1, false);
  assert.notEqual(await connectOnce(h1.address, port, 500), 'hello from ns');
  hosts.setLink(h1, true);
  assert.equal(await connectOnce(h1.address, port, 2000), 'hello from ns');
  const names = [h0.ns, h1.ns];
  hosts.destroy();
  const left = execFileSync('ip', ['netns', 'list']).toString();
  for (const n of names) assert.ok(!left.includes(n), `namespace ${n} still exists`);
});
