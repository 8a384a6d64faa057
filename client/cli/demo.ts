// `farmem demo`: proves the whole path on this host. It makes sure a region exists (creating "demo"
// if missing), attaches it with the Node API inside a worker_thread (the worker blocks in page
// faults; the main thread draws progress), writes a pattern over its pages, has farmemd write them
// back and drop them, reads them back (now from the memory servers) and checks every byte. The
// summary comes from the daemon's own counters (ShowRegion before / between / after).
import path from 'node:path';
import { Worker } from 'node:worker_threads';

import { ControlError, type ControlClient } from '../control';
import { CliError } from './errors';
import type { DemoOrder } from './demo-pattern';
import type { DemoFromWorker, DemoToWorker, DemoWorkerData } from './demo-worker';
import { fields, pct, regionJson, size, statsJson } from './format';

export interface DemoOptions {
  region: string;
  /** Size and resident budget when the region must be created. */
  sizeBytes: number;
  residentBytes: number;
  /** Pages to touch (null: all of the region). */
  pages: number | null;
  seed: number;
  order: DemoOrder;
  orderLabel: string;
  /** The attach socket (null: the one farmemd reports). */
  attachSocket: string | null;
  json: boolean;
}

export interface DemoIo {
  /** Progress output is redrawn in place (a terminal) instead of plain lines. */
  tty: boolean;
  out: (s: string) => void;
  err: (s: string) => void;
}

type PagerStats = Extract<ReturnType<typeof statsJson>, { pager: true }>;
type Phase = Extract<DemoFromWorker, { kind: 'phase' }>;

async function stats(c: ControlClient, name: string): Promise<PagerStats> {
  const s = statsJson((await c.showRegion(name)).stats);
  if (!s.pager) throw new CliError(`demo: region "${name}" has no live numbers (${s.detail || 'farmemd runs without a pager'}): farmemd cannot serve its pages`);
  return s;
}

/** Stats once they stop moving: farmemd hands it cache-hit faults in small held-back batches. */
async function settled(c: ControlClient, name: string): Promise<PagerStats> {
  let prev = await stats(c, name);
  for (let i = 0; i < 40; i++) {
    await new Promise((r) => setTimeout(r, 25));
    const s = await stats(c, name);
    if (JSON.stringify(s.faults) === JSON.stringify(prev.faults)) return s;
    prev = s;
  }
  return prev;
}

function faultDelta(a: PagerStats, b: PagerStats) {
  return {
    cacheHit: b.faults.cacheHit - a.faults.cacheHit,
    remote: b.faults.remote - a.faults.remote,
    zero: b.faults.zero - a.faults.zero,
    writeProtect: b.faults.writeProtect - a.faults.writeProtect,
  };
}

function progress(io: DemoIo): (phase: string, done: number, total: number) => void {
  let lastQuarter = -1;
  let lastPhase = '';
  return (phase, done, total) => {
    const frac = total > 0 ? done / total : 1;
    if (io.tty) {
      const w = 30;
      const bar = '#'.repeat(Math.round(frac * w)).padEnd(w, '.');
      io.err(`\r${phase.padEnd(7)} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${done}/${total} pages${done === total ? '\n' : ''}`);
      return;
    }
    if (phase !== lastPhase) {
      lastPhase = phase;
      lastQuarter = -1;
    }
    const q = Math.floor(frac * 4);
    if (q > lastQuarter) {
      lastQuarter = q;
      io.err(`${phase}: ${done}/${total} pages (${q * 25}%)\n`);
    }
  };
}

