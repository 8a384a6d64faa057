// `farmem stats --watch`: a snapshot every interval, shown as a view that redraws in place on a
// terminal (cursor home, each line cleared to its end, the rest of the screen cleared: no flicker),
// or as one block per refresh — blank-line separated, or one JSON line with --json — when stdout
// is not a terminal, so it can be piped and tested. Ctrl-C (SIGINT) ends it with exit 0.
import { ControlError, type ControlClient } from '../control';
import { renderWatch, watchView, type Snapshot } from './watch-view';

export async function takeSnapshot(c: ControlClient): Promise<Snapshot> {
  const [daemon, summaries, servers] = await Promise.all([c.daemonStats(), c.listRegions(), c.listServers()]);
  const time = new Date();
  const regions = await Promise.all(
    summaries.map(async (summary) => {
      if (!daemon.pager || !summary.accessible) return { summary, stats: null };
      try {
        return { summary, stats: (await c.showRegion(summary.region?.name ?? '')).stats ?? null };
      } catch (e) {
        // Deleted (or made private) between the list and the show: show it without numbers.
        if (e instanceof ControlError && (e.code === 'NOT_FOUND' || e.code === 'PERMISSION_DENIED')) return { summary, stats: null };
        throw e;
      }
    }),
  );
  return { time, daemon, regions, servers };
}

export interface WatchOptions {
  intervalMs: number;
  /** Stop after this many refreshes; null = until Ctrl-C. */
  count: number | null;
  json: boolean;
  tty: boolean;
  write: (s: string) => void;
  /** The terminal's size when tty: the view is cut to fit, as a line that wraps or scrolls would break the redraw. */
  screen?: () => { rows: number; columns: number };
}

export function fit(text: string, screen: { rows: number; columns: number } | undefined): string[] {
  const lines = text.split('\n');
  if (!screen || !(screen.rows > 1 && screen.columns > 1)) return lines;
  const cut = lines.slice(0, screen.rows - 1).map((l) => (l.length > screen.columns ? `${l.slice(0, screen.columns - 1)}…` : l));
  if (lines.length > screen.rows - 1) cut[cut.length - 1] = `… ${lines.length - screen.rows + 2} more lines (a taller terminal shows them)`.slice(0, screen.columns);
  return cut;
}

const HOME = '\x1b[H';
const CLEAR_LINE_END = '\x1b[K';
const CLEAR_SCREEN = '\x1b[2J';
const CLEAR_BELOW = '\x1b[J';

/** Runs the view; resolves with the exit code: 0, or 1 when the last refresh could not reach farmemd. */
export async function runWatch(c: ControlClient, o: WatchOptions): Promise<number> {
  let stop!: () => void;
  const stopped = new Promise<'stop'>((resolve) => (stop = () => resolve('stop')));
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    stop();
  };
  process.on('SIGINT', onSigint);
  // A reader that went away (`| head`) ends the view as Ctrl-C does.
  const onOutError = (e: NodeJS.ErrnoException) => {
    if (e.code !== 'EPIPE') throw e;
    onSigint();
  };
  process.stdout.on('error', onOutError);
  let prev: Snapshot | null = null;
  let lastOk = true;
  try {
    if (o.tty) o.write(CLEAR_SCREEN);
    for (let done = 0; o.count === null || done < o.count; done++) {
      const started = Date.now();
      let text: string;
      try {
        const snap = await Promise.race([takeSnapshot(c), stopped]);
        if (snap === 'stop') break;
        const view = watchView(prev, snap);
        prev = snap;
        lastOk = true;
        text = o.json ? JSON.stringify(view) : renderWatch(view, { intervalMs: o.intervalMs });
      } catch (e) {
        // farmemd went away (or restarted): say so and keep trying; the gRPC channel reconnects.
        if (!(e instanceof ControlError)) throw e;
        lastOk = false;
        text = o.json ? JSON.stringify({ time: new Date().toISOString(), error: e.message }) : `farmem: ${e.message}\n(trying again every refresh)`;
      }
      if (o.tty) o.write(`${HOME}${fit(text, o.screen?.()).join(`${CLEAR_LINE_END}\n`)}${CLEAR_LINE_END}\n${CLEAR_BELOW}`);
      else o.write(o.json ? `${text}\n` : `${text}\n\n`);
      if (o.count !== null && done + 1 >= o.count) break;
      let timer: NodeJS.Timeout | undefined;
      const tick = new Promise<'tick'>((resolve) => (timer = setTimeout(() => resolve('tick'), Math.max(0, o.intervalMs - (Date.now() - started)))));
      const why = await Promise.race([tick, stopped]);
      clearTimeout(timer);
      if (why === 'stop') break;
    }
  } finally {
    process.off('SIGINT', onSigint);
    process.stdout.off('error', onOutError);
  }
  return interrupted ? 0 : lastOk ? 0 : 1;
}
