// Durations in the config and flags: `30s`, `500ms`, `2m`, or a plain number of seconds.

export const DURATION_EXPECTED = 'a duration (e.g. 30s, 500ms, 2m, or seconds as a number)';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Milliseconds, or null when `text` is not a duration. */
export function tryParseDurationMs(text: string | number): number | null {
  if (typeof text === 'number') return Number.isFinite(text) && text >= 0 ? Math.round(text * 1000) : null;
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(text.trim());
  if (m === null) return null;
  return Math.round(Number(m[1]) * UNITS[m[2] ?? 's']!);
}
