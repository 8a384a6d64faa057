// The attach protocol's messages (proto/farmem/v1/attach.proto) as plain typed values, with the
// encoding and the validation of decoded input in one place. Used by the AttachServer and by the
// Node attach API (client/attach.ts); libfarmem has its own C codec that speaks the same bytes.

import { farmem } from '../../proto/gen/farmem';

const pb = farmem.v1;

/** The protocol version this code speaks. */
export const ATTACH_PROTOCOL_VERSION = 1;
/** Largest packet either side sends or accepts. */
export const MAX_ATTACH_PACKET = 4096;
/** Most fds a packet may carry (more are refused, and all of them closed). */
export const MAX_ATTACH_FDS = 4;
export const DEFAULT_ATTACH_SOCKET = '/run/farmem/attach.sock';
/** Longest region name on the wire (the registry's own rules are stricter). */
export const MAX_REGION_NAME = 255;

export type AttachCodeName =
  | 'OK'
  | 'INVALID_ARGUMENT'
  | 'NOT_FOUND'
  | 'PERMISSION_DENIED'
  | 'RESOURCE_EXHAUSTED'
  | 'FAILED_PRECONDITION'
  | 'UNIMPLEMENTED'
  | 'INTERNAL'
  | 'UNAVAILABLE';

const CODE_NUMBERS: Record<AttachCodeName, number> = {
  OK: pb.AttachCode.ATTACH_OK,
  INVALID_ARGUMENT: pb.AttachCode.ATTACH_INVALID_ARGUMENT,
  NOT_FOUND: pb.AttachCode.ATTACH_NOT_FOUND,
  PERMISSION_DENIED: pb.AttachCode.ATTACH_PERMISSION_DENIED,
  RESOURCE_EXHAUSTED: pb.AttachCode.ATTACH_RESOURCE_EXHAUSTED,
  FAILED_PRECONDITION: pb.AttachCode.ATTACH_FAILED_PRECONDITION,
  UNIMPLEMENTED: pb.AttachCode.ATTACH_UNIMPLEMENTED,
  INTERNAL: pb.AttachCode.ATTACH_INTERNAL,
  UNAVAILABLE: pb.AttachCode.ATTACH_UNAVAILABLE,
};

export function codeNumber(name: AttachCodeName): number {
  return CODE_NUMBERS[name];
}

/** The name of a wire code; an unknown number (from a newer peer) reads as INTERNAL. */
export function codeName(n: number): AttachCodeName {
  for (const [k, v] of Object.entries(CODE_NUMBERS)) if (v === n) return k as AttachCodeName;
  return 'INTERNAL';
}

export interface AttachRequestMsg {
  kind: 'attach';
  protocolVersion: number;
  region: string;
  wantWriteProtect: boolean;
  reattach: { regionId: string; token: Buffer } | null;
}

export interface RegisterRequestMsg {
  kind: 'register';
  /** Numbers: x86-64 user addresses are below 2^47, exact in a double. */
  address: number;
  length: number;
  /** UFFD_FEATURE_* bits in effect on the uffd. */
  uffdFeatures: number;
  writeProtect: boolean;
  userModeOnly: boolean;
}

export type ClientMessage = AttachRequestMsg | RegisterRequestMsg | { kind: 'detach' };

export interface AttachReplyMsg {
  kind: 'attach_reply';
  code: AttachCodeName;
  message: string;
  regionId: string;
  sizeBytes: number;
  pageSize: number;
  writeProtect: boolean;
  /** Also ask UFFD_FEATURE_WP_ASYNC: the region finds written pages with PAGEMAP_SCAN, writes do not fault. */
  wpAsync: boolean;
  onUnavailable: 'wait' | 'sigbus';
  attachmentId: number;
  token: Buffer;
}

export interface RegisterReplyMsg {
  kind: 'register_reply';
  code: AttachCodeName;
  message: string;
  attachmentId: number;
}

export type DaemonMessage = AttachReplyMsg | RegisterReplyMsg;

/** A packet that is not a valid message of this protocol. */
export class AttachProtocolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'AttachProtocolError';
  }
}

