// The region registry: every region this daemon knows, persisted as JSON in the state directory
// (regions.json) so that regions and their ids survive restarts. Each change is written with an
// atomic replace before it becomes visible, and changes are applied one at a time.
import fs from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';
import { z } from 'zod';
import { writeFileAtomic } from '../util/atomic-write';
import { RegionError } from './errors';
import * as v from './validate';
import type { DirtyTracking, OnUnavailable, PrefetchPolicyName, RegionSpec } from './types';

export const REGISTRY_FILE = 'regions.json';

const specSchema = z.strictObject({
  id: z.uuid(),
  name: z.string().regex(v.NAME_RE),
  sizeBytes: z.number().int().positive(),
  pageSize: z.number().int().positive(),
  residentBytes: z.number().int().nonnegative(),
  servers: z.array(z.string()),
  replicas: z.number().int().min(1),
  prefetch: z.enum(['auto', 'none', 'readahead', 'stride', 'trend']),
  warmOnAttach: z.boolean().optional(),
  onUnavailable: z.enum(['wait', 'sigbus']),
  // Regions persisted before the property existed tracked with WP faults.
  dirtyTracking: z.enum(['wp', 'async', 'auto']).default('wp'),
  ownerUid: z.number().int().nonnegative(),
  ownerGid: z.number().int().nonnegative(),
  mode: z.number().int().min(0).max(0o777),
  createdAt: z.string(),
});
const fileSchema = z.strictObject({ version: z.literal(1), regions: z.array(specSchema) });

export interface NewRegion {
  name: string;
  sizeBytes: number;
  pageSize: number;
  residentBytes: number;
  servers: string[];
  replicas: number;
  prefetch: string;
  /** Replay the recorded working set on every attach (default off). */
  warmOnAttach?: boolean;
  onUnavailable: string;
  dirtyTracking: string;
  ownerUid: number;
  ownerGid: number;
  mode: number;
}

export interface RegionPatch {
  residentBytes?: number;
  mode?: number;
  prefetch?: string;
  warmOnAttach?: boolean;
}

export class RegionRegistry {
  readonly file: string;
  private regions: Map<string, RegionSpec>;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(file: string, regions: RegionSpec[]) {
    this.file = file;
    this.regions = new Map(regions.map((r) => [r.name, r]));
  }

  /** Opens (creating the directory if needed) the registry of a state directory. */
  static async open(stateDir: string): Promise<RegionRegistry> {
    try {
      await fs.promises.mkdir(stateDir, { recursive: true, mode: 0o750 });
    } catch (e) {
      throw new Error(`state dir ${stateDir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}: cannot create it (pass --state-dir or set state_dir)`);
    }
    const file = path.join(stateDir, REGISTRY_FILE);
    let text: string;
    try {
      text = await fs.promises.readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return new RegionRegistry(file, []);
      throw new Error(`region registry ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}: cannot read it`);
    }
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch (e) {
      throw new Error(`region registry ${file}: not JSON (${(e as Error).message}); restore it from a backup or move it away to start empty`);
    }
    const parsed = fileSchema.safeParse(json);
    if (!parsed.success) {
      const iss = parsed.error.issues[0]!;
      throw new Error(`region registry ${file}: ${iss.path.join('.') || '(top)'}: ${iss.message}; restore it from a backup or move it away to start empty`);
    }
    return new RegionRegistry(file, parsed.data.regions as RegionSpec[]);
  }

  list(): RegionSpec[] {
    return [...this.regions.values()].sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): RegionSpec | null {
    return this.regions.get(name) ?? null;
  }

  byId(id: string): RegionSpec | null {
    for (const r of this.regions.values()) if (r.id === id) return r;
    return null;
  }

  /** The region, or RegionError('not-found'): `<op> region "x": no such region`. */
  require(name: string, op: string): RegionSpec {
    const r = this.regions.get(name);
    if (r === undefined) {
      v.validateName(name);
      throw new RegionError('not-found', `${op} region "${name}": no such region (farmem region list shows them)`);
    }
    return r;
  }

  /** Validates and persists a new region. `poolSize`: servers in the daemon's pool (for replicas). */
  create(n: NewRegion, poolSize: number): Promise<RegionSpec> {
    return this.serial(async () => {
      v.validateName(n.name);
      const pageSize = v.validatePageSize(n.pageSize);
      const spec: RegionSpec = {
        id: crypto.randomUUID(),
        name: n.name,
        sizeBytes: v.validateSize(n.sizeBytes, pageSize),
        pageSize,
        residentBytes: v.validateResident(n.residentBytes, pageSize),
        servers: v.validateServers(n.servers),
        replicas: 0,
        prefetch: v.validatePrefetch(n.prefetch) as PrefetchPolicyName,
        ...(n.warmOnAttach === undefined ? {} : { warmOnAttach: v.validateFlag(n.warmOnAttach, 'warm-on-attach') }),
        onUnavailable: v.validateOnUnavailable(n.onUnavailable) as OnUnavailable,
        dirtyTracking: v.validateDirtyTracking(n.dirtyTracking) as DirtyTracking,
        ownerUid: v.validateId(n.ownerUid, 'owner uid'),
        ownerGid: v.validateId(n.ownerGid, 'owner gid'),
        mode: v.validateMode(n.mode),
        createdAt: new Date().toISOString(),
      };
      spec.replicas = v.validateReplicas(n.replicas, spec.servers.length > 0 ? spec.servers.length : poolSize);
      v.validateTrackingBudget(`create region "${n.name}"`, spec.dirtyTracking, spec.residentBytes);
      const existing = this.regions.get(n.name);
      if (existing) throw new RegionError('exists', `create region "${n.name}": a region of that name already exists (id ${existing.id})`);
      const next = new Map(this.regions).set(spec.name, spec);
      await this.persist(next);
      return spec;
    });
  }

  update(name: string, patch: RegionPatch): Promise<RegionSpec> {
    return this.serial(async () => {
      const cur = this.require(name, 'change');
      const spec: RegionSpec = { ...cur };
      if (patch.residentBytes !== undefined) spec.residentBytes = v.validateResident(patch.residentBytes, cur.pageSize);
      if (patch.mode !== undefined) spec.mode = v.validateMode(patch.mode);
      if (patch.prefetch !== undefined) spec.prefetch = v.validatePrefetch(patch.prefetch);
      v.validateTrackingBudget(`resize region "${name}"`, spec.dirtyTracking, spec.residentBytes);
      if (patch.warmOnAttach !== undefined) spec.warmOnAttach = v.validateFlag(patch.warmOnAttach, 'warm-on-attach');
      await this.persist(new Map(this.regions).set(name, spec));
      return spec;
    });
  }

  delete(name: string): Promise<RegionSpec> {
    return this.serial(async () => {
      const cur = this.require(name, 'delete');
      const next = new Map(this.regions);
      next.delete(name);
      await this.persist(next);
      return cur;
    });
  }

  private async persist(next: Map<string, RegionSpec>): Promise<void> {
    const regions = [...next.values()].sort((a, b) => a.name.localeCompare(b.name));
    await writeFileAtomic(this.file, `${JSON.stringify({ version: 1, regions }, null, 2)}\n`, 0o600);
    this.regions = next;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.queue.then(fn, fn);
    this.queue = run.catch(() => undefined);
    return run;
  }
}
