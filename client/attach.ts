// The Node attach API: attach a farmem region and get a Buffer over it.
//
//   const a = attach('db');
//   a.buffer.writeUInt32LE(42, 0);   // pages arrive from farmemd on first touch
//   a.detach();
//
// Like libfarmem, a background thread (a worker_thread: the main thread may be blocked in a page
// fault exactly when the daemon is gone) holds the connection to farmemd and, when it breaks,
// reconnects with backoff and hands the new daemon the same memfd and uffd, so faults that were
// waiting complete. The process keeps its own memfd and uffd open for as long as it is attached.

import fs from 'node:fs';
import { isMainThread, Worker, workerData } from 'node:worker_threads';

import { isDaemonProcess } from '../daemon/attach/marker';
import {
  ATTACH_PROTOCOL_VERSION,
  type AttachCodeName,
  type AttachReplyMsg,
  clientFeatures,
  DEFAULT_ATTACH_SOCKET,
  type DaemonMessage,
  decodeDaemonMessage,
  encodeClientMessage,
  featureBits,
  MAX_ATTACH_PACKET,
  MAX_REGION_NAME,
  type ClientMessage,
} from '../daemon/attach/protocol';
import { fdpass, memfd, NativeError, uffd, type Mapping } from '../daemon/native';

export interface AttachOptions {
  /** The daemon's attach socket. Default: $FARMEM_ATTACH_SOCKET, else /run/farmem/attach.sock. */
  socket?: string;
}

/** An attached region. */
export interface Attachment {
  readonly name: string;
  /** The whole region. Invalid after detach(): touching it then crashes the process. */
  readonly buffer: Buffer;
  readonly regionId: string;
  readonly pageSize: number;
  /** Bytes (buffer.length). */
  readonly size: number;
  /** The daemon's id for this attachment (it may change after a reconnect). */
  readonly attachmentId: number;
  /** The range is registered in write-protect mode too (the daemon tracks dirty pages). */
  readonly writeProtect: boolean;
  /** Only UFFD_USER_MODE_ONLY was allowed: passing the buffer to read(2)/write(2) of a missing page fails with EFAULT. */
  readonly userModeOnly: boolean;
  /** Detaches and unmaps; idempotent. */
  detach(): void;
}

/** An attach that failed. `code` is the daemon's refusal (NOT_FOUND, PERMISSION_DENIED, ...) or an errno name. */
export class AttachError extends Error {
  readonly code: string;
  constructor(message: string, code: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'AttachError';
    this.code = code;
  }
}

const REPLY_TIMEOUT_MS = 10_000;
const WORKER_TAG = 'farmem.attach.watcher';
const STOP = 0; // Int32 slots in the shared control block
const STOPPED = 1;

/**
 * Attaches region `name` (synchronously: a few round trips on a local socket) and returns a Buffer
 * over it. Throws AttachError with a chained message, e.g.
 * `attach "db": connect /run/farmem/attach.sock: ECONNREFUSED`.
 */
