// memfd bindings: create, map, pread/pwrite, holes, data ranges, and the fd utilities.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { addon, memfd } from '../../daemon/native';

const PS = 4096;
const nativeError = (code: string, message: string) => ({ name: 'NativeError', code, message });
const typeError = (message: string) => ({ name: 'TypeError', code: 'ERR_INVALID_ARG', message });

test('a memfd is created at its size, close-on-exec, all holes', (t) => {
  const fd = memfd.create('farmem-memfd-test', 8 * PS);
  t.after(() => memfd.close(fd));
  assert.equal(memfd.size(fd), 8 * PS);
  assert.deepEqual(memfd.dataRanges(fd), []);
  assert.equal(fs.readlinkSync(`/proc/self/fd/${fd}`), '/memfd:farmem-memfd-test (deleted)');
  const flags = parseInt(/flags:\s+([0-7]+)/.exec(fs.readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))![1]!, 8);
  assert.equal(flags & 0o2000000, 0o2000000); // O_CLOEXEC
  assert.equal(memfd.pageSize(), PS);
});

test('pwrite and pread move whole pages without mapping them; holes read as zeros', (t) => {
  const fd = memfd.create('farmem-memfd-io', 4 * PS);
  t.after(() => memfd.close(fd));
  const page = Buffer.alloc(PS, 0xab);
  assert.equal(memfd.pwrite(fd, page, 2 * PS), PS);
  assert.deepEqual(memfd.dataRanges(fd), [{ offset: 2 * PS, length: PS }]);
  const back = Buffer.alloc(PS, 1);
  assert.equal(memfd.pread(fd, back, 2 * PS), PS);
  assert.ok(back.equals(page));
  assert.equal(memfd.pread(fd, back, 0), PS);
  assert.ok(back.equals(Buffer.alloc(PS)));
  assert.deepEqual(memfd.dataRanges(fd), [{ offset: 2 * PS, length: PS }]); // reading a hole allocated nothing
  // A read past the end returns what is there.
  assert.equal(memfd.pread(fd, Buffer.alloc(2 * PS), 3 * PS), PS);
  assert.equal(memfd.pread(fd, Buffer.alloc(PS), 10 * PS), 0);
});

test('the shared mapping sees pwrite, a punched hole drops the page, dataRanges lists runs', (t) => {
  const fd = memfd.create('farmem-memfd-map', 6 * PS);
  const map = memfd.map(fd, 6 * PS);
  t.after(() => {
    memfd.unmap(map);
    memfd.close(fd);
  });
  assert.equal(map.length, 6 * PS);
  assert.equal(map.buffer.length, 6 * PS);
  assert.equal(map.address % BigInt(PS), 0n);
  for (const p of [0, 1, 2, 4]) memfd.pwrite(fd, Buffer.alloc(PS, p + 1), p * PS);
  assert.deepEqual(memfd.dataRanges(fd), [{ offset: 0, length: 3 * PS }, { offset: 4 * PS, length: PS }]);
  assert.equal(map.buffer[PS], 2);
  map.buffer[4 * PS + 1] = 0x77; // a store to a present page goes to the file
  const b = Buffer.alloc(2);
  memfd.pread(fd, b, 4 * PS);
  assert.deepEqual([...b], [5, 0x77]);
  memfd.punchHole(fd, PS, PS);
  assert.deepEqual(memfd.dataRanges(fd), [{ offset: 0, length: PS }, { offset: 2 * PS, length: PS }, { offset: 4 * PS, length: PS }]);
  assert.deepEqual([0, 1, 2, 3, 4, 5].map((p) => memfd.hasData(fd, p * PS)), [true, false, true, false, true, false]);
  assert.throws(() => memfd.hasData(fd, -1), { message: 'Expected an integer >= 0 for offset but received -1' });
  assert.equal(memfd.size(fd), 6 * PS); // KEEP_SIZE
  memfd.pread(fd, b, PS);
  assert.deepEqual([...b], [0, 0]);
});

test('a read-only mapping', (t) => {
  const fd = memfd.create('farmem-memfd-ro', PS);
  memfd.pwrite(fd, Buffer.from('farmem'), 0);
  const map = memfd.map(fd, PS, { writable: false });
  t.after(() => {
    memfd.unmap(map);
    memfd.close(fd);
  });
  assert.equal(map.buffer.subarray(0, 6).toString(), 'farmem');
});

