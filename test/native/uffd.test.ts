// The uffd bindings in one process: handshake, registration and the resolving ioctls on the test's
// own memfd mapping (pages are installed before they are touched, so nothing here faults), and
// every error path. Faults from another process are in crossproc.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { addon, memfd, uffd, type Mapping, type UffdOpened } from '../../daemon/native';
import { rootUnavailable, userfaultfdUnavailable } from '../helpers/env';

const skip = userfaultfdUnavailable() ?? false;
const PS = 4096;

interface Fixture {
  u: UffdOpened;
  fd: number;
  map: Mapping;
  close(): void;
}

/** A uffd after UFFDIO_API, and a memfd of `pages` mapped into the test, registered with `modes`. */
function fixture(pages: number, modes: ('missing' | 'wp' | 'minor')[] | null): Fixture {
  const u = uffd.open();
  uffd.api(u.fd, ['THREAD_ID', 'WP_HUGETLBFS_SHMEM']);
  const fd = memfd.create('farmem-uffd-test', pages * PS);
  const map = memfd.map(fd, pages * PS);
  if (modes) uffd.register(u.fd, map.address, pages * PS, modes);
  return {
    u,
    fd,
    map,
    close() {
      memfd.close(u.fd);
      memfd.unmap(map);
      memfd.close(fd);
    },
  };
}

const nativeError = (code: string, message: string) => ({ name: 'NativeError', code, message });
const typeError = (message: string) => ({ name: 'TypeError', code: 'ERR_INVALID_ARG', message });

test('open prefers /dev/userfaultfd and api grants features by name', { skip }, () => {
  const u = uffd.open();
  try {
    assert.deepEqual({ ...u, fd: 0 }, { fd: 0, method: 'dev-userfaultfd', userModeOnly: false, warning: null });
    const api = uffd.api(u.fd, ['THREAD_ID', 'EVENT_REMOVE']);
    assert.ok(api.features.includes('THREAD_ID'));
    assert.ok(api.features.includes('MISSING_SHMEM'));
    assert.deepEqual(api.ioctls, ['REGISTER', 'UNREGISTER', 'API']);
    // A second handshake on one uffd is refused by the kernel.
    assert.throws(() => uffd.api(u.fd, []), nativeError('EINVAL', 'UFFDIO_API: Invalid argument (EINVAL)'));
  } finally {
    memfd.close(u.fd);
  }
});

test('without privileges, open falls back to user-mode-only and says what that costs', { skip: rootUnavailable() ?? skip }, () => {
  const native = path.join(__dirname, '..', '..', 'daemon', 'native.js');
  const script = `const { uffd } = require(${JSON.stringify(native)});
    const u = uffd.open({ allowUserModeOnly: true });
    let err = null;
    try { uffd.open(); } catch (e) { err = { name: e.name, code: e.code, message: e.message }; }
    console.log(JSON.stringify({ ...u, fd: typeof u.fd, err }));`;
  const r = spawnSync(process.execPath, ['-e', script], { uid: 65534, gid: 65534, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), {
    fd: 'number',
    method: 'syscall-user-mode-only',
    userModeOnly: true,
    warning:
      'userfaultfd is limited to user-mode faults (no access to /dev/userfaultfd and vm.unprivileged_userfaultfd is 0): ' +
      'kernel-mode accesses to the region, such as read(2) into it, will fail with EFAULT',
    err: { name: 'NativeError', code: 'EPERM', message: 'userfaultfd: Operation not permitted (EPERM)' },
  });
});

