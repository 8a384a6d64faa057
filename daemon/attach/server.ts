// The daemon's side of the attach socket: one SOCK_SEQPACKET connection per attachment, driven by
// the main loop. Every packet and every fd from a client is checked before anything trusts it;
// every fd the server does not keep is closed; a half-done attach times out; connections are bounded.

import crypto from 'node:crypto';
import fs from 'node:fs';
import pino, { type Logger } from 'pino';

import { fdpass, memfd as memfdOps, NativeError, type PeerCred, type SeqpacketEvent, type SeqpacketServer, uffd as uffdOps } from '../native';
import type { RegionSpec } from '../regions/types';
import { closeAll, checkMapping, describeFd, fdKind, fileIdentity } from './fds';
import type { AttachHost, DetachReason, Resolution } from './host';
import { markDaemonProcess } from './marker';
import {
  ATTACH_PROTOCOL_VERSION,
  AttachProtocolError,
  type AttachCodeName,
  type AttachRequestMsg,
  type ClientMessage,
  decodeClientMessage,
  encodeDaemonMessage,
  featureNames,
  MAX_ATTACH_FDS,
  MAX_REGION_NAME,
  type RegisterRequestMsg,
} from './protocol';

export interface AttachServerOptions {
  /** Socket path (default /run/farmem/attach.sock is the daemon's choice, not made here). */
  path: string;
  host: AttachHost;
  logger?: Logger;
  /** Mode of the socket file. Default 0o666: access is checked per region with SO_PEERCRED. */
  mode?: number;
  /** A connection must finish AttachRequest + RegisterRequest within this. Default 10 s. */
  handshakeTimeoutMs?: number;
  /** Connections beyond this are refused with UNAVAILABLE. Default 1024. */
  maxConnections?: number;
}

type State = 'new' | 'resolving' | 'resolved' | 'registering' | 'attached' | 'closed';

interface Conn {
  id: number;
  cred: PeerCred;
  /** Owned by the connection until handed to the host at registration. */
  pidfd: number | null;
  log: Logger;
  state: State;
  timer: NodeJS.Timeout | null;
  name: string | null;
  spec: RegionSpec | null;
  memfd: number;
  memfdIno: bigint;
  writeProtect: boolean;
  wpAsync: boolean;
  token: Buffer;
  reattach: boolean;
  attachmentId: number | null;
}

/** A refusal to send back: the code and the whole message. */
class Refuse extends Error {
  constructor(
    readonly code: Exclude<AttachCodeName, 'OK'>,
    message: string,
  ) {
    super(message);
  }
}

export interface AttachServerStats {
  connections: number;
  attachments: number;
  refused: number;
}

export class AttachServer {
  readonly path: string;
  private readonly host: AttachHost;
  private readonly log: Logger;
  private readonly timeoutMs: number;
  private readonly maxConnections: number;
  private readonly conns = new Map<number, Conn>();
  private readonly server: SeqpacketServer;
  private closed = false;
  private refused = 0;

  constructor(opts: AttachServerOptions) {
    if (typeof opts.path !== 'string' || opts.path.length === 0) throw new TypeError(`Expected a socket path for path but received ${JSON.stringify(opts.path)}`);
    this.path = opts.path;
    this.host = opts.host;
    this.log = (opts.logger ?? pino({ level: 'silent' })).child({ component: 'attach' });
    this.timeoutMs = opts.handshakeTimeoutMs ?? 10_000;
    this.maxConnections = opts.maxConnections ?? 1024;
    // Whoever serves attachments must never attach itself (its faults would wait on itself).
    markDaemonProcess();
    if (isServed(this.path)) throw new Error(`attach server: ${this.path} is already served by another process`);
    try {
      this.server = fdpass.listen(this.path, opts.mode ?? 0o666, (e) => this.onEvent(e));
    } catch (e) {
      throw new Error(`attach server: ${(e as Error).message}`, { cause: e });
    }
    this.log.info({ path: this.path }, 'attach socket listening');
  }

  stats(): AttachServerStats {
    let attachments = 0;
    for (const c of this.conns.values()) if (c.state === 'attached') attachments++;
    return { connections: this.conns.size, attachments, refused: this.refused };
  }