test('pidfdOpen and pidfdGetfd take a copy of a process fd', (t) => {
  const fd = memfd.create('farmem-memfd-pidfd', PS);
  memfd.pwrite(fd, Buffer.from('shared'), 0);
  const pidfd = memfd.pidfdOpen(process.pid);
  t.after(() => {
    memfd.close(pidfd);
    memfd.close(fd);
  });
  assert.match(fs.readlinkSync(`/proc/self/fd/${pidfd}`), /^anon_inode:\[pidfd\]$/);
  const copy = memfd.pidfdGetfd(pidfd, fd);
  t.after(() => memfd.close(copy));
  assert.notEqual(copy, fd);
  const b = Buffer.alloc(6);
  memfd.pread(copy, b, 0);
  assert.equal(b.toString(), 'shared');
});

test('system errors carry the errno name and the syscall', () => {
  const fd = memfd.create('farmem-memfd-err', PS);
  memfd.close(fd);
  assert.throws(() => memfd.close(fd), nativeError('EBADF', 'close: Bad file descriptor (EBADF)'));
  assert.throws(() => memfd.pread(fd, Buffer.alloc(4), 0), nativeError('EBADF', 'pread: Bad file descriptor (EBADF)'));
  assert.throws(() => memfd.pwrite(fd, Buffer.alloc(4), 0), nativeError('EBADF', 'pwrite: Bad file descriptor (EBADF)'));
  assert.throws(() => memfd.punchHole(fd, 0, PS), nativeError('EBADF', 'fallocate: Bad file descriptor (EBADF)'));
  assert.throws(() => memfd.map(fd, PS), nativeError('EBADF', 'mmap: Bad file descriptor (EBADF)'));
  assert.throws(() => memfd.dataRanges(fd), nativeError('EBADF', 'fstat: Bad file descriptor (EBADF)'));
  assert.throws(() => memfd.size(fd), nativeError('EBADF', 'fstat: Bad file descriptor (EBADF)'));
  assert.throws(() => memfd.pidfdGetfd(fd, 0), nativeError('EBADF', 'pidfd_getfd: Bad file descriptor (EBADF)'));
  assert.throws(() => memfd.pidfdOpen(0x7ffffff0), nativeError('ESRCH', 'pidfd_open: No such process (ESRCH)'));
  assert.throws(() => memfd.create('x'.repeat(300), PS), nativeError('EINVAL', 'memfd_create: Invalid argument (EINVAL)'));
});

test('wrong arguments are TypeErrors naming what was expected', () => {
  assert.throws(() => memfd.create(7 as unknown as string, PS), typeError('Expected a string for name but received 7'));
  assert.throws(() => memfd.create('x', -1), typeError('Expected an integer >= 0 for size but received -1'));
  assert.throws(() => memfd.create('x', 1.5), typeError('Expected an integer >= 0 for size but received 1.5'));
  assert.throws(() => memfd.map(3, 100), typeError('Expected a positive multiple of the page size (4096) for length but received 100'));
  assert.throws(() => memfd.map(3, PS, { writable: 'yes' as unknown as boolean }), typeError('Expected a boolean for writable but received "yes"'));
  assert.throws(() => memfd.pread(3, new Uint8Array(4) as Buffer, 0), typeError('Expected a Buffer for buffer but received an object'));
  assert.throws(() => memfd.pwrite(3, Buffer.alloc(1), -4), typeError('Expected an integer >= 0 for offset but received -4'));
  assert.throws(() => memfd.punchHole(3, 0, 0), typeError('Expected an integer >= 1 for length but received 0'));
  assert.throws(() => memfd.unmap({ address: 4097n, length: PS, buffer: Buffer.alloc(0) }), typeError('Expected a page-aligned bigint address (multiple of 4096) for mapping.address but received 4097n'));
  assert.throws(() => memfd.pidfdOpen(0), typeError('Expected an integer from 1 to 2147483647 for pid but received 0'));
  assert.throws(() => memfd.close(null as unknown as number), typeError('Expected a file descriptor (integer >= 0) for fd but received null'));
  assert.throws(() => addon().memfdCreate('x', -1), typeError('Expected an unsigned 64-bit integer for size but received -1'));
  assert.throws(() => addon().pread(3, 'b' as unknown as Buffer, 0), typeError('Expected a Buffer for buffer but received "b"'));
});