test('register returns the allowed ioctls; copy installs bytes the mapping then shows; EEXIST is an outcome', { skip }, (t) => {
  const f = fixture(4, null);
  t.after(() => f.close());
  assert.deepEqual(uffd.register(f.u.fd, f.map.address, 4 * PS, ['missing', 'wp']).ioctls.sort(), ['COPY', 'MOVE', 'POISON', 'WAKE', 'WRITEPROTECT', 'ZEROPAGE']);
  const page = Buffer.alloc(2 * PS, 0x5a);
  assert.deepEqual(uffd.copy(f.u.fd, f.map.address + BigInt(PS), page), { outcome: 'done', bytes: 2 * PS });
  assert.ok(f.map.buffer.subarray(PS, 3 * PS).equals(page));
  assert.deepEqual(memfd.dataRanges(f.fd), [{ offset: PS, length: 2 * PS }]);
  assert.deepEqual(uffd.copy(f.u.fd, f.map.address + BigInt(PS), Buffer.alloc(PS)), { outcome: 'exists', bytes: 0 });
  assert.equal(f.map.buffer[PS], 0x5a);
  // zeropage and dontWake: the page is there, and nothing is waiting.
  assert.deepEqual(uffd.zeropage(f.u.fd, f.map.address, PS, { dontWake: true }), { outcome: 'done', bytes: PS });
  assert.equal(f.map.buffer[0], 0);
  assert.deepEqual(uffd.zeropage(f.u.fd, f.map.address, PS), { outcome: 'exists', bytes: 0 });
  // write-protect set and clear on installed pages; wake of a range with no waiters.
  assert.equal(uffd.writeProtect(f.u.fd, f.map.address, 4 * PS, true), 'done');
  assert.equal(uffd.writeProtect(f.u.fd, f.map.address, 4 * PS, false, { dontWake: true }), 'done');
  uffd.wake(f.u.fd, f.map.address, 4 * PS);
  assert.deepEqual(uffd.readEvents(f.u.fd), []);
  uffd.unregister(f.u.fd, f.map.address, 4 * PS);
  assert.throws(() => uffd.copy(f.u.fd, f.map.address + 3n * BigInt(PS), Buffer.alloc(PS)), nativeError('ENOENT', 'UFFDIO_COPY: No such file or directory (ENOENT)'));
});

test('copy with wp installs a write-protected page', { skip }, (t) => {
  const f = fixture(1, ['missing', 'wp']);
  t.after(() => f.close());
  assert.deepEqual(uffd.copy(f.u.fd, f.map.address, Buffer.alloc(PS, 1), { wp: true }), { outcome: 'done', bytes: PS });
  assert.equal(uffd.writeProtect(f.u.fd, f.map.address, PS, false), 'done');
  assert.equal(f.map.buffer[0], 1);
});

test('minor mode: continue maps a page already in the page cache', { skip }, (t) => {
  const f = fixture(2, ['minor']);
  t.after(() => f.close());
  memfd.pwrite(f.fd, Buffer.alloc(PS, 0x33), PS);
  assert.deepEqual(uffd.continue(f.u.fd, f.map.address + BigInt(PS), PS), { outcome: 'done', bytes: PS });
  assert.equal(f.map.buffer[PS], 0x33);
  assert.deepEqual(uffd.continue(f.u.fd, f.map.address + BigInt(PS), PS), { outcome: 'exists', bytes: 0 });
  // No page in the page cache: nothing to continue with.
  assert.throws(() => uffd.continue(f.u.fd, f.map.address, PS), nativeError('EFAULT', 'UFFDIO_CONTINUE: Bad address (EFAULT)'));
});

test('kernel errors: unregistered range, bad modes, blocking uffd, closed fd', { skip }, (t) => {
  const f = fixture(2, ['missing']);
  t.after(() => f.close());
  const far = f.map.address + 1024n * 1024n * 1024n;
  assert.throws(() => uffd.copy(f.u.fd, far, Buffer.alloc(PS)), nativeError('ENOENT', 'UFFDIO_COPY: No such file or directory (ENOENT)'));
  assert.throws(() => uffd.zeropage(f.u.fd, far, PS), nativeError('ENOENT', 'UFFDIO_ZEROPAGE: No such file or directory (ENOENT)'));
  assert.throws(() => uffd.writeProtect(f.u.fd, far, PS, true), nativeError('ENOENT', 'UFFDIO_WRITEPROTECT: No such file or directory (ENOENT)'));
  assert.throws(() => uffd.register(f.u.fd, far, PS, ['missing']), nativeError('EINVAL', 'UFFDIO_REGISTER: Invalid argument (EINVAL)'));
  // The range is registered missing-only: write-protect is not allowed on it.
  assert.throws(() => uffd.writeProtect(f.u.fd, f.map.address, PS, true), nativeError('ENOENT', 'UFFDIO_WRITEPROTECT: No such file or directory (ENOENT)'));

  const blocking = uffd.open({ nonBlocking: false });
  try {
    assert.throws(() => uffd.readEvents(blocking.fd), nativeError('EINVAL', 'read uffd (opened without O_NONBLOCK): Invalid argument (EINVAL)'));
  } finally {
    memfd.close(blocking.fd);
  }

  const closed = uffd.open();
  memfd.close(closed.fd);
  assert.throws(() => uffd.copy(closed.fd, f.map.address, Buffer.alloc(PS)), nativeError('EBADF', 'UFFDIO_COPY: Bad file descriptor (EBADF)'));
  assert.throws(() => uffd.api(closed.fd, []), nativeError('EBADF', 'UFFDIO_API: Bad file descriptor (EBADF)'));
  assert.throws(() => uffd.wake(closed.fd, f.map.address, PS), nativeError('EBADF', 'UFFDIO_WAKE: Bad file descriptor (EBADF)'));
  assert.throws(() => uffd.readEvents(closed.fd), nativeError('EBADF', 'fcntl: Bad file descriptor (EBADF)'));
  // An fd that is not a uffd.
  assert.throws(() => uffd.copy(f.fd, f.map.address, Buffer.alloc(PS)), nativeError('ENOTTY', 'UFFDIO_COPY: Inappropriate ioctl for device (ENOTTY)'));
});

