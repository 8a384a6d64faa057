// Addresses of gRPC endpoints as written in the config and on the command line:
// `host:port`, `[v6]:port`, or `unix:PATH` (absolute). Turned into grpc-js targets in one place.

export const ADDRESS_EXPECTED = 'host:port or unix:PATH';

const HOST_PORT = /^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?):(\d{1,5})$/;

/** true when `text` is `host:port` (port 0..65535; 0 only where the caller allows) or `unix:/abs/path`. */
export function isAddress(text: string, allowPortZero = false): boolean {
  if (text.startsWith('unix:')) return text.length > 6 && text[5] === '/';
  const m = HOST_PORT.exec(text);
  if (m === null) return false;
  const port = Number(m[1]);
  return port <= 65535 && (allowPortZero || port > 0);
}

/** The grpc-js target for an address (`unix:` paths pass through; host:port is dns-resolved). */
export function grpcTarget(address: string): string {
  return address.startsWith('unix:') ? address : `dns:${address}`;
}

/** Splits `host:port` for net.Server.listen / http.Server.listen. */
export function splitHostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  let host = address.slice(0, i);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return { host, port: Number(address.slice(i + 1)) };
}
