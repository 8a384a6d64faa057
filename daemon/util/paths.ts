// Where farmemd puts its sockets and state when nothing says otherwise, shared by the daemon and
// the CLI so that both find the same socket. Root (or whoever may write /run/farmem) uses the
// system paths; an ordinary user running `npm start` gets $XDG_RUNTIME_DIR and $XDG_STATE_HOME.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export const SYSTEM_RUN_DIR = '/run/farmem';
export const SYSTEM_STATE_DIR = '/var/lib/farmem';
export const SYSTEM_CONFIG = '/etc/farmem/farmemd.toml';
export const SOCKET_NAME = 'farmemd.sock';
export const ATTACH_SOCKET_NAME = 'attach.sock';

function writableOrCreatable(dir: string): boolean {
  try {
    fs.accessSync(dir, fs.constants.W_OK);
    return true;
  } catch {
    try {
      fs.accessSync(path.dirname(dir), fs.constants.W_OK);
      return true;
    } catch {
      return false;
    }
  }
}

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** The runtime directory for the sockets, or an Error that says what to do. */
export function defaultRunDir(env: NodeJS.ProcessEnv = process.env): string | Error {
  if (isRoot() || writableOrCreatable(SYSTEM_RUN_DIR)) return SYSTEM_RUN_DIR;
  if (env.XDG_RUNTIME_DIR) return path.join(env.XDG_RUNTIME_DIR, 'farmem');
  return new Error(
    `${SYSTEM_RUN_DIR} is not writable by uid ${process.getuid?.()} and XDG_RUNTIME_DIR is not set: ` +
      'pass --socket PATH and --attach-socket PATH (or set socket/attach_socket in the config), or run as root',
  );
}

export function defaultStateDir(env: NodeJS.ProcessEnv = process.env): string {
  if (isRoot() || writableOrCreatable(SYSTEM_STATE_DIR)) return SYSTEM_STATE_DIR;
  const base = env.XDG_STATE_HOME || path.join(os.homedir(), '.local', 'state');
  return path.join(base, 'farmem');
}

/**
 * The control socket a client should use when given none: $FARMEM_SOCKET, then the system socket
 * when it exists, then the per-user one when it exists, else the system path (so the error names it).
 */
export function clientSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.FARMEM_SOCKET) return env.FARMEM_SOCKET;
  const system = path.join(SYSTEM_RUN_DIR, SOCKET_NAME);
  if (fs.existsSync(system)) return system;
  if (env.XDG_RUNTIME_DIR) {
    const user = path.join(env.XDG_RUNTIME_DIR, 'farmem', SOCKET_NAME);
    if (fs.existsSync(user)) return user;
  }
  return system;
}
