// `farmem region heatmap NAME`: a picture of a region. Each cell is a run of pages (the region is
// folded into at most `cells` cells, row by row); its colour says whether the run is resident, how
// much of it is dirty, and how often it faulted, so an operator sees hot spots and cold stretches
// at a glance. Pure: takes the page map, returns an SVG document.

export interface PageMap {
  regionName: string;
  pageSize: number;
  pages: number;
  /** One byte per page: bit 0 resident, bit 1 dirty. */
  state: Uint8Array;
  /** Faults per page since the region was created (saturating). */
  faults: Uint32Array;
}

export interface HeatmapOptions {
  /** Cells across. */
  columns: number;
  /** Upper bound on cells (pages are folded into runs to fit). */
  cells: number;
  cellPx: number;
}

const RESIDENT = 1;
const DIRTY = 2;

function escapeXml(s: string): string {
  return s.replace(/[<>&"']/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;', "'": '&apos;' })[c]!);
}

function humanBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${Number.isInteger(n) ? n : n.toFixed(1)} ${units[i]}`;
}

interface Cell {
  first: number;
  count: number;
  resident: number;
  dirty: number;
  faults: number;
}

/** Folds pages into cells (runs of equal length, the last may be shorter). */
export function foldCells(map: PageMap, maxCells: number): Cell[] {
  if (map.state.length !== map.pages || map.faults.length !== map.pages) {
    throw new Error(`Expected state and faults of ${map.pages} entries for the page map but received ${map.state.length} and ${map.faults.length}`);
  }
  const per = Math.max(1, Math.ceil(map.pages / Math.max(1, maxCells)));
  const cells: Cell[] = [];
  for (let first = 0; first < map.pages; first += per) {
    const c: Cell = { first, count: Math.min(per, map.pages - first), resident: 0, dirty: 0, faults: 0 };
    for (let p = first; p < first + c.count; p++) {
      const s = map.state[p]!;
      if (s & RESIDENT) c.resident++;
      if (s & DIRTY) c.dirty++;
      c.faults += map.faults[p]!;
    }
    cells.push(c);
  }
  return cells;
}

/**
 * Colour of a cell: grey when nothing is resident; otherwise a hue from blue (clean) to red (all
 * dirty), lighter to darker with the fault count (log-scaled against the hottest cell).
 */
function colour(c: Cell, maxFaults: number): string {
  if (c.resident === 0 && c.faults === 0) return '#e6e6e6';
  const heat = maxFaults > 0 ? Math.log1p(c.faults) / Math.log1p(maxFaults) : 0;
  const lightness = Math.round(85 - 50 * heat);
  if (c.resident === 0) return `hsl(0, 0%, ${Math.max(55, lightness)}%)`;
  const dirtyShare = c.dirty / c.count;
  const hue = Math.round(210 - 210 * dirtyShare);
  const sat = Math.round(40 + 50 * (c.resident / c.count));
  return `hsl(${hue}, ${sat}%, ${lightness}%)`;
}

export function renderHeatmap(map: PageMap, opts: Partial<HeatmapOptions> = {}): string {
  const { columns, cells: maxCells, cellPx } = { columns: 64, cells: 4096, cellPx: 10, ...opts };
  const cells = foldCells(map, maxCells);
  const maxFaults = cells.reduce((m, c) => Math.max(m, c.faults), 0);
  const rows = Math.ceil(cells.length / columns);
  const header = 48;
  const legend = 40;
  const width = Math.max(columns * cellPx, 420);
  const height = header + rows * cellPx + legend;
  const resident = cells.reduce((s, c) => s + c.resident, 0);
  const dirty = cells.reduce((s, c) => s + c.dirty, 0);
  const per = cells[0]?.count ?? 1;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`);
  out.push(`<title>farmem region ${escapeXml(map.regionName)}</title>`);
  out.push(`<text x="0" y="16" font-size="14" font-weight="bold">region ${escapeXml(map.regionName)} — ${humanBytes(map.pages * map.pageSize)}, ${map.pages} pages of ${humanBytes(map.pageSize)}</text>`);
  out.push(`<text x="0" y="34">resident ${resident} pages (${humanBytes(resident * map.pageSize)}), dirty ${dirty}; one cell = ${per} page${per === 1 ? '' : 's'}; darker = more faults (max ${maxFaults} in a cell)</text>`);
  cells.forEach((c, i) => {
    const x = (i % columns) * cellPx;
    const y = header + Math.floor(i / columns) * cellPx;
    const tip = `pages ${c.first}–${c.first + c.count - 1}: ${c.resident} resident, ${c.dirty} dirty, ${c.faults} faults`;
    out.push(`<rect x="${x}" y="${y}" width="${cellPx - 1}" height="${cellPx - 1}" fill="${colour(c, maxFaults)}"><title>${tip}</title></rect>`);
  });
  const ly = header + rows * cellPx + 14;
  const swatches: [string, string][] = [
    ['#e6e6e6', 'not resident'],
    ['hsl(210, 90%, 60%)', 'resident, clean'],
    ['hsl(105, 90%, 60%)', 'half dirty'],
    ['hsl(0, 90%, 60%)', 'all dirty'],
  ];
  swatches.forEach(([fill, label], i) => {
    out.push(`<rect x="${i * 105}" y="${ly}" width="10" height="10" fill="${fill}"/><text x="${i * 105 + 14}" y="${ly + 9}">${label}</text>`);
  });
  out.push('</svg>');
  return out.join('\n') + '\n';
}
