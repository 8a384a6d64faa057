// The attach socket: how application processes attach regions and hand farmemd their uffd.
export { AttachServer, type AttachServerOptions, type AttachServerStats } from './server';
export type { AttachHost, DetachReason, NewAttachment, Refusal, ResolveRequest, Resolution } from './host';
export { markDaemonProcess, isDaemonProcess } from './marker';
export { ATTACH_PROTOCOL_VERSION, DEFAULT_ATTACH_SOCKET, MAX_ATTACH_PACKET, type AttachCodeName } from './protocol';
