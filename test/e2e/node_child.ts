// A Node process that attaches through the Node API (client/attach.ts) and writes or verifies
// fmwork's per-page pattern, like fmattach does in C.
//   node node_child.js SOCKET write|verify REGION PAGES SEED [--pause|--hold]
// prints {"op","pages","mismatches"} (--pause: {"ready":true} first, then waits for a stdin line;
// --hold: waits for a stdin line after the op, still attached, before detaching).
import readline from 'node:readline';

import { attach } from '../../client/attach';
import { patternPage } from '../helpers/pattern';

async function main(): Promise<void> {
  const [sock, op, region, pagesArg, seedArg, flag] = process.argv.slice(2);
  const a = attach(region!, { socket: sock! });
  const waitLine = async () => {
    const rl = readline.createInterface({ input: process.stdin });
    await new Promise<void>((res) => rl.once('line', () => res()));
    rl.close();
  };
  if (flag === '--pause') {
    console.log(JSON.stringify({ ready: true }));
    await waitLine();
  }
  const pages = Number(pagesArg);
  const seed = BigInt(seedArg!);
  let mismatches = 0;
  for (let p = 0; p < pages; p++) {
    const want = patternPage(seed, p, a.pageSize);
    const at = a.buffer.subarray(p * a.pageSize, (p + 1) * a.pageSize);
    if (op === 'write') want.copy(at);
    else if (!at.equals(want)) mismatches++;
  }
  console.log(JSON.stringify({ op, pages, mismatches }));
  if (flag === '--hold') await waitLine();
  a.detach();
  process.exitCode = mismatches === 0 ? 0 : 1;
}

main().catch((e) => {
  console.error((e as Error).message);
  process.exit(2);
});
