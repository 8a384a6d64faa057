// gRPC status codes → PageStoreError kinds, in one place.
import { status } from '@grpc/grpc-js';
import type { PageStoreErrorKind } from './types';

export function kindOf(code: number): PageStoreErrorKind {
  switch (code) {
    case status.UNAVAILABLE:
    case status.CANCELLED:
    case status.ABORTED:
      return 'unavailable';
    case status.RESOURCE_EXHAUSTED:
      return 'exhausted';
    case status.UNAUTHENTICATED:
    case status.PERMISSION_DENIED:
      return 'unauthenticated';
    case status.INVALID_ARGUMENT:
    case status.OUT_OF_RANGE:
    case status.FAILED_PRECONDITION:
    case status.NOT_FOUND:
      return 'invalid';
    case status.DEADLINE_EXCEEDED:
      return 'deadline';
    default:
      return 'internal';
  }
}