  /** Ends an attachment from the daemon's side (e.g. its region was deleted). */
  kick(attachmentId: number): boolean {
    for (const c of this.conns.values()) {
      if (c.attachmentId === attachmentId && c.state === 'attached') {
        this.finish(c, 'kicked', true);
        return true;
      }
    }
    return false;
  }

  /** Stops listening and ends every connection (attachments get onDetached(id, 'shutdown')). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const c of [...this.conns.values()]) this.finish(c, 'shutdown', true);
    this.server.close();
    this.log.info({ path: this.path }, 'attach socket closed');
  }

  // ---- events from the native server (main thread) ----

  private onEvent(e: SeqpacketEvent): void {
    switch (e.type) {
      case 'connect':
        return this.onConnect(e.conn, e.cred);
      case 'message': {
        const c = this.conns.get(e.conn);
        if (!c || c.state === 'closed') {
          closeAll(e.fds);
          return;
        }
        try {
          this.onMessage(c, e.payload, e.fds);
        } catch (err) {
          this.fail(c, err);
        }
        return;
      }
      case 'close': {
        const c = this.conns.get(e.conn);
        if (c) this.finish(c, 'closed', false);
        return;
      }
      case 'error': {
        const c = this.conns.get(e.conn);
        if (!c) {
          this.log.error({ err: e.error }, 'attach socket error');
          return;
        }
        if (e.error.code === 'EMSGSIZE') this.fail(c, new Refuse('INVALID_ARGUMENT', `message over 64 KiB or with more than 16 fds (dropped)`));
        else this.fail(c, new Refuse('INTERNAL', `${e.error.message}`));
        return;
      }
    }
  }

  private onConnect(id: number, cred: PeerCred): void {
    const log = this.log.child({ conn: id, pid: cred.pid, uid: cred.uid });
    if (this.closed || this.conns.size >= this.maxConnections) {
      this.refused++;
      log.warn({ max: this.maxConnections }, 'attach connection refused: too many connections');
      this.trySend(id, log, encodeDaemonMessage(refusalReply('UNAVAILABLE', `farmemd: too many attach connections (${this.maxConnections}); retry later`)));
      this.server.closeConnection(id);
      return;
    }
    let pidfd: number | null = null;
    try {
      pidfd = memfdOps.pidfdOpen(cred.pid);
    } catch (err) {
      log.warn({ err }, 'pidfd_open failed; process exit is seen only through the connection');
    }
    const c: Conn = {
      id,
      cred,
      pidfd,
      log,
      state: 'new',
      timer: null,
      name: null,
      spec: null,
      memfd: -1,
      memfdIno: 0n,
      writeProtect: false,
      wpAsync: false,
      token: Buffer.alloc(0),
      reattach: false,
      attachmentId: null,
    };
    c.timer = setTimeout(() => this.fail(c, new Refuse('UNAVAILABLE', `attach not completed within ${this.timeoutMs} ms`)), this.timeoutMs);
    c.timer.unref();
    this.conns.set(id, c);
    log.debug('attach connection');
  }

  private onMessage(c: Conn, payload: Buffer, fds: number[]): void {
    let msg: ClientMessage;
    try {
      msg = decodeClientMessage(payload);
    } catch (err) {
      closeAll(fds);
      if (err instanceof AttachProtocolError) throw new Refuse('INVALID_ARGUMENT', `${err.message}`);
      throw err;
    }
    if (fds.length > MAX_ATTACH_FDS) {
      closeAll(fds);
      throw new Refuse('INVALID_ARGUMENT', `a message carries ${fds.length} fds (at most ${MAX_ATTACH_FDS})`);
    }
    switch (msg.kind) {
      case 'attach':
        if (c.state !== 'new') {
          closeAll(fds);
          throw new Refuse('INVALID_ARGUMENT', `unexpected AttachRequest (this connection already sent one)`);
        }
        this.onAttach(c, msg, fds);
        return;
      case 'register':
        if (c.state !== 'resolved') {
          closeAll(fds);
          throw new Refuse('INVALID_ARGUMENT', `unexpected RegisterRequest (${c.state === 'attached' ? 'already registered' : 'send AttachRequest first and wait for its reply'})`);
        }
        this.onRegister(c, msg, fds);
        return;
      case 'detach':
        closeAll(fds);
        c.log.info('detach requested');
        this.finish(c, 'detach', true);
        return;
    }
  }

  private onAttach(c: Conn, m: AttachRequestMsg, fds: number[]): void {
    const nameBytes = Buffer.byteLength(m.region);
    if (nameBytes === 0 || nameBytes > MAX_REGION_NAME) {
      closeAll(fds);
      throw new Refuse('INVALID_ARGUMENT', `Expected a region name of 1 to ${MAX_REGION_NAME} bytes for AttachRequest.region but received ${JSON.stringify(m.region)}`);
    }
    c.name = m.region;
    c.log = c.log.child({ region: m.region });
    if (m.protocolVersion !== ATTACH_PROTOCOL_VERSION) {
      closeAll(fds);
      throw new Refuse('UNIMPLEMENTED', `protocol version ${m.protocolVersion} is not supported (farmemd speaks ${ATTACH_PROTOCOL_VERSION})`);
    }
    let clientMemfd = -1;
    if (m.reattach) {
      if (fds.length !== 1 || fdKind(fds[0]) !== 'memfd') {
        const got = fds.length === 1 ? describeFd(fds[0]) : `${fds.length} fds`;
        closeAll(fds);
        throw new Refuse('INVALID_ARGUMENT', `a reattach AttachRequest carries the region's memfd, but this one carried ${got}`);
      }
      clientMemfd = fds[0];
    } else if (fds.length !== 0) {
      const got = fds.map(describeFd).join(', ');
      closeAll(fds);
      throw new Refuse('INVALID_ARGUMENT', `AttachRequest carries no fd, but this one carried ${got}`);
    }
    c.state = 'resolving';
    const reattach = m.reattach ? { regionId: m.reattach.regionId, token: m.reattach.token, memfd: clientMemfd } : null;
    let pending: Resolution | Promise<Resolution>;
    try {
      pending = this.host.resolveRegion({ name: m.region, cred: c.cred, wantWriteProtect: m.wantWriteProtect, reattach });
    } catch (err) {
      pending = Promise.reject(err);
    }
    Promise.resolve(pending).then(
      (r) => this.onResolved(c, r, reattach),
      (err) => {
        if (clientMemfd >= 0) closeAll([clientMemfd]);
        this.fail(c, new Refuse('INTERNAL', `${(err as Error).message}`));
      },
    );
  }

  private onResolved(c: Conn, r: Resolution, reattach: { regionId: string; token: Buffer; memfd: number } | null): void {
    const clientMemfd = reattach?.memfd ?? -1;
    const adopted = r.ok && clientMemfd >= 0 && r.memfd === clientMemfd;
    try {
      if (c.state !== 'resolving') return; // the client went away meanwhile
      if (!r.ok) throw new Refuse(r.code, `${r.reason}`);
      if (reattach) {
        if (r.spec.id !== reattach.regionId) {
          throw new Refuse('FAILED_PRECONDITION', `reattach: the region's id is now ${r.spec.id}, not ${reattach.regionId} (it was deleted and created again)`);
        }
        if (!adopted && fileIdentity(r.memfd) !== fileIdentity(clientMemfd)) {
          throw new Refuse('FAILED_PRECONDITION', `reattach: this process maps another memfd than the region's (the region was deleted and created again)`);
        }
      }
      c.spec = r.spec;
      c.memfd = r.memfd;
      c.memfdIno = fs.fstatSync(r.memfd, { bigint: true }).ino;
      c.writeProtect = r.writeProtect;
      c.wpAsync = r.writeProtect && r.wpAsync === true;
      c.reattach = reattach !== null;
      c.token = reattach && reattach.token.length === 16 ? reattach.token : crypto.randomBytes(16);
      // The client maps its own memfd on a reattach: no fd then.
      this.server.send(
        c.id,
        encodeDaemonMessage({
          kind: 'attach_reply',
          code: 'OK',
          message: '',
          regionId: r.spec.id,
          sizeBytes: r.spec.sizeBytes,
          pageSize: r.spec.pageSize,
          writeProtect: r.writeProtect,
          wpAsync: r.writeProtect && r.wpAsync === true,
          onUnavailable: r.spec.onUnavailable,
          attachmentId: 0,
          token: c.token,
        }),
        reattach ? [] : [r.memfd],
      );
      c.state = 'resolved';
      c.log.debug({ regionId: r.spec.id, reattach: c.reattach }, 'region resolved');
    } catch (err) {
      this.fail(c, err);
    } finally {
      if (clientMemfd >= 0 && !adopted) closeAll([clientMemfd]);
    }
  }

  private onRegister(c: Conn, m: RegisterRequestMsg, fds: number[]): void {
    const spec = c.spec!;
    const bad = (msg: string): Refuse => {
      closeAll(fds);
      return new Refuse('INVALID_ARGUMENT', `${msg}`);
    };
    if (fds.length !== 1) throw bad(`RegisterRequest carries exactly one fd (the userfaultfd), but this one carried ${fds.length}`);
    if (fdKind(fds[0]) !== 'userfaultfd') throw bad(`RegisterRequest carries a userfaultfd, but this one carried ${describeFd(fds[0])}`);
    const ps = memfdOps.pageSize();
    if (m.address === 0 || m.address % ps !== 0) throw bad(`Expected a page-aligned address for RegisterRequest.address but received 0x${m.address.toString(16)}`);
    if (m.length !== spec.sizeBytes) throw bad(`Expected the region's size (${spec.sizeBytes}) for RegisterRequest.length but received ${m.length}`);
    const { names, unknown } = featureNames(m.uffdFeatures);
    if (unknown !== 0) throw bad(`RegisterRequest.uffd_features has unknown bits 0x${unknown.toString(16)}`);
    if (!names.includes('MISSING_SHMEM')) throw bad('the userfaultfd lacks UFFD_FEATURE_MISSING_SHMEM');
    // Each of these changes what the kernel delivers in ways the pager does not handle (events that
    // block the application until read; SIGBUS instead of fault messages).
    const unsupported = names.filter((n) => n.startsWith('EVENT_') || n === 'SIGBUS');
    if (unsupported.length) throw bad(`uffd features ${unsupported.join(', ')} are not supported (see proto/farmem/v1/attach.proto)`);
    if (m.writeProtect && !(names.includes('WP_HUGETLBFS_SHMEM') && names.includes('PAGEFAULT_FLAG_WP'))) {
      throw bad('write-protect mode needs UFFD_FEATURE_WP_HUGETLBFS_SHMEM and PAGEFAULT_FLAG_WP');
    }
    // Async write-protect hides writes from the pager: only where the daemon asked for it (a region
    // that is never evicted), or on a reattach of a uffd negotiated so before (the region's mode may
    // have changed meanwhile; the pager then keeps the region from eviction while it is attached).
    if (names.includes('WP_ASYNC') && !(m.writeProtect && (c.wpAsync || c.reattach))) {
      throw bad('uffd feature WP_ASYNC was not asked for (AttachReply.wp_async): the region tracks dirty pages with write-protect faults');
    }
    const notMapped = checkMapping(c.cred.pid, m.address, m.length, c.memfdIno);
    if (notMapped) throw bad(`RegisterRequest: ${notMapped}`);
    const uffd = fds[0];
    const start = BigInt(m.address);
    if (c.reattach) {
      // Faults the previous daemon read but never answered sleep until woken: wake them so they
      // fault again and reach the pager through this uffd.
      try {
        uffdOps.wake(uffd, start, m.length);
      } catch (err) {
        c.log.warn({ err }, 'UFFDIO_WAKE after reattach failed');
      }
    }
    if (m.userModeOnly) c.log.warn('the application opened its uffd with UFFD_USER_MODE_ONLY: its read(2)/write(2) into the region fail with EFAULT');
    c.state = 'registering';
    const pidfd = c.pidfd;
    c.pidfd = null;
    let pending: number | Promise<number>;
    try {
      pending = this.host.onRegistered({
        spec,
        memfd: c.memfd,
        pid: c.cred.pid,
        uid: c.cred.uid,
        gid: c.cred.gid,
        uffd,
        pidfd,
        start,
        length: m.length,
        features: names,
        writeProtect: m.writeProtect,
        userModeOnly: m.userModeOnly,
        reattach: c.reattach,
        token: c.token,
      });
    } catch (err) {
      pending = Promise.reject(err);
    }
    Promise.resolve(pending).then(
      (id) => {
        if (!Number.isSafeInteger(id) || id <= 0) throw new Error(`Expected a positive integer attachment id from onRegistered but received ${String(id)}`);
        c.attachmentId = id;
        if (c.state !== 'registering') {
          // The client went away while the host was registering it.
          this.callDetached(c, id, 'closed');
          return;
        }
        c.state = 'attached';
        if (c.timer) clearTimeout(c.timer);
        c.timer = null;
        c.log = c.log.child({ attachment: id });
        this.trySend(c.id, c.log, encodeDaemonMessage({ kind: 'register_reply', code: 'OK', message: '', attachmentId: id }));
        c.log.info({ regionId: spec.id, start: `0x${start.toString(16)}`, length: m.length, writeProtect: m.writeProtect, reattach: c.reattach }, 'attached');
      },
    ).catch((err: unknown) => {
      if (c.attachmentId === null) closeAll(pidfd === null ? [uffd] : [uffd, pidfd]);
      this.fail(c, new Refuse('INTERNAL', `${(err as Error).message}`));
    });
  }

  // ---- ending connections ----

  /** Refuses: sends the error in the reply the client waits for, then closes the connection. */
  private fail(c: Conn, err: unknown): void {
    if (c.state === 'closed') return;
    const r = err instanceof Refuse ? err : new Refuse('INTERNAL', `${err instanceof NativeError || err instanceof Error ? err.message : String(err)}`);
    // The client's own error already names the region it asked for; the log says who it was.
    if (!(err instanceof Refuse)) c.log.error({ err }, `${this.who(c)}: attach failed`);
    else c.log.warn({ code: r.code }, `${this.who(c)}: ${r.message}`);
    this.refused++;
    const registerPhase = c.state === 'resolved' || c.state === 'registering' || c.state === 'attached';
    this.trySend(
      c.id,
      c.log,
      encodeDaemonMessage(registerPhase ? { kind: 'register_reply', code: r.code, message: r.message, attachmentId: 0 } : refusalReply(r.code, r.message)),
    );
    this.finish(c, 'closed', true);
  }

