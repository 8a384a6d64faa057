// Loads farmemd's configuration: the TOML file (if any), then the command-line flags over it, then
// defaults that depend on who runs the daemon. Every error names where the bad value came from:
//   config /etc/farmem/farmemd.toml:7: memory_servers[1].address: Expected host:port or unix:PATH but received "x"
//   --memory-server: Expected host:port or unix:PATH but received "x"
import fs from 'node:fs';
import path from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import type { z } from 'zod';
import { configSchema, type LogLevel, type RawConfig } from './schema';
import { formatPath, keyLines, lineOf } from './locate';
import { defaultRunDir, defaultStateDir, ATTACH_SOCKET_NAME, SOCKET_NAME } from '../util/paths';
import type { DirtyTracking, OnUnavailable, PrefetchPolicyName } from '../regions/types';

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export interface TlsConfig {
  ca: string | null;
  cert: string | null;
  key: string | null;
  serverName: string | null;
}

export interface MemoryServerConfig {
  address: string;
  weight: number;
  token: string | null;
  /** Where token came from (token_file), so a reload can keep it as a path; null or absent: inline or none. */
  tokenFile?: string | null;
  tls: TlsConfig | null;
}

export interface DaemonConfig {
  /** The file read, or null when none was. */
  file: string | null;
  stateDir: string;
  socket: string;
  attachSocket: string;
  socketGroup: string;
  socketMode: number;
  logLevel: LogLevel;
  logPretty: boolean;
  /** host:port, or null when metrics are off. */
  metricsAddress: string | null;
  cacheBytes: number;
  residentCapBytes: number;
  drainTimeoutMs: number;
  memoryServers: MemoryServerConfig[];
  fault: { threads: number; pin: boolean; unavailableTimeoutMs: number };
  regionDefaults: { pageSize: number; replicas: number; prefetch: PrefetchPolicyName; onUnavailable: OnUnavailable; dirtyTracking: DirtyTracking };
  /** Whether farmemd starts its own memory server ('auto' resolved: true when memoryServers is empty). */
  embeddedServer: { enabled: boolean; listen: string; capacityBytes: number; dataDir: string | null };
}

/** A value given on the command line, set at a dotted key (`log_level`, `embedded_server.enabled`). */
export interface FlagValue {
  key: string;
  flag: string;
  value: unknown;
}

export interface LoadOptions {
  /** The file to read; null for none. */
  file: string | null;
  /** false: the file is the default path and may be missing. */
  explicit: boolean;
  flags?: FlagValue[];
  env?: NodeJS.ProcessEnv;
}

function setDotted(obj: Record<string, unknown>, key: string, value: unknown): void {
  const parts = key.split('.');
  let o = obj;
  for (const p of parts.slice(0, -1)) {
    const next = o[p];
    if (typeof next !== 'object' || next === null || Array.isArray(next)) o[p] = {};
    o = o[p] as Record<string, unknown>;
  }
  o[parts[parts.length - 1]!] = value;
}

export function loadConfig(opts: LoadOptions): DaemonConfig {
  const env = opts.env ?? process.env;
  let raw: Record<string, unknown> = {};
  let text = '';
  let file: string | null = null;
  if (opts.file !== null) {
    const where = `config ${opts.file}`;
    try {
      text = fs.readFileSync(opts.file, 'utf8');
      file = opts.file;
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      if (!(err.code === 'ENOENT' && !opts.explicit)) throw new ConfigError(`${where}: ${err.code ?? err.message}: cannot read the file`);
    }
    if (file !== null) {
      try {
        raw = parseToml(text) as Record<string, unknown>;
      } catch (e) {
        if (e instanceof TomlError) {
          const first = e.message.split('\n')[0]!.replace(/^Invalid TOML document: /, '');
          throw new ConfigError(`${where}:${e.line}:${e.column}: invalid TOML: ${first}`);
        }
        throw e;
      }
    }
  }
  const flagOf = new Map<string, string>();
  for (const f of opts.flags ?? []) {
    setDotted(raw, f.key, f.value);
    flagOf.set(f.key, f.flag);
  }

  const parsed = configSchema.safeParse(raw, { reportInput: true });
  if (!parsed.success) throw new ConfigError(describeIssues(parsed.error.issues, file, text, flagOf));
  return finish(parsed.data, file, flagOf, env);
}

