// `farmem servers add --ca --cert --key`: a memory server that requires mutual TLS joins a running
// farmemd; the page groups that now rank it move to it over TLS (their old copies are discarded on
// the first server), every byte reads back, and the TLS files are kept for the next start. Bad
// flags are refused by the CLI with the whole message, before anything is sent.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import pino from 'pino';

import { userfaultfdUnavailable } from '../helpers/env';
import { makeCerts, noOpenssl } from '../helpers/certs';
import { fmattach } from '../attach/fixture';
import { MemoryServer } from '../../daemon/memserver/server';
import { MemoryServerClient } from '../../daemon/remote/client';
import { cli, cliJson, farmemd, memoryServer, tempDir, writeBackAndDrop } from './fixture';

const skip = userfaultfdUnavailable() ?? noOpenssl;

interface ServerJson {
  address: string;
  tls: boolean;
  state: string;
  pool: { state: string; pendingGroups: number; repairing: boolean; underReplicatedGroups: number } | null;
}

test('farmem servers add with --ca --cert --key: an mTLS memory server joins and receives its groups over TLS', { skip }, async (t) => {
  const certs = tempDir(t, 'certs');
  makeCerts(certs);
  const f = (n: string) => path.join(certs, n);
  const plain = await memoryServer(t);
  const secure = await MemoryServer.start({
    listen: '127.0.0.1:0', capacityBytes: 64 * 1024 * 1024, dataDir: null, logger: pino({ level: 'silent' }),
    tls: { cert: f('server.pem'), key: f('server.key'), ca: f('ca.pem') },
  });
  t.after(() => secure.stop(500));
  const d = await farmemd(t, plain.address);

  // Refused by the CLI, each with its whole message (exit 2), and nothing was added.
  fs.writeFileSync(f('not.pem'), 'hello\n');
  const bad: Array<[string[], string]> = [
    [['--cert', f('client.pem')], 'farmem: Expected both --cert and --key (a client certificate and its key) but received only --cert\n'],
    [['--key', f('client.key')], 'farmem: Expected both --cert and --key (a client certificate and its key) but received only --key\n'],
    [['--ca', f('nope.pem')], `farmem: Expected a readable file for --ca but received ${JSON.stringify(f('nope.pem'))} (ENOENT)\n`],
    [['--ca', f('not.pem'), '--cert', f('client.pem'), '--key', f('client.key')], `farmem: Expected a PEM file (-----BEGIN ...) for --ca but received ${JSON.stringify(f('not.pem'))}\n`],
  ];
  for (const [flags, message] of bad) {
    const r = await cli(d, ['servers', 'add', secure.address, ...flags]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr, message);
  }
  assert.deepEqual((await cliJson<ServerJson[]>(d, ['servers'])).map((s) => s.address), [plain.address]);

  const PAGES = 1024;
  const created = await cli(d, ['region', 'create', 'sec', '--size', '4MiB', '--resident', '1MiB', '--prefetch', 'none', '--mode', '666']);
  assert.equal(created.code, 0, created.stderr);
  const w = await fmattach(d.attachSocket, ['--region', 'sec', '--pages', String(PAGES), '--op', 'write', '--seed', '31']).done;
  assert.equal(w.code, 0, w.stderr);
  await writeBackAndDrop(d, 'sec');
  const region = (await cliJson<{ id: string }>(d, ['region', 'show', 'sec'])).id;
  const onPlain = async () => ((await plainClient.stats()).regions.find((r) => r.region === region)?.pages ?? 0);
  const plainClient = new MemoryServerClient({ address: plain.address });
  const tlsClient = new MemoryServerClient({ address: secure.address, tls: { ca: f('ca.pem'), cert: f('client.pem'), key: f('client.key') } });
  t.after(() => Promise.all([plainClient.close(), tlsClient.close()]));
  assert.equal(await onPlain(), PAGES);

  const added = await cliJson<ServerJson>(d, ['servers', 'add', secure.address, '--ca', path.relative(process.cwd(), f('ca.pem')), '--cert', f('client.pem'), '--key', f('client.key')]);
  assert.equal(added.address, secure.address);
  assert.equal(added.tls, true);
  assert.equal(added.state, 'up'); // the daemon's probe got through mTLS
  let servers: ServerJson[] = [];
  for (let i = 0; i < 600; i++) {
    servers = await cliJson<ServerJson[]>(d, ['servers']);
    if (servers.length === 2 && servers.every((s) => s.pool !== null && s.pool.state === 'up' && s.pool.pendingGroups === 0 && !s.pool.repairing)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const sec = servers.find((s) => s.address === secure.address)!;
  assert.equal(sec.tls, true);
  assert.equal(sec.pool?.state, 'up', JSON.stringify(servers));
  // R=1: every page is on exactly one of the two; the groups that moved left the plain server.
  const onSecure = (await tlsClient.stats()).regions.find((r) => r.region === region)?.pages ?? 0;
  assert.ok(onSecure > 0 && onSecure < PAGES, `${onSecure} pages on the TLS server`);
  assert.equal(await onPlain(), PAGES - onSecure);

  const v = await fmattach(d.attachSocket, ['--region', 'sec', '--pages', String(PAGES), '--op', 'verify', '--seed', '31']).done;
  assert.equal(v.code, 0, v.stderr);
  assert.equal(JSON.parse(v.stdout).mismatches, 0);

  // Kept for the next start: the files' paths (made absolute by the CLI), never their contents.
  const kept = JSON.parse(fs.readFileSync(path.join(d.dir, 'state', 'servers.json'), 'utf8')) as { added: unknown[] };
  assert.deepEqual(kept.added, [{ address: secure.address, weight: 1, tokenFile: null, tls: { ca: f('ca.pem'), cert: f('client.pem'), key: f('client.key'), serverName: null } }]);
});
