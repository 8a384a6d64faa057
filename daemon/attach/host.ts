// What the AttachServer needs from the rest of the daemon. The integrator wires it to the region
// registry (resolveRegion) and to the pager (onRegistered / onDetached); tests plug in their own.

import type { PeerCred } from '../native';
import type { RegionSpec } from '../regions/types';
import type { AttachCodeName, UffdFeatureName } from './protocol';

export interface ResolveRequest {
  name: string;
  /** The connecting process, from SO_PEERCRED: check access with it. */
  cred: PeerCred;
  wantWriteProtect: boolean;
  /**
   * Set when a client re-attaches after losing its connection (daemon restart). `memfd` is the
   * client's own copy of the region's memfd (checked to be a memfd). The host may adopt it — a
   * daemon that lost its memfd (kill -9) must, or the data written before the crash is lost — by
   * returning it as the resolution's memfd; then it is the host's. Otherwise the server closes it.
   */
  reattach: { regionId: string; token: Buffer; memfd: number } | null;
}

/** A refusal: `reason` completes the sentence `region "NAME": ...` (e.g. "not found"). */
export interface Refusal {
  ok: false;
  code: Exclude<AttachCodeName, 'OK'>;
  reason: string;
}

export type Resolution =
  | {
      ok: true;
      spec: RegionSpec;
      /** The region's memfd; still the host's (the server sends a copy). */
      memfd: number;
      /** Ask the client to register write-protect mode (dirty tracking by WP faults). */
      writeProtect: boolean;
      /** Ask the client for UFFD_FEATURE_WP_ASYNC too (async dirty tracking; only with writeProtect). */
      wpAsync?: boolean;
    }
  | Refusal;

/** A registered attachment, handed to the host (who then owns uffd and pidfd). */
export interface NewAttachment {
  spec: RegionSpec;
  /** The region's memfd, as resolved (still the host's). */
  memfd: number;
  pid: number;
  uid: number;
  gid: number;
  /** The application's uffd (O_NONBLOCK, checked to be a userfaultfd). Owned by the host from now on. */
  uffd: number;
  /** A pidfd of the application (null if it could not be opened). Owned by the host from now on. */
  pidfd: number | null;
  /** Start of the application's mapping of the whole region. */
  start: bigint;
  length: number;
  /** UFFD_FEATURE_* in effect on the uffd. */
  features: UffdFeatureName[];
  /** The range is registered in write-protect mode too. */
  writeProtect: boolean;
  /** Kernel-mode accesses (read(2) into the region) fail with EFAULT instead of faulting. */
  userModeOnly: boolean;
  /** A reconnect after the connection was lost; the server already woke the range. */
  reattach: boolean;
  /** Stable across reconnects of the same attachment (16 bytes). */
  token: Buffer;
}

export type DetachReason = 'detach' | 'closed' | 'kicked' | 'shutdown';

export interface AttachHost {
  /** Looks the region up and checks the caller's access. May be async. */
  resolveRegion(req: ResolveRequest): Resolution | Promise<Resolution>;
  /**
   * Starts serving faults on the uffd; returns the attachment id (a positive integer, unique
   * among live attachments). Throwing refuses the registration; the server then closes uffd and pidfd.
   */
  onRegistered(att: NewAttachment): number | Promise<number>;
  /** The attachment ended (its connection closed, or Detach). Stop using and close its uffd and pidfd. */
  onDetached(id: number, reason: DetachReason): void;
}
