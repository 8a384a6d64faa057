// Test hosts: network namespaces with a veth pair each, made by the test itself. Each host gets its
// own /30 in a private test subnet that exists only while the test runs; the root namespace is the
// other end of every link. Traffic goes only to these addresses. Always call destroy() (t.after).
import { execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import crypto from 'node:crypto';

export interface TestHost {
  /** Namespace name. */
  ns: string;
  /** The host's address inside its namespace. */
  address: string;
  /** The root namespace's address on the link. */
  gateway: string;
  /** veth end in the root namespace (set it down to partition the host). */
  rootLink: string;
}

function ip(...args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

/** null when network namespaces can be made here; else why not. */
export function netnsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'network namespaces need root';
  try {
    execFileSync('ip', ['-V'], { stdio: 'ignore' });
  } catch {
    return 'the ip command (iproute2) is not installed';
  }
  return null;
}

export class TestHosts {
  readonly hosts: TestHost[] = [];
  private readonly children = new Set<ChildProcess>();
  private readonly tag = crypto.randomBytes(3).toString('hex');
  // A /24 per TestHosts picked at random in 10.213.0.0/16 so parallel runs rarely meet.
  private readonly net = 1 + crypto.randomInt(250);

  /** Creates `count` hosts. */
  create(count: number): TestHost[] {
    for (let i = 0; i < count; i++) {
      const ns = `fm-${this.tag}-${i}`;
      const rootLink = `fm${this.tag}r${i}`;
      const nsLink = `fm${this.tag}n${i}`;
      const base = i * 4;
      const gateway = `10.213.${this.net}.${base + 1}`;
      const address = `10.213.${this.net}.${base + 2}`;
      ip('netns', 'add', ns);
      const host: TestHost = { ns, address, gateway, rootLink };
      this.hosts.push(host);
      ip('link', 'add', rootLink, 'type', 'veth', 'peer', 'name', nsLink);
      ip('link', 'set', nsLink, 'netns', ns);
      ip('addr', 'add', `${gateway}/30`, 'dev', rootLink);
      ip('link', 'set', rootLink, 'up');
      ip('-n', ns, 'addr', 'add', `${address}/30`, 'dev', nsLink);
      ip('-n', ns, 'link', 'set', nsLink, 'up');
      ip('-n', ns, 'link', 'set', 'lo', 'up');
    }
    return this.hosts;
  }

  /** Runs a command inside a host's namespace; the child is killed by destroy(). */
  spawn(host: TestHost, command: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
    const child = spawn('ip', ['netns', 'exec', host.ns, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
    this.children.add(child);
    child.once('exit', () => this.children.delete(child));
    return child;
  }

  /** Cuts (down) or restores (up) the link to a host: a network partition. */
  setLink(host: TestHost, up: boolean): void {
    ip('link', 'set', host.rootLink, up ? 'up' : 'down');
  }

  /** Kills every child and deletes every namespace (its veth goes with it). Safe to call twice. */
  destroy(): void {
    for (const c of this.children) c.kill('SIGKILL');
    this.children.clear();
    for (const h of this.hosts.splice(0)) {
      try {
        ip('netns', 'del', h.ns);
      } catch {
        /* already gone */
      }
      try {
        ip('link', 'del', h.rootLink);
      } catch {
        /* deleted with the namespace */
      }
    }
  }
}
