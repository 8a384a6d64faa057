// farmemd as a real child process: persistence across restarts, SIGTERM, the socket, metrics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { spawnSync } from 'node:child_process';
import { farmem, FARMEMD, peerCredUnavailable, startFarmemd, tempDir } from '../helpers/farmemd';

function get(url: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = '';
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).on('error', reject);
  });
}

test('the registry survives kill -9 and a restart on the same state dir', async (t) => {
  const dir = tempDir('restart');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  const d1 = await startFarmemd({ dir });
  t.after(() => d1.stop('SIGKILL'));
  const created = farmem(d1.socket, ['region', 'create', 'keep', '--size', '64MiB', '--resident', '16MiB', '--json']);
  assert.equal(created.status, 0, created.stderr);
  const id = JSON.parse(created.stdout).id as string;
  assert.equal(await d1.stop('SIGKILL'), 'SIGKILL');
  assert.ok(fs.existsSync(d1.socket), 'kill -9 leaves the socket file behind');

  const d2 = await startFarmemd({ dir });
  t.after(() => d2.stop('SIGKILL'));
  const listed = farmem(d2.socket, ['region', 'list', '--json']);
  assert.equal(listed.status, 0, listed.stderr);
  const regions = JSON.parse(listed.stdout) as Array<{ name: string; id: string; sizeBytes: number; residentBytes: number }>;
  assert.deepEqual(regions.map((r) => [r.name, r.id, r.sizeBytes, r.residentBytes]), [['keep', id, 64 << 20, 16 << 20]]);
  assert.ok(d2.lines.some((l) => l.msg === `region registry ${path.join(d2.stateDir, 'regions.json')}: 1 region(s)`));
  assert.equal(await d2.stop(), 0);
});

test('SIGTERM drains and exits 0, logging STOPPING, and removes the socket', async (t) => {
  const d = await startFarmemd();
  t.after(() => fs.rmSync(d.dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  const mode = fs.statSync(d.socket).mode & 0o777;
  assert.equal(mode, peerCredUnavailable() === null ? 0o660 : 0o600);
  assert.equal(await d.stop('SIGTERM'), 0);
  const stopping = d.lines.find((l) => l.state === 'STOPPING');
  assert.ok(stopping, 'a STOPPING line');
  assert.equal(stopping.msg, 'STOPPING: received SIGTERM; draining (at most 30000 ms)');
  assert.ok(d.lines.some((l) => l.state === 'STOPPED' && l.exitCode === 0));
  assert.equal(fs.existsSync(d.socket), false);
});

test('start-up says where the socket is and how to try it', async (t) => {
  const d = await startFarmemd();
  t.after(async () => {
    await d.stop('SIGKILL');
    fs.rmSync(d.dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  });
  const ready = d.lines.find((l) => l.state === 'READY')!;
  assert.equal(ready.msg, `farmemd ready: control socket ${d.socket}. Try: farmem --socket ${d.socket} region create demo --size 1GiB, then: farmem --socket ${d.socket} demo`);
});

test('a second farmemd on a live socket refuses to start', async (t) => {
  const d = await startFarmemd();
  t.after(async () => {
    await d.stop('SIGKILL');
    fs.rmSync(d.dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  });
  const r = spawnSync(process.execPath, [FARMEMD, '--socket', d.socket, '--state-dir', path.join(d.dir, 'other'), '--no-embedded-server'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 1);
  const fatal = r.stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.level === 60)!;
  assert.equal(fatal.msg, `farmemd failed to start: control socket ${d.socket}: another farmemd is listening there; stop it or pick another path (--socket)`);
});

test('bad flags and config exit 2 with the whole message', async (t) => {
  const dir = tempDir('badcfg');
  t.after(() => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  const file = path.join(dir, 'farmemd.toml');
  fs.writeFileSync(file, '# comment\nlog_level = "loud"\n');
  let r = spawnSync(process.execPath, [FARMEMD, '--config', file], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.equal(r.stderr, `farmemd: config ${file}:2: log_level: Expected fatal, error, warn, info, debug, trace but received "loud"\n`);
  r = spawnSync(process.execPath, [FARMEMD, '--socket', path.join(dir, 's'), '--memory-server', 'bogus'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.equal(r.stderr, 'farmemd: --memory-server: Expected host:port or unix:PATH but received "bogus"\n');
  r = spawnSync(process.execPath, [FARMEMD, '--frobnicate'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.equal(r.stderr, "error: unknown option '--frobnicate'\n");
  r = spawnSync(process.execPath, [FARMEMD, '--help-config'], { encoding: 'utf8' });
  assert.equal(r.status, 0);
  assert.match(r.stdout, /^\| key \| type \| default \| meaning \|\n/);
});

test('Prometheus metrics on the configured address', async (t) => {
  const d = await startFarmemd({ args: ['--metrics', '127.0.0.1:0'] });
  t.after(async () => {
    await d.stop('SIGKILL');
    fs.rmSync(d.dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  });
  const addr = d.lines.find((l) => typeof l.metrics === 'string')!.metrics as string;
  assert.equal(farmem(d.socket, ['region', 'list']).status, 0);
  const m = await get(`http://${addr}/metrics`);
  assert.equal(m.status, 200);
  for (const name of ['farmem_faults_total', 'farmem_fault_service_seconds', 'farmem_cache_bytes', 'farmem_cache_hit_ratio', 'farmem_remote_bytes_total', 'farmem_attachments', 'farmem_regions']) {
    assert.match(m.body, new RegExp(`^# TYPE ${name} `, 'm'), name);
  }
  assert.match(m.body, /^farmem_control_calls_total\{method="ListRegions",code="OK"\} 1$/m);
  assert.match(m.body, /^farmem_cache_capacity_bytes 268435456$/m);
  assert.equal((await get(`http://${addr}/other`)).status, 404);
});
