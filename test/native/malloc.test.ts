// tuneMalloc: glibc's mmap and trim thresholds, fixed so that ~1 MiB buffers come from the heap and
// stay there. Measured in fresh child processes (malloc's state is per process and cannot be put
// back): buffers of a growing size, each touched and freed, are each a new mmap by default (every
// free raises the adaptive threshold to that size only), so each costs a page fault per page; tuned,
// the heap keeps them. (A GC after each lets the buffer go, as a served answer's does.)
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { MALLOC_MMAP_THRESHOLD, tuneMalloc } from '../../daemon/native';

const native = path.join(__dirname, '..', '..', 'daemon', 'native.js');

function faults(tune: boolean): { tuned: boolean; faults: number } {
  const script = `
    const n = require(${JSON.stringify(native)});
    const tuned = ${tune} ? n.tuneMalloc().tuned : false;
    const before = process.resourceUsage().minorPageFault;
    for (let k = 0; k < 64; k++) { Buffer.allocUnsafe(1048576 + k * 4096).fill(k); gc(); }
    process.stdout.write(JSON.stringify({ tuned, faults: process.resourceUsage().minorPageFault - before }));`;
  return JSON.parse(execFileSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8' })) as { tuned: boolean; faults: number };
}

const glibc = (process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined)?.header?.glibcVersionRuntime;

test('tuneMalloc keeps read-answer-sized buffers in the heap: no mmap and page faults per buffer', { skip: glibc === undefined ? 'malloc is not glibc here: tuneMalloc sets nothing' : false }, () => {
  const plain = faults(false);
  const tuned = faults(true);
  assert.equal(tuned.tuned, true);
  // 64 buffers of 256+ pages: at least one fault per page each by default.
  assert.ok(plain.faults >= 64 * 256, `default thresholds: ${plain.faults} faults`);
  assert.ok(tuned.faults < plain.faults / 4, `tuned: ${tuned.faults} faults, default: ${plain.faults}`);
  assert.ok(MALLOC_MMAP_THRESHOLD > 1048576 + 64 * 4096 && MALLOC_MMAP_THRESHOLD < 64 * 1024 * 1024);
  // Calling it again is harmless.
  assert.equal(tuneMalloc().tuned, true);
});