function describeIssues(issues: z.core.$ZodIssue[], file: string | null, text: string, flagOf: Map<string, string>): string {
  const lines = keyLines(text);
  const out: Array<{ line: number; text: string }> = [];
  for (const iss of issues) {
    const entries: Array<{ path: PropertyKey[]; message: string }> =
      iss.code === 'unrecognized_keys'
        ? iss.keys.map((k) => ({ path: [...iss.path, k], message: `Unknown key (the keys are listed in deploy/examples/farmemd.toml and by farmemd --help-config)` }))
        : [{ path: [...iss.path], message: iss.message }];
    for (const e of entries) out.push({ line: lineOf(lines, e.path) ?? Infinity, text: `${origin(e.path, file, lines, flagOf)}: ${e.message}` });
  }
  // In file order, as a reader fixes them.
  return out
    .sort((a, b) => a.line - b.line)
    .map((o) => o.text)
    .join('\n');
}

function origin(p: PropertyKey[], file: string | null, lines: Map<string, number>, flagOf: Map<string, string>): string {
  const dotted = formatPath(p);
  for (const [key, flag] of flagOf) {
    if (dotted === key || dotted.startsWith(`${key}.`) || dotted.startsWith(`${key}[`)) return flag;
  }
  const line = lineOf(lines, p);
  return `config ${file ?? '(defaults)'}${line !== null ? `:${line}` : ''}: ${dotted}`;
}

function finish(c: RawConfig, file: string | null, flagOf: Map<string, string>, env: NodeJS.ProcessEnv): DaemonConfig {
  let socket = c.socket;
  let attachSocket = c.attach_socket;
  if (socket === undefined || attachSocket === undefined) {
    const run = socket !== undefined ? path.dirname(socket) : defaultRunDir(env);
    if (run instanceof Error) throw new ConfigError(`socket: ${run.message}`);
    socket ??= path.join(run, SOCKET_NAME);
    attachSocket ??= path.join(path.dirname(socket), ATTACH_SOCKET_NAME);
  }
  const memoryServers = c.memory_servers.map((s, i): MemoryServerConfig => {
    let token = s.token ?? null;
    if (s.token_file !== undefined) {
      const where = flagOf.has('memory_servers') ? flagOf.get('memory_servers')! : `config ${file}: memory_servers[${i}].token_file`;
      if (token !== null) throw new ConfigError(`${where}: Expected token or token_file, not both`);
      try {
        token = fs.readFileSync(s.token_file, 'utf8').trim();
      } catch (e) {
        throw new ConfigError(`${where}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}: cannot read ${s.token_file}`);
      }
    }
    return {
      address: s.address,
      weight: s.weight,
      token,
      tokenFile: s.token_file ?? null,
      tls: s.tls ? { ca: s.tls.ca ?? null, cert: s.tls.cert ?? null, key: s.tls.key ?? null, serverName: s.tls.server_name ?? null } : null,
    };
  });
  const e = c.embedded_server;
  return {
    file,
    stateDir: c.state_dir ?? defaultStateDir(env),
    socket,
    attachSocket,
    socketGroup: c.socket_group,
    socketMode: c.socket_mode,
    logLevel: c.log_level,
    logPretty: c.log_pretty,
    metricsAddress: c.metrics_address === '' ? null : c.metrics_address,
    cacheBytes: c.cache_size,
    residentCapBytes: c.resident_cap,
    drainTimeoutMs: c.drain_timeout,
    memoryServers,
    fault: { threads: c.fault.threads, pin: c.fault.pin, unavailableTimeoutMs: c.fault.unavailable_timeout },
    regionDefaults: {
      pageSize: c.region_defaults.page_size,
      replicas: c.region_defaults.replicas,
      prefetch: c.region_defaults.prefetch,
      onUnavailable: c.region_defaults.on_unavailable,
      dirtyTracking: c.region_defaults.dirty_tracking,
    },
    embeddedServer: {
      enabled: e.enabled === 'auto' ? memoryServers.length === 0 : e.enabled,
      listen: e.listen,
      capacityBytes: e.capacity,
      dataDir: e.data_dir === '' ? null : e.data_dir,
    },
  };
}
