// farmemd marks its own process so that the Node attach API refuses to run in it: the daemon's
// JavaScript thread touching a region it serves would fault and wait on itself forever.

const MARK = Symbol.for('farmem.daemon-process');

/** Called once by the daemon (and by every AttachServer). */
export function markDaemonProcess(): void {
  (globalThis as Record<symbol, unknown>)[MARK] = true;
}

export function isDaemonProcess(): boolean {
  return (globalThis as Record<symbol, unknown>)[MARK] === true;
}
