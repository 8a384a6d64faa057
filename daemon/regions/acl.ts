// Who may do what with a region. Unix semantics over the region's owner, group and mode, judged
// on the caller's credentials from SO_PEERCRED (never on anything the caller says):
//   use   (attach, show, sync, evict): read+write bits of the class the caller falls in
//   admin (delete, change):            the owner or root
// root may do everything. A refusal names the region, the operation and why.
import fs from 'node:fs';
import { RegionError } from './errors';
import type { RegionSpec } from './types';

export interface Caller {
  pid: number;
  uid: number;
  gid: number;
  /** Supplementary groups (from /proc/PID/status when known). */
  groups: readonly number[];
}

export type Need = 'use' | 'admin';

const octal = (mode: number): string => `0${mode.toString(8).padStart(3, '0')}`;

/** null when allowed, else the reason (a clause for "... permission denied: <reason>"). */
export function refusal(region: RegionSpec, caller: Caller, need: Need): string | null {
  if (caller.uid === 0) return null;
  const owner = caller.uid === region.ownerUid;
  if (need === 'admin') return owner ? null : `uid ${caller.uid} is not its owner (uid ${region.ownerUid}) and only the owner or root may do this`;
  if (owner) return (region.mode & 0o600) === 0o600 ? null : `mode ${octal(region.mode)} does not give its owner (uid ${region.ownerUid}) read and write`;
  const inGroup = caller.gid === region.ownerGid || caller.groups.includes(region.ownerGid);
  if (inGroup) return (region.mode & 0o060) === 0o060 ? null : `uid ${caller.uid} is in its group (gid ${region.ownerGid}) but mode ${octal(region.mode)} does not give the group read and write`;
  if ((region.mode & 0o006) === 0o006) return null;
  return `uid ${caller.uid} is neither its owner (uid ${region.ownerUid}) nor in its group (gid ${region.ownerGid}), and mode ${octal(region.mode)} gives others no read and write`;
}

/** Throws RegionError('denied'): `<op> region "<name>": permission denied: <reason>`. */
export function check(region: RegionSpec, caller: Caller, need: Need, op: string): void {
  const why = refusal(region, caller, need);
  if (why !== null) throw new RegionError('denied', `${op} region "${region.name}": permission denied: ${why}`);
}

/** Supplementary groups of a live process, or [] when it cannot be read (the process may be gone). */
export function groupsOf(pid: number): number[] {
  try {
    const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const m = /^Groups:\s*(.*)$/m.exec(status);
    return m ? m[1]!.trim().split(/\s+/).filter(Boolean).map(Number) : [];
  } catch {
    return [];
  }
}
