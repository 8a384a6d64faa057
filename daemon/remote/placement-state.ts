// A region's placement record — which pages were ever written through the pool, which servers hold
// each group, the pages whose latest version lives elsewhere, and the old copies of moved groups
// still to discard — as data that can be journaled: every change is an op applied by applyOp, both
// live and on replay, so the two cannot drift.

export interface PlacementState {
  /** group → servers holding a full, current copy of the group (pinned at its first write). */
  holders: Map<number, string[]>;
  /**
   * page → servers holding its latest version, where that differs from its group's holders (a
   * holder missed the write: it stays out of the page's copies until repair rewrote it there).
   */
  override: Map<number, string[]>;
  /** group → pages written through the pool (what repair copies; what "absent" is checked against). */
  written: Map<number, Set<number>>;
  /**
   * group → servers left holding an old copy of it (the group moved off them) that have not
   * acknowledged its discard yet. Durable so that a daemon restart still frees them.
   */
  stale: Map<number, string[]>;
}

export type PlacementOp =
  /** A write of pages of group g acknowledged by servers a. */
  | { t: 'w'; g: number; p: number[]; a: string[] }
  /**
   * Repair made servers h hold the latest version of every written page of group g; servers d
   * (absent: none) still hold an old copy, to be discarded.
   */
  | { t: 'h'; g: number; h: string[]; d?: string[] }
  /** Server s acknowledged the discard of its old copy of group g (or no longer needs one). */
  | { t: 'd'; g: number; s: string }
  /** Server s may have lost every page (restarted): it stops counting as a copy where others remain. */
  | { t: 'l'; s: string };

export function emptyState(): PlacementState {
  return { holders: new Map(), override: new Map(), written: new Map(), stale: new Map() };
}

const same = (a: readonly string[], b: readonly string[]) => a.length === b.length && a.every((s) => b.includes(s));

/**
 * Whether an op would change the state: a rewrite of written pages on their usual holders does not,
 * and needs no journal record (nor its fsync) — the steady state costs nothing.
 */
export function changes(st: PlacementState, op: PlacementOp): boolean {
  if (op.t === 'd') return st.stale.get(op.g)?.includes(op.s) ?? false;
  if (op.t !== 'w') return true;
  const holders = st.holders.get(op.g);
  const w = st.written.get(op.g);
  if (holders === undefined || w === undefined || op.p.some((p) => !w.has(p))) return true;
  if (same(op.a, holders)) return op.p.some((p) => st.override.has(p));
  return op.p.some((p) => {
    const c = st.override.get(p);
    return c === undefined || !same(c, op.a);
  });
}

/** Applies one change; returns true when the group is now off its holders (under-replicated). */
export function applyOp(st: PlacementState, op: PlacementOp): boolean {
  switch (op.t) {
    case 'w': {
      let w = st.written.get(op.g);
      if (w === undefined) st.written.set(op.g, (w = new Set()));
      for (const p of op.p) w.add(p);
      const holders = st.holders.get(op.g);
      if (holders === undefined) {
        // First write of the group: whoever acknowledged it holds it (pinned, so adding a server
        // later moves the group by repair instead of making the newcomer a holder of pages it lacks).
        st.holders.set(op.g, [...op.a]);
        return false;
      }
      const onHolders = same(op.a, holders);
      for (const p of op.p) {
        if (onHolders) st.override.delete(p);
        else st.override.set(p, [...op.a]);
      }
      return !onHolders;
    }
    case 'h': {
      st.holders.set(op.g, [...op.h]);
      for (const p of st.written.get(op.g) ?? []) st.override.delete(p);
      // A server that holds the group again is no longer garbage to discard.
      const stale = [...new Set([...(st.stale.get(op.g) ?? []), ...(op.d ?? [])])].filter((s) => !op.h.includes(s));
      if (stale.length > 0) st.stale.set(op.g, stale);
      else st.stale.delete(op.g);
      return false;
    }
    case 'd': {
      const stale = st.stale.get(op.g)?.filter((s) => s !== op.s) ?? [];
      if (stale.length > 0) st.stale.set(op.g, stale);
      else st.stale.delete(op.g);
      return false;
    }
    case 'l': {
      // Where it is the only copy it stays: a durable server restarted with its pages (each start
      // is a new instance), and if it did lose them, reads find them absent and fail — never zeros.
      for (const [g, h] of st.holders) if (h.length > 1 && h.includes(op.s)) st.holders.set(g, h.filter((s) => s !== op.s));
      for (const [p, c] of st.override) if (c.length > 1 && c.includes(op.s)) st.override.set(p, c.filter((s) => s !== op.s));
      return false;
    }
  }
}

