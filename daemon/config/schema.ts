// The farmemd configuration file (TOML): every key, its check, its default and its documentation.
// KEYS is the one source for the docs table (`farmemd --help-config`) and for deploy/examples/farmemd.toml,
// which a test checks against it. Leaves carry their own error text so that every message reads
// `<key>: Expected <what> but received <value>`.
import { z } from 'zod';
import { ADDRESS_EXPECTED, isAddress } from '../util/address';
import { SIZE_EXPECTED, tryParseSize } from '../util/size';
import { DURATION_EXPECTED, tryParseDurationMs } from '../util/duration';

/** How a received value reads in a message. */
export function shown(input: unknown): string {
  if (input === undefined) return 'nothing (the key is missing)';
  if (typeof input === 'string') return JSON.stringify(input);
  if (typeof input === 'bigint') return String(input);
  if (input instanceof Date) return input.toISOString();
  try {
    return JSON.stringify(input) ?? String(input);
  } catch {
    return String(input);
  }
}

const expect = (what: string) => ({ error: (iss: { input?: unknown }) => `Expected ${what} but received ${shown(iss.input)}` });

function str(what: string, ok: (s: string) => boolean = () => true) {
  return z.string(expect(what)).refine(ok, expect(what));
}
const size = () =>
  z.union([z.string(), z.number()], expect(SIZE_EXPECTED)).transform((v, ctx) => {
    const n = tryParseSize(v);
    if (n === null) {
      ctx.addIssue({ code: 'custom', message: `Expected ${SIZE_EXPECTED} but received ${shown(v)}`, input: v });
      return z.NEVER;
    }
    return n;
  });
const duration = () =>
  z.union([z.string(), z.number()], expect(DURATION_EXPECTED)).transform((v, ctx) => {
    const n = tryParseDurationMs(v);
    if (n === null) {
      ctx.addIssue({ code: 'custom', message: `Expected ${DURATION_EXPECTED} but received ${shown(v)}`, input: v });
      return z.NEVER;
    }
    return n;
  });
const bool = () => z.boolean(expect('true or false'));
const int = (what: string, min: number, max: number) =>
  z.number(expect(what)).refine((n) => Number.isInteger(n) && n >= min && n <= max, expect(what));
const path = () => str('an absolute path', (s) => s.startsWith('/'));
const optPath = () => str('an absolute path or "" (none)', (s) => s === '' || s.startsWith('/'));

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
const PREFETCH = ['auto', 'none', 'readahead', 'stride', 'trend'] as const;

const tlsSchema = z.strictObject(
  {
    ca: path().optional(),
    cert: path().optional(),
    key: path().optional(),
    server_name: str('a host name').optional(),
  },
  expect('a table with ca, cert, key, server_name'),
);

const memoryServerSchema = z.strictObject(
  {
    address: str(ADDRESS_EXPECTED, (s) => isAddress(s)),
    weight: int('an integer from 1 to 1000', 1, 1000).default(1),
    token: str('a non-empty string', (s) => s.length > 0).optional(),
    token_file: path().optional(),
    tls: tlsSchema.optional(),
  },
  expect('a table with address, weight, token, token_file, tls'),
);

