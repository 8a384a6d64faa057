#!/usr/bin/env node
// Generates proto/gen/farmem.{js,d.ts} from every proto/farmem/v1/*.proto with protobufjs-cli
// (static module, CommonJS). The generated files are build output: never edit them by hand.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = __dirname;
const srcDir = path.join(root, 'farmem', 'v1');
const outDir = path.join(root, 'gen');
const protos = fs.readdirSync(srcDir).filter((f) => f.endsWith('.proto')).sort().map((f) => path.join(srcDir, f));
if (protos.length === 0) {
  console.error(`proto/generate.js: no .proto files in ${srcDir}`);
  process.exit(1);
}
const bin = path.dirname(require.resolve('protobufjs-cli/package.json'));
const pbjs = path.join(bin, 'bin', 'pbjs');
const pbts = path.join(bin, 'bin', 'pbts');

// Skip when every output is newer than every input (npm test rebuilds often).
const outJs = path.join(outDir, 'farmem.js');
const outDts = path.join(outDir, 'farmem.d.ts');
const newest = Math.max(...protos.map((p) => fs.statSync(p).mtimeMs), fs.statSync(__filename).mtimeMs);
const fresh = [outJs, outDts].every((f) => fs.existsSync(f) && fs.statSync(f).mtimeMs > newest);

// tsc never emits proto/gen/farmem.js (farmem.d.ts next to it takes precedence over the .js), so
// the compiled code's require('../proto/gen/farmem') needs a copy in dist/.
function copyToDist() {
  const distDir = path.join(root, '..', 'dist', 'proto', 'gen');
  fs.mkdirSync(distDir, { recursive: true });
  fs.copyFileSync(outJs, path.join(distDir, 'farmem.js'));
}
if (fresh) {
  copyToDist();
  process.exit(0);
}

fs.mkdirSync(outDir, { recursive: true });
execFileSync(process.execPath, [pbjs, '-t', 'static-module', '-w', 'commonjs', '--force-number', '-p', root, '-o', outJs, ...protos], { stdio: 'inherit' });
execFileSync(process.execPath, [pbts, '-o', outDts, outJs], { stdio: 'inherit' });
copyToDist();
console.log(`proto: generated ${path.relative(process.cwd(), outJs)} from ${protos.length} file(s)`);