export function attach(name: string, opts: AttachOptions = {}): Attachment {
  if (typeof name !== 'string' || Buffer.byteLength(name) === 0 || Buffer.byteLength(name) > MAX_REGION_NAME) {
    throw new TypeError(`Expected a region name of 1 to ${MAX_REGION_NAME} bytes for name but received ${JSON.stringify(name)}`);
  }
  if (opts === null || typeof opts !== 'object') throw new TypeError(`Expected an options object for opts but received ${String(opts)}`);
  if (opts.socket !== undefined && (typeof opts.socket !== 'string' || opts.socket.length === 0)) {
    throw new TypeError(`Expected a socket path for opts.socket but received ${JSON.stringify(opts.socket)}`);
  }
  const ctx = `attach ${JSON.stringify(name)}`;
  if (isDaemonProcess()) throw new AttachError(`${ctx}: refused inside farmemd (its own faults would wait on itself)`, 'EDEADLK');
  const socket = opts.socket ?? (process.env.FARMEM_ATTACH_SOCKET || DEFAULT_ATTACH_SOCKET);

  const owned: number[] = [];
  let mapping: Mapping | null = null;
  try {
    const conn = connect(ctx, socket);
    owned.push(conn);
    const reply = request(ctx, conn, { kind: 'attach', protocolVersion: ATTACH_PROTOCOL_VERSION, region: name, wantWriteProtect: true, reattach: null }, 'attach_reply', 1);
    const rep = reply.msg as AttachReplyMsg;
    const mfd = reply.fds[0];
    owned.push(mfd);
    const ps = memfd.pageSize();
    if (rep.sizeBytes <= 0 || rep.pageSize < ps || (rep.pageSize & (rep.pageSize - 1)) !== 0 || rep.sizeBytes % rep.pageSize !== 0 || rep.regionId === '') {
      throw new AttachError(`${ctx}: farmemd sent an invalid region geometry (${rep.sizeBytes} bytes, pages of ${rep.pageSize}, id ${JSON.stringify(rep.regionId)})`, 'EPROTO');
    }
    mapping = step(ctx, 'mmap', () => memfd.map(mfd, rep.sizeBytes, { writable: true }));
    const u = openUffd(ctx, mapping, rep.writeProtect, rep.wpAsync);
    owned.push(u.fd);
    const reg: ClientMessage = {
      kind: 'register',
      address: Number(mapping.address),
      length: mapping.length,
      uffdFeatures: u.features,
      writeProtect: u.writeProtect,
      userModeOnly: u.userModeOnly,
    };
    const rr = request(ctx, conn, reg, 'register_reply', 0, [u.fd]);
    const ctl = new Int32Array(new SharedArrayBuffer(8));
    const worker = new Worker(__filename, {
      workerData: {
        [WORKER_TAG]: true,
        ctl,
        conn,
        name,
        socket,
        memfd: mfd,
        uffd: u.fd,
        regionId: rep.regionId,
        token: rep.token,
        size: rep.sizeBytes,
        pageSize: rep.pageSize,
        register: reg,
      } satisfies WatcherData,
      stdout: false,
      stderr: false,
    });
    worker.unref();
    const buffer = mapping.buffer;
    const m = mapping;
    let detached = false;
    return {
      name,
      buffer,
      regionId: rep.regionId,
      pageSize: rep.pageSize,
      size: rep.sizeBytes,
      attachmentId: rr.msg.attachmentId,
      writeProtect: u.writeProtect,
      userModeOnly: u.userModeOnly,
      detach(): void {
        if (detached) return;
        detached = true;
        // The watcher owns the connection (it sends DetachRequest and closes it) and may be in the
        // middle of sending our fds to a new daemon: wait until it has stopped before closing them.
        Atomics.store(ctl, STOP, 1);
        Atomics.notify(ctl, STOP);
        Atomics.wait(ctl, STOPPED, 0, 5000);
        memfd.unmap(m);
        closeQuietly(u.fd);
        closeQuietly(mfd);
      },
    };
  } catch (e) {
    if (mapping) memfd.unmap(mapping);
    for (const fd of owned) closeQuietly(fd);
    throw e;
  }
}

// ---- the handshake, shared by attach() and the watcher's reattach ----

function step<T>(ctx: string, what: string, f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof AttachError) throw e;
    const code = e instanceof NativeError ? e.code : 'EIO';
    throw new AttachError(`${ctx}: ${what}: ${code}`, code, { cause: e });
  }
}

function connect(ctx: string, socket: string): number {
  return step(ctx, `connect ${socket}`, () => fdpass.connect(socket));
}

interface Reply {
  msg: DaemonMessage;
  fds: number[];
}

/** Sends one message and waits for the reply of `kind` carrying `wantFds` fds; a refusal throws. */
function request(ctx: string, conn: number, m: ClientMessage, kind: DaemonMessage['kind'], wantFds: number, fds: number[] = [], stop?: () => boolean): Reply & { msg: DaemonMessage } {
  step(ctx, 'send to farmemd', () => fdpass.send(conn, encodeClientMessage(m), fds));
  const deadline = Date.now() + REPLY_TIMEOUT_MS;
  for (;;) {
    // In slices, so a watcher asked to stop does not wait out the whole timeout.
    const got = step(ctx, 'receive from farmemd', () => fdpass.recv(conn, { maxPayload: MAX_ATTACH_PACKET, maxFds: 4, timeoutMs: 200 }));
    if (got === null) {
      if (stop?.()) throw new AttachError(`${ctx}: detached`, 'ECANCELED');
      if (Date.now() > deadline) throw new AttachError(`${ctx}: no reply from farmemd within ${REPLY_TIMEOUT_MS} ms`, 'ETIMEDOUT');
      continue;
    }
    let msg: DaemonMessage;
    try {
      msg = decodeDaemonMessage(got.payload);
    } catch (e) {
      got.fds.forEach(closeQuietly);
      throw new AttachError(`${ctx}: farmemd sent a malformed message: ${(e as Error).message}`, 'EPROTO');
    }
    if (msg.code !== 'OK') {
      got.fds.forEach(closeQuietly);
      throw new AttachError(`${ctx}: ${msg.message || 'refused by farmemd'}`, msg.code satisfies AttachCodeName);
    }
    if (msg.kind !== kind || got.fds.length !== wantFds) {
      got.fds.forEach(closeQuietly);
      throw new AttachError(`${ctx}: farmemd sent ${msg.kind} with ${got.fds.length} fds where ${kind} with ${wantFds} was expected`, 'EPROTO');
    }
    return { msg, fds: got.fds };
  }
}

interface OpenedUffd {
  fd: number;
  features: number;
  writeProtect: boolean;
  userModeOnly: boolean;
}

/**
 * Opens, negotiates and registers the uffd. Async write-protect (asked by the daemon) is dropped when
 * the kernel refuses it, then write-protect when the kernel cannot do it on shmem: each step down is
 * still correct (the daemon learns what is in effect from RegisterRequest.uffd_features).
 */