function bytes(u: Uint8Array | null | undefined): Buffer {
  return u ? Buffer.from(u.buffer, u.byteOffset, u.byteLength) : Buffer.alloc(0);
}

export function encodeClientMessage(m: ClientMessage): Buffer {
  let msg: farmem.v1.AttachClientMessage.$Properties;
  if (m.kind === 'attach') {
    msg = {
      attach: {
        protocolVersion: m.protocolVersion,
        region: m.region,
        wantWriteProtect: m.wantWriteProtect,
        reattach: m.reattach ? { regionId: m.reattach.regionId, token: m.reattach.token } : null,
      },
    };
  } else if (m.kind === 'register') {
    msg = {
      register: {
        address: m.address,
        length: m.length,
        uffdFeatures: m.uffdFeatures,
        writeProtect: m.writeProtect,
        userModeOnly: m.userModeOnly,
      },
    };
  } else {
    msg = { detach: {} };
  }
  return Buffer.from(pb.AttachClientMessage.encode(msg).finish());
}

export function encodeDaemonMessage(m: DaemonMessage): Buffer {
  let msg: farmem.v1.AttachDaemonMessage.$Properties;
  if (m.kind === 'attach_reply') {
    msg = {
      attachReply: {
        code: codeNumber(m.code),
        message: m.message,
        regionId: m.regionId,
        sizeBytes: m.sizeBytes,
        pageSize: m.pageSize,
        writeProtect: m.writeProtect,
        onUnavailable: m.onUnavailable === 'sigbus' ? pb.AttachReply.OnUnavailable.ON_UNAVAILABLE_SIGBUS : pb.AttachReply.OnUnavailable.ON_UNAVAILABLE_WAIT,
        attachmentId: m.attachmentId,
        token: m.token,
        // Only when set, so a reply to an older client is byte for byte what it was.
        ...(m.wpAsync ? { wpAsync: true } : {}),
      },
    };
  } else {
    msg = { registerReply: { code: codeNumber(m.code), message: m.message, attachmentId: m.attachmentId } };
  }
  return Buffer.from(pb.AttachDaemonMessage.encode(msg).finish());
}

function decodeWith<T>(what: string, payload: Buffer, f: (b: Uint8Array) => T): T {
  if (payload.length === 0) throw new AttachProtocolError(`empty ${what} packet`);
  if (payload.length > MAX_ATTACH_PACKET) throw new AttachProtocolError(`${what} packet of ${payload.length} bytes exceeds ${MAX_ATTACH_PACKET}`);
  try {
    return f(payload);
  } catch (e) {
    throw new AttachProtocolError(`malformed ${what}: ${(e as Error).message}`);
  }
}

// protobufjs hands a uint64 back as a Long when the long package is present, whatever --force-number says.
function toNumber(v: unknown): unknown {
  if (v === null || v === undefined) return 0;
  if (typeof v === 'bigint') return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  if (typeof v === 'object' && 'low' in v && 'high' in v) {
    const { low, high } = v as { low: number; high: number };
    return (high >>> 0) * 2 ** 32 + (low >>> 0);
  }
  return v;
}

function safeInt(what: string, v: unknown): number {
  const n = toNumber(v);
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) throw new AttachProtocolError(`Expected a non-negative integer below 2^53 for ${what} but received ${String(n)}`);
  return n;
}

/** Decodes and shape-checks a client packet; throws AttachProtocolError. */
export function decodeClientMessage(payload: Buffer): ClientMessage {
  const m = decodeWith('AttachClientMessage', payload, (b) => pb.AttachClientMessage.decode(b));
  switch (m.msg) {
    case 'attach': {
      const a = m.attach!;
      const r = a.reattach ?? null;
      return {
        kind: 'attach',
        protocolVersion: a.protocolVersion ?? 0,
        region: a.region ?? '',
        wantWriteProtect: a.wantWriteProtect === true,
        reattach: r ? { regionId: r.regionId ?? '', token: bytes(r.token) } : null,
      };
    }
    case 'register': {
      const r = m.register!;
      return {
        kind: 'register',
        address: safeInt('RegisterRequest.address', r.address),
        length: safeInt('RegisterRequest.length', r.length),
        uffdFeatures: safeInt('RegisterRequest.uffd_features', r.uffdFeatures),
        writeProtect: r.writeProtect === true,
        userModeOnly: r.userModeOnly === true,
      };
    }
    case 'detach':
      return { kind: 'detach' };
    default:
      throw new AttachProtocolError('AttachClientMessage carries no message');
  }
}

