// Shared by the deploy tests: where the repository is, running a command, staging an install.
import { spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isRoot } from '../helpers/env';

/** The source tree (tests run from dist/test/deploy). */
export const repo = path.resolve(__dirname, '..', '..', '..');
export const deployDir = path.join(repo, 'deploy');
export const installScript = path.join(deployDir, 'install.sh');

export interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: readonly string[], opts: { cwd?: string } = {}): Ran {
  const r = spawnSync(cmd, args, { encoding: 'utf8', cwd: opts.cwd ?? repo, timeout: 120_000 });
  if (r.error) throw new Error(`${cmd} ${args.join(' ')}: ${r.error.message}`);
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function hasCommand(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).status === 0;
}

/** null when systemd's offline tools (systemd-analyze, systemd-sysusers, systemd-tmpfiles) are here; else why not. */
export function systemdToolsUnavailable(): string | null {
  const missing = ['systemd-analyze', 'systemd-sysusers', 'systemd-tmpfiles', 'systemctl'].filter((c) => !hasCommand(c));
  if (missing.length === 0) return null;
  if (isRoot()) {
    // .ci/run installs systemd up front; this covers a root run outside it.
    const r = run('sh', ['-c', 'DEBIAN_FRONTEND=noninteractive apt-get install -y -qq systemd >/dev/null 2>&1']);
    if (r.status === 0 && missing.every((c) => hasCommand(c))) return null;
    throw new Error(`${missing.join(', ')} missing and apt-get install systemd failed: run .ci/run or install systemd`);
  }
  return `needs ${missing.join(', ')} (apt-get install systemd, as .ci/run does)`;
}

export function tempDir(t: { after: (fn: () => void) => void }, tag: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `farmem-deploy-${tag}-`));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true, maxRetries: 20, retryDelay: 50 }));
  return dir;
}

/** Runs install.sh with args; throws with its output unless it exits 0. */
export function install(args: readonly string[]): Ran {
  const r = run('bash', [installScript, ...args]);
  if (r.status !== 0) throw new Error(`install.sh ${args.join(' ')} exited ${r.status}\n${r.stdout}\n${r.stderr}`);
  return r;
}

/** Every file, symlink and directory under dir: relative path → "type mode uid:gid size sha256|target". */
export function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (d: string): void => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      const st = fs.lstatSync(p);
      const mode = (st.mode & 0o7777).toString(8);
      const rel = path.relative(dir, p);
      if (st.isSymbolicLink()) out.set(rel, `link ${fs.readlinkSync(p)}`);
      else if (st.isDirectory()) {
        out.set(rel, `dir ${mode} ${st.uid}:${st.gid}`);
        walk(p);
      } else {
        const sum = crypto.createHash('sha256').update(fs.readFileSync(p)).digest('hex');
        out.set(rel, `file ${mode} ${st.uid}:${st.gid} ${st.size} ${sum}`);
      }
    }
  };
  walk(dir);
  return out;
}

/** Relative paths of the files and symlinks under dir (directories left out). */
export function filesUnder(dir: string): string[] {
  return [...snapshot(dir).entries()].filter(([, v]) => !v.startsWith('dir ')).map(([k]) => k).sort();
}

export function mode(p: string): string {
  return (fs.statSync(p).mode & 0o7777).toString(8).padStart(4, '0');
}
