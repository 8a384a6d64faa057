// Typed refusals of region operations. `kind` maps onto a gRPC status in daemon/control; the
// message is complete and names the region and the reason.

export type RegionErrorKind = 'invalid' | 'not-found' | 'exists' | 'denied' | 'precondition' | 'unavailable';

export class RegionError extends Error {
  readonly kind: RegionErrorKind;
  constructor(kind: RegionErrorKind, message: string) {
    super(message);
    this.name = 'RegionError';
    this.kind = kind;
  }
}
