// Test certificates made with the openssl CLI: a CA, a server certificate for localhost/127.0.0.1,
// a client certificate from that CA and one from a rogue CA (files <name>.pem / <name>.key in dir).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

/** A skip reason when the openssl CLI is missing, else false. */
export const noOpenssl: string | false = spawnSync('openssl', ['version']).status === 0 ? false : 'needs the openssl CLI to make test certificates';

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

/** ca.pem (+ rogue.pem), server.pem/.key, client.pem/.key (signed by ca), intruder.pem/.key (signed by rogue). */
export function makeCerts(dir: string): void {
  for (const ca of ['ca', 'rogue']) {
    openssl(dir, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${ca}.key`, '-out', `${ca}.pem`, '-days', '2', '-subj', `/CN=farmem test ${ca}`);
  }
  const sign = (name: string, ca: string, ext: string) => {
    openssl(dir, 'req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    fs.writeFileSync(path.join(dir, `${name}.ext`), ext);
    openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.pem`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-out', `${name}.pem`, '-days', '2', '-extfile', `${name}.ext`);
  };
  sign('server', 'ca', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  sign('client', 'ca', 'extendedKeyUsage=clientAuth\n');
  sign('intruder', 'rogue', 'extendedKeyUsage=clientAuth\n');
}
