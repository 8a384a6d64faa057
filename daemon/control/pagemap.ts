// RegionPageMap: a window of a region's page map (state and fault counts per page), cut so that
// one message stays far below gRPC's 4 MiB default: 256 Ki pages are 256 KiB of state and at most
// 1.25 MiB of varint fault counts. The client asks window after window (client/control.ts).
import type { farmem } from '../../proto/gen/farmem';
import { RegionError, check, type Caller, type RegionSpec } from '../regions';
import { NO_PAGER_DETAIL, type RegionPageMap } from '../runtime';
import type { Daemon } from '../daemon';

export const PAGE_MAP_WINDOW = 262_144;

export interface PageMapWindow {
  spec: RegionSpec;
  map: RegionPageMap;
  /** The window: pages [first, end). */
  first: number;
  end: number;
}

/** Checks access and cuts the window the request asks for; throws RegionError to refuse. */
export function pageMapWindow(d: Daemon, caller: Caller, r: farmem.v1.IRegionPageMapRequest): PageMapWindow {
  const spec = d.registry.require(r.name ?? '', 'heatmap');
  check(spec, caller, 'use', 'heatmap');
  const op = `heatmap region "${spec.name}"`;
  const map = d.runtime.pageMap(spec);
  if (map === null) {
    throw new RegionError(
      'precondition',
      d.runtime.serving ? `${op}: the pager (${d.runtime.description}) keeps no page map of this region` : `${op}: ${NO_PAGER_DETAIL}, so there is no page map to draw`,
    );
  }
  const pages = spec.sizeBytes / spec.pageSize;
  if (map.pages !== pages || map.pageSize !== spec.pageSize || map.state.length !== pages || map.faults.length !== pages) {
    // A broken runtime, not a bad request: INTERNAL with the numbers.
    throw new Error(
      `${op}: the pager returned ${map.state.length} states and ${map.faults.length} fault counts for ${map.pages} pages of ${map.pageSize} bytes; the region has ${pages} pages of ${spec.pageSize} bytes`,
    );
  }
  const first = Number(r.firstPage ?? 0);
  if (!(first <= map.pages)) throw new RegionError('invalid', `Expected a page from 0 to ${map.pages} for first_page but received ${first}`);
  if (r.maxPages != null && !(r.maxPages >= 1)) throw new RegionError('invalid', `Expected 1 or more for max_pages but received ${r.maxPages}`);
  const end = Math.min(map.pages, first + Math.min(r.maxPages ?? PAGE_MAP_WINDOW, PAGE_MAP_WINDOW));
  return { spec, map, first, end };
}