test('wrong arguments are TypeErrors naming what was expected', { skip }, () => {
  assert.throws(() => uffd.copy(-1, 0n, Buffer.alloc(PS)), typeError('Expected a file descriptor (integer >= 0) for fd but received -1'));
  assert.throws(() => uffd.copy('3' as unknown as number, 0n, Buffer.alloc(PS)), typeError('Expected a file descriptor (integer >= 0) for fd but received "3"'));
  assert.throws(() => uffd.copy(3, 4097n, Buffer.alloc(PS)), typeError('Expected a page-aligned bigint address (multiple of 4096) for dst but received 4097n'));
  assert.throws(() => uffd.copy(3, 4096 as unknown as bigint, Buffer.alloc(PS)), typeError('Expected a page-aligned bigint address (multiple of 4096) for dst but received 4096'));
  assert.throws(() => uffd.copy(3, 1n << 64n, Buffer.alloc(PS)), typeError('Expected a page-aligned bigint address (multiple of 4096) for dst but received 18446744073709551616n'));
  assert.throws(() => uffd.copy(3, 0n, Buffer.alloc(100)), typeError('Expected a Buffer of whole pages (a positive multiple of 4096 bytes) for src but received a Buffer of 100 bytes'));
  assert.throws(() => uffd.copy(3, 0n, Buffer.alloc(PS), { wp: 1 as unknown as boolean }), typeError('Expected a boolean for wp but received 1'));
  assert.throws(() => uffd.copy(3, 0n, Buffer.alloc(PS), null as unknown as object), typeError('Expected an options object for mode but received null'));
  assert.throws(() => uffd.zeropage(3, 0n, 100), typeError('Expected a positive multiple of the page size (4096) for length but received 100'));
  assert.throws(() => uffd.register(3, 0n, PS, []), typeError("Expected a non-empty array of 'missing' | 'wp' | 'minor' for modes but received an array"));
  assert.throws(() => uffd.register(3, 0n, PS, ['sync' as 'wp']), typeError("Expected a non-empty array of 'missing' | 'wp' | 'minor' for modes but received an array"));
  assert.throws(() => uffd.api(3, ['FAST' as 'MOVE']), typeError('Expected an array of uffd feature names for features but received an array'));
  assert.throws(() => uffd.writeProtect(3, 0n, PS, 'yes' as unknown as boolean), typeError('Expected a boolean for protect but received "yes"'));
  assert.throws(() => uffd.readEvents(3, 0), typeError('Expected an integer from 1 to 1024 for max but received 0'));
  assert.throws(() => uffd.open({ nonBlocking: 'no' as unknown as boolean }), typeError('Expected a boolean for nonBlocking but received "no"'));
  // The addon checks types itself too, for callers that bypass the wrappers.
  const raw = addon();
  assert.throws(() => raw.uffdCopy('x' as unknown as number, 0n, Buffer.alloc(PS), false, false), typeError('Expected an integer for fd but received "x"'));
  assert.throws(() => raw.uffdCopy(3, -1n, Buffer.alloc(PS), false, false), typeError('Expected an unsigned 64-bit integer for dst but received -1'));
  assert.throws(() => raw.uffdCopy(3, 0n, 'page' as unknown as Buffer, false, false), typeError('Expected a Buffer for src but received "page"'));
  assert.throws(() => raw.uffdApi(3, ['NOPE' as 'MOVE']), typeError('Expected an array of uffd feature names for features but received an array'));
  assert.throws(() => raw.uffdReadEvents(3, 5000), typeError('Expected an integer from 1 to 1024 for max but received 5000'));
});