/** Decodes and shape-checks a daemon packet; throws AttachProtocolError. */
export function decodeDaemonMessage(payload: Buffer): DaemonMessage {
  const m = decodeWith('AttachDaemonMessage', payload, (b) => pb.AttachDaemonMessage.decode(b));
  switch (m.msg) {
    case 'attachReply': {
      const r = m.attachReply!;
      return {
        kind: 'attach_reply',
        code: codeName(r.code ?? 0),
        message: r.message ?? '',
        regionId: r.regionId ?? '',
        sizeBytes: safeInt('AttachReply.size_bytes', r.sizeBytes),
        pageSize: safeInt('AttachReply.page_size', r.pageSize),
        writeProtect: r.writeProtect === true,
        wpAsync: r.writeProtect === true && r.wpAsync === true,
        onUnavailable: r.onUnavailable === pb.AttachReply.OnUnavailable.ON_UNAVAILABLE_SIGBUS ? 'sigbus' : 'wait',
        attachmentId: safeInt('AttachReply.attachment_id', r.attachmentId),
        token: bytes(r.token),
      };
    }
    case 'registerReply': {
      const r = m.registerReply!;
      return { kind: 'register_reply', code: codeName(r.code ?? 0), message: r.message ?? '', attachmentId: safeInt('RegisterReply.attachment_id', r.attachmentId) };
    }
    default:
      throw new AttachProtocolError('AttachDaemonMessage carries no message');
  }
}

// UFFD_FEATURE_* bit numbers, in the order of linux/userfaultfd.h (and of UffdFeature in native.ts).
export const UFFD_FEATURE_BITS = [
  'PAGEFAULT_FLAG_WP',
  'EVENT_FORK',
  'EVENT_REMAP',
  'EVENT_REMOVE',
  'MISSING_HUGETLBFS',
  'MISSING_SHMEM',
  'EVENT_UNMAP',
  'SIGBUS',
  'THREAD_ID',
  'MINOR_HUGETLBFS',
  'MINOR_SHMEM',
  'EXACT_ADDRESS',
  'WP_HUGETLBFS_SHMEM',
  'WP_UNPOPULATED',
  'POISON',
  'WP_ASYNC',
  'MOVE',
] as const;
export type UffdFeatureName = (typeof UFFD_FEATURE_BITS)[number];

export function featureNames(bits: number): { names: UffdFeatureName[]; unknown: number } {
  const names: UffdFeatureName[] = [];
  UFFD_FEATURE_BITS.forEach((n, i) => {
    if (Math.floor(bits / 2 ** i) % 2 === 1) names.push(n);
  });
  const known = 2 ** UFFD_FEATURE_BITS.length;
  return { names, unknown: Math.floor(bits / known) * known };
}

export function featureBits(names: readonly UffdFeatureName[]): number {
  let bits = 0;
  for (const n of new Set(names)) bits += 2 ** UFFD_FEATURE_BITS.indexOf(n);
  return bits;
}

/** The features the client asks for (see attach.proto for why no EVENT_*); wpAsync only with writeProtect. */
export function clientFeatures(writeProtect: boolean, wpAsync = false): UffdFeatureName[] {
  if (!writeProtect) return ['MISSING_SHMEM', 'THREAD_ID'];
  const wp: UffdFeatureName[] = ['MISSING_SHMEM', 'THREAD_ID', 'WP_HUGETLBFS_SHMEM', 'PAGEFAULT_FLAG_WP'];
  return wpAsync ? [...wp, 'WP_ASYNC'] : wp;
}
