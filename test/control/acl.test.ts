import { test } from 'node:test';
import assert from 'node:assert/strict';
import { check, refusal, type Caller, type RegionSpec } from '../../daemon/regions';

const region: RegionSpec = {
  id: '00000000-0000-4000-8000-000000000000', name: 'db', sizeBytes: 4096, pageSize: 4096, residentBytes: 0, servers: [], replicas: 1,
  prefetch: 'auto', onUnavailable: 'wait', dirtyTracking: 'wp', ownerUid: 1000, ownerGid: 2000, mode: 0o660, createdAt: '',
};
const who = (uid: number, gid: number, groups: number[] = []): Caller => ({ pid: 1, uid, gid, groups });

test('root, the owner, and the group when the mode allows', () => {
  assert.equal(refusal(region, who(0, 0), 'use'), null);
  assert.equal(refusal(region, who(0, 0), 'admin'), null);
  assert.equal(refusal(region, who(1000, 1000), 'use'), null);
  assert.equal(refusal(region, who(1000, 1000), 'admin'), null);
  assert.equal(refusal(region, who(1001, 2000), 'use'), null);
  assert.equal(refusal(region, who(1001, 5, [7, 2000]), 'use'), null, 'supplementary group');
  assert.equal(refusal({ ...region, mode: 0o666 }, who(1002, 3), 'use'), null);
});

test('refusals name the region, the operation and the reason', () => {
  assert.throws(() => check(region, who(1001, 2000), 'admin', 'delete'), {
    name: 'RegionError',
    kind: 'denied',
    message: 'delete region "db": permission denied: uid 1001 is not its owner (uid 1000) and only the owner or root may do this',
  });
  assert.throws(() => check({ ...region, mode: 0o600 }, who(1001, 2000), 'use', 'attach'), {
    message: 'attach region "db": permission denied: uid 1001 is in its group (gid 2000) but mode 0600 does not give the group read and write',
  });
  assert.throws(() => check(region, who(65534, 65534), 'use', 'show'), {
    message: 'show region "db": permission denied: uid 65534 is neither its owner (uid 1000) nor in its group (gid 2000), and mode 0660 gives others no read and write',
  });
  assert.throws(() => check({ ...region, mode: 0o060 }, who(1000, 1000), 'use', 'sync'), {
    message: 'sync region "db": permission denied: mode 0060 does not give its owner (uid 1000) read and write',
  });
});
