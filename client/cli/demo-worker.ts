// The demo's workload, in a worker_thread: it attaches the region with the Node API and touches its
// pages, so this thread is the one that blocks in page faults while the main thread keeps drawing
// the progress bar. Messages: in {phase:'write'|'verify'}, out progress / phase results / error.
import { parentPort, workerData } from 'node:worker_threads';

import { attach } from '../attach';
import { checkPage, fillPage, pageOrder, type DemoOrder } from './demo-pattern';

export interface DemoWorkerData {
  socket: string;
  region: string;
  pages: number;
  seed: number;
  order: DemoOrder;
}

export type DemoToWorker = { phase: 'write' | 'verify' } | { phase: 'done' };
export type DemoFromWorker =
  | { kind: 'attached'; size: number; pageSize: number }
  | { kind: 'progress'; phase: 'write' | 'verify'; done: number; total: number }
  | { kind: 'phase'; phase: 'write' | 'verify'; pages: number; seconds: number; mismatches: number; firstMismatch: number | null }
  | { kind: 'error'; message: string };

const port = parentPort!;
const data = workerData as DemoWorkerData;
const post = (m: DemoFromWorker) => port.postMessage(m);

try {
  const a = attach(data.region, { socket: data.socket });
  if (data.pages * a.pageSize > a.size) {
    a.detach();
    throw new Error(`Expected at most ${a.size / a.pageSize} pages (the size of region "${data.region}") for --pages but received ${data.pages}`);
  }
  post({ kind: 'attached', size: a.size, pageSize: a.pageSize });
  const order = pageOrder(data.order, data.pages);
  const wordsPerPage = a.pageSize / 4;
  const every = Math.max(1, Math.floor(data.pages / 200)); // ~200 progress messages per phase
  port.on('message', (m: DemoToWorker) => {
    if (m.phase === 'done') {
      a.detach();
      port.close();
      return;
    }
    const t0 = process.hrtime.bigint();
    let mismatches = 0;
    let firstMismatch: number | null = null;
    for (let i = 0; i < order.length; i++) {
      const p = order[i]!;
      const words = new Uint32Array(a.buffer.buffer, a.buffer.byteOffset + p * a.pageSize, wordsPerPage);
      if (m.phase === 'write') fillPage(words, data.seed, p);
      else if (!checkPage(words, data.seed, p)) {
        mismatches++;
        if (firstMismatch === null) firstMismatch = p;
      }
      if ((i + 1) % every === 0 || i + 1 === order.length) post({ kind: 'progress', phase: m.phase, done: i + 1, total: order.length });
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    post({ kind: 'phase', phase: m.phase, pages: order.length, seconds, mismatches, firstMismatch });
  });
} catch (e) {
  post({ kind: 'error', message: (e as Error).message });
  port.close();
}
