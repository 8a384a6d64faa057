// Per-request metrics of one memory server, in its own prom-client registry (Stats RPC and /metrics).
// The hot path only bumps plain numbers; the registry reads them when scraped (label lookups per
// request cost more than serving a one-page read).
import client from 'prom-client';

const OPS = ['read', 'write'] as const;
export type Op = (typeof OPS)[number];
const CODES = 17;
/** Upper bounds (seconds) of the request-time histogram. */
const BUCKETS = [1e-6, 5e-6, 2e-5, 1e-4, 5e-4, 2e-3, 1e-2, 5e-2];

export class ServerMetrics {
  readonly registry = new client.Registry();
  /** [op][code] request counts. */
  private readonly byCode = OPS.map(() => new Array<number>(CODES).fill(0));
  private readonly buckets = OPS.map(() => new Array<number>(BUCKETS.length + 1).fill(0));
  private readonly sums = [0, 0];
  readsTotal = 0;
  writesTotal = 0;
  pagesRead = 0;
  pagesWritten = 0;
  /** Pages of versioned writes not applied: the server held a newer version (a late write). */
  pagesSuperseded = 0;
  unauthenticated = 0;
  pauses = 0;
  openStreams = 0;
  usedBytes = 0;
  private readonly streamErrorCounts = new Map<string, number>();

  constructor(readonly capacityBytes: number) {
    const self = this;
    const r = [this.registry];
    new client.Counter({
      name: 'farmem_memserver_requests_total', help: 'Page requests by op and gRPC code', labelNames: ['op', 'code'] as const, registers: r,
      collect() {
        this.reset();
        OPS.forEach((op, i) => self.byCode[i]!.forEach((n, code) => n > 0 && this.inc({ op, code: String(code) }, n)));
      },
    });
    new client.Counter({
      name: 'farmem_memserver_pages_total', help: 'Pages read (present) or written', labelNames: ['op'] as const, registers: r,
      collect() {
        this.reset();
        this.inc({ op: 'read' }, self.pagesRead);
        this.inc({ op: 'write' }, self.pagesWritten);
      },
    });
    new client.Gauge({
      name: 'farmem_memserver_request_seconds_bucket_total', help: 'Requests served in at most `le` seconds (in the server), cumulative', labelNames: ['op', 'le'] as const, registers: r,
      collect() {
        OPS.forEach((op, i) => {
          let acc = 0;
          self.buckets[i]!.forEach((n, b) => {
            acc += n;
            this.set({ op, le: b < BUCKETS.length ? String(BUCKETS[b]) : '+Inf' }, acc);
          });
        });
      },
    });
    new client.Gauge({
      name: 'farmem_memserver_request_seconds_sum', help: 'Seconds spent serving page requests (in the server)', labelNames: ['op'] as const, registers: r,
      collect() {
        OPS.forEach((op, i) => this.set({ op }, self.sums[i]!));
      },
    });
    const simple = (name: string, help: string, read: () => number, kind: 'counter' | 'gauge') => {
      const opts = { name, help, registers: r };
      if (kind === 'counter') new client.Counter({ ...opts, collect() { this.reset(); this.inc(read()); } });
      else new client.Gauge({ ...opts, collect() { this.set(read()); } });
    };
    simple('farmem_memserver_pages_superseded_total', 'Pages of writes not applied because a newer version was stored or their region was deleted (writes that arrived late)', () => self.pagesSuperseded, 'counter');
    simple('farmem_memserver_unauthenticated_total', 'Calls refused for missing or wrong credentials', () => self.unauthenticated, 'counter');
    simple('farmem_memserver_stream_pauses_total', 'Times a page stream stopped reading because its responses (or the journal) backed up', () => self.pauses, 'counter');
    simple('farmem_memserver_streams', 'Open page streams', () => self.openStreams, 'gauge');
    simple('farmem_memserver_capacity_bytes', 'Configured capacity', () => self.capacityBytes, 'gauge');
    simple('farmem_memserver_used_bytes', 'Bytes of stored pages', () => self.usedBytes, 'gauge');
    new client.Counter({
      name: 'farmem_memserver_stream_errors_total', help: 'Page streams ended by malformed input or a vanished client', labelNames: ['reason'] as const, registers: r,
      collect() {
        this.reset();
        for (const [reason, n] of self.streamErrorCounts) this.inc({ reason }, n);
      },
    });
  }

  request(op: Op, code: number, seconds: number): void {
    const i = op === 'read' ? 0 : 1;
    this.byCode[i]![code < CODES ? code : 2]!++;
    let b = 0;
    while (b < BUCKETS.length && seconds > BUCKETS[b]!) b++;
    this.buckets[i]![b]!++;
    this.sums[i]! += seconds;
  }

  streamError(reason: string): void {
    const key = reason.startsWith('error') ? 'error' : reason;
    this.streamErrorCounts.set(key, (this.streamErrorCounts.get(key) ?? 0) + 1);
  }
}
