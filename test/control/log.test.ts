// The daemon's logs: JSON lines, levels, attachment lines with region and pid, the pretty mode;
// in-process through a stream and from a real farmemd child.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { attachmentLogger, createLogger } from '../../daemon/log';
import { FARMEM, FARMEMD, tempDir } from '../helpers/farmemd';

function sink(): { stream: Writable; text: () => string } {
  let text = '';
  return {
    stream: new Writable({
      write(chunk, _enc, cb) {
        text += chunk;
        cb();
      },
    }),
    text: () => text,
  };
}

test('JSON lines: the daemon is daemonPid, an attachment line carries region and the attached pid once', () => {
  const out = sink();
  const log = createLogger({ level: 'info', pretty: false, destination: out.stream });
  log.info({ region: 'db', pid: 77, uid: 0 }, 'region created');
  const att = attachmentLogger(log, 'db', 4242);
  att.info('attached');
  att.child({ part: 'fault' }).warn({ page: 3 }, 'slow fault');
  log.debug('not at info');
  const raw = out.text().trimEnd().split('\n');
  assert.equal(raw.length, 3);
  for (const l of raw) assert.equal(l.match(/"pid":/g)?.length ?? 0, 1, `one pid key: ${l}`);
  const [created, attached, slow] = raw.map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.equal(created!.daemonPid, process.pid);
  assert.equal(created!.pid, 77);
  assert.deepEqual({ ...attached, time: 0 }, { level: 30, time: 0, daemonPid: process.pid, name: 'farmemd', region: 'db', pid: 4242, msg: 'attached' });
  assert.deepEqual([slow!.level, slow!.region, slow!.pid, slow!.part, slow!.page, slow!.msg], [40, 'db', 4242, 'fault', 3, 'slow fault']);
});

test('pretty mode: human lines with the same fields, not JSON', () => {
  const out = sink();
  const log = createLogger({ level: 'info', pretty: true, destination: out.stream });
  attachmentLogger(log, 'db', 4242).info('attached');
  const line = out.text();
  assert.throws(() => JSON.parse(line));
  assert.doesNotMatch(line, /\x1b\[/, 'no colours into a stream that is not a terminal');
  // pino-pretty puts the pid next to the name: the attached process's.
  assert.match(line, /^\[[\d:.]+\] INFO \(farmemd\/4242\): attached\n {4}daemonPid: \d+\n {4}region: "db"\n$/);
});

interface Run {
  stdout: string;
  code: number | string;
  /** What `farmem region sync x` printed on stderr, and its exit status. */
  sync: { stderr: string; status: number | null };
}

function cli(socket: string, args: string[]): Promise<{ stderr: string; status: number | null }> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [FARMEM, '--socket', socket, ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    c.stderr.on('data', (d) => (stderr += d));
    c.once('close', (status) => resolve({ stderr, status }));
  });
}

/** farmemd with `args` until its control socket answers, then SIGTERM; its whole stdout. */
async function runFarmemd(args: string[]): Promise<Run> {
  const dir = tempDir('log');
  try {
    const socket = path.join(dir, 's');
    const child = spawn(process.execPath, [FARMEMD, '--socket', socket, '--state-dir', path.join(dir, 'state'), '--no-embedded-server', ...args], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, NOTIFY_SOCKET: '' },
    });
    let stdout = '';
    let sync = { stderr: '', status: null as number | null };
    child.stdout.on('data', (d) => (stdout += d));
    const exited = new Promise<number | string>((resolve) => child.once('close', (code, sig) => resolve(code ?? sig ?? -1)));
    try {
      for (let i = 0; i < 200 && !fs.existsSync(socket); i++) await new Promise((r) => setTimeout(r, 50));
      // One control call, so the daemon has something to log at info.
      const create = await cli(socket, ['region', 'create', 'x', '--size', '4KiB']);
      assert.equal(create.status, 0, create.stderr);
      sync = await cli(socket, ['region', 'sync', 'x']);
    } finally {
      child.kill('SIGTERM');
    }
    return { stdout, code: await exited, sync };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
  }
}

test('farmemd: every stdout line is JSON, and --log-level warn keeps only warnings and worse', async () => {
  const all = await runFarmemd(['--memory-server', '127.0.0.1:1']);
  assert.equal(all.code, 0);
  const lines = all.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.ok(lines.some((l) => l.msg === 'region created' && l.region === 'x' && typeof l.pid === 'number' && l.pid !== l.daemonPid));
  assert.ok(lines.every((l) => typeof l.daemonPid === 'number' && l.name === 'farmemd'));
  // Nothing listens on 127.0.0.1:1: the pool's health checks say so, as warnings; a refused sync is an answer, not a warning
  // (whether the health check ran yet depends on timing); nothing else is a warning or worse.
  assert.equal(all.sync.status, 1);
  assert.equal(all.sync.stderr, 'farmem: sync region "x": memory server 127.0.0.1:1 unavailable: No connection established. Last error: Error: connect ECONNREFUSED 127.0.0.1:1.\n');
  for (const l of lines.filter((x) => (x.level as number) >= 40)) {
    assert.equal(l.level, 40, JSON.stringify(l));
    assert.match(String(l.msg), /^(memory server 127\.0\.0\.1:1 is (suspect|down))$/, JSON.stringify(l));
  }

  const warn = await runFarmemd(['--log-level', 'warn']);
  assert.equal(warn.code, 0);
  const wl = warn.stdout.trimEnd().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  assert.deepEqual(
    wl.map((l) => [l.level, l.msg]),
    [[40, 'no memory server configured and the embedded one is disabled: regions can be created but their pages have nowhere to go']],
  );
  // The region was created (the create above exited 0); its pages indeed have nowhere to go.
  assert.equal(warn.sync.stderr, 'farmem: sync region "x": no memory server is configured (farmemd runs with --no-embedded-server and no --memory-server)\n');
  assert.equal(warn.sync.status, 1);
});

test('farmemd --log-pretty: human lines', async () => {
  const r = await runFarmemd(['--memory-server', '127.0.0.1:1', '--log-pretty']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^\[[\d:.]+\] INFO \(farmemd\): farmemd ready: control socket /m);
  assert.match(r.stdout, /^\[[\d:.]+\] INFO \(farmemd\/\d+\): region created\n {4}daemonPid: \d+\n {4}region: "x"\n/m);
  // A message line, or an indented field under it: no JSON line.
  for (const l of r.stdout.split('\n').filter(Boolean)) assert.match(l, /^(\[[\d:.]+\] [A-Z]+ \(farmemd(\/\d+)?\): | {4})/);
});
