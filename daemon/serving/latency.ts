// Fault-service latency of one region, in microseconds, as an HDR histogram (3 significant digits,
// so p99 is exact to 0.1% at any scale). Fed by the pager's onFaultServed: the time from the JS
// thread receiving a miss to its install; native cache hits are not in it.
import * as hdr from 'hdr-histogram-js';

export class FaultLatency {
  private readonly h = hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });

  /** Called on the JS thread once per demand install. */
  record(micros: number): void {
    this.h.recordValue(Math.max(1, Math.round(micros)));
  }

  get count(): number {
    return this.h.totalCount;
  }

  /** The value at the percentile in µs (0 before any fault). */
  percentile(p: number): number {
    return this.h.totalCount === 0 ? 0 : this.h.getValueAtPercentile(p);
  }
}
