// The standard grpc.health.v1.Health/Check, called by hand (two one-field messages).
import type * as grpc from '@grpc/grpc-js';

export type HealthStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';
const NAMES: HealthStatus[] = ['UNKNOWN', 'SERVING', 'NOT_SERVING', 'SERVICE_UNKNOWN'];

export const healthCheckMethod: grpc.MethodDefinition<string, HealthStatus> = {
  path: '/grpc.health.v1.Health/Check',
  requestStream: false,
  responseStream: false,
  requestSerialize: (service: string) => {
    const s = Buffer.from(service);
    return s.length === 0 ? Buffer.alloc(0) : Buffer.concat([Buffer.from([0x0a, s.length]), s]);
  },
  requestDeserialize: (b: Buffer) => b.toString('utf8', 2),
  responseSerialize: (h: HealthStatus) => Buffer.from([0x08, NAMES.indexOf(h)]),
  responseDeserialize: (b: Buffer) => (b.length >= 2 && b[0] === 0x08 ? NAMES[b[1]!] ?? 'UNKNOWN' : 'UNKNOWN'),
};
