// Best-effort line numbers for config errors: a small scan of the TOML text that records on which
// line each key (and each table header) was written, under the same path spelling as the errors
// (`memory_servers[1].address`). Multi-line values and inline tables are not followed; an error on
// a key the scan did not see falls back to its nearest recorded parent.

export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out;
}

function stripComment(line: string): string {
  let quote: string | null = null;
  for (let i = 0; i < line.length; i++) {
    const c = line[i]!;
    if (quote !== null) {
      if (c === '\\' && quote === '"') i++;
      else if (c === quote) quote = null;
    } else if (c === '"' || c === "'") quote = c;
    else if (c === '#') return line.slice(0, i);
  }
  return line;
}

const unquote = (k: string): string => k.trim().replace(/^"(.*)"$/, '$1').replace(/^'(.*)'$/, '$1');
const splitKey = (k: string): string[] => k.split('.').map(unquote);

/** path → 1-based line number. */
export function keyLines(text: string): Map<string, number> {
  const lines = new Map<string, number>();
  const arrayCounts = new Map<string, number>();
  let table = '';
  // Resolve `a.b` against arrays of tables seen so far: `memory_servers.tls` → `memory_servers[0].tls`.
  const resolve = (parts: string[]): string => {
    let out = '';
    for (const p of parts) {
      out = out === '' ? p : `${out}.${p}`;
      const n = arrayCounts.get(out);
      if (n !== undefined) out += `[${n - 1}]`;
    }
    return out;
  };
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = stripComment(raw).trim();
    let m: RegExpExecArray | null;
    if ((m = /^\[\[\s*(.+?)\s*\]\]$/.exec(line))) {
      const parts = splitKey(m[1]!);
      const parent = resolve(parts.slice(0, -1));
      const base = parent === '' ? parts[parts.length - 1]! : `${parent}.${parts[parts.length - 1]}`;
      const n = (arrayCounts.get(base) ?? 0) + 1;
      arrayCounts.set(base, n);
      table = `${base}[${n - 1}]`;
      if (!lines.has(base)) lines.set(base, i + 1);
      lines.set(table, i + 1);
    } else if ((m = /^\[\s*(.+?)\s*\]$/.exec(line))) {
      const parts = splitKey(m[1]!);
      table = resolve(parts);
      lines.set(table, i + 1);
      // `[a.b]` also defines `a` (implicitly): errors about `a` point here when nothing else does.
      for (let n = 1; n < parts.length; n++) {
        const parent = resolve(parts.slice(0, n));
        if (!lines.has(parent)) lines.set(parent, i + 1);
      }
    } else if ((m = /^((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=/.exec(line))) {
      const key = splitKey(m[1]!).join('.');
      const full = table === '' ? key : `${table}.${key}`;
      if (!lines.has(full)) lines.set(full, i + 1);
    }
  });
  return lines;
}

/** The line of `path` or of its nearest recorded parent, or null. */
export function lineOf(lines: Map<string, number>, path: ReadonlyArray<PropertyKey>): number | null {
  for (let n = path.length; n > 0; n--) {
    const hit = lines.get(formatPath(path.slice(0, n)));
    if (hit !== undefined) return hit;
  }
  return null;
}
