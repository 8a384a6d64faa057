// farmemd: the farmem host daemon. `npm start` runs it in the foreground.
// Exit codes: 0 stopped cleanly, 1 failure (or a drain that timed out), 2 bad flags or config.
import fs from 'node:fs';
import { Command, CommanderError, Option } from 'commander';
import { loadConfig, ConfigError, renderKeysTable, LOG_LEVELS, type FlagValue } from './config';
import { createLogger } from './log';
import { startDaemon } from './start';
import { SYSTEM_CONFIG } from './util/paths';
import { VERSION } from './daemon';
import { tuneMallocAtStart } from './native';

function program(): Command {
  const collect = (v: string, prev: string[]) => [...prev, v];
  return new Command('farmemd')
    .description('The farmem host daemon: serves regions to attached processes from memory servers.')
    .version(VERSION)
    .option('--config <path>', `TOML configuration file (default ${SYSTEM_CONFIG} when it exists)`)
    .option('--socket <path>', 'control socket (config: socket)')
    .option('--attach-socket <path>', 'attach socket (config: attach_socket)')
    .option('--state-dir <path>', 'where the region registry is kept (config: state_dir)')
    .addOption(new Option('--log-level <level>', 'log level (config: log_level)').choices([...LOG_LEVELS]))
    .option('--log-pretty', 'human-readable logs instead of JSON (config: log_pretty)')
    .option('--memory-server <addr>', 'a memory server, host:port or unix:PATH; repeat for more (replaces config memory_servers)', collect, [])
    .option('--metrics <addr>', 'serve Prometheus metrics on host:port (config: metrics_address)')
    .option('--cache-size <size>', 'page cache budget, e.g. 256MiB (config: cache_size)')
    .option('--resident-cap <size>', 'daemon-wide resident cap (config: resident_cap)')
    .option('--drain-timeout <duration>', 'how long SIGTERM may drain, e.g. 30s (config: drain_timeout)')
    .option('--no-embedded-server', 'never start the embedded memory server (config: embedded_server.enabled)')
    .option('--embedded-listen <addr>', 'where the embedded memory server listens (config: embedded_server.listen)')
    .option('--help-config', 'print every configuration key (Markdown table) and exit')
    .addHelpText('after', '\nExit codes: 0 stopped cleanly, 1 failure or drain timeout, 2 bad flags or configuration.')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
}

function flagValues(o: Record<string, unknown>): FlagValue[] {
  const out: FlagValue[] = [];
  const add = (key: string, flag: string, value: unknown) => {
    if (value !== undefined) out.push({ key, flag, value });
  };
  add('socket', '--socket', o.socket);
  add('attach_socket', '--attach-socket', o.attachSocket);
  add('state_dir', '--state-dir', o.stateDir);
  add('log_level', '--log-level', o.logLevel);
  add('log_pretty', '--log-pretty', o.logPretty);
  const servers = o.memoryServer as string[];
  if (servers.length > 0) add('memory_servers', '--memory-server', servers.map((address) => ({ address })));
  add('metrics_address', '--metrics', o.metrics);
  add('cache_size', '--cache-size', o.cacheSize);
  add('resident_cap', '--resident-cap', o.residentCap);
  add('drain_timeout', '--drain-timeout', o.drainTimeout);
  if (o.embeddedServer === false) add('embedded_server.enabled', '--no-embedded-server', false);
  add('embedded_server.listen', '--embedded-listen', o.embeddedListen);
  return out;
}

async function main(argv: string[]): Promise<void> {
  const cmd = program();
  try {
    cmd.parse(argv);
  } catch (e) {
    if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
    throw e;
  }
  const o = cmd.opts();
  if (o.helpConfig) {
    process.stdout.write(`${renderKeysTable()}\n`);
    return;
  }
  const explicit = typeof o.config === 'string';
  // At start and at each SIGHUP: the file (the default one if it exists now), then the flags over it.
  const load = () => loadConfig({ file: explicit ? (o.config as string) : fs.existsSync(SYSTEM_CONFIG) ? SYSTEM_CONFIG : null, explicit, flags: flagValues(o) });
  let config;
  try {
    config = load();
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`farmemd: ${e.message}\n`);
      process.exit(2);
    }
    throw e;
  }
  const logger = createLogger({ level: config.logLevel, pretty: config.logPretty });
  process.on('uncaughtException', (e) => {
    logger.fatal({ err: e }, `uncaught exception: ${e.message}`);
    process.exit(1);
  });
  tuneMallocAtStart(logger);
  try {
    await startDaemon(config, logger, { load });
  } catch (e) {
    logger.fatal({ err: e }, `farmemd failed to start: ${(e as Error).message}`);
    process.exit(1);
  }
}

void main(process.argv);
