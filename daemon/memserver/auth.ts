// Who may call: a client certificate signed by the configured CA (mutual TLS) and/or a bearer token.
// TLS is set up so the handshake accepts any client and the check happens per call: a refused
// caller then gets UNAUTHENTICATED with a reason (and a log line) instead of a bare handshake failure.
import crypto from 'node:crypto';
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';

export interface TlsFiles {
  /** PEM files: the server's certificate chain and key, and the CA that signs client certificates. */
  cert: string;
  key: string;
  ca: string;
}

class StaticCertificates implements grpc.experimental.CertificateProvider {
  constructor(private readonly ca: Buffer | null, private readonly identity: { certificate: Buffer; privateKey: Buffer } | null) {}
  // grpc-js registers its watcher only after adding the listener: answer on the next tick, like a real provider.
  addCaCertificateListener(l: grpc.experimental.CaCertificateUpdateListener): void {
    process.nextTick(() => l(this.ca ? { caCertificate: this.ca } : null));
  }
  removeCaCertificateListener(): void {}
  addIdentityCertificateListener(l: grpc.experimental.IdentityCertificateUpdateListener): void {
    process.nextTick(() => l(this.identity));
  }
  removeIdentityCertificateListener(): void {}
}

function readPem(file: string, name: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new Error(`${name} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export function serverCredentials(tls: TlsFiles | null): grpc.ServerCredentials {
  if (tls === null) return grpc.ServerCredentials.createInsecure();
  const ca = readPem(tls.ca, 'tls ca');
  const identity = { certificate: readPem(tls.cert, 'tls cert'), privateKey: readPem(tls.key, 'tls key') };
  // One provider for both roles: grpc-js 1.14 passes the two providers to its constructor swapped.
  const certs = new StaticCertificates(ca, identity);
  return grpc.experimental.createCertificateProviderServerCredentials(certs, certs, false);
}

export class Authorizer {
  private readonly expected: Buffer | null;
  constructor(private readonly tls: boolean, token: string | null) {
    this.expected = token === null ? null : Buffer.from(`Bearer ${token}`);
  }

  /** Why the call is refused, or null when it may go on. */
  refusal(call: { getAuthContext(): { sslPeerCertificate?: unknown }; metadata: grpc.Metadata }): string | null {
    if (this.tls && !call.getAuthContext().sslPeerCertificate) return 'no client certificate signed by the configured CA';
    if (this.expected !== null) {
      const got = call.metadata.get('authorization');
      if (got.length === 0) return 'missing authorization metadata (Bearer token)';
      const v = Buffer.from(String(got[0]));
      if (v.length !== this.expected.length || !crypto.timingSafeEqual(v, this.expected)) return 'wrong bearer token';
    }
    return null;
  }
}
