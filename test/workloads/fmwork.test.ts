// fmwork's command line: usage errors exit 2 with a message naming what was wrong.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { workloadBin } from '../helpers/pattern';

function run(...args: string[]): { status: number | null; stderr: string } {
  const r = spawnSync(workloadBin('fmwork'), args, { encoding: 'utf8', timeout: 10_000 });
  return { status: r.status, stderr: r.stderr };
}

test('usage errors exit 2 and say what was wrong', () => {
  const cases: [string[], string][] = [
    [['--pages', '4'], 'fmwork: --socket PATH is required\n'],
    [['--socket', '/x'], 'fmwork: --pages N (N > 0) is required\n'],
    [['--socket', '/x', '--pages', 'many'], 'fmwork: expected an unsigned integer for --pages but received "many"\n'],
    [['--socket', '/x', '--pages', '4', '--pattern', 'zigzag'], 'fmwork: expected seq|reverse|stride:K|random:SEED|zipf:SEED for --pattern but received "zigzag"\n'],
    [['--socket', '/x', '--pages', '4', '--pattern', 'stride:0'], 'fmwork: expected seq|reverse|stride:K|random:SEED|zipf:SEED for --pattern but received "stride:0"\n'],
    [['--socket', '/x', '--pages', '4', '--op', 'erase'], 'fmwork: expected read|write|verify for --op but received "erase"\n'],
    [['--socket', '/x', '--pages', '4', '--page-size', '100'], 'fmwork: expected a multiple of 4096 for --page-size but received 100\n'],
    [['--socket', '/x', '--pages', '4', '--repeat', '0'], 'fmwork: expected a positive integer for --repeat but received 0\n'],
    [['--socket', '/x', '--pages', '4', '--bogus'], 'fmwork: unknown argument "--bogus"\n'],
    [['--socket'], 'fmwork: missing value for --socket\n'],
    [['--socket', '/nonexistent/fmwork.sock', '--pages', '4'], 'fmwork: connect /nonexistent/fmwork.sock: No such file or directory\n'],
  ];
  for (const [args, stderr] of cases) assert.deepEqual(run(...args), { status: 2, stderr }, args.join(' '));
});
