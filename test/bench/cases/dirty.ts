// Cost of each dirty-tracking mode per written page (issue 5), measured by test/bench/dirty_modes.c
// in two processes like farmem: sync WP (a fault round trip per first write, handler on the same or
// the other vCPU) against WP_ASYNC + PAGEMAP_SCAN (no fault; one scan finds and re-protects). The
// baseline is the same stores again to pages that are already writable, in the same run.
//
// dirty-e2e: the same choice end to end, through farmemd (region --dirty-tracking wp | async) and a
// memory server on loopback: fmattach reads N pages (installed write-protected), then each round
// writes all N again and `region sync` writes them back — in wp mode every first write is a WP
// fault and sync protects each page again; in async mode writes do not fault and sync finds them
// with one PAGEMAP_SCAN. Reported: write pass, sync, and their sum, async as a ratio to wp.
import { execFileSync, spawn } from 'node:child_process';
import path from 'node:path';
import readline from 'node:readline';
import type { TestContext } from 'node:test';
import { ControlClient } from '../../../client/control';
import { ratios, type BenchCase, type BenchRow, type Metrics } from '../harness';
import { asyncDirtyTrackingUnavailable, rootUnavailable } from '../../helpers/env';
import { FMATTACH, startDaemon, startMemserver } from '../../paging/rig';

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
  {
    name: 'dirty-e2e',
    description: 'writes of N installed pages then region sync, through farmemd: wp vs async dirty tracking (async/wp)',
    unavailable: () => asyncDirtyTrackingUnavailable(),
    async run(ctx): Promise<BenchRow[]> {
      const cleanups: Array<() => unknown> = [];
      const t = { after: (f: () => unknown) => cleanups.push(f) } as unknown as TestContext;
      try {
        const ms = await startMemserver(t, { capacity: '1GiB' });
        const d = await startDaemon(t, [ms.address]);
        const client = await ControlClient.connect(d.socket);
        cleanups.push(() => client.close());
        const pages = Math.max(1024, Math.round(8192 * ctx.scale));
        const rounds = Math.max(2, Math.min(8, Math.round(4 * ctx.scale)));
        const res: Record<string, Metrics> = {};
        // Alternate the modes so drift on a shared machine hits both alike.
        const samples: Record<string, { writeMs: number[]; syncMs: number[] }> = { wp: { writeMs: [], syncMs: [] }, async: { writeMs: [], syncMs: [] } };
        for (const mode of ['wp', 'async'] as const) {
          await client.createRegion({ name: `e2e-${mode}`, sizeBytes: pages * 4096, prefetch: 'none', dirtyTracking: mode });
        }
        const runs = {
          wp: await writer(d.attachSocket, 'e2e-wp', pages, rounds),
          async: await writer(d.attachSocket, 'e2e-async', pages, rounds),
        };
        for (let i = 0; i < rounds; i++) {
          for (const mode of ['wp', 'async'] as const) {
            const w = await runs[mode].next();
            const t0 = process.hrtime.bigint();
            const done = await client.syncRegion(`e2e-${mode}`);
            const syncMs = Number(process.hrtime.bigint() - t0) / 1e6;
            if (Number(done.pagesTotal) !== pages) throw new Error(`dirty-e2e ${mode}: sync found ${done.pagesTotal} of ${pages} written pages`);
            samples[mode]!.writeMs.push(w);
            samples[mode]!.syncMs.push(syncMs);
          }
        }
        for (const mode of ['wp', 'async'] as const) {
          await runs[mode].finish();
          const s = (await client.showRegion(`e2e-${mode}`)).stats!;
          const med = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
          const writeMs = med(samples[mode]!.writeMs);
          const syncMs = med(samples[mode]!.syncMs);
          res[mode] = { writeMs, syncMs, totalMs: writeMs + syncMs, usPerPage: ((writeMs + syncMs) * 1000) / pages, wpFaults: Number(s.faults?.writeProtect ?? 0) };
          ctx.log(`dirty-e2e ${mode}: write ${writeMs.toFixed(1)} ms + sync ${syncMs.toFixed(1)} ms for ${pages} pages (median of ${rounds}), ${res[mode]!.wpFaults} WP faults`);
        }
        return (['wp', 'async'] as const).map((mode) => ({
          name: `dirty-e2e/${mode}`,
          params: { pages, rounds, baseline: 'wp' },
          metrics: res[mode]!,
          baseline: res.wp!,
          ratio: ratios(res[mode]!, res.wp!),
        }));
      } finally {
        for (const f of cleanups.reverse()) await f();
      }
    },
  },
];

/**
 * fmattach that reads every page once, then writes them all once per round; next() lets one write
 * pass run and resolves with its time (ms) once it is done (fmattach then waits, attached).
 */
async function writer(sock: string, region: string, pages: number, rounds: number): Promise<{ next(): Promise<number>; finish(): Promise<void> }> {
  const ops = ['read', ...Array.from({ length: rounds }, () => 'write')].join(',');
  const child = spawn(FMATTACH, ['--socket', sock, '--region', region, '--pages', String(pages), '--op', ops, '--seed', '9', '--pattern', 'random:1', '--pause', '--no-checksum'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (b) => (err += b));
  const lines = readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  const nextLine = async (): Promise<Record<string, unknown>> => {
    const r = await lines.next();
    if (r.done === true) throw new Error(`fmattach ${region} exited: ${err}`);
    return JSON.parse(r.value) as Record<string, unknown>;
  };
  const exited = new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  // The read pass installs every page (write-protected, clean); not timed.
  await nextLine(); // ready read
  child.stdin!.write('go\n');
  await nextLine(); // the read op
  return {
    async next() {
      const ready = await nextLine();
      if (ready.ready !== 'write') throw new Error(`fmattach ${region}: expected to be ready to write, got ${JSON.stringify(ready)}`);
      child.stdin!.write('go\n');
      const op = await nextLine();
      if (op.op !== 'write') throw new Error(`fmattach ${region}: ${JSON.stringify(op)}`);
      return Number(op.ns) / 1e6;
    },
    async finish() {
      child.stdin!.end();
      if ((await exited) !== 0) throw new Error(`fmattach ${region} failed: ${err}`);
    },
  };
}
