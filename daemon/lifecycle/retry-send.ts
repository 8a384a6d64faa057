// Messages to the service manager go MSG_DONTWAIT (a stalled systemd must never block the daemon), so
// a full manager socket fails a send with EAGAIN. Losing READY=1 fails the unit's start; losing
// FDSTORE=1 loses a region's memfd on the next crash. This retries such sends a few times, the
// latest message per key replacing an older one still waiting. Called from the main JS thread.
import type { Logger } from '../log';

/** Delays between tries after EAGAIN: about 5 s in all. */
export const NOTIFY_RETRY_MS = [10, 50, 250, 1000, 4000];

export class RetryingSender {
  private readonly pending = new Map<string, NodeJS.Timeout>();

  constructor(private readonly log: Logger, private readonly what: string) {}

  /** Sends now; on EAGAIN tries again later. `failed` words the warning when it gives up. */
  send(key: string, op: () => void, done: string, failed: (message: string) => string, attempt = 0): void {
    this.cancel(key);
    try {
      op();
      this.log.debug({ key, attempt }, `${this.what}: ${done}`);
    } catch (e) {
      const err = e as Error & { code?: string };
      const delay = NOTIFY_RETRY_MS[attempt];
      if (err.code === 'EAGAIN' && delay !== undefined) {
        this.log.debug({ key, attempt, delayMs: delay }, `${this.what}: the service manager's socket is full; retrying in ${delay} ms`);
        // unref: a retry never keeps a stopping daemon alive.
        const timer = setTimeout(() => {
          this.pending.delete(key);
          this.send(key, op, done, failed, attempt + 1);
        }, delay).unref();
        this.pending.set(key, timer);
        return;
      }
      this.log.warn({ key, attempt, err: err.message }, `${this.what}: ${failed(err.message)}`);
    }
  }

  /** Drops a retry still waiting for `key`. */
  cancel(key: string): void {
    clearTimeout(this.pending.get(key));
    this.pending.delete(key);
  }

  /** Retries still waiting. */
  get retrying(): number {
    return this.pending.size;
  }
}