export function encodeOp(op: PlacementOp): Buffer {
  return Buffer.from(JSON.stringify(op));
}

export function decodeOp(b: Buffer): PlacementOp {
  const op = JSON.parse(b.toString('utf8')) as PlacementOp;
  const ok =
    (op.t === 'w' && Number.isInteger(op.g) && Array.isArray(op.p) && Array.isArray(op.a)) ||
    (op.t === 'h' && Number.isInteger(op.g) && Array.isArray(op.h) && (op.d === undefined || Array.isArray(op.d))) ||
    (op.t === 'l' && typeof op.s === 'string') ||
    (op.t === 'd' && Number.isInteger(op.g) && typeof op.s === 'string');
  if (!ok) throw new Error(`Expected a placement record (w, h, l or d) but received ${b.toString('utf8').slice(0, 80)}`);
  return op;
}

interface SnapshotJson {
  v: 1;
  /** Server ids; holder lists below are indexes into it. */
  servers: string[];
  /** Bitmap of written pages (bit p of byte p >> 3), base64. */
  written: string;
  /** [group, ...holder indexes] */
  holders: number[][];
  /** [page, ...server indexes] */
  override: number[][];
  /** [group, ...server indexes]: old copies still to discard (absent in snapshots of older daemons). */
  stale?: number[][];
}

/** The whole state, compact: a bitmap of written pages and holder lists by server index. */
export function encodeSnapshot(st: PlacementState): Buffer {
  const servers: string[] = [];
  const index = new Map<string, number>();
  const ix = (s: string) => {
    let i = index.get(s);
    if (i === undefined) {
      index.set(s, (i = servers.length));
      servers.push(s);
    }
    return i;
  };
  let max = -1;
  for (const w of st.written.values()) for (const p of w) if (p > max) max = p;
  const bits = Buffer.alloc((max >> 3) + 1);
  for (const w of st.written.values()) for (const p of w) bits[p >> 3]! |= 1 << (p & 7);
  const holders = [...st.holders].map(([g, h]) => [g, ...h.map(ix)]);
  const override = [...st.override].map(([p, c]) => [p, ...c.map(ix)]);
  const stale = [...st.stale].map(([g, s]) => [g, ...s.map(ix)]);
  const j: SnapshotJson = { v: 1, servers, written: max < 0 ? '' : bits.toString('base64'), holders, override, stale };
  return Buffer.from(JSON.stringify(j));
}

export function decodeSnapshot(b: Buffer, perGroup: number): PlacementState {
  const j = JSON.parse(b.toString('utf8')) as SnapshotJson;
  if (j.v !== 1 || !Array.isArray(j.servers) || !Array.isArray(j.holders) || !Array.isArray(j.override) || typeof j.written !== 'string') {
    throw new Error(`Expected a placement snapshot (v 1) but received ${b.toString('utf8').slice(0, 80)}`);
  }
  const st = emptyState();
  const bits = Buffer.from(j.written, 'base64');
  for (let i = 0; i < bits.length; i++) {
    if (bits[i] === 0) continue;
    for (let k = 0; k < 8; k++) {
      if ((bits[i]! & (1 << k)) === 0) continue;
      const p = i * 8 + k;
      const g = Math.floor(p / perGroup);
      let w = st.written.get(g);
      if (w === undefined) st.written.set(g, (w = new Set()));
      w.add(p);
    }
  }
  const name = (i: number) => {
    const s = j.servers[i];
    if (typeof s !== 'string') throw new Error(`Expected a server index below ${j.servers.length} for a placement snapshot but received ${i}`);
    return s;
  };
  for (const [g, ...h] of j.holders) st.holders.set(g!, h.map(name));
  for (const [p, ...c] of j.override) st.override.set(p!, c.map(name));
  if (j.stale !== undefined && !Array.isArray(j.stale)) throw new Error(`Expected a list of stale copies for a placement snapshot but received ${JSON.stringify(j.stale).slice(0, 80)}`);
  for (const [g, ...s] of j.stale ?? []) st.stale.set(g!, s.map(name));
  return st;
}
