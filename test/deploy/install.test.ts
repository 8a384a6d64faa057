// deploy/install.sh: the printed plan, a real install into a temporary root, idempotence, uninstall,
// and every refusal with its whole message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { isRoot } from '../helpers/env';
import { filesUnder, hasCommand, install, installScript, mode, repo, run, snapshot, tempDir } from './helpers';

const node = process.execPath;
const unitsDir = 'usr/local/lib/systemd/system';
const ours = [
  'usr/local/bin/farmem',
  'usr/local/bin/farmemd',
  'usr/local/bin/farmem-memserver',
  `${unitsDir}/farmemd.service`,
  `${unitsDir}/farmem-memserver.service`,
  'usr/local/lib/sysusers.d/farmem.conf',
  'usr/local/lib/tmpfiles.d/farmem.conf',
  'usr/local/lib/udev/rules.d/60-farmem-userfaultfd.rules',
  'usr/local/share/farmem/examples/farmem-memserver.toml',
  'usr/local/share/farmem/examples/farmemd.toml',
  'usr/local/share/doc/farmem/operator-guide.md',
  'etc/farmem/farmem-memserver.toml',
  'etc/farmem/farmemd.toml',
];

test('--dry-run prints the whole plan and changes nothing', (t) => {
  const root = tempDir(t, 'dry');
  const r = install(['--dry-run', '--root', root, '--node', node]);
  assert.deepEqual(fs.readdirSync(root), []);
  const lines = r.stdout.split('\n');
  assert.equal(lines[0], `farmem: dry run, nothing is changed; would install prefix /usr/local under root ${root}`);
  for (const want of [
    `  write wrapper ${root}/usr/local/bin/farmemd (exec ${node} /usr/local/lib/farmem/daemon/bin/farmemd.js)`,
    `  install -m 0644 deploy/farmemd.service -> ${root}/${unitsDir}/farmemd.service (paths under /usr/local)`,
    `  install -m 0644 deploy/udev/60-farmem-userfaultfd.rules -> ${root}/usr/local/lib/udev/rules.d/60-farmem-userfaultfd.rules`,
    `  install -m 0640 deploy/examples/farmem-memserver.toml -> ${root}/etc/farmem/farmem-memserver.toml`,
  ]) {
    assert.ok(lines.includes(want), `missing from the plan: ${want}\n${r.stdout}`);
  }
  assert.ok(lines.some((l) => /^ {2}copy package \(dist, native addon, \d+ production dependencies\) -> /.test(l)), r.stdout);
  if (hasCommand('systemctl')) assert.ok(lines.includes(`  systemctl --root=${root} enable farmemd.service`), r.stdout);
  // In --root mode the host's users, tmpfiles and udev are left alone.
  assert.ok(!r.stdout.includes('systemd-sysusers') && !r.stdout.includes('udevadm'), r.stdout);
});

test('--dry-run on the live system plans the users, directories and udev steps', () => {
  const r = run('bash', [installScript, '--dry-run', '--prefix', '/opt/farmem-dry-run-test']);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(!fs.existsSync('/opt/farmem-dry-run-test'));
  const lines = r.stdout.split('\n');
  // Outside /usr and /usr/local systemd would not find the units: they go to /etc.
  assert.ok(lines.includes('  install -m 0644 deploy/farmemd.service -> /etc/systemd/system/farmemd.service (paths under /opt/farmem-dry-run-test)'), r.stdout);
  if (hasCommand('systemd-sysusers')) assert.ok(lines.includes('  systemd-sysusers /etc/sysusers.d/farmem.conf'), r.stdout);
  if (hasCommand('systemd-tmpfiles')) assert.ok(lines.includes('  systemd-tmpfiles --create /etc/tmpfiles.d/farmem.conf'), r.stdout);
  assert.equal(r.stdout.split('\n').at(-2), '  let a user attach regions: usermod -aG farmem USER');
});