export const configSchema = z.strictObject(
  {
    state_dir: path().optional(),
    socket: path().optional(),
    attach_socket: path().optional(),
    socket_group: str('a group name').default('farmem'),
    socket_mode: int('a file mode from 0 to 0o777 (e.g. 0o660)', 0, 0o777).default(0o660),
    log_level: z.enum(LOG_LEVELS, expect(LOG_LEVELS.join(', '))).default('info'),
    log_pretty: bool().default(false),
    metrics_address: str(`host:port or "" (off)`, (s) => s === '' || (isAddress(s, true) && !s.startsWith('unix:'))).default(''),
    cache_size: size().default(256 * 1024 * 1024),
    resident_cap: size().default(0),
    drain_timeout: duration().default(30_000),
    memory_servers: z.array(memoryServerSchema, expect('an array of tables ([[memory_servers]])')).default([]),
    fault: z
      .strictObject(
        {
          threads: int('an integer from 0 (one per vCPU) to 256', 0, 256).default(0),
          pin: bool().default(true),
          unavailable_timeout: duration().default(30_000),
        },
        expect('a table with threads, pin, unavailable_timeout'),
      )
      .default({ threads: 0, pin: true, unavailable_timeout: 30_000 }),
    region_defaults: z
      .strictObject(
        {
          page_size: size().default(4096),
          replicas: int('an integer from 1 to 16', 1, 16).default(1),
          prefetch: z.enum(PREFETCH, expect(PREFETCH.join(', '))).default('auto'),
          on_unavailable: z.enum(['wait', 'sigbus'], expect('wait or sigbus')).default('wait'),
          dirty_tracking: z.enum(['wp', 'async', 'auto'], expect('wp, async or auto')).default('wp'),
        },
        expect('a table with page_size, replicas, prefetch, on_unavailable, dirty_tracking'),
      )
      .default({ page_size: 4096, replicas: 1, prefetch: 'auto', on_unavailable: 'wait', dirty_tracking: 'wp' }),
    embedded_server: z
      .strictObject(
        {
          enabled: z.union([z.literal('auto'), z.boolean()], expect('"auto", true or false')).default('auto'),
          listen: str('host:port (port 0 picks one)', (s) => isAddress(s, true) && !s.startsWith('unix:')).default('127.0.0.1:0'),
          capacity: size().default(4 * 1024 ** 3),
          data_dir: optPath().default(''),
        },
        expect('a table with enabled, listen, capacity, data_dir'),
      )
      .default({ enabled: 'auto', listen: '127.0.0.1:0', capacity: 4 * 1024 ** 3, data_dir: '' }),
  },
  expect('a TOML document'),
);

export type RawConfig = z.output<typeof configSchema>;

