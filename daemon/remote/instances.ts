// The memory servers' instance ids as last seen, kept across daemon restarts: a server that
// restarted (empty) while farmemd was down is then noticed at the first health check and refilled.
// One small JSON file shared by every pool of the daemon; rewritten whole (rename) on a change.
import fs from 'node:fs';
import path from 'node:path';

export class InstanceFile {
  constructor(readonly file: string) {}

  private readAll(): Record<string, string> {
    try {
      const j = JSON.parse(fs.readFileSync(this.file, 'utf8')) as unknown;
      return j !== null && typeof j === 'object' && !Array.isArray(j) ? (j as Record<string, string>) : {};
    } catch {
      return {}; // absent or unreadable: every server counts as first seen
    }
  }

  get(server: string): string | null {
    const v = this.readAll()[server];
    return typeof v === 'string' ? v : null;
  }

  /** Records a server's instance id; false when the file could not be written (best effort). */
  set(server: string, instanceId: string): boolean {
    const all = this.readAll();
    if (all[server] === instanceId) return true;
    all[server] = instanceId;
    try {
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      const tmp = `${this.file}.tmp`;
      fs.writeFileSync(tmp, JSON.stringify(all));
      fs.renameSync(tmp, this.file);
      return true;
    } catch {
      return false;
    }
  }
}
