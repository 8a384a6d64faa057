// farmem-memserver configuration: a TOML file (--config) overridden by flags, validated with zod.
//
//   listen = "127.0.0.1:7070"      # or "unix:/run/farmem/memserver.sock"
//   capacity = "8GiB"
//   data_dir = "/var/lib/farmem-memserver"   # omit: in memory only
//   token_file = "/etc/farmem/memserver.token"  # or token = "..."
//   metrics_listen = "127.0.0.1:9470"
//   log_level = "info"
//   [tls]
//   cert = "/etc/farmem/tls/server.pem"
//   key = "/etc/farmem/tls/server.key"
//   ca = "/etc/farmem/tls/ca.pem"
import fs from 'node:fs';
import { parse as parseToml } from 'smol-toml';
import { z } from 'zod';
import type { TlsFiles } from './auth';
import { parseSize } from './units';

export interface MemserverConfig {
  listen: string;
  capacityBytes: number;
  dataDir: string | null;
  token: string | null;
  tls: TlsFiles | null;
  metricsListen: string | null;
  logLevel: string;
  maxMessageBytes: number;
}

const size = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const n = parseSize(v);
  if (n === null || n <= 0) {
    ctx.addIssue({ code: 'custom', message: `Expected a size like 8GiB or 4096 but received ${JSON.stringify(v)}` });
    return z.NEVER;
  }
  return n;
});
const address = z.string().superRefine((s, ctx) => {
  if (!(s.startsWith('unix:') || /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(s))) {
    ctx.addIssue({ code: 'custom', message: `Expected host:port or unix:/path but received ${JSON.stringify(s)}` });
  }
});

const fileSchema = z.object({
  listen: address.optional(),
  capacity: size.optional(),
  data_dir: z.string().min(1).optional(),
  token: z.string().min(1).optional(),
  token_file: z.string().min(1).optional(),
  metrics_listen: address.optional(),
  log_level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).optional(),
  max_message: size.optional(),
  tls: z.object({ cert: z.string().min(1), key: z.string().min(1), ca: z.string().min(1) }).strict().optional(),
}).strict();

export type ConfigInput = z.input<typeof fileSchema>;

function issues(e: z.ZodError): string {
  return e.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
}

/** Reads and validates a TOML config file. */
export function readConfigFile(file: string): ConfigInput {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new Error(`config ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = parseToml(text);
  } catch (e) {
    throw new Error(`config ${file}: ${(e as Error).message.split('\n')[0]}`);
  }
  const r = fileSchema.safeParse(raw);
  if (!r.success) throw new Error(`config ${file}: ${issues(r.error)}`);
  return raw as ConfigInput;
}

/** Merges file values and flags (flags win) and validates the result. */
export function resolveConfig(file: ConfigInput, flags: ConfigInput): MemserverConfig {
  const r = fileSchema.safeParse({ ...file, ...Object.fromEntries(Object.entries(flags).filter(([, v]) => v !== undefined)) });
  if (!r.success) throw new Error(`config: ${issues(r.error)}`);
  const c = r.data;
  if (c.token !== undefined && c.token_file !== undefined) throw new Error('config: Expected token or token_file, not both, but received both');
  let token = c.token ?? null;
  if (c.token_file !== undefined) {
    try {
      token = fs.readFileSync(c.token_file, 'utf8').trim();
    } catch (e) {
      throw new Error(`config: token_file ${c.token_file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    if (token === '') throw new Error(`config: Expected a token in token_file but received an empty file ${c.token_file}`);
  }
  return {
    listen: c.listen ?? '127.0.0.1:7070',
    capacityBytes: c.capacity ?? 1024 ** 3,
    dataDir: c.data_dir ?? null,
    token,
    tls: c.tls ?? null,
    metricsListen: c.metrics_listen ?? null,
    logLevel: c.log_level ?? 'info',
    maxMessageBytes: c.max_message ?? 64 * 1024 * 1024,
  };
}
