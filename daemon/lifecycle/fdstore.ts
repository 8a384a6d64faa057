// systemd's file descriptor store, both ways: FDSTORE=1 / FDSTOREREMOVE=1 over NOTIFY_SOCKET while
// running, and LISTEN_FDS / LISTEN_FDNAMES on start (what sd_listen_fds_with_names(unset=1) does).
// The daemon keeps each region's memfd there, so pages that were only in the memfd survive a crash
// of farmemd even when the attached processes die too. Called from the main JS thread.
import fs from 'node:fs';
import { sdNotify } from '../native';
import type { Logger } from '../log';
import { RetryingSender } from './retry-send';

/** SD_LISTEN_FDS_START: passed fds are numbered from 3. */
export const LISTEN_FDS_START = 3;

export interface ListenFd {
  fd: number;
  /** Its FDNAME (sd_listen_fds_with_names says "unknown" when LISTEN_FDNAMES has none). */
  name: string;
}

export interface ListenFds {
  fds: ListenFd[];
  /** Why the variables were ignored (not for us, malformed), or null. */
  ignored: string | null;
}

/**
 * Takes the fds the service manager passed: only when LISTEN_PID is this process (a child that
 * inherited the variables must not grab fds 3.. of its own). The variables are unset either way, so
 * nothing this daemon starts sees them. Node marks inherited fds close-on-exec at start-up, as
 * sd_listen_fds would.
 */
export function takeListenFds(env: NodeJS.ProcessEnv = process.env, pid: number = process.pid): ListenFds {
  const { LISTEN_PID: lpid, LISTEN_FDS: lfds, LISTEN_FDNAMES: lnames } = env;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDS;
  delete env.LISTEN_FDNAMES;
  if (lfds === undefined || lfds === '') return { fds: [], ignored: null };
  if (lpid === undefined || !/^\d+$/.test(lpid) || Number(lpid) !== pid) {
    return { fds: [], ignored: `LISTEN_PID=${lpid ?? '(unset)'} is not this process (${pid})` };
  }
  if (!/^\d+$/.test(lfds) || Number(lfds) > 65536) return { fds: [], ignored: `Expected a count of fds for LISTEN_FDS but received ${JSON.stringify(lfds)}` };
  const n = Number(lfds);
  const names = lnames === undefined || lnames === '' ? [] : lnames.split(':');
  if (names.length > 0 && names.length !== n) {
    return { fds: [], ignored: `LISTEN_FDNAMES has ${names.length} name(s) for LISTEN_FDS=${n}` };
  }
  const fds: ListenFd[] = [];
  for (let i = 0; i < n; i++) fds.push({ fd: LISTEN_FDS_START + i, name: names[i] ?? 'unknown' });
  return { fds, ignored: null };
}

/** The fd store name of a region's memfd. Region ids are UUIDs: no ':' and far below 255 chars. */
export function regionFdName(id: string): string {
  return `region-${id}`;
}

/** The region id in an fd store name, or null when it names no region memfd. */
export function regionIdOfFdName(name: string): string | null {
  return name.startsWith('region-') && name.length > 'region-'.length ? name.slice('region-'.length) : null;
}

/**
 * The daemon's side of the store. A no-op without NOTIFY_SOCKET (not started by systemd). Sending
 * never throws: a full manager socket is retried (RetryingSender), then, like a vanished one, it is a
 * warning, and the region keeps being served.
 */
export class FdStore {
  readonly enabled: boolean;
  private readonly sender: RetryingSender;

  constructor(log: Logger, env: NodeJS.ProcessEnv = process.env) {
    this.enabled = env.NOTIFY_SOCKET !== undefined && env.NOTIFY_SOCKET !== '';
    this.sender = new RetryingSender(log, 'fd store');
  }

  /**
   * FDSTORE=1 with `fd` under `name`; systemd ignores a second copy of the same open file. The caller
   * keeps `fd` open until it calls remove(name), which also cancels a retry still waiting.
   */
  store(name: string, fd: number): void {
    if (!this.enabled) return;
    this.sender.send(name, () => sdNotify.fdStore(name, [fd]), `stored ${name}`, (m) => `could not store ${name} (${m}); its pages are lost if farmemd and every process using it die before it is written back`);
  }

  /** FDSTOREREMOVE=1: systemd closes every fd it keeps under `name`. */
  remove(name: string): void {
    if (!this.enabled) return;
    this.sender.send(name, () => sdNotify.fdStoreRemove(name), `removed ${name}`, (m) => `could not remove ${name}: ${m}`);
  }

  /** Sends still being retried. */
  get retrying(): number {
    return this.sender.retrying;
  }
}

/** Closes an fd we were handed and will not use (it may already be gone). */
export function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    /* not open */
  }
}
