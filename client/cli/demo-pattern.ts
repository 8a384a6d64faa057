// The demo's page contents and page order: cheap to compute (a Uint32 per word), different on
// every page and word, so a page installed from the wrong place or at the wrong offset is caught.

/** Word i of page p for seed s. */
export function demoWord(seed: number, page: number, i: number): number {
  return (Math.imul(page + 1, 0x9e3779b1) ^ Math.imul(i + 1, 0x85ebca6b) ^ Math.imul(seed + 1, 0xc2b2ae35)) >>> 0;
}

/** Fills a page (its Uint32 view) with the pattern. */
export function fillPage(words: Uint32Array, seed: number, page: number): void {
  for (let i = 0; i < words.length; i++) words[i] = demoWord(seed, page, i);
}

/** true when the page holds the pattern. */
export function checkPage(words: Uint32Array, seed: number, page: number): boolean {
  for (let i = 0; i < words.length; i++) if (words[i] !== demoWord(seed, page, i)) return false;
  return true;
}

export type DemoOrder = { kind: 'seq' } | { kind: 'random'; seed: number };

/** Parses --pattern: seq | random | random:SEED; null when invalid. */
export function parseOrder(v: string): DemoOrder | null {
  if (v === 'seq') return { kind: 'seq' };
  if (v === 'random') return { kind: 'random', seed: 1 };
  const m = /^random:(\d{1,9})$/.exec(v);
  return m ? { kind: 'random', seed: Number(m[1]) } : null;
}

/** The pages 0..n-1 in the order's sequence (random: a seeded Fisher-Yates shuffle). */
export function pageOrder(order: DemoOrder, n: number): Uint32Array {
  const out = new Uint32Array(n);
  for (let i = 0; i < n; i++) out[i] = i;
  if (order.kind === 'seq') return out;
  let x = order.seed >>> 0 || 1;
  for (let i = n - 1; i > 0; i--) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    const j = (x >>> 0) % (i + 1);
    const t = out[i]!;
    out[i] = out[j]!;
    out[j] = t;
  }
  return out;
}
