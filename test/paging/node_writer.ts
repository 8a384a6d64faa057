// A Node process that attaches through client/attach.ts and writes fmwork's pattern over pages in
// a random order, then checks them: the Node API's half of the kill -9 test.
//   node node_writer.js SOCKET REGION PAGES SEED -> {"ready":true}, waits for a stdin line, writes,
//   then prints {"written":PAGES,"mismatches":M} and detaches.
import readline from 'node:readline';
import { attach } from '../../client/attach';
import { pageOrder, patternPage } from '../helpers/pattern';

const [sock, region, pagesArg, seedArg] = process.argv.slice(2);

async function main(): Promise<void> {
  const a = attach(region!, { socket: sock! });
  const pages = Number(pagesArg);
  const seed = BigInt(seedArg!);
  const ps = 4096;
  console.log(JSON.stringify({ ready: true }));
  await new Promise<void>((resolve) => readline.createInterface({ input: process.stdin }).once('line', () => resolve()));
  for (const p of pageOrder('random:9', pages)) patternPage(seed, p, ps).copy(a.buffer, p * ps);
  let mismatches = 0;
  for (let p = 0; p < pages; p++) if (!a.buffer.subarray(p * ps, (p + 1) * ps).equals(patternPage(seed, p, ps))) mismatches++;
  console.log(JSON.stringify({ written: pages, mismatches }));
  a.detach();
  process.exit(0);
}

main().catch((e) => {
  console.error((e as Error).message);
  process.exit(2);
});
