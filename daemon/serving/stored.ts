// Which fds handed back by the systemd fd store (LISTEN_FDS) the daemon may adopt as region memfds:
// a `region-<id>` name of a region in the registry, a memfd, of the region's size, one per region.
// Anything else is refused with the reason (the caller logs it, closes the fd and drops the name
// from the store, so it does not come back at every restart).
import { fdKind, fdTarget } from '../attach/fds';
import { memfd } from '../native';
import type { ListenFd } from '../lifecycle/fdstore';
import { regionIdOfFdName } from '../lifecycle/fdstore';
import type { RegionSpec } from '../regions';

export interface StoredMemfd {
  spec: RegionSpec;
  fd: number;
  name: string;
}

export interface RefusedFd {
  fd: number;
  name: string;
  reason: string;
}

export function sortStored(fds: ListenFd[], byId: (id: string) => RegionSpec | null): { adopt: StoredMemfd[]; refuse: RefusedFd[] } {
  const adopt: StoredMemfd[] = [];
  const refuse: RefusedFd[] = [];
  const taken = new Set<string>();
  for (const { fd, name } of fds) {
    const id = regionIdOfFdName(name);
    const no = (reason: string) => refuse.push({ fd, name, reason });
    if (id === null) {
      no('the name is not region-<region id>');
      continue;
    }
    const spec = byId(id);
    if (spec === null) {
      no(`no region with id ${id} in the registry (deleted while farmemd was down?)`);
      continue;
    }
    const kind = fdKind(fd);
    if (kind !== 'memfd') {
      no(`region "${spec.name}": it is not a memfd but ${fdTarget(fd)}`);
      continue;
    }
    const size = memfd.size(fd);
    if (size !== spec.sizeBytes) {
      no(`region "${spec.name}": the memfd is ${size} bytes, the region ${spec.sizeBytes}`);
      continue;
    }
    if (taken.has(spec.id)) {
      no(`region "${spec.name}": a second memfd for the same region`);
      continue;
    }
    taken.add(spec.id);
    adopt.push({ spec, fd, name });
  }
  return { adopt, refuse };
}
