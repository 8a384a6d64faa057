// The memory servers this daemon knows — configured ones and the embedded one — and a probe of
// each through the MemoryServer.Stats call, for `farmem servers` and the up/down metric.
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { farmem } from '../proto/gen/farmem';
import { method } from './util/grpc';
import { grpcTarget } from './util/address';
import type { MemoryServerConfig } from './config/load';
import type { RepairStatus, ServerStatus as PoolMemberStatus } from './remote/pool';

const statsMethod = method('farmem.v1.MemoryServer', 'Stats', farmem.v1.StatsRequest, farmem.v1.StatsResponse);

export interface KnownServer extends MemoryServerConfig {
  embedded: boolean;
}

export interface ServerStatus {
  address: string;
  weight: number;
  tls: boolean;
  embedded: boolean;
  state: 'up' | 'down';
  detail: string;
  capacityBytes: number;
  usedBytes: number;
  regions: number;
  /** How the pager's pool(s) see the server; null when no pool holds it (no region used it yet). */
  pool: PoolServerState | null;
}

export interface PoolServerState {
  state: 'up' | 'suspect' | 'down';
  latencyMs: number;
  failures: number;
  instanceId: string;
  underReplicatedGroups: number;
  repairedGroups: number;
  copiedBytes: number;
  repairing: boolean;
  restartsDetected: number;
  pendingGroups: number;
  draining: boolean;
  /** Pages it freed at the pools' request since farmemd started (old copies, pages of failed writes). */
  discardedPages: number;
  /** Groups whose old copy on it is still to free (it was unreachable): retried by repair. */
  discardsPending: number;
}

/** What the status needs of a pool (MemoryPool). */
export interface PoolView {
  servers(): PoolMemberStatus[];
  repairStatus(): RepairStatus;
}

const WORSE = { up: 0, suspect: 1, down: 2 } as const;

/** The pool state of one server over every pool that holds it (worst state, summed repair). */
export function poolState(address: string, pools: readonly PoolView[]): PoolServerState | null {
  let out: PoolServerState | null = null;
  for (const p of pools) {
    const m = p.servers().find((s) => s.id === address);
    if (m === undefined) continue;
    const r = p.repairStatus();
    if (out === null) {
      out = { state: m.state, latencyMs: m.latencyMs ?? 0, failures: m.failures, instanceId: m.instanceId, underReplicatedGroups: 0, repairedGroups: 0, copiedBytes: 0, repairing: false, restartsDetected: 0, pendingGroups: 0, draining: false, discardedPages: 0, discardsPending: 0 };
    } else {
      if (WORSE[m.state] > WORSE[out.state]) out.state = m.state;
      out.latencyMs = Math.max(out.latencyMs, m.latencyMs ?? 0);
      out.failures = Math.max(out.failures, m.failures);
      if (out.instanceId === '') out.instanceId = m.instanceId;
    }
    out.underReplicatedGroups += r.underReplicatedGroups;
    out.repairedGroups += r.repairedGroups;
    out.copiedBytes += r.copiedBytes;
    out.repairing ||= r.running;
    out.restartsDetected += r.restartsDetected;
    out.pendingGroups += r.pendingGroups;
    out.draining ||= m.draining;
    out.discardedPages += m.discardedPages;
    out.discardsPending += m.discardsPending;
  }
  return out;
}

function credentials(s: MemoryServerConfig): grpc.ChannelCredentials {
  if (s.tls === null) return grpc.credentials.createInsecure();
  const read = (p: string | null) => (p === null ? null : fs.readFileSync(p));
  return grpc.credentials.createSsl(read(s.tls.ca), read(s.tls.key), read(s.tls.cert));
}

/** Asks one server for its Stats; never throws (a failure is a 'down' status with the reason). */
export function probe(s: KnownServer, timeoutMs = 2000): Promise<ServerStatus> {
  const base = { address: s.address, weight: s.weight, tls: s.tls !== null, embedded: s.embedded, pool: null };
  return new Promise((resolve) => {
    let client: grpc.Client;
    try {
      const options: grpc.ChannelOptions = s.tls?.serverName ? { 'grpc.ssl_target_name_override': s.tls.serverName } : {};
      client = new grpc.Client(grpcTarget(s.address), credentials(s), options);
    } catch (e) {
      resolve({ ...base, state: 'down', detail: (e as Error).message, capacityBytes: 0, usedBytes: 0, regions: 0 });
      return;
    }
    const md = new grpc.Metadata();
    if (s.token !== null) md.set('authorization', `Bearer ${s.token}`);
    client.makeUnaryRequest(
      statsMethod.path,
      statsMethod.requestSerialize,
      statsMethod.responseDeserialize,
      farmem.v1.StatsRequest.create(),
      md,
      { deadline: Date.now() + timeoutMs },
      (err, res) => {
        client.close();
        if (err || !res) {
          resolve({ ...base, state: 'down', detail: err ? err.details || err.message : 'no answer', capacityBytes: 0, usedBytes: 0, regions: 0 });
        } else {
          resolve({
            ...base,
            state: 'up',
            detail: res.durable ? 'durable' : 'memory only',
            capacityBytes: Number(res.capacityBytes),
            usedBytes: Number(res.usedBytes),
            regions: res.regions?.length ?? 0,
          });
        }
      },
    );
  });
}