/** Documentation of every key, in file order: the docs table and the example file follow it. */
export const KEYS: ReadonlyArray<{ key: string; type: string; default: string; doc: string }> = [
  { key: 'state_dir', type: 'path', default: '/var/lib/farmem (root), else $XDG_STATE_HOME/farmem', doc: 'Where the region registry (regions.json) is kept; must survive restarts.' },
  { key: 'socket', type: 'path', default: '/run/farmem/farmemd.sock (root), else $XDG_RUNTIME_DIR/farmem/farmemd.sock', doc: 'The control socket (gRPC `farmem.v1.Daemon`), used by the `farmem` CLI.' },
  { key: 'attach_socket', type: 'path', default: 'attach.sock next to `socket`', doc: 'The attach socket (SOCK_SEQPACKET) over which processes receive a region memfd and hand back their uffd.' },
  { key: 'socket_group', type: 'string', default: 'farmem', doc: 'Group given to both sockets when it exists, so its members may use farmem without root.' },
  { key: 'socket_mode', type: 'integer', default: '0o660', doc: 'File mode of both sockets.' },
  { key: 'log_level', type: 'fatal|error|warn|info|debug|trace', default: 'info', doc: 'Least severe level logged (pino JSON on stdout).' },
  { key: 'log_pretty', type: 'boolean', default: 'false', doc: 'Human-readable colored logs instead of JSON (for a terminal).' },
  { key: 'metrics_address', type: 'host:port', default: '"" (off)', doc: 'Where Prometheus metrics are served over HTTP at /metrics (port 0 picks one).' },
  { key: 'cache_size', type: 'size', default: '256MiB', doc: 'Byte budget of the daemon page cache (prefetched and recently evicted clean pages).' },
  { key: 'resident_cap', type: 'size', default: '0 (no cap)', doc: 'Daemon-wide cap on resident region pages, on top of each region budget.' },
  { key: 'drain_timeout', type: 'duration', default: '30s', doc: 'On SIGTERM, how long to write back dirty pages before giving up (and exiting 1).' },
  { key: 'memory_servers', type: 'array of tables', default: '[] (start the embedded server)', doc: 'The memory servers of the daemon pool, one `[[memory_servers]]` table each.' },
  { key: 'memory_servers[].address', type: 'host:port | unix:PATH', default: '(required)', doc: 'Address of the memory server.' },
  { key: 'memory_servers[].weight', type: 'integer 1..1000', default: '1', doc: 'Share of new pages placed on this server, relative to the others.' },
  { key: 'memory_servers[].token', type: 'string', default: '(none)', doc: 'Bearer token sent to the server (prefer token_file).' },
  { key: 'memory_servers[].token_file', type: 'path', default: '(none)', doc: 'File holding the bearer token (read at start and on SIGHUP reload).' },
  { key: 'memory_servers[].tls', type: 'table', default: '(plain TCP)', doc: 'Use TLS: keys ca, cert, key (client certificate), server_name.' },
  { key: 'memory_servers[].tls.ca', type: 'path', default: 'system roots', doc: 'PEM file of the CA that signed the server certificate.' },
  { key: 'memory_servers[].tls.cert', type: 'path', default: '(none)', doc: 'PEM client certificate, for servers that require one.' },
  { key: 'memory_servers[].tls.key', type: 'path', default: '(none)', doc: 'PEM key of the client certificate.' },
  { key: 'memory_servers[].tls.server_name', type: 'string', default: 'the address host', doc: 'Name to check the server certificate against.' },
  { key: 'fault.threads', type: 'integer 0..256', default: '0 (one per vCPU)', doc: 'Number of native fault-handling threads.' },
  { key: 'fault.pin', type: 'boolean', default: 'true', doc: 'Pin each fault thread to its own vCPU (waking a thread on another vCPU costs ~40 µs).' },
  { key: 'fault.unavailable_timeout', type: 'duration', default: '30s', doc: 'How long no memory server may answer before the daemon logs it loudly and regions created with on_unavailable=sigbus get SIGBUS.' },
  { key: 'region_defaults.page_size', type: 'size', default: '4KiB', doc: 'Page size of new regions when `farmem region create` gives none (power of two, 4KiB..2MiB).' },
  { key: 'region_defaults.replicas', type: 'integer 1..16', default: '1', doc: 'Replicas of each page for new regions.' },
  { key: 'region_defaults.prefetch', type: 'auto|none|readahead|stride|trend', default: 'auto', doc: 'Prefetch policy of new regions.' },
  { key: 'region_defaults.dirty_tracking', type: 'wp|async|auto', default: 'wp', doc: 'How new regions find dirty pages: wp (a write-protect fault on the first write to a page), async (UFFD_FEATURE_WP_ASYNC + PAGEMAP_SCAN, no fault; the region is never evicted — no resident budget, not by resident_cap, not by `farmem region evict` — because async write-protect cannot block a write racing an eviction), auto (async when the kernel has it, the region has no resident budget and no resident_cap is set; else wp). wp by default: async gives up every way of evicting the region.' },
  { key: 'region_defaults.on_unavailable', type: 'wait|sigbus', default: 'wait', doc: 'What a faulting process gets when no memory server answers: wait (like a hard NFS mount) or SIGBUS.' },
  { key: 'embedded_server.enabled', type: '"auto" | boolean', default: 'auto', doc: 'Start a memory server inside farmemd on loopback: auto = only when memory_servers is empty.' },
  { key: 'embedded_server.listen', type: 'host:port', default: '127.0.0.1:0', doc: 'Where the embedded memory server listens (port 0 picks one).' },
  { key: 'embedded_server.capacity', type: 'size', default: '4GiB', doc: 'Bytes the embedded memory server may store.' },
  { key: 'embedded_server.data_dir', type: 'path', default: '"" (memory only)', doc: 'Directory where the embedded memory server persists pages.' },
];

/** The docs table (Markdown) of every key. */
export function renderKeysTable(): string {
  const rows = KEYS.map((k) => `| \`${k.key}\` | ${k.type} | ${k.default} | ${k.doc} |`);
  return ['| key | type | default | meaning |', '|---|---|---|---|', ...rows].join('\n');
}
