// Per-request metrics of one memory server, in its own prom-client registry (Stats RPC and /metrics).
import client from 'prom-client';

export class ServerMetrics {
  readonly registry = new client.Registry();
  readonly requests = new client.Counter({
    name: 'farmem_memserver_requests_total', help: 'Page requests by op and gRPC code', labelNames: ['op', 'code'] as const, registers: [this.registry],
  });
  readonly pages = new client.Counter({
    name: 'farmem_memserver_pages_total', help: 'Pages read (present) or written', labelNames: ['op'] as const, registers: [this.registry],
  });
  readonly bytes = new client.Counter({
    name: 'farmem_memserver_page_bytes_total', help: 'Page bytes read or written', labelNames: ['op'] as const, registers: [this.registry],
  });
  readonly seconds = new client.Histogram({
    name: 'farmem_memserver_request_seconds', help: 'Time to serve one page request (in the server)', labelNames: ['op'] as const,
    buckets: [1e-6, 5e-6, 2e-5, 1e-4, 5e-4, 2e-3, 1e-2, 5e-2], registers: [this.registry],
  });
  readonly refused = new client.Counter({
    name: 'farmem_memserver_unauthenticated_total', help: 'Calls refused for missing or wrong credentials', registers: [this.registry],
  });
  readonly streamErrors = new client.Counter({
    name: 'farmem_memserver_stream_errors_total', help: 'Page streams ended by malformed input or a vanished client', labelNames: ['reason'] as const, registers: [this.registry],
  });
  readonly backpressure = new client.Counter({
    name: 'farmem_memserver_stream_pauses_total', help: 'Times a page stream stopped reading because its responses (or the journal) backed up', registers: [this.registry],
  });
  readonly streams = new client.Gauge({ name: 'farmem_memserver_streams', help: 'Open page streams', registers: [this.registry] });
  readonly capacity = new client.Gauge({ name: 'farmem_memserver_capacity_bytes', help: 'Configured capacity', registers: [this.registry] });
  readonly used = new client.Gauge({ name: 'farmem_memserver_used_bytes', help: 'Bytes of stored pages', registers: [this.registry] });

  // Plain totals too: cheaper to read for Stats than the registry.
  readsTotal = 0;
  writesTotal = 0;
  pagesRead = 0;
  pagesWritten = 0;
}
