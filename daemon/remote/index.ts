// The remote part's public face: the PageStore of one memory server and its wire contract.
export { MemoryServerClient, type MemoryServerClientOptions, type ClientTls, type MemoryServerStats } from './client';
export { PageStoreError, type PageStore, type PageStoreErrorKind, type ReadResult, type RegionRef } from './types';
export type { HealthStatus } from './health';
export { maxPages, validPageSize, MIN_PAGE_SIZE, MAX_PAGE_SIZE } from './service';
