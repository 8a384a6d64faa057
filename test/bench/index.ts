// `npm run bench -- [--only NAME[,NAME]] [--json]`: runs every case in test/bench/cases/, each
// against its own baseline measured in the same run. Prints a table, or one JSON document
// { "cases": [ { name, params, metrics, baseline, ratio } ] } with --json (logs go to stderr).
import fs from 'node:fs';
import path from 'node:path';
import { tuneMalloc } from '../../daemon/native';
import type { BenchCase, BenchRow } from './harness';

function parseArgs(argv: string[]): { only: string[]; json: boolean } {
  const only: string[] = [];
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--json') json = true;
    else if (a === '--only') {
      const v = argv[++i];
      if (v === undefined) throw new Error('Expected a case name for --only but received nothing');
      only.push(...v.split(',').filter(Boolean));
    } else if (a.startsWith('--only=')) only.push(...a.slice(7).split(',').filter(Boolean));
    else throw new Error(`Expected --only NAME or --json but received ${JSON.stringify(a)}`);
  }
  return { only, json };
}

function loadCases(): BenchCase[] {
  const dir = path.join(__dirname, 'cases');
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.js')).sort() : [];
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return files.flatMap((f) => (require(path.join(dir, f)) as { cases?: BenchCase[] }).cases ?? []);
}

function fmt(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  return a >= 100 ? v.toFixed(0) : a >= 1 ? v.toFixed(2) : v.toFixed(3);
}

function printTable(rows: BenchRow[], skipped: { name: string; reason: string }[]): void {
  for (const r of rows) {
    const params = Object.entries(r.params).map(([k, v]) => `${k}=${v}`).join(' ');
    console.log(`\n${r.name}${params ? `  (${params})` : ''}`);
    const keys = [...new Set([...Object.keys(r.metrics), ...Object.keys(r.baseline)])];
    const w = Math.max(8, ...keys.map((k) => k.length));
    console.log(`  ${'metric'.padEnd(w)}  ${'value'.padStart(12)}  ${'baseline'.padStart(12)}  ${'ratio'.padStart(8)}`);
    for (const k of keys) {
      const m = r.metrics[k], b = r.baseline[k], q = r.ratio[k];
      console.log(`  ${k.padEnd(w)}  ${(m === undefined ? '-' : fmt(m)).padStart(12)}  ${(b === undefined ? '-' : fmt(b)).padStart(12)}  ${(q === undefined ? '-' : fmt(q)).padStart(8)}`);
    }
  }
  for (const s of skipped) console.log(`\n${s.name}: skipped — ${s.reason}`);
}

async function main(): Promise<void> {
  const { only, json } = parseArgs(process.argv.slice(2));
  // The baselines read pages in this process (the raw batched stream, raw TCP): with the malloc
  // thresholds farmemd and the memory server run with, or a baseline would pay mmaps and page faults
  // per answer that the daemon it is compared with does not.
  const malloc = tuneMalloc();
  if (!malloc.tuned) process.stderr.write(`bench: malloc thresholds left at their defaults (${malloc.why})\n`);
  const all = loadCases();
  const chosen = only.length === 0 ? all : all.filter((c) => only.some((o) => c.name === o || c.name.startsWith(o)));
  if (chosen.length === 0) {
    throw new Error(`Expected a case name for --only (one of: ${all.map((c) => c.name).join(', ') || 'none'}) but received ${only.join(',')}`);
  }
  const scale = Number(process.env.FARMEM_BENCH_SCALE ?? '1');
  const ctx = { scale: Number.isFinite(scale) && scale > 0 ? scale : 1, log: (m: string) => process.stderr.write(`bench: ${m}\n`) };
  const rows: BenchRow[] = [];
  const skipped: { name: string; reason: string }[] = [];
  for (const c of chosen) {
    const reason = c.unavailable();
    if (reason !== null) {
      skipped.push({ name: c.name, reason });
      continue;
    }
    ctx.log(`running ${c.name}: ${c.description}`);
    rows.push(...(await c.run(ctx)));
  }
  if (json) process.stdout.write(JSON.stringify({ cases: rows, skipped }, null, 2) + '\n');
  else printTable(rows, skipped);
}

main().catch((e: unknown) => {
  console.error(`bench: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
