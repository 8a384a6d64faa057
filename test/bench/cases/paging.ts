// Paging under a resident budget (issue 5): completion time of sequential, uniform-random and
// zipf(0.99) passes over a region with 25%, 50% and 100% of it allowed local, as a ratio to the same
// passes on all-local memory (fmattach --local: plain anonymous memory, no uffd) in the same run —
// the table Fastswap/Infiniswap/Hydra report. Also write-back throughput (region sync of a fully
// dirty region). Real farmemd (1 MiB page cache), a real memory server on loopback, real faults.
import { execFile } from 'node:child_process';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';
import { ControlClient } from '../../../client/control';
import { userfaultfdUnavailable } from '../../helpers/env';
import { FMATTACH, startDaemon, startMemserver } from '../../paging/rig';
import { ratios, type BenchCase, type BenchRow } from '../harness';

const run = promisify(execFile);

interface OpLine {
  op: string;
  ns: number;
  mismatches: number;
}

/** fmattach's ops, each pass's time in ms. The first write only populates (not timed). */
async function passes(args: string[]): Promise<{ writeMs: number; readMs: number }> {
  // --reshuffle: each pass draws a new order (a repeated permutation would be a cyclic scan).
  const { stdout } = await run(FMATTACH, [...args, '--op', 'write,write,read', '--seed', '3', '--reshuffle'], { timeout: 120_000 });
  const lines = stdout.trim().split('\n').map((l) => JSON.parse(l) as OpLine);
  if (lines.length !== 3 || lines.some((l) => l.mismatches !== 0)) throw new Error(`fmattach ${args.join(' ')}: ${stdout}`);
  return { writeMs: lines[1]!.ns / 1e6, readMs: lines[2]!.ns / 1e6 };
}

export const cases: BenchCase[] = [
  {
    name: 'paging',
    description: 'seq / uniform random / zipf(0.99) write and read passes at 25/50/100% local memory vs all-local; write-back MB/s',
    unavailable: () => userfaultfdUnavailable(),
    async run(ctx): Promise<BenchRow[]> {
      const cleanups: Array<() => unknown> = [];
      const t = { after: (f: () => unknown) => cleanups.push(f) } as unknown as TestContext;
      const rows: BenchRow[] = [];
      try {
        const ms = await startMemserver(t, { capacity: '1GiB' });
        const d = await startDaemon(t, [ms.address]);
        const client = await ControlClient.connect(d.socket);
        cleanups.push(() => client.close());
        const pages = Math.max(512, Math.round(4096 * ctx.scale));
        const bytes = pages * 4096;
        let n = 0;
        for (const pattern of ['seq', 'random:1', 'zipf:1']) {
          for (const pct of [25, 50, 100]) {
            // All-local is cheap and noisy (a shared 2-vCPU machine): the best of three, right
            // before the farmem run it is compared with.
            const locals = [];
            for (let i = 0; i < 3; i++) locals.push(await passes(['--local', '--region', 'local', '--pages', String(pages), '--pattern', pattern]));
            const local = { writeMs: Math.min(...locals.map((l) => l.writeMs)), readMs: Math.min(...locals.map((l) => l.readMs)) };
            const name = `p${n++}`;
            await client.createRegion({ name, sizeBytes: bytes, residentBytes: (bytes * pct) / 100 });
            const remote = await passes(['--socket', d.attachSocket, '--region', name, '--pages', String(pages), '--pattern', pattern]);
            const s = (await client.showRegion(name)).stats!;
            ctx.log(`paging ${pattern} ${pct}% local: write ${remote.writeMs.toFixed(0)} ms, read ${remote.readMs.toFixed(0)} ms (all-local ${local.writeMs.toFixed(1)} / ${local.readMs.toFixed(1)} ms)`);
            const metrics = { writeMs: remote.writeMs, readMs: remote.readMs, evictedPages: Number(s.evictedPages), writtenBackPages: Number(s.writtenBackPages), remoteFaults: Number(s.faults?.remote ?? 0) };
            rows.push({ name: 'paging', params: { pattern: pattern.replace(/:.*/, ''), localPct: pct, pages }, metrics, baseline: local, ratio: ratios(metrics, local) });
            await client.deleteRegion(name);
          }
        }
        // Write-back: a fully dirty region (budget = size, so nothing was evicted yet), synced.
        await client.createRegion({ name: 'wb', sizeBytes: bytes, residentBytes: bytes, prefetch: 'none' });
        await run(FMATTACH, ['--socket', d.attachSocket, '--region', 'wb', '--pages', String(pages), '--op', 'write', '--seed', '5'], { timeout: 120_000 });
        const t0 = process.hrtime.bigint();
        const done = await client.syncRegion('wb');
        const secs = Number(process.hrtime.bigint() - t0) / 1e9;
        const mb = Number(done.bytesDone) / 1e6;
        ctx.log(`paging write-back: ${mb.toFixed(1)} MB in ${(secs * 1000).toFixed(0)} ms`);
        rows.push({ name: 'paging-writeback', params: { pages }, metrics: { writeBackMBps: mb / secs, syncMs: secs * 1000 }, baseline: {}, ratio: {} });
        return rows;
      } finally {
        for (const f of cleanups.reverse()) await f();
      }
    },
  },
];
