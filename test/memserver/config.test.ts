// Configuration: sizes, TOML file + flags, and every refusal with its whole message.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { readConfigFile, resolveConfig } from '../../daemon/memserver/config';
import { formatBytes, parseSize } from '../../daemon/memserver/units';
import { tmpDir } from './fixture';

const MAIN = path.join(__dirname, '..', '..', 'daemon', 'memserver', 'main.js');

test('sizes parse with binary and decimal units and print back', () => {
  assert.equal(parseSize('8GiB'), 8 * 1024 ** 3);
  assert.equal(parseSize('512 MiB'), 512 * 1024 ** 2);
  assert.equal(parseSize('1.5k'), 1536);
  assert.equal(parseSize('2GB'), 2e9);
  assert.equal(parseSize(4096), 4096);
  assert.equal(parseSize('lots'), null);
  assert.equal(parseSize('3 parsecs'), null);
  assert.equal(formatBytes(8 * 1024 ** 3), '8 GiB');
  assert.equal(formatBytes(1000), '1000 B');
  assert.equal(formatBytes(1536), '1.50 KiB');
});

test('a TOML file with flags on top resolves; defaults are loopback, 1 GiB, memory only', (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'memserver.toml');
  fs.writeFileSync(path.join(dir, 'token'), 'tok\n');
  fs.writeFileSync(file, `listen = "0.0.0.0:7171"\ncapacity = "2GiB"\ndata_dir = "${dir}/data"\ntoken_file = "${dir}/token"\n[tls]\ncert = "c.pem"\nkey = "k.pem"\nca = "ca.pem"\n`);
  const c = resolveConfig(readConfigFile(file), { capacity: '3GiB', listen: undefined });
  assert.deepEqual(c, {
    listen: '0.0.0.0:7171', capacityBytes: 3 * 1024 ** 3, dataDir: `${dir}/data`, token: 'tok',
    tls: { cert: 'c.pem', key: 'k.pem', ca: 'ca.pem' }, metricsListen: null, logLevel: 'info', maxMessageBytes: 64 * 1024 * 1024,
  });
  assert.deepEqual(resolveConfig({}, {}), {
    listen: '127.0.0.1:7070', capacityBytes: 1024 ** 3, dataDir: null, token: null, tls: null, metricsListen: null, logLevel: 'info', maxMessageBytes: 64 * 1024 * 1024,
  });
  assert.equal(resolveConfig({}, { listen: 'unix:/tmp/x.sock' }).listen, 'unix:/tmp/x.sock');
});

test('bad configuration is refused naming what was wrong', (t) => {
  const dir = tmpDir(t);
  const file = path.join(dir, 'bad.toml');
  fs.writeFileSync(file, 'capacity = "lots"\nlisten = "nowhere"\ncolour = "blue"\n');
  assert.throws(() => readConfigFile(file), {
    message: `config ${file}: listen: Expected host:port or unix:/path but received "nowhere"; capacity: Expected a size like 8GiB or 4096 but received "lots"; (root): Unrecognized key: "colour"`,
  });
  fs.writeFileSync(file, 'capacity = [');
  assert.throws(() => readConfigFile(file), (e: Error) => e.message.startsWith(`config ${file}: `));
  assert.throws(() => readConfigFile(path.join(dir, 'missing.toml')), { message: `config ${path.join(dir, 'missing.toml')}: ENOENT` });
  assert.throws(() => resolveConfig({ token: 'a' }, { token_file: '/x' }), { message: 'config: Expected token or token_file, not both, but received both' });
  assert.throws(() => resolveConfig({}, { token_file: path.join(dir, 'nope') }), { message: `config: token_file ${path.join(dir, 'nope')}: ENOENT` });
});

test('farmem-memserver refuses bad flags with exit 2 and a bad config with exit 1', () => {
  const r = spawnSync(process.execPath, [MAIN, '--capacity', 'lots'], { encoding: 'utf8' });
  assert.equal(r.status, 1);
  assert.equal(r.stderr, 'farmem-memserver: config: capacity: Expected a size like 8GiB or 4096 but received "lots"\n');
  const r2 = spawnSync(process.execPath, [MAIN, '--tls-cert', 'a.pem'], { encoding: 'utf8' });
  assert.equal(r2.stderr, 'farmem-memserver: Expected all of --tls-cert, --tls-key and --tls-ca for TLS but received 1 of them\n');
  const r3 = spawnSync(process.execPath, [MAIN, '--bogus'], { encoding: 'utf8' });
  assert.equal(r3.status, 2);
  assert.match(r3.stderr, /unknown option '--bogus'/);
});
