// Builds and starts a farmemd from a loaded configuration, in order: registry, embedded memory
// server (if any), control socket, metrics; then READY. Each part registers its stop callback, so
// a SIGTERM stops them in reverse: the control socket first, the memory server last.
import type { DaemonConfig } from './config/load';
import type { Logger } from './log';
import { createMetrics, startMetricsServer } from './metrics';
import { registerPrefetchMetrics } from './metrics/prefetch';
import { Lifecycle } from './lifecycle';
import { RegionRegistry } from './regions';
import { Daemon } from './daemon';
import { DaemonService, daemonHandlers, listenControl } from './control';
import { startEmbeddedServerSticky } from './embedded';
import { clientSocketPath } from './util/paths';
import { AttachServer } from './attach';
import { PagingRuntime } from './serving/runtime';
import { Stores } from './serving/stores';
import { FdStore, takeListenFds } from './lifecycle/fdstore';
import { ServerChangesFile } from './server-changes';
import { ConfigReloader } from './reload';
import type * as grpc from '@grpc/grpc-js';


export interface StartedDaemon {
  daemon: Daemon;
  lifecycle: Lifecycle;
  metricsAddress: string | null;
  /** SIGHUP's handler (null when started without `load`). */
  reloader: ConfigReloader | null;
}

export interface StartOptions {
  exit?: (code: number) => void;
  /** Loads the configuration again (the file, then the same flags): given, SIGHUP reloads it. */
  load?: () => DaemonConfig;
}

export async function startDaemon(config: DaemonConfig, logger: Logger, opts: StartOptions = {}): Promise<StartedDaemon> {
  // First, before anything opens fds: what systemd's fd store handed back (region memfds).
  const listen = takeListenFds();
  if (listen.ignored !== null) logger.warn(`fd store: ignored LISTEN_FDS: ${listen.ignored}`);
  else if (listen.fds.length > 0) logger.info({ fds: listen.fds.length }, `fd store: ${listen.fds.length} fd(s) passed by the service manager`);
  const lifecycle = new Lifecycle(logger, config.drainTimeoutMs, opts.exit);
  lifecycle.installSignalHandlers();
  const metrics = createMetrics();
  metrics.cacheCapacityBytes.set(config.cacheBytes);
  const registry = await RegionRegistry.open(config.stateDir);
  const daemon = new Daemon(config, logger, metrics, lifecycle, registry);
  // Early: SIGHUP's default action would end the daemon; until RUNNING it is logged and ignored.
  const reloader = opts.load === undefined ? null : new ConfigReloader({ load: opts.load, daemon, logger, state: () => lifecycle.state });
  if (reloader !== null) {
    reloader.install();
    lifecycle.onStop('SIGHUP handler', () => reloader.uninstall());
  }
  // Servers added / removed with `farmem servers add|remove` before this start.
  daemon.useServerChanges(new ServerChangesFile(config.stateDir));
  logger.info({ stateDir: config.stateDir, regions: registry.list().length, config: config.file }, `region registry ${registry.file}: ${registry.list().length} region(s)`);

  if (config.embeddedServer.enabled) {
    const e = config.embeddedServer;
    const server = await startEmbeddedServerSticky({ listen: e.listen, capacityBytes: e.capacityBytes, dataDir: e.dataDir, logger: logger.child({ part: 'memserver' }), stateDir: config.stateDir });
    daemon.addServer({ address: server.address, weight: 1, token: null, tls: null, embedded: true });
    lifecycle.onStop('embedded memory server', () => server.stop(1000));
    logger.info(
      { memoryServer: server.address, capacityBytes: e.capacityBytes, dataDir: e.dataDir },
      `no memory server configured: started the embedded one on ${server.address} (${e.dataDir ?? 'memory only'})`,
    );
  } else if (daemon.servers.length === 0) {
    logger.warn('no memory server configured and the embedded one is disabled: regions can be created but their pages have nowhere to go');
  }

  // The fault path: pools of memory servers, the pager with its fault threads, the attach socket.
  // Stop order (reverse of registration): drain dirty pages, the attach socket, then the pools.
  const stores = new Stores({ logger, servers: () => daemon.servers, replicas: null, stateDir: `${config.stateDir}/pool` });
  daemon.serverOps = { add: (s) => stores.addServer(s), remove: (a) => stores.removeServer(a) };
  lifecycle.onStop('memory server pools', () => stores.close());
  daemon.pools = () => stores.all();
  metrics.pools = () => stores.all();
  const runtime = new PagingRuntime({
    logger,
    cacheBytes: config.cacheBytes,
    residentCapBytes: config.residentCapBytes,
    faultThreads: config.fault.threads,
    pin: config.fault.pin,
    unavailableAfterMs: config.fault.unavailableTimeoutMs,
    storeFor: (spec) => stores.storeFor(spec),
    metrics,
    replayDir: `${config.stateDir}/replay`,
    fdStore: new FdStore(logger),
  });
  runtime.lookup = (name) => registry.get(name);
  // Before useRuntime: a region whose memfd came back keeps it instead of getting an empty one.
  runtime.restore(listen.fds, (id) => registry.byId(id));
  registerPrefetchMetrics(metrics.registry, () => runtime.pager.allStats());
  await daemon.useRuntime(runtime);
  daemon.resumeDrains();

  let metricsAddress: string | null = null;
  if (config.metricsAddress !== null) {
    const m = await startMetricsServer(config.metricsAddress, metrics.registry, logger);
    metricsAddress = m.address;
    lifecycle.onStop('metrics', () => m.close());
    logger.info({ metrics: m.address }, `metrics on http://${m.address}/metrics`);
  }

  const control = await listenControl({
    path: config.socket,
    mode: config.socketMode,
    group: config.socketGroup,
    service: DaemonService as unknown as grpc.ServiceDefinition,
    impl: daemonHandlers(daemon) as unknown as grpc.UntypedServiceImplementation,
    logger,
  });
  lifecycle.onStop('control socket', () => control.close(Math.min(2000, config.drainTimeoutMs)));

  const attach = new AttachServer({ path: config.attachSocket, host: runtime, logger, mode: 0o666 });
  daemon.attachSocket = config.attachSocket;
  lifecycle.onStop('attach socket', () => attach.close());
  // Runs before the attach socket closes: processes keep being served while dirty pages drain.
  lifecycle.onStop('pager', async (signal) => {
    const r = await runtime.drain(config.drainTimeoutMs);
    await runtime.stop();
    if (!r.complete && !signal.aborted) throw new Error(`drain: ${r.dirtyLeft} dirty page(s) could not be written back`);
  });
  logger.info({ attachSocket: config.attachSocket, runtime: runtime.description }, `attach socket ${config.attachSocket}; ${runtime.description}`);

  const hint = clientSocketPath() === config.socket ? '' : ` --socket ${config.socket}`;
  lifecycle.ready(`serving ${registry.list().length} region(s) on ${config.socket}`);
  logger.info(
    { socket: config.socket, credentials: control.credentials, servers: daemon.servers.map((s) => s.address), state: 'READY' },
    `farmemd ready: control socket ${config.socket}. Try: farmem${hint} region create demo --size 1GiB, then: farmem${hint} demo`,
  );
  return { daemon, lifecycle, metricsAddress, reloader };
}
