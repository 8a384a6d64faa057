// sd_notify for farmemd: READY=1, STATUS=, STOPPING=1, WATCHDOG=1 to systemd's NOTIFY_SOCKET
// through the addon (Node has no unix datagram sockets). Without NOTIFY_SOCKET (not under systemd)
// or without the addon's sdNotify, every call is a no-op that says so once at debug level.
// Called from the main JS thread.
import { addon } from '../native';
import type { Logger } from '../log';
import { RetryingSender } from './retry-send';

export interface Notifier {
  /** true when a message was sent. */
  notify(state: string): boolean;
  readonly enabled: boolean;
}

export function createNotifier(logger: Logger, env: NodeJS.ProcessEnv = process.env): Notifier {
  if (!env.NOTIFY_SOCKET) {
    logger.debug('sd_notify: NOTIFY_SOCKET is not set (not started by systemd): readiness is not reported');
    return { enabled: false, notify: () => false };
  }
  let send: ((state: string, fds: number[]) => boolean) | null = null;
  try {
    const a = addon();
    if (typeof a.sdNotify === 'function') send = a.sdNotify.bind(a);
  } catch (e) {
    logger.warn({ err: e }, 'sd_notify: the native addon did not load; systemd will not hear READY=1');
  }
  if (send === null) {
    logger.warn('sd_notify: NOTIFY_SOCKET is set but the native addon has no sdNotify; systemd will not hear READY=1');
    return { enabled: false, notify: () => false };
  }
  const fn = send;
  const sender = new RetryingSender(logger, 'sd_notify');
  return {
    enabled: true,
    notify(state: string): boolean {
      // Keyed by the first variable: a newer STATUS= replaces an older one still waiting, READY=1
      // and STOPPING=1 are each retried on their own.
      const key = state.slice(0, state.search(/=|$/));
      let sent = false;
      sender.send(key, () => void (sent = fn(state, [])), `sent ${key}`, (m) => `could not send ${JSON.stringify(state)}: ${m}`);
      return sent;
    },
  };
}
