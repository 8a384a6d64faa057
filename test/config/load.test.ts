import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { loadConfig, KEYS, renderKeysTable } from '../../daemon/config';
import { tempDir } from '../helpers/farmemd';

const EXAMPLE = path.join(__dirname, '..', '..', '..', 'deploy', 'examples', 'farmemd.toml');
const env = { XDG_RUNTIME_DIR: '/tmp/xdg-run', XDG_STATE_HOME: '/tmp/xdg-state' };

function withFile(text: string, fn: (file: string) => void): void {
  const dir = tempDir('cfg');
  try {
    const file = path.join(dir, 'farmemd.toml');
    fs.writeFileSync(file, text);
    fn(file);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  }
}

test('a full file is read, converted and defaulted', () => {
  const text = [
    'state_dir = "/srv/farmem"',
    'socket = "/srv/run/farmemd.sock"',
    'cache_size = "1GiB"',
    'drain_timeout = "2m"',
    'metrics_address = "127.0.0.1:0"',
    '[[memory_servers]]',
    'address = "10.0.0.2:7070"',
    'weight = 3',
    'token = "t"',
    '[memory_servers.tls]',
    'ca = "/etc/ca.pem"',
    '[[memory_servers]]',
    'address = "unix:/run/m.sock"',
    '[fault]',
    'threads = 2',
  ].join('\n');
  withFile(text, (file) => {
    const c = loadConfig({ file, explicit: true, env });
    assert.equal(c.file, file);
    assert.equal(c.stateDir, '/srv/farmem');
    assert.equal(c.socket, '/srv/run/farmemd.sock');
    assert.equal(c.attachSocket, '/srv/run/attach.sock');
    assert.equal(c.cacheBytes, 1024 ** 3);
    assert.equal(c.drainTimeoutMs, 120_000);
    assert.equal(c.metricsAddress, '127.0.0.1:0');
    assert.deepEqual(c.memoryServers, [
      { address: '10.0.0.2:7070', weight: 3, token: 't', tokenFile: null, tls: { ca: '/etc/ca.pem', cert: null, key: null, serverName: null } },
      { address: 'unix:/run/m.sock', weight: 1, token: null, tokenFile: null, tls: null },
    ]);
    assert.deepEqual(c.fault, { threads: 2, pin: true, unavailableTimeoutMs: 30_000 });
    assert.equal(c.embeddedServer.enabled, false, 'auto: servers are configured');
    assert.equal(c.socketMode, 0o660);
  });
});

test('no file: defaults, and the embedded server when no server is named', () => {
  const c = loadConfig({ file: null, explicit: false, env, flags: [{ key: 'socket', flag: '--socket', value: '/x/s.sock' }, { key: 'state_dir', flag: '--state-dir', value: '/x/state' }] });
  assert.equal(c.file, null);
  assert.equal(c.embeddedServer.enabled, true);
  assert.equal(c.embeddedServer.listen, '127.0.0.1:0');
  assert.equal(c.logLevel, 'info');
  assert.equal(c.metricsAddress, null);
  assert.equal(c.attachSocket, '/x/attach.sock');
});

test('a bad value names the file, the line and the key', () => {
  withFile('log_level = "info"\n\n[[memory_servers]]\naddress = "10.0.0.1:7070"\n\n[[memory_servers]]\naddress = "x"\n', (file) => {
    assert.throws(() => loadConfig({ file, explicit: true, env }), {
      name: 'ConfigError',
      message: `config ${file}:7: memory_servers[1].address: Expected host:port or unix:PATH but received "x"`,
    });
  });
});

test('region_defaults.dirty_tracking: wp by default, wp|async|auto, anything else is refused', () => {
  withFile('[region_defaults]\ndirty_tracking = "auto"\n', (file) => {
    assert.equal(loadConfig({ file, explicit: true, env }).regionDefaults.dirtyTracking, 'auto');
  });
  withFile('', (file) => {
    assert.equal(loadConfig({ file, explicit: true, env }).regionDefaults.dirtyTracking, 'wp');
  });
  withFile('[region_defaults]\ndirty_tracking = "lazy"\n', (file) => {
    assert.throws(() => loadConfig({ file, explicit: true, env }), { message: `config ${file}:2: region_defaults.dirty_tracking: Expected wp, async or auto but received "lazy"` });
  });
});

test('every bad key is reported, one per line', () => {
  withFile('cache_size = "1GB"\nlog_level = "loud"\ncolour = true\n[fault]\nthreads = -1\n[memory_servers.tls]\n', (file) => {
    assert.throws(() => loadConfig({ file, explicit: true, env }), {
      message: [
        `config ${file}:1: cache_size: Expected a size in bytes (e.g. 4096, 4KiB, 256MiB, 1GiB) but received "1GB"`,
        `config ${file}:2: log_level: Expected fatal, error, warn, info, debug, trace but received "loud"`,
        `config ${file}:3: colour: Unknown key (the keys are listed in deploy/examples/farmemd.toml and by farmemd --help-config)`,
        `config ${file}:5: fault.threads: Expected an integer from 0 (one per vCPU) to 256 but received -1`,
        `config ${file}:6: memory_servers: Expected an array of tables ([[memory_servers]]) but received {"tls":{}}`,
      ].join('\n'),
    });
  });
});

