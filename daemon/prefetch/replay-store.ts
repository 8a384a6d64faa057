// Where replay recordings live and how a warm-up runs. One recorder per attachment notes first
// touches; when the attachment ends its recording replaces the region's file in the state dir
// (`<dir>/<region id>.fmrp`: the latest run wins). A warm-up reads that file back and fetches the
// working set in first-touch order, a few large batches at a time.
import fs from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from '../util/atomic-write';
import { DEFAULT_WARMUP_BATCH, parseRecording, planWarmup, ReplayRecorder, serializeRecording, type Recording } from './replay';

export class ReplayStore {
  private readonly recorders = new Map<number, { region: string; recorder: ReplayRecorder }>();

  constructor(readonly dir: string) {}

  fileOf(regionId: string): string {
    return path.join(this.dir, `${regionId}.fmrp`);
  }

  /** Starts recording an attachment. Called on the JS thread when it registers. */
  begin(attachment: number, regionId: string, regionPages: number, pageSize: number): void {
    this.recorders.set(attachment, { region: regionId, recorder: new ReplayRecorder(regionPages, pageSize) });
  }

  /**
   * Starts an attachment's recording with a replayed working set (warm on attach): pages the warm-up
   * installs are read without a fault the pager could see, so without this the next recording would
   * lose them. New first touches are appended after them.
   */
  seed(attachment: number, pages: Uint32Array): void {
    const r = this.recorders.get(attachment);
    if (r !== undefined) for (const p of pages) r.recorder.record(p);
  }

  /** A touch seen by the pager; attachment null = every recorder of the region (a prefetched page used). */
  touch(regionId: string, attachment: number | null, page: number): void {
    if (attachment !== null) {
      this.recorders.get(attachment)?.recorder.record(page);
      return;
    }
    for (const r of this.recorders.values()) if (r.region === regionId) r.recorder.record(page);
  }

  /** Ends an attachment's recording and persists it (nothing when it touched no page). */
  async end(attachment: number): Promise<{ file: string; pages: number } | null> {
    const r = this.recorders.get(attachment);
    if (r === undefined) return null;
    this.recorders.delete(attachment);
    if (r.recorder.size === 0) return null;
    await fs.promises.mkdir(this.dir, { recursive: true, mode: 0o700 });
    const file = this.fileOf(r.region);
    await writeFileAtomic(file, serializeRecording(r.recorder.recording()));
    return { file, pages: r.recorder.size };
  }

  /** The region's latest recording, or null when it has none. Throws on a malformed file. */
  load(regionId: string): Recording | null {
    const file = this.fileOf(regionId);
    let buf: Buffer;
    try {
      buf = fs.readFileSync(file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw e;
    }
    return parseRecording(buf, file);
  }

  remove(regionId: string): void {
    fs.rmSync(this.fileOf(regionId), { force: true });
  }
}

export interface WarmupProgress {
  batchesDone: number;
  batches: number;
  /** Pages sent for (those already resident, in flight or cached are skipped). */
  pagesFetched: number;
  /** Pages of the recording walked so far. */
  pagesDone: number;
  pagesTotal: number;
}

/**
 * Fetches a recording's working set in first-touch order, `batchPages` per read and `depth` reads
 * in flight (enough to keep the stream busy while a batch is installed, without flooding the budget).
 */
export async function runWarmup(
  rec: Recording,
  fetch: (pages: number[]) => Promise<number>,
  progress: (p: WarmupProgress) => void,
  signal: AbortSignal,
  opts: { batchPages?: number; depth?: number } = {},
): Promise<WarmupProgress> {
  const plan = planWarmup(rec, opts.batchPages ?? DEFAULT_WARMUP_BATCH);
  const depth = opts.depth ?? 2;
  const st: WarmupProgress = { batchesDone: 0, batches: plan.length, pagesFetched: 0, pagesDone: 0, pagesTotal: rec.pages.length };
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < plan.length && !signal.aborted) {
      const batch = plan[next++]!;
      const fetched = await fetch(batch); // not `+= await`: that reads the sum before the wait
      st.pagesFetched += fetched;
      st.pagesDone += batch.length;
      st.batchesDone++;
      progress({ ...st });
    }
  };
  await Promise.all(Array.from({ length: Math.min(depth, plan.length) }, worker));
  return st;
}
