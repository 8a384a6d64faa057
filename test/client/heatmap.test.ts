import { test } from 'node:test';
import assert from 'node:assert/strict';
import { foldCells, renderHeatmap, type PageMap } from '../../client/heatmap';

function map(pages: number): PageMap {
  return { regionName: 'db', pageSize: 4096, pages, state: new Uint8Array(pages), faults: new Uint32Array(pages) };
}

test('heatmap: cells fold runs of pages and count resident, dirty and faults', () => {
  const m = map(10);
  m.state.set([1, 3, 0, 0, 1, 0, 0, 0, 3, 3]);
  m.faults.set([1, 2, 0, 0, 5, 0, 0, 0, 1, 1]);
  const cells = foldCells(m, 4); // 3 pages a cell: 0-2, 3-5, 6-8, 9
  assert.deepEqual(
    cells.map((c) => [c.first, c.count, c.resident, c.dirty, c.faults]),
    [[0, 3, 2, 1, 3], [3, 3, 1, 0, 5], [6, 3, 1, 1, 1], [9, 1, 1, 1, 1]],
  );
});

test('heatmap: the SVG is well formed, titled, and colours cells by state', () => {
  const m = map(128);
  for (let p = 0; p < 32; p++) m.state[p] = 1;
  for (let p = 32; p < 48; p++) m.state[p] = 3;
  m.faults[0] = 100;
  const svg = renderHeatmap(m, { columns: 16, cells: 128 });
  assert.match(svg, /^<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
  assert.match(svg, /<\/svg>\n$/);
  assert.match(svg, /region db — 512 KiB, 128 pages of 4 KiB/);
  assert.match(svg, /resident 48 pages \(192 KiB\), dirty 16/);
  assert.equal((svg.match(/<rect [^>]*><title>pages /g) ?? []).length, 128);
  assert.match(svg, /<title>pages 0–0: 1 resident, 0 dirty, 100 faults<\/title>/);
  // Not resident → grey; dirty → red hue; clean resident → blue hue.
  assert.match(svg, /fill="#e6e6e6"><title>pages 100–100/);
  assert.match(svg, /fill="hsl\(0, 90%, [0-9]+%\)"><title>pages 40–40/);
  assert.match(svg, /fill="hsl\(210, 90%, [0-9]+%\)"><title>pages 5–5/);
});

test('heatmap: names are escaped and a wrong page map is refused', () => {
  const m = map(4);
  m.regionName = 'a<b>&"c';
  assert.match(renderHeatmap(m), /region a&lt;b&gt;&amp;&quot;c/);
  const bad = { ...map(4), faults: new Uint32Array(3) };
  assert.throws(() => renderHeatmap(bad), { message: 'Expected state and faults of 4 entries for the page map but received 4 and 3' });
});
