// The baseline: a raw length-prefixed TCP page server and a pipelining client, written for the benchmark.
// Frames: u32 length | body. Request body: u8 op (1 read, 2 write) | u32 id | u32 count | u32 × count
// pages | data (writes). Response body: u32 id | data (reads). Responses go out with writev (cork/uncork).
import { fork } from 'node:child_process';
import net from 'node:net';

const PAGE = 4096;

export function serveRaw(port: number, maxPages: number): Promise<net.Server> {
  const store = Buffer.allocUnsafeSlow(maxPages * PAGE);
  const server = net.createServer((sock) => {
    sock.setNoDelay(true);
    let buf: Buffer = Buffer.alloc(0);
    sock.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      let at = 0;
      sock.cork();
      while (buf.length - at >= 4) {
        const len = buf.readUInt32LE(at);
        if (buf.length - at - 4 < len) break;
        const body = buf.subarray(at + 4, at + 4 + len);
        at += 4 + len;
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
          const data = 9 + n * 4;
          for (let i = 0; i < n; i++) body.copy(store, body.readUInt32LE(9 + i * 4) * PAGE, data + i * PAGE, data + (i + 1) * PAGE);
          head.writeUInt32LE(4, 0);
          head.writeUInt32LE(id, 4);
          sock.write(head);
        }
      }
      sock.uncork();
      buf = at === buf.length ? Buffer.alloc(0) : buf.subarray(at);
    });
    sock.on('error', () => undefined);
  });
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)));
}

export class RawClient {
  private buf: Buffer = Buffer.alloc(0);
  private nextId = 1;
  private readonly pending = new Map<number, (data: Buffer) => void>();
  private constructor(private readonly sock: net.Socket) {
    sock.setNoDelay(true);
    sock.on('data', (chunk: Buffer) => {
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
      let at = 0;
      while (this.buf.length - at >= 4) {
        const len = this.buf.readUInt32LE(at);
        if (this.buf.length - at - 4 < len) break;
        const id = this.buf.readUInt32LE(at + 4);
        const data = this.buf.subarray(at + 8, at + 4 + len);
        at += 4 + len;
        const cb = this.pending.get(id);
        this.pending.delete(id);
        cb?.(data);
      }
      this.buf = at === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(at);
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
export function forkRawServer(maxPages: number): Promise<{ port: number; stop(): void }> {
  const child = fork(__filename, ['serve', '0', String(maxPages)], { stdio: 'inherit' });
  return new Promise((resolve, reject) => {
    child.once('message', (port) => resolve({ port: port as number, stop: () => child.kill('SIGKILL') }));
    child.once('exit', (code) => reject(new Error(`raw TCP server exited ${code}`)));
  });
}

if (require.main === module && process.argv[2] === 'serve') {
  void serveRaw(Number(process.argv[3]), Number(process.argv[4])).then((s) => process.send?.((s.address() as net.AddressInfo).port));
}
