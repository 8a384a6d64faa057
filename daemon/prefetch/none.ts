// Demand paging only: every page comes when it is touched, and nothing is ever wasted.
import type { Prefetcher } from './types';

export class NonePrefetcher implements Prefetcher {
  readonly name = 'none';
  onFault(): number[] {
    return [];
  }
  onPrefetchUsed(): number[] {
    return [];
  }
  onPrefetchWasted(): void {}
  reset(): void {}
  current(): string {
    return this.name;
  }
}
