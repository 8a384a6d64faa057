// What a test may need from the machine, with the reason to skip when it is not there.
import fs from 'node:fs';

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** null when the process may open /dev/userfaultfd or use userfaultfd(2) for kernel-mode faults; else why not. */
export function userfaultfdUnavailable(): string | null {
  if (!fs.existsSync('/dev/userfaultfd') && !fs.existsSync('/proc/sys/vm/unprivileged_userfaultfd')) {
    return 'this kernel has no userfaultfd';
  }
  if (isRoot()) return null;
  try {
    fs.accessSync('/dev/userfaultfd', fs.constants.R_OK | fs.constants.W_OK);
    return null;
  } catch {
    return 'needs root or read/write access to /dev/userfaultfd (see deploy/ for the udev rule)';
  }
}

/** Reason to skip a test that needs root, or null. */
export function rootUnavailable(): string | null {
  return isRoot() ? null : 'needs root';
}

/** null when farmemd can track dirty pages asynchronously here (UFFD_FEATURE_WP_ASYNC + PAGEMAP_SCAN, Linux 6.7+); else why not. */
export function asyncDirtyTrackingUnavailable(): string | null {
  const u = userfaultfdUnavailable();
  if (u !== null) return u;
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { probeAsyncWp } = require('../../daemon/pager/async-wp') as typeof import('../../daemon/pager/async-wp');
  const why = probeAsyncWp();
  return why === null ? null : `async dirty tracking unavailable: ${why}`;
}
