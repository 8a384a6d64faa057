// A real AttachHost for tests: it owns memfds for its regions, checks access by uid, and serves the
// faults of attached processes itself — reading events from each received uffd and installing pages
// with UFFDIO_COPY — so attach is tested end to end without the pager.
import crypto from 'node:crypto';

import type { AttachHost, DetachReason, NewAttachment, ResolveRequest, Resolution } from '../../daemon/attach';
import { memfd, uffd } from '../../daemon/native';
import type { RegionSpec } from '../../daemon/regions/types';

export interface TestRegion {
  spec: RegionSpec;
  /** -1 until created, or adopted from a reattaching client. */
  memfd: number;
  /** The bytes a missing page gets; null: zeros. */
  fill: ((page: number) => Buffer | null) | null;
}

interface Live {
  id: number;
  att: NewAttachment;
}

export function regionSpec(name: string, sizeBytes: number, over: Partial<RegionSpec> = {}): RegionSpec {
  return {
    id: crypto.randomUUID(),
    name,
    sizeBytes,
    pageSize: 4096,
    residentBytes: 0,
    servers: [],
    replicas: 1,
    prefetch: 'none',
    onUnavailable: 'wait',
    dirtyTracking: 'wp',
    ownerUid: 0,
    ownerGid: 0,
    mode: 0o600,
    createdAt: new Date(0).toISOString(),
    ...over,
  };
}

export class TestHost implements AttachHost {
  readonly regions = new Map<string, TestRegion>();
  readonly live = new Map<number, Live>();
  readonly detached: { id: number; reason: DetachReason }[] = [];
  readonly registered: NewAttachment[] = [];
  faults = 0;
  private nextId = 1;
  private timer: NodeJS.Timeout | null = null;

  /** Adds a region; `adopt`: no memfd of its own until a reattaching client brings one. */
  addRegion(spec: RegionSpec, fill: TestRegion['fill'] = null, adopt = false): TestRegion {
    const r: TestRegion = { spec, memfd: adopt ? -1 : memfd.create(`farmem-test-${spec.name}`, spec.sizeBytes), fill };
    this.regions.set(spec.name, r);
    return r;
  }

  resolveRegion(req: ResolveRequest): Resolution {
    const r = this.regions.get(req.name);
    if (!r) return { ok: false, code: 'NOT_FOUND', reason: 'not found' };
    if (req.cred.uid !== 0 && req.cred.uid !== r.spec.ownerUid) {
      return { ok: false, code: 'PERMISSION_DENIED', reason: `uid ${req.cred.uid} may not attach it (owner uid ${r.spec.ownerUid}, mode 0${r.spec.mode.toString(8)})` };
    }
    if (r.memfd < 0) {
      if (!req.reattach) return { ok: false, code: 'UNAVAILABLE', reason: 'not recovered yet' };
      r.memfd = req.reattach.memfd; // adopt the client's copy: it holds the data
    }
    return { ok: true, spec: r.spec, memfd: r.memfd, writeProtect: false };
  }

  onRegistered(att: NewAttachment): number {
    const id = this.nextId++;
    this.live.set(id, { id, att });
    this.registered.push(att);
    if (!this.timer) this.timer = setInterval(() => this.serve(), 2);
    return id;
  }

  onDetached(id: number, reason: DetachReason): void {
    const l = this.live.get(id);
    if (!l) throw new Error(`onDetached: unknown attachment ${id}`);
    this.live.delete(id);
    this.detached.push({ id, reason });
    memfd.close(l.att.uffd);
    if (l.att.pidfd !== null) memfd.close(l.att.pidfd);
    if (this.live.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = null;
    }
  }

  /** Closes the regions' memfds (after the server is closed). */
  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const l of [...this.live.values()]) this.onDetached(l.id, 'shutdown');
    for (const r of this.regions.values()) if (r.memfd >= 0) memfd.close(r.memfd);
    this.regions.clear();
  }

  // Polls every uffd (O_NONBLOCK) and answers its faults: fine for tests, the pager does it natively.
  private serve(): void {
    for (const { att } of this.live.values()) {
      let events;
      try {
        events = uffd.readEvents(att.uffd, 64);
      } catch {
        continue; // the process is gone; its connection closing will detach it
      }
      for (const e of events) {
        if (e.kind !== 'pagefault') continue;
        const ps = att.spec.pageSize;
        const page = Number((e.address - att.start) / BigInt(ps));
        const dst = att.start + BigInt(page * ps);
        const data = this.regions.get(att.spec.name)?.fill?.(page) ?? Buffer.alloc(ps);
        this.faults++;
        try {
          const r = uffd.copy(att.uffd, dst, data);
          if (r.outcome === 'exists') uffd.wake(att.uffd, dst, ps);
        } catch {
          /* ESRCH: the process exited */
        }
      }
    }
  }
}
