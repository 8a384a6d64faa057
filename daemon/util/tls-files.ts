// The PEM files of a TLS connection to a memory server (CA, client certificate and key), checked
// before they are used or kept: one message format for the CLI's flags and the control call's fields.
import fs from 'node:fs';
import tls from 'node:tls';
import type { TlsConfig } from '../config/load';

/** A memory server's TLS as the configuration file gives it ([memory_servers.tls]): paths and a name. */
export type TlsFiles = TlsConfig;

/** What each file is called in messages (`--ca` on the CLI, `ca_file` in the control call). */
export interface TlsFileNames {
  ca: string;
  cert: string;
  key: string;
}

/**
 * Throws `Expected ... for <name> but received ...` for the first problem: a relative path, a file
 * that cannot be read, one that is not PEM, a certificate without its key or the other way round,
 * files TLS itself refuses (a key that does not match its certificate, a broken PEM).
 */
export function checkTlsFiles(t: TlsFiles, names: TlsFileNames): void {
  if ((t.cert === null) !== (t.key === null)) {
    const given = t.cert !== null ? names.cert : names.key;
    throw new Error(`Expected both ${names.cert} and ${names.key} (a client certificate and its key) but received only ${given}`);
  }
  const pems: { ca?: string; cert?: string; key?: string } = {};
  for (const which of ['ca', 'cert', 'key'] as const) {
    const file = t[which];
    if (file === null) continue;
    const name = names[which];
    if (!file.startsWith('/')) throw new Error(`Expected an absolute path for ${name} but received ${JSON.stringify(file)}`);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (e) {
      throw new Error(`Expected a readable file for ${name} but received ${JSON.stringify(file)} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
    }
    if (!text.includes('-----BEGIN ')) throw new Error(`Expected a PEM file (-----BEGIN ...) for ${name} but received ${JSON.stringify(file)}`);
    pems[which] = text;
  }
  // grpc-js would only find out at the first connection, and then just fail it.
  try {
    tls.createSecureContext({ ...(pems.ca ? { ca: pems.ca } : {}), ...(pems.cert ? { cert: pems.cert, key: pems.key } : {}) });
  } catch (e) {
    const given = (['ca', 'cert', 'key'] as const).filter((w) => t[w] !== null).map((w) => names[w]);
    throw new Error(`Expected PEM files TLS accepts for ${given.join(', ')} but received files it refuses: ${(e as Error).message}`);
  }
}

/** null when nothing asks for TLS (no file, no server name). */
export function tlsOrNull(t: TlsFiles): TlsFiles | null {
  return t.ca === null && t.cert === null && t.key === null && t.serverName === null ? null : t;
}
