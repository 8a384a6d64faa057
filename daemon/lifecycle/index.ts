// The daemon's life: one owner of SIGTERM/SIGINT; parts register stop callbacks; states
// STARTING → RUNNING → DRAINING → STOPPED. Draining runs every stop callback (newest first: the
// socket that lets work in stops before the pager that writes back) under one force timeout;
// a second signal or the timeout gives up on draining and exits 1.
import { createNotifier, type Notifier } from './notify';
import type { Logger } from '../log';

export type LifecycleState = 'STARTING' | 'RUNNING' | 'DRAINING' | 'STOPPED';

export type StopCallback = (signal: AbortSignal) => Promise<void> | void;

export class Lifecycle {
  state: LifecycleState = 'STARTING';
  private readonly stops: Array<{ name: string; fn: StopCallback }> = [];
  private readonly notifier: Notifier;
  private watchdog: NodeJS.Timeout | null = null;
  private shutdownPromise: Promise<number> | null = null;
  private readonly force = new AbortController();
  private readonly signalHandler = (sig: NodeJS.Signals) => this.onSignal(sig);

  constructor(
    private readonly logger: Logger,
    private readonly drainTimeoutMs: number,
    private readonly exit: (code: number) => void = (code) => process.exit(code),
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.notifier = createNotifier(logger, env);
    const usec = Number(env.WATCHDOG_USEC ?? 0);
    const forUs = env.WATCHDOG_PID === undefined || Number(env.WATCHDOG_PID) === process.pid;
    if (this.notifier.enabled && usec > 0 && forUs) {
      // Ping at half the interval, as sd_watchdog_enabled(3) advises.
      this.watchdog = setInterval(() => this.notifier.notify('WATCHDOG=1'), Math.max(1, Math.floor(usec / 2000)));
      this.watchdog.unref();
    }
  }

  /** Registers a part's stop callback (run newest first when draining). */
  onStop(name: string, fn: StopCallback): void {
    this.stops.push({ name, fn });
  }

  installSignalHandlers(): void {
    process.on('SIGTERM', this.signalHandler);
    process.on('SIGINT', this.signalHandler);
  }

  /** Everything listens: tell systemd (READY=1) and the log. */
  ready(status: string): void {
    this.state = 'RUNNING';
    this.notifier.notify(`READY=1\nSTATUS=${status}`);
  }

  status(text: string): void {
    this.notifier.notify(`STATUS=${text}`);
  }

  private onSignal(sig: NodeJS.Signals): void {
    if (this.shutdownPromise !== null) {
      this.logger.warn({ signal: sig }, `${sig} again while ${this.state}: stopping now without finishing the drain`);
      this.force.abort();
      this.finish(1);
      return;
    }
    void this.shutdown(`received ${sig}`).then((code) => this.finish(code));
  }

  private finish(code: number): void {
    process.off('SIGTERM', this.signalHandler);
    process.off('SIGINT', this.signalHandler);
    this.exit(code);
  }

  /** Drains and stops every part; resolves with the exit code (0 clean, 1 forced or failed). */
  shutdown(reason: string): Promise<number> {
    this.shutdownPromise ??= this.drain(reason);
    return this.shutdownPromise;
  }

  private async drain(reason: string): Promise<number> {
    this.state = 'DRAINING';
    this.notifier.notify(`STOPPING=1\nSTATUS=draining: ${reason}`);
    this.logger.info({ state: 'STOPPING', reason, drainTimeoutMs: this.drainTimeoutMs }, `STOPPING: ${reason}; draining (at most ${this.drainTimeoutMs} ms)`);
    if (this.watchdog) clearInterval(this.watchdog);
    let code = 0;
    let timer: NodeJS.Timeout | null = null;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.drainTimeoutMs);
    });
    const all = (async () => {
      for (const { name, fn } of [...this.stops].reverse()) {
        if (this.force.signal.aborted) return;
        try {
          await fn(this.force.signal);
          this.logger.debug({ part: name }, `stopped ${name}`);
        } catch (e) {
          code = 1;
          this.logger.error({ err: e, part: name }, `stopping ${name} failed`);
        }
      }
    })();
    const outcome = await Promise.race([all.then(() => 'done' as const), timedOut]);
    if (timer) clearTimeout(timer);
    if (outcome === 'timeout') {
      this.force.abort();
      this.logger.error({ drainTimeoutMs: this.drainTimeoutMs }, `drain did not finish within ${this.drainTimeoutMs} ms: stopping anyway`);
      code = 1;
    }
    this.state = 'STOPPED';
    this.logger.info({ state: 'STOPPED', exitCode: code }, 'STOPPED');
    return code;
  }
}
