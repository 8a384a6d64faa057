// `farmem region heatmap NAME`: fetches the region's page map and writes the SVG that
// client/heatmap.ts draws, to a file (default NAME-heatmap.svg) or to stdout (`-o -`).
import fs from 'node:fs';
import path from 'node:path';
import type { ControlClient } from '../control';
import { renderHeatmap } from '../heatmap';
import { CliError } from './errors';

export interface HeatmapResult {
  region: string;
  /** Absolute path written, or '-' for stdout. */
  file: string;
  pages: number;
  pageSize: number;
  residentPages: number;
  dirtyPages: number;
  faults: number;
}

export async function writeHeatmap(c: ControlClient, name: string, opts: { output: string | null; columns: number | null }): Promise<HeatmapResult> {
  const m = await c.regionPageMap(name);
  const svg = renderHeatmap({ regionName: m.region.name ?? name, pageSize: m.pageSize, pages: m.pages, state: m.state, faults: m.faults }, opts.columns === null ? {} : { columns: opts.columns });
  let resident = 0;
  let dirty = 0;
  let faults = 0;
  for (let p = 0; p < m.pages; p++) {
    if (m.state[p]! & 1) resident++;
    if (m.state[p]! & 2) dirty++;
    faults += m.faults[p]!;
  }
  const file = opts.output === '-' ? '-' : path.resolve(opts.output ?? `${name}-heatmap.svg`);
  if (file === '-') process.stdout.write(svg);
  else {
    try {
      fs.writeFileSync(file, svg);
    } catch (e) {
      throw new CliError(`heatmap region "${name}": write ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
  return { region: name, file, pages: m.pages, pageSize: m.pageSize, residentPages: resident, dirtyPages: dirty, faults };
}
