// farmem-memserver: lends this host's memory to farmem daemons.
import { Command } from 'commander';
import pino from 'pino';
import { tuneMallocAtStart } from '../native';
import { readConfigFile, resolveConfig, type ConfigInput } from './config';
import { MemoryServer } from './server';

async function main(argv: string[]): Promise<void> {
  const program = new Command('farmem-memserver')
    .description('Serve pages of farmem regions from this host\'s memory over gRPC')
    .option('-c, --config <file>', 'TOML configuration file')
    .option('-l, --listen <address>', 'host:port or unix:/path (default 127.0.0.1:7070)')
    .option('--capacity <size>', 'bytes of pages to hold, e.g. 8GiB (default 1GiB)')
    .option('--data-dir <dir>', 'keep pages durable in a journal here (default: memory only)')
    .option('--token <token>', 'require "authorization: Bearer <token>" on every call')
    .option('--token-file <file>', 'read the token from a file')
    .option('--tls-cert <file>', 'server certificate chain (PEM)')
    .option('--tls-key <file>', 'server private key (PEM)')
    .option('--tls-ca <file>', 'CA that must have signed client certificates (PEM): mutual TLS')
    .option('--metrics-listen <address>', 'serve Prometheus /metrics over HTTP here')
    .option('--max-message <size>', 'largest gRPC message (default 64MiB)')
    .option('--log-level <level>', 'pino log level (default info)')
    .exitOverride();
  program.parse(argv);
  const o = program.opts<Record<string, string | undefined>>();
  const tlsParts = [o.tlsCert, o.tlsKey, o.tlsCa];
  if (tlsParts.some((x) => x !== undefined) && !tlsParts.every((x) => x !== undefined)) {
    throw new Error(`Expected all of --tls-cert, --tls-key and --tls-ca for TLS but received ${tlsParts.filter((x) => x !== undefined).length} of them`);
  }
  const flags: ConfigInput = {
    listen: o.listen, capacity: o.capacity, data_dir: o.dataDir, token: o.token, token_file: o.tokenFile,
    metrics_listen: o.metricsListen, max_message: o.maxMessage, log_level: o.logLevel as ConfigInput['log_level'],
    tls: o.tlsCert !== undefined ? { cert: o.tlsCert, key: o.tlsKey!, ca: o.tlsCa! } : undefined,
  };
  const cfg = resolveConfig(o.config !== undefined ? readConfigFile(o.config) : {}, flags);
  const logger = pino({ name: 'farmem-memserver', level: cfg.logLevel });
  tuneMallocAtStart(logger);
  // Signals are owned from the start: a SIGTERM during startup stops the server once it is up.
  let server: MemoryServer | null = null;
  let stopping: string | null = null;
  const stop = () => {
    if (server === null || stopping === null) return;
    logger.info({ signal: stopping }, 'stopping: finishing in-flight requests');
    server.stop(10_000).then(() => process.exit(0), (e: unknown) => {
      logger.error({ err: e }, 'stop failed');
      process.exit(1);
    });
  };
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      if (stopping !== null) return;
      stopping = sig;
      stop();
    });
  }
  server = await MemoryServer.start({ ...cfg, logger });
  stop();
}

main(process.argv).catch((e: unknown) => {
  const code = (e as { code?: string }).code;
  if (code === 'commander.helpDisplayed' || code === 'commander.version') process.exit(0);
  process.stderr.write(`farmem-memserver: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(code?.startsWith('commander.') ? 2 : 1);
});
