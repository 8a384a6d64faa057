// Dirty tracking through the control plane with a test pager: explicit async is refused, with the
// kernel's reason, where the pager cannot do it; auto and wp are taken, and the CLI shows them.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { CreateInput } from '../../daemon/daemon';
import { farmemAsync, startInProcess, type InProcess } from './inproc';

let p: InProcess;
before(async () => {
  p = await startInProcess();
});
after(() => p.close());

const caller = () => ({ pid: process.pid, uid: process.getuid!(), gid: process.getgid!(), groups: [] });
const input = (name: string, dirtyTracking: string | null): CreateInput => ({
  name, sizeBytes: 1 << 20, pageSize: null, residentBytes: null, servers: [], replicas: null, prefetch: null, onUnavailable: null, dirtyTracking, ownerUid: null, ownerGid: null, mode: null,
});

test('async where the pager cannot do it is refused with the reason; wp, auto and the default are taken', async () => {
  p.runtime.asyncUnavailable = () => 'the kernel refuses UFFD_FEATURE_WP_ASYNC (Linux 6.7+)';
  await assert.rejects(p.daemon.createRegion(caller(), input('noasync', 'async')), {
    name: 'RegionError',
    kind: 'precondition',
    message: 'create region "noasync": dirty tracking async needs UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN (Linux 6.7+): the kernel refuses UFFD_FEATURE_WP_ASYNC (Linux 6.7+); use --dirty-tracking wp or auto',
  });
  assert.equal(p.daemon.registry.get('noasync'), null);
  assert.equal((await p.daemon.createRegion(caller(), input('au', 'auto'))).dirtyTracking, 'auto');
  assert.equal((await p.daemon.createRegion(caller(), input('dflt', null))).dirtyTracking, 'wp');
  const r = await farmemAsync(p.socket, ['region', 'create', 'cliasync', '--size', '1MiB', '--dirty-tracking', 'async']);
  assert.equal(r.stderr, 'farmem: create region "cliasync": dirty tracking async needs UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN (Linux 6.7+): the kernel refuses UFFD_FEATURE_WP_ASYNC (Linux 6.7+); use --dirty-tracking wp or auto\n');
  assert.equal(r.status, 1);
  p.runtime.asyncUnavailable = () => null;
  const ok = await farmemAsync(p.socket, ['region', 'create', 'cliasync', '--size', '1MiB', '--dirty-tracking', 'async', '--json']);
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).dirtyTracking, 'async');
  const shown = await farmemAsync(p.socket, ['region', 'show', 'cliasync']);
  assert.match(shown.stdout, /^dirty tracking:\s+async$/m);
});
