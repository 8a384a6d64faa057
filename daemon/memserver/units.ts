// Byte sizes for humans: "8GiB", "512 MiB", "4096" in, "8 GiB" out.

const UNITS: Record<string, number> = {
  '': 1, b: 1, k: 1024, kb: 1000, kib: 1024, m: 1024 ** 2, mb: 1000 ** 2, mib: 1024 ** 2,
  g: 1024 ** 3, gb: 1000 ** 3, gib: 1024 ** 3, t: 1024 ** 4, tb: 1000 ** 4, tib: 1024 ** 4,
};

/** Parses a size; returns null when it is not one. */
export function parseSize(text: string | number): number | null {
  if (typeof text === 'number') return Number.isSafeInteger(text) && text >= 0 ? text : null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  if (!m) return null;
  const unit = UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return null;
  const v = Math.floor(Number(m[1]) * unit);
  return Number.isSafeInteger(v) ? v : null;
}

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1 && v % 1024 === 0) {
    v /= 1024;
    i++;
  }
  if (i === 0 && n >= 1024) {
    // not a round number: show two decimals in the largest unit
    let j = 0;
    let w = n;
    while (w >= 1024 && j < units.length - 1) {
      w /= 1024;
      j++;
    }
    return `${w.toFixed(2)} ${units[j]}`;
  }
  return `${v} ${units[i]}`;
}
