// Per-region figures for `farmem region show` and (later) Prometheus.

import type { RegionState } from './state';

export interface RegionStats {
  name: string;
  key: number;
  pages: number;
  pageSize: number;
  residentPages: number;
  dirtyPages: number;
  /** Resident budget in pages (null = unlimited). */
  budgetPages: number | null;
  attachments: number;
  inFlight: number;
  faults: { cacheHit: number; remote: number; zero: number; wp: number; joined: number };
  remoteBytesIn: number;
  remoteBytesOut: number;
  prefetch: {
    issued: number;
    used: number;
    wasted: number;
    /** used ÷ issued (null before any guess). */
    accuracy: number | null;
    /** faults avoided ÷ faults that would have happened: used ÷ (used + remote + zero faults). */
    coverage: number | null;
  };
  evicted: { clean: number; dirty: number };
  writeBack: { batches: number; pages: number; stalls: number; stalled: boolean };
  readStalls: number;
  unavailable: boolean;
  poisoned: number;
}

export function regionStats(r: RegionState): RegionStats {
  const c = r.counters;
  const wouldFault = c.prefetchUsed + c.faultsRemote + c.faultsZero;
  return {
    name: r.cfg.name,
    key: r.cfg.key,
    pages: r.pages,
    pageSize: r.pageSize,
    residentPages: r.resident,
    dirtyPages: r.dirty,
    budgetPages: r.budgetPages === Infinity ? null : r.budgetPages,
    attachments: r.attachments.size,
    inFlight: r.inFlight.size,
    faults: { cacheHit: c.faultsCacheHit, remote: c.faultsRemote, zero: c.faultsZero, wp: c.faultsWp, joined: c.faultsJoined },
    remoteBytesIn: c.remoteBytesIn,
    remoteBytesOut: c.remoteBytesOut,
    prefetch: {
      issued: c.prefetchIssued,
      used: c.prefetchUsed,
      wasted: c.prefetchWasted,
      accuracy: c.prefetchIssued > 0 ? c.prefetchUsed / c.prefetchIssued : null,
      coverage: wouldFault > 0 ? c.prefetchUsed / wouldFault : null,
    },
    evicted: { clean: c.evictedClean, dirty: c.evictedDirty },
    writeBack: { batches: c.writeBackBatches, pages: c.writeBackPages, stalls: c.writeBackStalls, stalled: r.writeStalledSince !== null },
    readStalls: c.readStalls,
    unavailable: r.readUnavailableSince !== null,
    poisoned: c.poisoned,
  };
}
