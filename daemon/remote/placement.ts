// Where a page lives: pages are grouped into fixed runs (page groups, 64 KiB by default, so a batch
// of neighbouring pages stays on one server), and each group maps to servers by weighted rendezvous
// (highest-random-weight) hashing. Adding a server moves only the groups that now rank it first.
import crypto from 'node:crypto';

export const DEFAULT_GROUP_BYTES = 64 * 1024;

/** Pages per group for a page size: at least one page. */
export function pagesPerGroup(pageSize: number, groupBytes = DEFAULT_GROUP_BYTES): number {
  return Math.max(1, Math.floor(groupBytes / pageSize));
}

export function groupOf(page: number, perGroup: number): number {
  return Math.floor(page / perGroup);
}

export interface Candidate {
  /** Stable identity (the server's address as configured). */
  id: string;
  /** Relative share of groups (> 0). */
  weight: number;
}

// Every read asks for its groups' ranking, and a sha256 per candidate cost ~4 µs of a remote miss:
// the scores are pure functions of their key, so they are remembered (bounded; cleared when full).
const MEMO_MAX = 1 << 16;
const memo = new Map<string, number>();

/** 64 bits of a keyed hash as a number in (0, 1). */
function unitHash(server: string, region: string, group: number): number {
  const key = `${server}\0${region}\0${group}`;
  const known = memo.get(key);
  if (known !== undefined) return known;
  if (memo.size >= MEMO_MAX) memo.clear();
  const u = unitHashOf(server, region, group);
  memo.set(key, u);
  return u;
}

function unitHashOf(server: string, region: string, group: number): number {
  const h = crypto.createHash('sha256').update(server).update('\0').update(region).update('\0').update(String(group)).digest();
  // 52 random bits → (0, 1), never exactly 0 or 1.
  const hi = h.readUInt32BE(0) & 0xfffff;
  const lo = h.readUInt32BE(4);
  return (hi * 2 ** 32 + lo + 0.5) / 2 ** 52;
}

/**
 * Servers ranked for a group, best first: weighted rendezvous (score = -weight / ln(u)), so a server's
 * share of first places is proportional to its weight and the order is stable for a given set.
 */
export function rank(candidates: readonly Candidate[], region: string, group: number): string[] {
  if (candidates.length === 1) return [candidates[0]!.id];
  return candidates
    .map((c) => ({ id: c.id, score: -c.weight / Math.log(unitHash(c.id, region, group)) }))
    .sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : 1))
    .map((s) => s.id);
}