function openUffd(ctx: string, m: Mapping, wantWp: boolean, wantAsync: boolean): OpenedUffd {
  const tries: [boolean, boolean][] = wantWp ? (wantAsync ? [[true, true], [true, false], [false, false]] : [[true, false], [false, false]]) : [[false, false]];
  for (const [wp, wpAsync] of tries) {
    const opened = step(ctx, 'userfaultfd', () => uffd.open({ nonBlocking: true, allowUserModeOnly: true }));
    const names = clientFeatures(wp, wpAsync);
    try {
      uffd.api(opened.fd, names);
      uffd.register(opened.fd, m.address, m.length, wp ? ['missing', 'wp'] : ['missing']);
      return { fd: opened.fd, features: featureBits(names), writeProtect: wp, userModeOnly: opened.userModeOnly };
    } catch (e) {
      closeQuietly(opened.fd);
      if (wp && e instanceof NativeError && e.code === 'EINVAL') continue;
      const code = e instanceof NativeError ? e.code : 'EIO';
      throw new AttachError(`${ctx}: ${e instanceof NativeError ? e.syscall : 'userfaultfd'}: ${code}`, code, { cause: e });
    }
  }
  throw new AttachError(`${ctx}: userfaultfd: no usable feature set`, 'EINVAL');
}

function closeQuietly(fd: number): void {
  try {
    fs.closeSync(fd);
  } catch {
    /* already closed */
  }
}

// ---- the watcher (runs in a worker_thread) ----

interface WatcherData {
  [WORKER_TAG]: true;
  ctl: Int32Array;
  conn: number;
  name: string;
  socket: string;
  memfd: number;
  uffd: number;
  regionId: string;
  token: Buffer | Uint8Array;
  size: number;
  pageSize: number;
  register: ClientMessage;
}

function say(line: string): void {
  // Straight to fd 2: the main thread, which would relay worker output, may be stuck in a fault.
  try {
    fs.writeSync(2, `farmem: ${line}\n`);
  } catch {
    /* nowhere to say it */
  }
}

function watch(d: WatcherData): void {
  const stopped = (): boolean => Atomics.load(d.ctl, STOP) === 1;
  const ctx = `reattach ${JSON.stringify(d.name)}`;
  let conn = d.conn;
  let token: Buffer = Buffer.from(d.token);
  try {
    while (!stopped()) {
      let lost = false;
      try {
        const got = fdpass.recv(conn, { maxPayload: MAX_ATTACH_PACKET, maxFds: 4, timeoutMs: 200 });
        if (got === null) continue;
        // farmemd sends nothing unasked today; drop what a newer one might send.
        got.fds.forEach(closeQuietly);
        lost = got.payload.length === 0;
      } catch {
        lost = true;
      }
      if (!lost) continue;
      closeQuietly(conn);
      conn = -1;
      say(`region ${JSON.stringify(d.name)}: lost farmemd; faults wait while reconnecting to ${d.socket}`);
      let last = '';
      for (let delay = 50; !stopped(); delay = Math.min(delay * 2, 2000)) {
        if (Atomics.wait(d.ctl, STOP, 0, delay) !== 'timed-out') break;
        let c = -1;
        try {
          c = connect(ctx, d.socket);
          const rep = request(ctx, c, { kind: 'attach', protocolVersion: ATTACH_PROTOCOL_VERSION, region: d.name, wantWriteProtect: true, reattach: { regionId: d.regionId, token } }, 'attach_reply', 0, [d.memfd], stopped);
          const a = rep.msg as AttachReplyMsg;
          if (a.regionId !== d.regionId || a.sizeBytes !== d.size || a.pageSize !== d.pageSize) {
            throw new AttachError(`${ctx}: the region is now ${a.regionId} (${a.sizeBytes} bytes, pages of ${a.pageSize}), not ${d.regionId} (${d.size} bytes, pages of ${d.pageSize})`, 'ESTALE');
          }
          if (a.token.length) token = a.token;
          const rr = request(ctx, c, d.register, 'register_reply', 0, [d.uffd], stopped);
          conn = c;
          say(`region ${JSON.stringify(d.name)}: reattached to farmemd (attachment ${rr.msg.attachmentId})`);
          break;
        } catch (e) {
          if (c >= 0) closeQuietly(c);
          const msg = (e as Error).message;
          if (msg !== last && !stopped()) say(`${msg} (retrying)`);
          last = msg;
        }
      }
    }
    if (conn >= 0) {
      try {
        fdpass.send(conn, encodeClientMessage({ kind: 'detach' }));
      } catch {
        /* closing detaches too */
      }
      closeQuietly(conn);
    }
  } finally {
    Atomics.store(d.ctl, STOPPED, 1);
    Atomics.notify(d.ctl, STOPPED);
  }
}

if (!isMainThread && (workerData as Partial<WatcherData> | null)?.[WORKER_TAG] === true) {
  watch(workerData as WatcherData);
}
