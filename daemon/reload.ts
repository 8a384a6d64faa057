// SIGHUP (`systemctl reload farmemd`): farmemd reads its configuration again and applies what can
// change while it runs — the memory servers (added / drained, as `farmem servers add|remove` do),
// the log level and the defaults of new regions. Any other key that changed is named in a
// "needs a restart" line. A configuration that does not load is refused whole: the daemon keeps
// running on the one it has, and the log says why.
import type { Daemon } from './daemon';
import type { DaemonConfig } from './config/load';
import { ConfigError } from './config/load';
import type { Logger } from './log';
import type { LifecycleState } from './lifecycle';

export interface ReloadOutcome {
  ok: boolean;
  /** Why the configuration was refused (ok false). */
  error: string | null;
  added: string[];
  removing: string[];
  /** Keys that changed but take effect only at the next start. */
  needsRestart: string[];
}

/** DaemonConfig field → its key in the file, for what a reload cannot apply. */
const RESTART_KEYS: Array<[string, (c: DaemonConfig) => unknown]> = [
  ['state_dir', (c) => c.stateDir],
  ['socket', (c) => c.socket],
  ['attach_socket', (c) => c.attachSocket],
  ['socket_group', (c) => c.socketGroup],
  ['socket_mode', (c) => c.socketMode],
  ['log_pretty', (c) => c.logPretty],
  ['metrics_address', (c) => c.metricsAddress],
  ['cache_size', (c) => c.cacheBytes],
  ['resident_cap', (c) => c.residentCapBytes],
  ['drain_timeout', (c) => c.drainTimeoutMs],
  ['fault.threads', (c) => c.fault.threads],
  ['fault.pin', (c) => c.fault.pin],
  ['fault.unavailable_timeout', (c) => c.fault.unavailableTimeoutMs],
  ['embedded_server.enabled', (c) => c.embeddedServer.enabled],
  ['embedded_server.listen', (c) => c.embeddedServer.listen],
  ['embedded_server.capacity', (c) => c.embeddedServer.capacityBytes],
  ['embedded_server.data_dir', (c) => c.embeddedServer.dataDir],
];

export class ConfigReloader {
  private running: Promise<ReloadOutcome> | null = null;
  private readonly onSignal = () => {
    void this.reload();
  };

  constructor(
    private readonly o: {
      /** Loads the configuration as at start (the file, then the same command-line flags over it). */
      load: () => DaemonConfig;
      daemon: Daemon;
      logger: Logger;
      /** The daemon's state: a reload is applied only while RUNNING (not starting, not stopping). */
      state: () => LifecycleState;
    },
  ) {}

  install(): void {
    process.on('SIGHUP', this.onSignal);
  }

  uninstall(): void {
    process.off('SIGHUP', this.onSignal);
  }

  /** One reload at a time: a SIGHUP during one waits for it, then reads the file again. */
  async reload(): Promise<ReloadOutcome> {
    while (this.running !== null) await this.running.catch(() => undefined);
    this.running = this.reloadNow();
    try {
      return await this.running;
    } finally {
      this.running = null;
    }
  }

  private async reloadNow(): Promise<ReloadOutcome> {
    const { daemon, logger } = this.o;
    const none: ReloadOutcome = { ok: false, error: null, added: [], removing: [], needsRestart: [] };
    const state = this.o.state();
    if (state !== 'RUNNING') {
      logger.warn({ state }, `SIGHUP ignored: farmemd is ${state}`);
      return { ...none, error: `farmemd is ${state}` };
    }
    const cur = daemon.config;
    let next: DaemonConfig;
    try {
      next = this.o.load();
    } catch (e) {
      const msg = e instanceof Error ? e.message : String(e);
      if (!(e instanceof ConfigError)) logger.error({ err: e }, 'reload: reading the configuration failed');
      logger.error({ file: cur.file, error: msg }, `reload refused, still running on the previous configuration: ${msg}`);
      return { ...none, error: msg };
    }
    const needsRestart = RESTART_KEYS.filter(([, get]) => JSON.stringify(get(cur)) !== JSON.stringify(get(next))).map(([k]) => k);
    const levelFrom = cur.logLevel;
    const defaultsChanged = JSON.stringify(cur.regionDefaults) !== JSON.stringify(next.regionDefaults);
    cur.regionDefaults = next.regionDefaults;
    const servers = daemon.reloadServers(next.memoryServers);
    needsRestart.push(...servers.changed.map((a) => `memory_servers (${a})`));
    logger.info(
      {
        file: next.file, logLevel: next.logLevel, ...(levelFrom !== next.logLevel ? { logLevelWas: levelFrom } : {}),
        serversAdded: servers.added, serversRemoving: servers.removing, regionDefaultsChanged: defaultsChanged,
      },
      `configuration reloaded from ${next.file ?? '(no file: defaults and flags)'}`,
    );
    if (needsRestart.length > 0) logger.warn({ keys: needsRestart }, `configuration reloaded: needs a restart: ${needsRestart.join(', ')}`);
    // Last, so that the lines above are logged also when the new level is quieter.
    if (next.logLevel !== levelFrom) {
      logger.level = next.logLevel;
      cur.logLevel = next.logLevel;
    }
    return { ok: true, error: null, added: servers.added, removing: servers.removing, needsRestart };
  }
}