export async function runDemo(c: ControlClient, o: DemoOptions, io: DemoIo): Promise<number> {
  const say = (s: string) => io.err(`${s}\n`);
  let socket = o.attachSocket;
  if (socket === null) {
    socket = (await c.daemonStats()).attachSocket ?? '';
    if (socket === '') throw new CliError('demo: farmemd reports no attach socket; give one with --attach-socket');
  }

  let region;
  let created = false;
  try {
    region = regionJson((await c.showRegion(o.region)).region!);
  } catch (e) {
    if (!(e instanceof ControlError) || e.code !== 'NOT_FOUND') throw e;
    region = regionJson(await c.createRegion({ name: o.region, sizeBytes: o.sizeBytes, residentBytes: o.residentBytes, prefetch: '', servers: [] }));
    created = true;
  }
  say(
    created
      ? `region "${region.name}" did not exist: created it (${size(region.sizeBytes)}, resident budget ${region.residentBytes === 0 ? 'unlimited' : size(region.residentBytes)})`
      : `using region "${region.name}" (${size(region.sizeBytes)}, resident budget ${region.residentBytes === 0 ? 'unlimited' : size(region.residentBytes)})`,
  );
  const regionPages = region.sizeBytes / region.pageSize;
  const pages = o.pages ?? regionPages;
  if (pages > regionPages) throw new CliError(`Expected at most ${regionPages} pages (the size of region "${region.name}") for --pages but received ${pages}`, 2);

  const before = await stats(c, region.name);
  const data: DemoWorkerData = { socket, region: region.name, pages, seed: o.seed, order: o.order };
  const worker = new Worker(path.join(__dirname, 'demo-worker.js'), { workerData: data, stderr: true });
  // client/attach.ts closes its fds with fs.closeSync, and in a worker Node warns about every fd fs
  // did not open itself ("closed but not opened in unmanaged mode"): those fds are the attachment's
  // own, so that warning (and its hint line) is dropped; anything else passes through.
  let errBuf = '';
  worker.stderr.setEncoding('utf8').on('data', (d: string) => {
    errBuf += d;
    let i;
    while ((i = errBuf.indexOf('\n')) >= 0) {
      const line = errBuf.slice(0, i + 1);
      errBuf = errBuf.slice(i + 1);
      if (!/closed but not opened in unmanaged mode|^\(Use `node --trace-warnings/.test(line)) io.err(line);
    }
  });
  const draw = progress(io);
  const phases: Partial<Record<'write' | 'verify', Phase>> = {};
  let mid: PagerStats | null = null;
  let after: PagerStats | null = null;

  await new Promise<void>((resolve, reject) => {
    const send = (m: DemoToWorker) => worker.postMessage(m);
    worker.on('error', (e) => reject(new CliError(`demo: the workload thread failed: ${e.message}`)));
    worker.on('exit', () => (phases.verify && after ? resolve() : reject(new CliError('demo: the workload thread ended early'))));
    worker.on('message', (m: DemoFromWorker) => {
      switch (m.kind) {
        case 'attached':
          say(`attached "${region.name}" through ${socket}; ${pages} pages of ${size(region.pageSize)}, ${o.orderLabel} order, seed ${o.seed}`);
          send({ phase: 'write' });
          return;
        case 'progress':
          draw(m.phase, m.done, m.total);
          return;
        case 'error':
          reject(new CliError(`demo: ${m.message}`));
          return;
        case 'phase':
          phases[m.phase] = m;
          if (m.phase === 'write') {
            // Write back and drop every page, so the read-back really comes from the memory servers.
            say('writing the dirty pages back and dropping them from this host');
            void (async () => {
              await c.syncRegion(region.name);
              await c.evictRegion(region.name);
              mid = await settled(c, region.name);
              send({ phase: 'verify' });
            })().catch(reject);
          } else {
            void (async () => {
              after = await settled(c, region.name); // before detaching: late events of a gone process are not counted
              send({ phase: 'done' });
            })().catch(reject);
          }
          return;
      }
    });
  }).finally(() => void worker.terminate());

  const w = phases.write!;
  const v = phases.verify!;
  const m = mid!;
  const a = after!;
  const wf = faultDelta(before, m);
  const vf = faultDelta(m, a);
  const lookups = vf.cacheHit + vf.remote + vf.zero;
  const rate = (p: Phase) => ({ pagesPerSecond: p.seconds > 0 ? p.pages / p.seconds : 0, bytesPerSecond: p.seconds > 0 ? (p.pages * region.pageSize) / p.seconds : 0, seconds: p.seconds });
  const ok = v.mismatches === 0;
  const json = {
    region: region.name,
    created,
    pages,
    pageSize: region.pageSize,
    order: o.orderLabel,
    seed: o.seed,
    write: { ...rate(w), faults: wf },
    verify: { ...rate(v), faults: vf, hitRatio: lookups > 0 ? vf.cacheHit / lookups : 0 },
    remoteBytesIn: a.remoteBytesIn - before.remoteBytesIn,
    remoteBytesOut: a.remoteBytesOut - before.remoteBytesOut,
    faultP50Us: a.faultP50Us,
    faultP99Us: a.faultP99Us,
    verified: ok,
    mismatches: v.mismatches,
    firstMismatch: v.firstMismatch,
  };
  if (o.json) io.out(`${JSON.stringify(json, null, 2)}\n`);
  else {
    const fmtRate = (r: ReturnType<typeof rate>) => `${Math.round(r.pagesPerSecond)} pages/s, ${size(Math.round(r.bytesPerSecond))}/s (${r.seconds.toFixed(2)} s)`;
    const fmtFaults = (f: ReturnType<typeof faultDelta>) => `${f.cacheHit} cache hit, ${f.remote} remote, ${f.zero} zero, ${f.writeProtect} write-protect`;
    io.out(
      `${fields([
        ['region', `${region.name} (${pages} pages of ${size(region.pageSize)}, ${o.orderLabel} order)`],
        ['write', fmtRate(json.write)],
        ['  faults', fmtFaults(wf)],
        ['read back', fmtRate(json.verify)],
        ['  faults', fmtFaults(vf)],
        ['  cache hit ratio', lookups > 0 ? pct(json.verify.hitRatio) : '-'],
        ['remote in / out', `${size(json.remoteBytesIn)} / ${size(json.remoteBytesOut)}`],
        ['fault latency', `p50 ${a.faultP50Us} µs, p99 ${a.faultP99Us} µs (region, since farmemd started)`],
        ['verification', ok ? `ok: all ${pages} pages read back exactly as written` : `FAILED: ${v.mismatches} of ${pages} pages differ (first: page ${v.firstMismatch})`],
      ])}\n`,
    );
  }
  return ok ? 0 : 1;
}