test('install into a temporary root: files, modes, a working package, idempotent, then uninstall and purge', (t) => {
  const root = tempDir(t, 'root');
  install(['--root', root, '--node', node]);
  const files = filesUnder(root);
  for (const f of ours) assert.ok(files.includes(f), `${f} not installed`);

  for (const b of ['farmem', 'farmemd', 'farmem-memserver']) assert.equal(mode(path.join(root, 'usr/local/bin', b)), '0755');
  assert.equal(
    fs.readFileSync(path.join(root, 'usr/local/bin/farmemd'), 'utf8'),
    `#!/bin/sh\n# installed by farmem deploy/install.sh\nexec ${node} /usr/local/lib/farmem/daemon/bin/farmemd.js "$@"\n`,
  );
  for (const f of ours.filter((f) => !f.includes('/bin/') && !f.startsWith('etc/'))) assert.equal(mode(path.join(root, f)), '0644', f);
  assert.equal(mode(path.join(root, 'etc/farmem/farmem-memserver.toml')), '0640');
  assert.match(fs.readFileSync(path.join(root, unitsDir, 'farmemd.service'), 'utf8'), /^ExecStart=\/usr\/local\/bin\/farmemd --config /m);
  if (hasCommand('systemctl')) {
    assert.equal(fs.readlinkSync(path.join(root, 'etc/systemd/system/multi-user.target.wants/farmemd.service')), `/${unitsDir}/farmemd.service`);
  }
  assert.ok(files.includes('etc/farmem/farmemd.toml'));

  // The package is complete: the installed addon loads, every production dependency resolves, no tests.
  const pkg = path.join(root, 'usr/local/lib/farmem');
  assert.ok(!fs.existsSync(path.join(pkg, 'dist/test')));
  const deps = Object.keys((JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as { dependencies: Record<string, string> }).dependencies);
  const probe = run(node, ['-e', `
    const native = require(${JSON.stringify(path.join(pkg, 'dist/daemon/native.js'))});
    if (!require.resolve(${JSON.stringify(path.join(pkg, 'dist/daemon/native.js'))}).startsWith(${JSON.stringify(pkg)})) throw new Error('not the installed copy');
    console.log(typeof native.addon());
    for (const d of ${JSON.stringify(deps)}) {
      const where = require.resolve(d, { paths: [${JSON.stringify(path.join(pkg, 'dist/daemon'))}] });
      if (!where.startsWith(${JSON.stringify(pkg)})) throw new Error(d + ' resolved outside the package: ' + where);
    }
    console.log('deps ok');`]);
  assert.equal(probe.stderr, '');
  assert.equal(probe.stdout, 'object\ndeps ok\n');

  // Second run: the same tree, and the operator's configuration is kept.
  const cfg = path.join(root, 'etc/farmem/farmem-memserver.toml');
  fs.appendFileSync(cfg, '# edited by the operator\n');
  const before = snapshot(root);
  const again = install(['--root', root, '--node', node]);
  assert.ok(again.stdout.split('\n').includes(`  keep ${cfg} (exists)`), again.stdout);
  assert.deepEqual(snapshot(root), before);

  // Uninstall keeps configuration; --purge then removes the rest; nothing of ours stays.
  const un = install(['--root', root, '--uninstall']);
  assert.ok(un.stdout.split('\n').includes(`  remove ${pkg}`), un.stdout);
  assert.deepEqual(filesUnder(root), ['etc/farmem/farmem-memserver.toml', 'etc/farmem/farmemd.toml']);
  install(['--root', root, '--uninstall', '--purge']);
  assert.deepEqual(filesUnder(root), []);
  // Uninstalling again is a no-op.
  const twice = install(['--root', root, '--uninstall']);
  assert.ok(!twice.stdout.includes('  remove '), twice.stdout);
});

