#!/usr/bin/env node
// Runs the whole suite with Node's own test runner over the compiled tests in dist/test.
// `npm test -- PATTERN...` runs only the test files whose path contains one of the patterns.
'use strict';
const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const distTest = path.join(__dirname, '..', 'dist', 'test');
function walk(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return e.name === 'bench' ? [] : walk(p);
    return e.name.endsWith('.test.js') ? [p] : [];
  });
}
const patterns = process.argv.slice(2);
const files = walk(distTest).filter((f) => patterns.length === 0 || patterns.some((p) => path.relative(distTest, f).includes(p))).sort();
if (files.length === 0) {
  console.error(`test/run.js: no test files found under ${distTest}${patterns.length ? ` matching ${patterns.join(', ')}` : ''}`);
  process.exit(1);
}
const args = ['--test', '--test-reporter=spec', '--test-timeout=300000', '--test-concurrency=1', ...files];
const r = spawnSync(process.execPath, args, { stdio: 'inherit' });
process.exit(r.status ?? 1);
