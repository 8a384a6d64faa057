// Child processes here (farmemd, farmem-memserver, fmattach) print one JSON object per line on
// stdout. Every fixture needs the same splitting: chunks end anywhere, and a line that is not JSON
// (a native warning, a partial write at exit) must not throw inside a stream handler.
import type { Readable } from 'node:stream';

export type JsonLine = Record<string, unknown>;

/**
 * Calls `onLine` with each complete JSON line of `stream`, in order; lines that do not parse as a
 * JSON object go to `onOther` (ignored by default). Returns a function that stops listening.
 */
export function onJsonLines(stream: Readable, onLine: (line: JsonLine) => void, onOther: (raw: string) => void = () => {}): () => void {
  let buf = '';
  const onData = (chunk: Buffer | string) => {
    buf += chunk.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const raw = buf.slice(0, i);
      buf = buf.slice(i + 1);
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        onOther(raw);
        continue;
      }
      if (parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed)) onLine(parsed as JsonLine);
      else onOther(raw);
    }
  };
  stream.on('data', onData);
  return () => stream.off('data', onData);
}
