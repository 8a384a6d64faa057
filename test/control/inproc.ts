// The control plane in this process: a real Daemon and control socket, with a test RegionRuntime
// plugged in (a pager whose numbers and page maps the test sets), and a real client. For what a
// child farmemd cannot show: a daemon that has a pager. The CLI runs as a child against it
// (asynchronously: a spawnSync would block the event loop that serves it).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import type * as grpc from '@grpc/grpc-js';
import { loadConfig } from '../../daemon/config';
import { createLogger, type Logger } from '../../daemon/log';
import { createMetrics } from '../../daemon/metrics';
import { Lifecycle } from '../../daemon/lifecycle';
import { RegionRegistry, type RegionSpec } from '../../daemon/regions';
import { Daemon } from '../../daemon/daemon';
import { DaemonService, daemonHandlers, listenControl, type ControlServer } from '../../daemon/control';
import type { Progress, RegionPageMap, RegionRuntime, RegionStatsSnapshot, RuntimeStats } from '../../daemon/runtime';
import { ControlClient } from '../../client/control';
import { FARMEM, tempDir } from '../helpers/farmemd';

/** A pager stand-in: serves nothing, reports what the test put in it. */
export class TestRuntime implements RegionRuntime {
  readonly description = 'test pager (no fault threads)';
  readonly serving = true;
  readonly maps = new Map<string, RegionPageMap | null>();
  readonly regions = new Map<string, RegionStatsSnapshot>();
  daemonStats: RuntimeStats | null = null;
  /** Why async dirty tracking is unavailable (a test sets it), or null. */
  asyncUnavailable: () => string | null = () => null;
  async onRegionCreated(): Promise<void> {}
  async onRegionUpdated(): Promise<void> {}
  async onRegionDeleted(): Promise<{ pagesFreed: number }> {
    return { pagesFreed: 0 };
  }
  regionStats(spec: RegionSpec): RegionStatsSnapshot | null {
    return this.regions.get(spec.name) ?? null;
  }
  attachmentCount(spec: RegionSpec): number {
    return this.regions.get(spec.name)?.attachments.length ?? 0;
  }
  stats(): RuntimeStats | null {
    return this.daemonStats;
  }
  sync(): Promise<Progress> {
    return Promise.reject(new Error('the test runtime does not sync'));
  }
  evict(): Promise<Progress> {
    return Promise.reject(new Error('the test runtime does not evict'));
  }
  pageMap(spec: RegionSpec): RegionPageMap | null {
    return this.maps.get(spec.name) ?? null;
  }
}

export interface InProcess {
  dir: string;
  socket: string;
  daemon: Daemon;
  runtime: TestRuntime;
  client: ControlClient;
  /** Every log line, parsed. */
  lines: Array<Record<string, unknown>>;
  logger: Logger;
  close(): Promise<void>;
}

export async function startInProcess(): Promise<InProcess> {
  const dir = tempDir('inproc');
  fs.chmodSync(dir, 0o755);
  const socket = path.join(dir, 'farmemd.sock');
  const config = loadConfig({
    file: null,
    explicit: false,
    env: {},
    flags: [
      { key: 'socket', flag: '--socket', value: socket },
      { key: 'state_dir', flag: '--state-dir', value: path.join(dir, 'state') },
      { key: 'socket_mode', flag: 'socket_mode', value: 0o666 },
      { key: 'embedded_server.enabled', flag: '--no-embedded-server', value: false },
      { key: 'memory_servers', flag: '--memory-server', value: [{ address: '127.0.0.1:1' }] },
    ],
  });
  const lines: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  const logger = createLogger({ level: 'info', pretty: false, destination: sink });
  const lifecycle = new Lifecycle(logger, 1000, () => {}, {});
  const registry = await RegionRegistry.open(config.stateDir);
  const daemon = new Daemon(config, logger, createMetrics(), lifecycle, registry);
  const runtime = new TestRuntime();
  await daemon.useRuntime(runtime);
  const control: ControlServer = await listenControl({
    path: socket,
    mode: config.socketMode,
    group: config.socketGroup,
    service: DaemonService as unknown as grpc.ServiceDefinition,
    impl: daemonHandlers(daemon) as unknown as grpc.UntypedServiceImplementation,
    logger,
  });
  lifecycle.ready('test');
  const client = await ControlClient.connect(socket);
  return {
    dir,
    socket,
    daemon,
    runtime,
    client,
    lines,
    logger,
    close: async () => {
      client.close();
      await control.close(200);
      fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 });
    },
  };
}

export interface CliResult {
  status: number | string;
  stdout: string;
  stderr: string;
}

/** Runs the farmem CLI as a child without blocking this process (which may be serving it). */
export function farmemAsync(socket: string, args: string[], opts: { uid?: number; cwd?: string; onStdout?: (all: string, child: ReturnType<typeof spawn>) => void } = {}): Promise<CliResult> {
  const full = [FARMEM, '--socket', socket, ...args];
  const [cmd, argv] = opts.uid === undefined ? [process.execPath, full] : ['setpriv', [`--reuid=${opts.uid}`, `--regid=${opts.uid}`, '--clear-groups', process.execPath, ...full]];
  const child = spawn(cmd, argv, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FARMEM_SOCKET: '' } });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
    opts.onStdout?.(stdout, child);
  });
  child.stderr.on('data', (d) => (stderr += d));
  const killer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((resolve) =>
    child.once('close', (code, sig) => {
      clearTimeout(killer);
      resolve({ status: code ?? sig ?? -1, stdout, stderr });
    }),
  );
}
