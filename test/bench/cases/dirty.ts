// Cost of each dirty-tracking mode per written page (issue 5), measured by test/bench/dirty_modes.c
// in two processes like farmem: sync WP (a fault round trip per first write, handler on the same or
// the other vCPU) against WP_ASYNC + PAGEMAP_SCAN (no fault; one scan finds and re-protects). The
// baseline is the same stores again to pages that are already writable, in the same run.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { ratios, type BenchCase, type BenchRow } from '../harness';
import { rootUnavailable } from '../../helpers/env';

const DIR = path.join(__dirname, '..', '..', '..', '..', 'test', 'bench');

interface DirtyRun {
  mode: 'sync' | 'async';
  placement: 'same-cpu' | 'other-cpu';
  mib: number;
  fraction: number;
  pages: number;
  reps: number;
  writeNsPerPage: number;
  baselineNsPerPage: number;
  rearmNs: number;
  rearmNsPerPage: number;
  cleanScanNs: number;
  totalNsPerPage: number;
  mismatches: number;
  foundAfterRearm: number;
}

export const cases: BenchCase[] = [
  {
    name: 'dirty',
    description: 'dirty tracking per written page: sync WP faults vs WP_ASYNC + PAGEMAP_SCAN, 64 MiB, 1/10/100% written',
    unavailable: () => rootUnavailable(),
    async run(ctx): Promise<BenchRow[]> {
      execFileSync('make', ['-s', '-C', DIR], { stdio: ['ignore', 'inherit', 'inherit'] });
      const reps = Math.max(1, Math.min(16, Math.round(3 * ctx.scale)));
      const out = execFileSync(path.join(DIR, 'bin', 'dirty_modes'), ['--mib', '64', '--reps', String(reps)], { encoding: 'utf8', timeout: 50_000 });
      const runs = out.trim().split('\n').map((l) => JSON.parse(l) as DirtyRun);
      return runs.map((r) => {
        // A page written but not tracked would be evicted without write-back: lost data.
        if (r.mismatches !== 0 || r.foundAfterRearm !== 0) {
          throw new Error(`dirty ${r.mode} ${r.placement} ${r.fraction}: tracking missed or invented ${r.mismatches} page(s), ${r.foundAfterRearm} after re-arm`);
        }
        const metrics = {
          nsPerWrittenPage: r.totalNsPerPage,
          writeNsPerPage: r.writeNsPerPage,
          rearmNsPerPage: r.rearmNsPerPage,
          rearmUs: r.rearmNs / 1000,
          ...(r.mode === 'async' ? { cleanScanUs: r.cleanScanNs / 1000 } : {}),
        };
        const baseline = { nsPerWrittenPage: r.baselineNsPerPage, writeNsPerPage: r.baselineNsPerPage };
        return {
          name: `dirty/${r.mode}`,
          params: { placement: r.placement, mib: r.mib, written: `${Math.round(r.fraction * 100)}%`, pages: r.pages, reps: r.reps },
          metrics,
          baseline,
          ratio: ratios(metrics, baseline),
        };
      });
    },
  },
];
