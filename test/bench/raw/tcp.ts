// The baseline: a raw length-prefixed TCP page server and a pipelining client, written for the benchmark.
// Frames: u32 length | body. Request body: u8 op (1 read, 2 write) | u32 id | u32 count | u32 × count
// pages | data (writes). Response body: u32 id | data (reads). Responses go out with writev (cork/uncork).
import { fork } from 'node:child_process';
import net from 'node:net';

const PAGE = 4096;

/**
 * Splits a byte stream into u32-length-prefixed frames. A frame inside one chunk is a view of it; one
 * spread over chunks is joined once (as grpc-js's decoder does), never by re-concatenating the
 * growing remainder at every chunk (that copies large frames several times and would slow the baseline).
 */
class FrameReader {
  private chunks: Buffer[] = [];
  private have = 0;
  push(chunk: Buffer, onFrame: (body: Buffer) => void): void {
    this.chunks.push(chunk);
    this.have += chunk.length;
    for (;;) {
      if (this.have < 4) return;
      let head = this.chunks[0]!;
      if (head.length < 4) head = this.join(4);
      const len = head.readUInt32LE(0);
      if (this.have < 4 + len) return;
      const whole = head.length >= 4 + len ? head : this.join(4 + len);
      onFrame(whole.subarray(4, 4 + len));
      this.consume(4 + len);
    }
  }
  /** Makes the first chunk at least n bytes long (n <= have). */
  private join(n: number): Buffer {
    let got = 0;
    let k = 0;
    while (got < n) got += this.chunks[k++]!.length;
    const joined = Buffer.concat(this.chunks.slice(0, k), got);
    this.chunks.splice(0, k, joined);
    return joined;
  }
  private consume(n: number): void {
    while (n > 0) {
      const c = this.chunks[0]!;
      if (c.length <= n) {
        this.chunks.shift();
        n -= c.length;
        this.have -= c.length;
      } else {
        this.chunks[0] = c.subarray(n);
        this.have -= n;
        n = 0;
      }
    }
  }
}

export function serveRaw(port: number, maxPages: number): Promise<net.Server> {
  const store = Buffer.allocUnsafeSlow(maxPages * PAGE);
  const server = net.createServer((sock) => {
    sock.setNoDelay(true);
    const frames = new FrameReader();
    sock.on('data', (chunk: Buffer) => {
      sock.cork();
      frames.push(chunk, (body) => {
        const op = body[0]!;
        const id = body.readUInt32LE(1);
        const n = body.readUInt32LE(5);
        const head = Buffer.allocUnsafe(8);
        if (op === 1) {
          head.writeUInt32LE(4 + n * PAGE, 0);
          head.writeUInt32LE(id, 4);
          const out = Buffer.allocUnsafe(n * PAGE);
          for (let i = 0; i < n; i++) {
            const p = body.readUInt32LE(9 + i * 4);
            store.copy(out, i * PAGE, p * PAGE, (p + 1) * PAGE);
          }
          sock.write(head);
          sock.write(out);
        } else {
          // Stores the pages, as the memory server does (a copy into preallocated memory).
          const data = 9 + n * 4;
          for (let i = 0; i < n; i++) body.copy(store, body.readUInt32LE(9 + i * 4) * PAGE, data + i * PAGE, data + (i + 1) * PAGE);
          head.writeUInt32LE(4, 0);
          head.writeUInt32LE(id, 4);
          sock.write(head);
        }
      });
      sock.uncork();
    });
    sock.on('error', () => undefined);
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

export class RawClient {
  private readonly frames = new FrameReader();
  private nextId = 1;
  private readonly pending = new Map<number, (data: Buffer) => void>();
  private constructor(private readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => {
      this.frames.push(chunk, (body) => {
        const id = body.readUInt32LE(0);
        const cb = this.pending.get(id);
        this.pending.delete(id);
        cb?.(body.subarray(4));
      });
    });
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect(port, '127.0.0.1', () => resolve(new RawClient(s)));
      s.once('error', reject);
    });
  }

  private send(op: number, pages: readonly number[], data: Buffer | null): Promise<Buffer> {
    const id = this.nextId++;
    const head = Buffer.allocUnsafe(4 + 9 + pages.length * 4);
    head.writeUInt32LE(9 + pages.length * 4 + (data?.length ?? 0), 0);
    head[4] = op;
    head.writeUInt32LE(id, 5);
    head.writeUInt32LE(pages.length, 9);
    for (let i = 0; i < pages.length; i++) head.writeUInt32LE(pages[i]!, 13 + i * 4);
    const p = new Promise<Buffer>((resolve) => this.pending.set(id, resolve));
    this.sock.cork();
    this.sock.write(head);
    if (data) this.sock.write(data);
    this.sock.uncork();
    return p;
  }

  read(pages: readonly number[]): Promise<Buffer> {
    return this.send(1, pages, null);
  }
  write(pages: readonly number[], data: Buffer): Promise<Buffer> {
    return this.send(2, pages, data);
  }
  close(): void {
    this.sock.destroy();
  }
}

/** Runs the raw server in a child process (as the memory server runs in its own). */
export function forkRawServer(maxPages: number): Promise<{ port: number; pid: number; stop(): void }> {
  const child = fork(__filename, ['serve', '0', String(maxPages)], { stdio: 'inherit' });
  return new Promise((resolve, reject) => {
    child.once('message', (port) => resolve({ port: port as number, pid: child.pid!, stop: () => child.kill('SIGKILL') }));
    child.once('exit', (code) => reject(new Error(`raw TCP server exited ${code}`)));
  });
}

if (require.main === module && process.argv[2] === 'serve') {
  void serveRaw(Number(process.argv[3]), Number(process.argv[4])).then((s) => process.send?.((s.address() as net.AddressInfo).port));
}
