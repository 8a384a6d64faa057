// Memory servers added or removed at run time (`farmem servers add|remove`), kept in the state dir
// so that a restart serves the same pool: the configured servers, minus the removed ones, plus the
// added ones. A server still draining when farmemd stopped is drained again at the next start (it
// is forgotten only once nothing is placed on it).
import fs from 'node:fs';
import path from 'node:path';
import type { KnownServer } from './servers';
import { writeFileAtomicSync } from './util/atomic-write';
import type { TlsFiles } from './util/tls-files';

export interface AddedServer {
  address: string;
  weight: number;
  /** Where the bearer token is read from at each start (never the token itself); null: none. */
  tokenFile: string | null;
  /** TLS: the PEM files' paths (read at each start) and the name to check; null (or absent in older files): none. */
  tls?: TlsFiles | null;
}

export interface ServerChanges {
  added: AddedServer[];
  removed: string[];
  draining: string[];
}

export class ServerChangesFile {
  readonly file: string;
  constructor(stateDir: string) {
    this.file = path.join(stateDir, 'servers.json');
  }

  load(): ServerChanges {
    let text: string;
    try {
      text = fs.readFileSync(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { added: [], removed: [], draining: [] };
      throw new Error(`${this.file}: ${(e as Error).message}`);
    }
    const j = JSON.parse(text) as Partial<ServerChanges>;
    const okPath = (v: unknown) => v === null || typeof v === 'string';
    const okTls = (t: TlsFiles | null | undefined) => t === undefined || t === null || (typeof t === 'object' && okPath(t.ca) && okPath(t.cert) && okPath(t.key) && okPath(t.serverName));
    const okAdded = Array.isArray(j.added) && j.added.every((a) => typeof a?.address === 'string' && typeof a.weight === 'number' && okPath(a.tokenFile) && okTls(a.tls));
    const okList = (l: unknown) => Array.isArray(l) && l.every((x) => typeof x === 'string');
    if (!okAdded || !okList(j.removed) || !okList(j.draining)) {
      throw new Error(`${this.file}: Expected {added: [{address, weight, tokenFile, tls}], removed: [address], draining: [address]} but received ${text.slice(0, 120)}`);
    }
    return { added: j.added!, removed: j.removed!, draining: j.draining! };
  }

  /** Writes the whole file durably (temp file, fsync, rename, fsync of the directory). */
  save(c: ServerChanges): void {
    fs.mkdirSync(path.dirname(this.file), { recursive: true });
    writeFileAtomicSync(this.file, JSON.stringify(c, null, 2));
  }
}

/** Reads a token file (trimmed), with the file named in the error. */
export function readToken(file: string, what: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch (e) {
    throw new Error(`${what}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}: cannot read ${file}`);
  }
}

/** The configured servers with the run-time changes applied (a configured address wins over an added one). */
export function applyServerChanges(configured: readonly KnownServer[], c: ServerChanges, file: string): KnownServer[] {
  const out = configured.filter((s) => !c.removed.includes(s.address));
  for (const a of c.added) {
    if (out.some((s) => s.address === a.address) || c.removed.includes(a.address)) continue;
    const token = a.tokenFile === null ? null : readToken(a.tokenFile, `${file}: memory server ${a.address}`);
    out.push({ address: a.address, weight: a.weight, token, tls: a.tls ?? null, embedded: false });
  }
  return out;
}
