// A Node process that attaches through client/attach.ts (the API under test), for the attach tests.
//   node child.js SOCKET read REGION PAGES         -> prints {"sha":[...per page sha256 prefix]}
//   node child.js SOCKET pause-read REGION PAGES   -> prints {"ready":...}, waits for a stdin line, then reads
//   node child.js SOCKET error REGION              -> prints {"error": message, "code": code}
import crypto from 'node:crypto';
import readline from 'node:readline';

import { attach, AttachError } from '../../client/attach';
import { encodeClientMessage } from '../../daemon/attach/protocol';
import { fdpass } from '../../daemon/native';

const [sock, mode, region, pagesArg] = process.argv.slice(2);

function readPages(buf: Buffer, pages: number, pageSize: number): string[] {
  const out: string[] = [];
  for (let p = 0; p < pages; p++) out.push(crypto.createHash('sha256').update(buf.subarray(p * pageSize, (p + 1) * pageSize)).digest('hex').slice(0, 16));
  return out;
}

async function main(): Promise<void> {
  if (mode === 'die-mid') {
    // Gets the memfd, then dies before registering.
    const fd = fdpass.connect(sock);
    fdpass.send(fd, encodeClientMessage({ kind: 'attach', protocolVersion: 1, region, wantWriteProtect: false, reattach: null }));
    const r = fdpass.recv(fd, { timeoutMs: 10_000 });
    console.log(JSON.stringify({ fds: r?.fds.length ?? -1 }));
    process.exit(0);
  }
  if (mode === 'error') {
    try {
      attach(region, { socket: sock });
      console.log(JSON.stringify({ error: null }));
    } catch (e) {
      console.log(JSON.stringify({ error: (e as Error).message, code: e instanceof AttachError ? e.code : null }));
    }
    return;
  }
  const a = attach(region, { socket: sock });
  const pages = Number(pagesArg);
  if (mode === 'pause-read') {
    console.log(JSON.stringify({ ready: true, size: a.size, pageSize: a.pageSize, regionId: a.regionId }));
    const rl = readline.createInterface({ input: process.stdin });
    await new Promise<void>((res) => rl.once('line', () => res()));
    rl.close();
  }
  console.log(JSON.stringify({ size: a.size, pageSize: a.pageSize, regionId: a.regionId, sha: readPages(a.buffer, pages, a.pageSize) }));
  a.detach();
}

main().catch((e) => {
  console.error(e);
  process.exit(3);
});
