// The control socket: grpc-js serving `farmem.v1.Daemon` over a Unix socket that we accept on
// ourselves (net.Server), so that each connection's SO_PEERCRED can be read before grpc-js sees it
// (server.createConnectionInjector, grpc-js >= 1.11). See peer.ts for how the credentials reach
// the handlers.
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { addon, type PeerCred } from '../native';
import { peerTag } from './peer';
import type { Logger } from '../log';

export interface ControlServer {
  path: string;
  /** How callers are identified: 'SO_PEERCRED', or the degraded 'socket owner' mode (see listenControl). */
  credentials: 'SO_PEERCRED' | 'socket-owner';
  /** Stops accepting, lets calls in flight finish for up to graceMs, then cuts them. */
  close(graceMs: number): Promise<void>;
}

export interface ListenOptions {
  path: string;
  mode: number;
  /** Group to give the socket when it exists (e.g. farmem); ignored when absent. */
  group: string;
  service: grpc.ServiceDefinition;
  impl: grpc.UntypedServiceImplementation;
  logger: Logger;
}

/** gid of a group in /etc/group, or null. */
export function groupId(name: string): number | null {
  try {
    for (const line of fs.readFileSync('/etc/group', 'utf8').split('\n')) {
      const [n, , gid] = line.split(':');
      if (n === name && gid !== undefined) return Number(gid);
    }
  } catch {
    /* no /etc/group: no group */
  }
  return null;
}

/** The addon's peerCred, or null when this build has none yet. */
function nativePeerCred(logger: Logger): ((fd: number) => PeerCred) | null {
  try {
    const a = addon();
    if (typeof a.peerCred === 'function') return a.peerCred.bind(a);
  } catch (e) {
    logger.warn({ err: e }, 'control: the native addon did not load');
  }
  return null;
}

/** Removes a stale socket file (nobody listening), refuses when another daemon is listening on it. */
async function clearStale(p: string): Promise<void> {
  let st: fs.Stats;
  try {
    st = fs.lstatSync(p);
  } catch {
    return;
  }
  if (!st.isSocket()) throw new Error(`control socket ${p}: the path exists and is not a socket; remove it or pick another path`);
  const live = await new Promise<boolean>((resolve) => {
    const c = net.connect(p);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (live) throw new Error(`control socket ${p}: another farmemd is listening there; stop it or pick another path (--socket)`);
  fs.unlinkSync(p);
}

export async function listenControl(opts: ListenOptions): Promise<ControlServer> {
  const { logger } = opts;
  const peerCred = nativePeerCred(logger);
  const self: PeerCred = { pid: 0, uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };
  let mode = opts.mode;
  if (peerCred === null) {
    // Without SO_PEERCRED we cannot tell callers apart. Stay safe: only our own uid may connect
    // (mode 0600), and every caller is treated as that uid.
    mode = 0o600;
    logger.warn(
      { socket: opts.path, uid: self.uid },
      `control: SO_PEERCRED is unavailable (the native addon has no peerCred): the socket is restricted to uid ${self.uid} (mode 0600) and every caller is treated as that uid`,
    );
  }

  const server = new grpc.Server();
  server.addService(opts.service, opts.impl);
  const injector = server.createConnectionInjector(grpc.ServerCredentials.createInsecure());

  await fs.promises.mkdir(path.dirname(opts.path), { recursive: true, mode: 0o755 });
  await clearStale(opts.path);
  const sockets = new Set<net.Socket>();
  const listener = net.createServer((socket) => {
    let cred: PeerCred = self;
    if (peerCred !== null) {
      const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
      try {
        if (typeof fd !== 'number' || fd < 0) throw new Error(`no file descriptor on the accepted socket (${String(fd)})`);
        cred = peerCred(fd);
      } catch (e) {
        logger.error({ err: e }, 'control: cannot read SO_PEERCRED of a connection; closing it');
        socket.destroy();
        return;
      }
    }
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
    Object.defineProperty(socket, 'remoteAddress', { value: peerTag(cred), configurable: true });
    injector.injectConnection(socket);
  });
  await new Promise<void>((resolve, reject) => {
    listener.once('error', (e: NodeJS.ErrnoException) => reject(new Error(`control socket ${opts.path}: ${e.code ?? e.message}: cannot listen`)));
    // The umask could leave the socket wider than `mode` for an instant: create it closed, then open it up.
    const old = process.umask(0o177);
    try {
      listener.listen(opts.path, () => resolve());
    } finally {
      process.umask(old);
    }
  });
  fs.chmodSync(opts.path, mode);
  const gid = groupId(opts.group);
  if (gid !== null && peerCred !== null) {
    try {
      fs.chownSync(opts.path, -1, gid);
    } catch (e) {
      logger.warn({ err: e, group: opts.group }, `control: cannot give the socket to group ${opts.group}`);
    }
  }

  return {
    path: opts.path,
    credentials: peerCred !== null ? 'SO_PEERCRED' : 'socket-owner',
    close: (graceMs: number) =>
      new Promise<void>((resolve) => {
        listener.close(() => {
          try {
            fs.unlinkSync(opts.path);
          } catch {
            /* already gone */
          }
        });
        injector.drain(graceMs);
        const t = setTimeout(() => {
          for (const s of sockets) s.destroy();
        }, graceMs);
        t.unref();
        server.tryShutdown(() => {
          clearTimeout(t);
          injector.destroy();
          resolve();
        });
      }),
  };
}
