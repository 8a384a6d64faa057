// Caller credentials on the control socket. grpc-js hides the transport from handlers; what it does
// expose is getPeer(), built from the socket's remoteAddress — which for a Unix socket is empty.
// So on accept (server.ts) we read SO_PEERCRED and set remoteAddress on that socket to a tag that
// encodes the credentials; getPeer() then returns the tag (grpc-js >= 1.11, BaseServerInterceptingCall
// getPeer(): `socket.remoteAddress` when there is no remotePort). A client cannot influence it:
// it is written by the server before the connection is handed to grpc-js.
import type { PeerCred } from '../native';

const TAG = /^farmem-uds:pid=(\d+),uid=(\d+),gid=(\d+)$/;

export function peerTag(c: PeerCred): string {
  return `farmem-uds:pid=${c.pid},uid=${c.uid},gid=${c.gid}`;
}

/** The credentials in a getPeer() string, or null when the call did not come through our socket. */
export function parsePeerTag(peer: string): PeerCred | null {
  const m = TAG.exec(peer);
  return m ? { pid: Number(m[1]), uid: Number(m[2]), gid: Number(m[3]) } : null;
}
