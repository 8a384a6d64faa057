// Regions: the registry (persisted in the state directory), input validation and access control.
export { RegionRegistry, REGISTRY_FILE, type NewRegion, type RegionPatch } from './registry';
export { RegionError, type RegionErrorKind } from './errors';
export { check, refusal, groupsOf, type Caller, type Need } from './acl';
export * as validate from './validate';
export type { RegionSpec, PrefetchPolicyName, OnUnavailable } from './types';
