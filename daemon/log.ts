// The daemon's logger: pino JSON lines on stdout (journald takes them), or colored human lines
// with --log-pretty. Pretty is never switched on by itself when stdout is a terminal: a log's
// format should not depend on where it is looked at (`npm start | tee`, `script`, a test harness).
//
// `pid` in a line is the process the line is about — an attached process, a control caller — never
// the daemon itself, which is `daemonPid` (pino's default base would put two "pid" keys in a line).
import type { Writable } from 'node:stream';
import pino from 'pino';
import pretty from 'pino-pretty';
import type { LogLevel } from './config/schema';

export type Logger = pino.Logger;

export interface LoggerOptions {
  level: LogLevel;
  pretty: boolean;
  name?: string;
  /** Where lines go; default stdout (fd 1), written synchronously. Tests pass a stream. */
  destination?: Writable;
}

export function createLogger(opts: LoggerOptions): Logger {
  const base = { level: opts.level, name: opts.name ?? 'farmemd', base: { daemonPid: process.pid } };
  if (opts.pretty) {
    const colorize = opts.destination === undefined && process.stdout.isTTY === true;
    return pino(base, pretty({ colorize, sync: true, ignore: 'hostname', ...(opts.destination ? { destination: opts.destination } : {}) }));
  }
  // Synchronous writes: the last lines before an exit (STOPPING, a fatal error) must not be lost.
  return pino(base, opts.destination ?? pino.destination({ dest: 1, sync: true }));
}

/** The logger of one attachment: every line carries the region's name and the attached pid. */
export function attachmentLogger(logger: Logger, region: string, pid: number): Logger {
  return logger.child({ region, pid });
}
