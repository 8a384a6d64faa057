// One page request in, one response out: validation, then the slab store (and the journal).
// Everything here is synchronous, so a request is applied whole or not at all.
import { status } from '@grpc/grpc-js';
import { maxPages, messageOverhead, REGION_ID_RE, validPageSize } from '../remote/service';
import type { PageRequestMsg, PageResponseMsg } from '../remote/wire';
import type { Journal } from './journal';
import type { ServerMetrics } from './metrics';
import type { SlabStore } from './slabs';

function refuse(requestId: number, code: number, message: string): PageResponseMsg {
  return { requestId, code, message, present: [], data: null, absent: [], written: 0, malformed: null };
}

export function describe(v: unknown): string {
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** Why `region` is not a region id (the message every RPC gives), or null when it is one. */
export function regionIdError(region: string): string | null {
  return REGION_ID_RE.test(region) ? null : `Expected a region id (1-128 characters of A-Z a-z 0-9 . _ -) for region but received ${describe(region)}`;
}

export class PageHandler {
  constructor(
    private readonly store: SlabStore,
    private readonly journal: Journal | null,
    private readonly metrics: ServerMetrics,
    private readonly maxMessageBytes: number,
  ) {}

  /** Validates and serves one request. The response's fill (reads) must run before the next request. */
  handle(m: PageRequestMsg): PageResponseMsg {
    const t0 = process.hrtime.bigint();
    const r = this.serve(m);
    this.metrics.request(m.op, r.code, Number(process.hrtime.bigint() - t0) / 1e9);
    return r;
  }

  private serve(m: PageRequestMsg): PageResponseMsg {
    const id = m.requestId;
    const badRegion = regionIdError(m.region);
    if (badRegion !== null) return refuse(id, status.INVALID_ARGUMENT, badRegion);
    if (!validPageSize(m.pageSize)) {
      return refuse(id, status.INVALID_ARGUMENT, `Expected a power of two from 4096 to 2097152 for page_size but received ${m.pageSize}`);
    }
    const region = this.store.regions.get(m.region);
    if (region !== undefined && region.pageSize !== m.pageSize) {
      return refuse(id, status.INVALID_ARGUMENT, `Expected page_size ${region.pageSize} (the page size of region "${m.region}") but received ${m.pageSize}`);
    }
    const n = m.pages.length;
    if (n === 0) return refuse(id, status.INVALID_ARGUMENT, 'Expected at least one page index for pages but received none');
    const maxPerRequest = Math.floor((this.maxMessageBytes - messageOverhead(0)) / (m.pageSize + 10));
    if (n > maxPerRequest) {
      return refuse(id, status.INVALID_ARGUMENT, `Expected at most ${maxPerRequest} pages of ${m.pageSize} bytes per request (max message ${this.maxMessageBytes} bytes) for pages but received ${n}`);
    }
    const limit = maxPages(m.pageSize);
    for (let i = 0; i < n; i++) {
      const p = m.pages[i]!;
      if (p >= limit) {
        return refuse(id, status.OUT_OF_RANGE, `Expected page indexes below ${limit} (2^40 / page size ${m.pageSize}) for pages but received ${p}`);
      }
    }
    if (m.op === 'read') {
      const r = this.store.read(m.region, m.pages);
      this.metrics.readsTotal++;
      this.metrics.pagesRead += r.present.length;
      return {
        requestId: id, code: 0, message: '', present: r.present, data: null, absent: r.absent, written: 0, versions: r.versions,
        fill: r.fill, dataLength: r.present.length * m.pageSize, malformed: null,
      };
    }
    // The page bytes as one buffer, or as the chunks they arrived in (not joined: copied once, below).
    const data: Buffer | readonly Buffer[] = m.dataParts ?? m.data ?? Buffer.alloc(0);
    let length = 0;
    if (Buffer.isBuffer(data)) length = data.length;
    else for (const d of data) length += d.length;
    if (length !== n * m.pageSize) {
      return refuse(id, status.INVALID_ARGUMENT, `Expected ${n * m.pageSize} bytes (${n} pages of ${m.pageSize}) for data but received ${length}`);
    }
    const versions = m.versions !== undefined && m.versions !== null && m.versions.length > 0 ? m.versions : null;
    if (versions !== null) {
      if (versions.length !== 1 && versions.length !== n) {
        return refuse(id, status.INVALID_ARGUMENT, `Expected no version, one, or one per page (${n}) for versions but received ${versions.length}`);
      }
      for (let i = 0; i < versions.length; i++) {
        const v = versions[i]!;
        if (!Number.isSafeInteger(v)) return refuse(id, status.INVALID_ARGUMENT, `Expected versions below 2^53 for versions but received ${v}`);
      }
    }
    const refused = this.store.write(m.region, m.pageSize, m.pages, data, versions);
    if (refused !== null) return refuse(id, refused.code, refused.message);
    const superseded = this.store.lastSuperseded;
    // A write wholly superseded changed nothing; a partly superseded one is journaled whole, with its
    // versions: the replay applies the same rule in the same order and skips the same pages.
    if (superseded < n) this.journal?.appendWrite(m.region, m.pageSize, m.pages, data, versions);
    this.metrics.writesTotal++;
    this.metrics.pagesWritten += n - superseded;
    this.metrics.pagesSuperseded += superseded;
    this.metrics.usedBytes = this.store.usedBytes;
    // Superseded pages count as written: the server holds them at that version or a newer one, so the
    // writer's copy is safe here and it must not retry or repair (see memory.proto, WritePages.versions).
    return { requestId: id, code: 0, message: '', present: [], data: null, absent: [], written: n, superseded, malformed: null };
  }
}
