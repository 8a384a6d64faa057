// Byte sizes as people write them: `1GiB`, `256MiB`, `4KiB`, `4096`. One parser for the config
// file, the daemon's flags and the CLI, so `--size 1GiB` means the same everywhere.
//
// Binary units only (KiB = 1024). `1GB` is refused rather than guessed: for page-aligned memory a
// decimal unit is almost always a mistake.

const UNITS: Record<string, number> = {
  '': 1,
  B: 1,
  KiB: 1024,
  MiB: 1024 ** 2,
  GiB: 1024 ** 3,
  TiB: 1024 ** 4,
};

const SIZE_RE = /^(\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB|TiB)?$/;

/** What a size looks like, for messages: `Expected <SIZE_EXPECTED> for size but received "x"`. */
export const SIZE_EXPECTED = 'a size in bytes (e.g. 4096, 4KiB, 256MiB, 1GiB)';

/** Parses a size, or returns null when `text` is not one (callers build the message with their own name). */
export function tryParseSize(text: string | number): number | null {
  if (typeof text === 'number') return Number.isSafeInteger(text) && text >= 0 ? text : null;
  const m = SIZE_RE.exec(text.trim());
  if (m === null) return null;
  const bytes = Number(m[1]) * UNITS[m[2] ?? '']!;
  // 1.5KiB is fine (1536); 1.5 bytes or 0.1KiB is not a whole number of bytes.
  if (!Number.isSafeInteger(bytes)) return null;
  return bytes;
}

/** Parses a size; throws `Expected a size in bytes (...) for <name> but received "<text>"`. */
export function parseSize(text: string | number, name: string): number {
  const n = tryParseSize(text);
  if (n === null) throw new TypeError(`Expected ${SIZE_EXPECTED} for ${name} but received ${JSON.stringify(text)}`);
  return n;
}

/** The shortest exact binary form: 1073741824 → "1GiB", 1536 → "1536B"... 6144 → "6KiB". */
export function formatSize(bytes: number): string {
  for (const unit of ['TiB', 'GiB', 'MiB', 'KiB'] as const) {
    const u = UNITS[unit]!;
    if (bytes >= u && bytes % u === 0) return `${bytes / u}${unit}`;
  }
  return `${bytes}B`;
}

/** A rounded human form for tables: 1.5 GiB, 12.0 MiB, 512 B. */
export function humanSize(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let i = -1;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}