  private finish(c: Conn, reason: DetachReason, closeSocket: boolean): void {
    if (c.state === 'closed') return;
    const was = c.state;
    c.state = 'closed';
    if (c.timer) clearTimeout(c.timer);
    c.timer = null;
    this.conns.delete(c.id);
    if (closeSocket) this.server.closeConnection(c.id);
    if (c.pidfd !== null) closeAll([c.pidfd]);
    c.pidfd = null;
    if (was === 'attached' && c.attachmentId !== null) {
      c.log.info({ reason }, 'detached');
      this.callDetached(c, c.attachmentId, reason);
    } else {
      c.log.debug({ reason, state: was }, 'attach connection ended');
    }
  }

  private callDetached(c: Conn, id: number, reason: DetachReason): void {
    try {
      this.host.onDetached(id, reason);
    } catch (err) {
      c.log.error({ err }, 'onDetached failed');
    }
  }

  private trySend(conn: number, log: Logger, payload: Buffer): void {
    try {
      this.server.send(conn, payload, []);
    } catch (err) {
      log.debug({ err }, 'reply not delivered (client gone)');
    }
  }

  private who(c: Conn): string {
    return c.name === null ? `pid ${c.cred.pid}` : `region ${JSON.stringify(c.name)}`;
  }
}

function refusalReply(code: Exclude<AttachCodeName, 'OK'>, message: string) {
  return {
    kind: 'attach_reply' as const,
    code,
    message,
    regionId: '',
    sizeBytes: 0,
    pageSize: 0,
    writeProtect: false,
    wpAsync: false,
    onUnavailable: 'wait' as const,
    attachmentId: 0,
    token: Buffer.alloc(0),
  };
}

/** true when something accepts connections on path (then it is not ours to replace). */
function isServed(path: string): boolean {
  try {
    const fd = fdpass.connect(path);
    closeAll([fd]);
    return true;
  } catch {
    return false;
  }
}
