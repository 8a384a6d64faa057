// The daemon's logger: pino JSON lines on stdout (journald takes them), or colored human lines
// when `pretty` (a terminal). Lines about an attachment carry `region` and `pid` (child loggers).
import pino from 'pino';
import pretty from 'pino-pretty';
import type { LogLevel } from './config/schema';

export type Logger = pino.Logger;

export function createLogger(opts: { level: LogLevel; pretty: boolean; name?: string }): Logger {
  const base = { level: opts.level, name: opts.name ?? 'farmemd', base: { pid: process.pid } };
  if (opts.pretty) return pino(base, pretty({ colorize: process.stdout.isTTY === true, sync: true, ignore: 'hostname' }));
  // Synchronous writes: the last lines before an exit (STOPPING, a fatal error) must not be lost.
  return pino(base, pino.destination({ dest: 1, sync: true }));
}