test('--prefix outside /usr puts units and rules under /etc, paths follow the prefix', (t) => {
  const root = tempDir(t, 'opt');
  install(['--root', root, '--prefix', '/opt/farmem/', '--no-enable', '--node', node]);
  const files = filesUnder(root).filter((f) => !f.startsWith('opt/farmem/lib/farmem/'));
  assert.deepEqual(files, [
    'etc/farmem/farmem-memserver.toml',
    'etc/systemd/system/farmem-memserver.service',
    'etc/systemd/system/farmemd.service',
    'etc/sysusers.d/farmem.conf',
    'etc/tmpfiles.d/farmem.conf',
    'etc/udev/rules.d/60-farmem-userfaultfd.rules',
    'opt/farmem/bin/farmem',
    'opt/farmem/bin/farmem-memserver',
    'opt/farmem/bin/farmemd',
    'opt/farmem/share/doc/farmem/operator-guide.md',
    'opt/farmem/share/farmem/examples/farmem-memserver.toml',
    'etc/farmem/farmemd.toml',
    'opt/farmem/share/farmem/examples/farmemd.toml',
  ].sort());
  const unit = fs.readFileSync(path.join(root, 'etc/systemd/system/farmem-memserver.service'), 'utf8');
  assert.match(unit, /^ExecStart=\/opt\/farmem\/bin\/farmem-memserver --config /m);
  assert.match(unit, /^Documentation=file:\/opt\/farmem\/share\/doc\/farmem\/operator-guide\.md$/m);
  install(['--root', root, '--prefix', '/opt/farmem', '--uninstall', '--purge']);
  assert.deepEqual(filesUnder(root), []);
});

test('bad flags exit 2 with the whole message', () => {
  const cases: [string[], string][] = [
    [['--bogus'], 'Expected one of --prefix, --root, --node, --no-enable, --dry-run, --uninstall, --purge, --help but received "--bogus"'],
    [['--prefix'], 'Expected a value for --prefix but received nothing'],
    [['--root', ''], 'Expected a value for --root but received nothing'],
    [['--prefix', 'usr/local', '--dry-run'], 'Expected an absolute path for --prefix but received "usr/local"'],
    [['--root=stage', '--dry-run'], 'Expected an absolute path for --root but received "stage"'],
    [['--purge', '--dry-run'], 'Expected --purge only with --uninstall but received --purge alone'],
  ];
  for (const [args, msg] of cases) {
    const r = run('bash', [installScript, ...args]);
    assert.equal(r.stderr, `deploy/install.sh: ${msg}\nTry 'deploy/install.sh --help'.\n`, args.join(' '));
    assert.equal(r.status, 2, args.join(' '));
    assert.equal(r.stdout, '');
  }
  const help = run('bash', [installScript, '--help']);
  assert.equal(help.status, 0);
  assert.match(help.stdout, /^Usage: deploy\/install\.sh \[--prefix DIR\]/);
});

test('refuses without root, without a build, and with a bad --node', (t) => {
  // As root, drop to nobody to see the refusal; otherwise this process already is not root.
  const asUser = isRoot() ? ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', 'bash', installScript] : ['bash', installScript];
  const r = run(asUser[0]!, asUser.slice(1));
  assert.equal(r.stderr, 'deploy/install.sh: must run as root (use --root DIR to stage into a directory, or --dry-run to see the plan)\n');
  assert.equal(r.status, 1);

  // A source tree that was never built.
  const src = tempDir(t, 'unbuilt');
  const root = tempDir(t, 'unbuilt-root');
  fs.mkdirSync(path.join(src, 'deploy'));
  fs.copyFileSync(installScript, path.join(src, 'deploy/install.sh'));
  const script = path.join(src, 'deploy/install.sh');
  let u = run('bash', [script, '--root', root]);
  assert.equal(u.stderr, `deploy/install.sh: the build is missing (${src}/dist not found): run npm install first\n`);
  assert.equal(u.status, 1);
  fs.mkdirSync(path.join(src, 'dist'));
  u = run('bash', [script, '--root', root]);
  assert.equal(u.stderr, `deploy/install.sh: the build is missing (${src}/build/Release/farmem_native.node not found): run npm install first\n`);
  assert.equal(u.status, 1);
  assert.deepEqual(fs.readdirSync(root), []);

  const n = run('bash', [installScript, '--root', root, '--node', '/nonexistent/node']);
  assert.equal(n.stderr, 'deploy/install.sh: Expected an executable node for --node but received "/nonexistent/node"\n');
  assert.equal(n.status, 1);
  const rel = run('bash', [installScript, '--root', root, '--node', 'node']);
  assert.equal(rel.stderr, 'deploy/install.sh: Expected an absolute path for --node but received "node"\n');
  assert.equal(rel.status, 1);
  assert.deepEqual(fs.readdirSync(root), []);
});