test('a missing required key names its table', () => {
  withFile('[[memory_servers]]\nweight = 2\n', (file) => {
    assert.throws(() => loadConfig({ file, explicit: true, env }), {
      message: `config ${file}:1: memory_servers[0].address: Expected host:port or unix:PATH but received nothing (the key is missing)`,
    });
  });
});

test('invalid TOML names the line and column', () => {
  withFile('a = 1\nb = [\n', (file) => {
    assert.throws(() => loadConfig({ file, explicit: true, env }), { message: `config ${file}:3:1: invalid TOML: invalid value` });
  });
});

test('an explicit file that does not exist is an error; the default path may be missing', () => {
  assert.throws(() => loadConfig({ file: '/nonexistent/farmemd.toml', explicit: true, env }), { message: 'config /nonexistent/farmemd.toml: ENOENT: cannot read the file' });
  assert.equal(loadConfig({ file: '/nonexistent/farmemd.toml', explicit: false, env }).file, null);
});

test('flags override the file, and their errors name the flag', () => {
  withFile('log_level = "warn"\n[[memory_servers]]\naddress = "10.0.0.1:7070"\n', (file) => {
    const c = loadConfig({ file, explicit: true, env, flags: [{ key: 'log_level', flag: '--log-level', value: 'debug' }, { key: 'memory_servers', flag: '--memory-server', value: [{ address: 'unix:/m.sock' }] }] });
    assert.equal(c.logLevel, 'debug');
    assert.deepEqual(c.memoryServers.map((s) => s.address), ['unix:/m.sock']);
    assert.throws(() => loadConfig({ file, explicit: true, env, flags: [{ key: 'memory_servers', flag: '--memory-server', value: [{ address: 'nope' }] }] }), {
      message: '--memory-server: Expected host:port or unix:PATH but received "nope"',
    });
    assert.throws(() => loadConfig({ file, explicit: true, env, flags: [{ key: 'cache_size', flag: '--cache-size', value: 'lots' }] }), {
      message: '--cache-size: Expected a size in bytes (e.g. 4096, 4KiB, 256MiB, 1GiB) but received "lots"',
    });
  });
});

test('token and token_file', () => {
  const dir = tempDir('tok');
  try {
    const tok = path.join(dir, 'token');
    fs.writeFileSync(tok, 'secret\n');
    const file = path.join(dir, 'f.toml');
    fs.writeFileSync(file, `[[memory_servers]]\naddress = "h:1"\ntoken_file = "${tok}"\n`);
    assert.equal(loadConfig({ file, explicit: true, env }).memoryServers[0]!.token, 'secret');
    assert.equal(loadConfig({ file, explicit: true, env }).memoryServers[0]!.tokenFile, tok); // kept for a reload's drain
    fs.writeFileSync(file, `[[memory_servers]]\naddress = "h:1"\ntoken = "a"\ntoken_file = "${tok}"\n`);
    assert.throws(() => loadConfig({ file, explicit: true, env }), { message: `config ${file}: memory_servers[0].token_file: Expected token or token_file, not both` });
    fs.writeFileSync(file, `[[memory_servers]]\naddress = "h:1"\ntoken_file = "${dir}/none"\n`);
    assert.throws(() => loadConfig({ file, explicit: true, env }), { message: `config ${file}: memory_servers[0].token_file: ENOENT: cannot read ${dir}/none` });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  }
});

test('the example file is valid, and documents every key', () => {
  const text = fs.readFileSync(EXAMPLE, 'utf8');
  loadConfig({ file: EXAMPLE, explicit: true, env });
  // With every commented key turned on, it is still valid (the commented values are real ones).
  const on = text.replace(/^# ((?:[a-z_]+) = .*)$/gm, '$1').replace(/^# (\[\[?[a-z_.]+\]\]?.*)$/gm, '$1');
  const parsed = parseToml(on) as Record<string, unknown>;
  assert.ok(Array.isArray(parsed.memory_servers));
  const dir = tempDir('ex');
  try {
    const f = path.join(dir, 'all.toml');
    fs.writeFileSync(f, on.replace(/^token(_file)? = .*$/gm, ''));
    const c = loadConfig({ file: f, explicit: true, env });
    assert.equal(c.memoryServers[0]!.address, '10.0.0.2:7070');
    assert.equal(c.memoryServers[0]!.tls!.serverName, 'mem1.example');
    assert.equal(c.metricsAddress, '127.0.0.1:9464');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  }
  for (const k of KEYS) {
    const leaf = k.key.replace('memory_servers[].', '').split('.').pop()!;
    assert.match(text, new RegExp(`^#? ?(${leaf} =|\\[\\[?[a-z_.]*${leaf}\\]\\]?)`, 'm'), `deploy/examples/farmemd.toml documents ${k.key}`);
    assert.ok(renderKeysTable().includes(`| \`${k.key}\` |`));
  }
});
