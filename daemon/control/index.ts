// The control plane: the `farmem.v1.Daemon` gRPC service on farmemd's Unix control socket.
export { DaemonService, type DaemonMethod } from './definition';
export { listenControl, groupId, type ControlServer } from './server';
export { daemonHandlers, regionToPb, callerOf } from './service';
export { peerTag, parsePeerTag } from './peer';
export { pageMapWindow, PAGE_MAP_WINDOW, type PageMapWindow } from './pagemap';
