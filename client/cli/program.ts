// The farmem command line: its commands, their output and their exit codes.
import path from 'node:path';
import { Argument, Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { ControlClient, ControlError, farmem } from '../control';
import { SIZE_EXPECTED, tryParseSize } from '../../daemon/util/size';
import { faultsJson, fields, pct, regionJson, size, statsJson, table } from './format';
import { CliError } from './errors';
import { writeHeatmap } from './heatmap';
import { runWatch } from './watch';
import { intervalLabel } from './watch-view';
import { tryParseDurationMs } from '../../daemon/util/duration';
import { checkTlsFiles, tlsOrNull } from '../../daemon/util/tls-files';
import { runDemo } from './demo';
import { parseOrder } from './demo-pattern';

const EXIT_CODES = `
Exit codes:
  0  success
  1  failure: farmemd refused (unknown region, permission denied, ...) or is unreachable
  2  usage error: a bad command, flag or value (also when farmemd finds a value invalid)`;

function sizeArg(name: string) {
  return (v: string): number => {
    const b = tryParseSize(v);
    if (b === null) throw new InvalidArgumentError(`Expected ${SIZE_EXPECTED} for ${name} but received ${JSON.stringify(v)}`);
    return b;
  };
}
function intArg(name: string, min: number, max: number) {
  return (v: string): number => {
    const x = /^\d+$/.test(v) ? Number(v) : NaN;
    if (!(x >= min && x <= max)) throw new InvalidArgumentError(`Expected an integer from ${min} to ${max} for ${name} but received ${JSON.stringify(v)}`);
    return x;
  };
}
function durationArg(name: string, minMs: number, maxMs: number) {
  return (v: string): number => {
    const ms = tryParseDurationMs(v);
    if (ms === null || ms < minMs || ms > maxMs) {
      throw new InvalidArgumentError(`Expected a duration from ${intervalLabel(minMs)} to ${intervalLabel(maxMs)} (e.g. 1s, 500ms, 2m) for ${name} but received ${JSON.stringify(v)}`);
    }
    return ms;
  };
}
function modeArg(v: string): number {
  if (!/^0?[0-7]{1,3}$/.test(v)) throw new InvalidArgumentError(`Expected an octal mode such as 600 or 0660 for --mode but received ${JSON.stringify(v)}`);
  return parseInt(v, 8);
}
const collect = (v: string, prev: string[]) => [...prev, v];

interface Out {
  json: boolean;
}

function print(o: Out, json: unknown, text: () => string): void {
  process.stdout.write(o.json ? `${JSON.stringify(json, null, 2)}\n` : `${text()}\n`);
}

/** A progress bar on stderr when it is a terminal; nothing otherwise (scripts read the result). */
function progressBar(label: string): (p: farmem.v1.OperationProgress) => void {
  if (!process.stderr.isTTY) return () => {};
  return (p) => {
    const total = Number(p.pagesTotal);
    const done = Number(p.pagesDone);
    const frac = total > 0 ? Math.min(1, done / total) : p.done ? 1 : 0;
    const w = 30;
    const bar = '#'.repeat(Math.round(frac * w)).padEnd(w, '.');
    process.stderr.write(`\r${label} [${bar}] ${(frac * 100).toFixed(0).padStart(3)}% ${done}/${total} pages${p.done ? '\n' : ''}`);
  };
}

export function buildProgram(): Command {
  const program = new Command('farmem')
    .description('Control farmemd: create and inspect regions of remote memory.')
    .option('--socket <path>', "farmemd's control socket (default: $FARMEM_SOCKET, /run/farmem/farmemd.sock, $XDG_RUNTIME_DIR/farmem/farmemd.sock)")
    .addHelpText('after', EXIT_CODES)
    .exitOverride()
    .showHelpAfterError('(run with --help for usage)');

  async function withClient<T>(cmd: Command, fn: (c: ControlClient, o: Out) => Promise<T>): Promise<T> {
    const opts = cmd.optsWithGlobals() as { socket?: string; json?: boolean };
    const client = await ControlClient.connect(opts.socket ?? null);
    try {
      return await fn(client, { json: opts.json === true });
    } finally {
      client.close();
    }
  }

  const region = program.command('region').description('create, inspect and remove regions').addHelpText('after', EXIT_CODES);
  region.exitOverride();

  region
    .command('create <name>')
    .description("create a region (name: 1-63 of a-z 0-9 . _ -, starting with a letter or digit)")
    .requiredOption('--size <size>', 'size of the region, e.g. 1GiB (a multiple of the page size)', sizeArg('--size'))
    .option('--page-size <size>', 'page size, a power of two from 4KiB to 2MiB (default: the daemon config)', sizeArg('--page-size'))
    .option('--resident <size>', 'resident budget on this host (default 0 = unlimited)', sizeArg('--resident'))
    .addOption(new Option('--server <addr>', 'memory server for this region, host:port or unix:PATH; repeat for more').argParser(collect).default([], 'the daemon pool'))
    .option('--replicas <n>', 'copies of each page', intArg('--replicas', 1, 16))
    .addOption(new Option('--prefetch <policy>', 'prefetch policy').choices(['auto', 'none', 'readahead', 'stride', 'trend']))
    .option('--warm-on-attach', 'replay: whenever a process attaches, fetch the pages the last attached process touched, before they are touched')
    .addOption(new Option('--on-unavailable <what>', 'when no memory server answers: the process waits, or gets SIGBUS').choices(['wait', 'sigbus']))
    .addOption(
      new Option('--dirty-tracking <how>', 'how dirty pages are found: wp (write-protect fault on first write), async (WP_ASYNC + PAGEMAP_SCAN, no fault; never evicted, so no --resident), auto (async when safe and available; default: the daemon config)')
        .choices(['wp', 'async', 'auto']),
    )
    .option('--owner <uid>', 'owner uid (root only; default: you)', intArg('--owner', 0, 0xfffffffe))
    .option('--group <gid>', 'group gid (default: your gid)', intArg('--group', 0, 0xfffffffe))
    .option('--mode <octal>', 'access mode: 600 owner only, 660 owner and group (default 600)', modeArg)
    .option('--json', 'print JSON')
    .action(async (name: string, o, cmd: Command) =>
      withClient(cmd, async (c, out) => {
        const r = await c.createRegion({
          name,
          sizeBytes: o.size,
          pageSize: o.pageSize ?? null,
          residentBytes: o.resident ?? null,
          servers: o.server,
          replicas: o.replicas ?? null,
          prefetch: o.prefetch ?? '',
          onUnavailable: o.onUnavailable === 'sigbus' ? farmem.v1.OnUnavailable.ON_UNAVAILABLE_SIGBUS : o.onUnavailable === 'wait' ? farmem.v1.OnUnavailable.ON_UNAVAILABLE_WAIT : 0,
          dirtyTracking: o.dirtyTracking ?? '',
          ownerUid: o.owner ?? null,
          ownerGid: o.group ?? null,
          mode: o.mode ?? null,
          warmOnAttach: o.warmOnAttach === true ? true : null,
        });
        print(out, regionJson(r), () => `created region "${r.name}" (${size(Number(r.sizeBytes))}, id ${r.id})`);
      }),
    );

  region
    .command('list')
    .description('list the regions')
    .option('--json', 'print JSON')
    .action(async (o, cmd: Command) =>
      withClient(cmd, async (c, out) => {
        const rs = await c.listRegions();
        const json = rs.map((s) => ({ ...regionJson(s.region!), attachments: Number(s.attachments), residentPages: Number(s.residentPages), dirtyPages: Number(s.dirtyPages), accessible: s.accessible === true }));
        print(out, json, () =>
          rs.length === 0
            ? 'no regions (create one: farmem region create NAME --size 1GiB)'
            : table(
                ['NAME', 'SIZE', 'PAGE', 'RESIDENT', 'OWNER', 'MODE', 'ATTACHED', 'ID'],
                json.map((r) => [r.name, size(r.sizeBytes), size(r.pageSize), r.residentBytes === 0 ? 'unlimited' : size(r.residentBytes), `${r.ownerUid}:${r.ownerGid}`, r.mode + (r.accessible ? '' : ' (no access)'), r.attachments, r.id]),
              ),
        );
      }),
    );

  region
    .command('show <name>')
    .description('show a region and its live numbers')
    .option('--json', 'print JSON')
    .action(async (name: string, o, cmd: Command) =>
      withClient(cmd, async (c, out) => {
        const res = await c.showRegion(name);
        const r = regionJson(res.region!);
        const st = statsJson(res.stats);
        print(out, { ...r, stats: st }, () => {
          const base: Array<[string, string | number]> = [
            ['name', r.name],
            ['id', r.id],
            ['size', `${size(r.sizeBytes)} (${r.sizeBytes} bytes, ${r.sizeBytes / r.pageSize} pages of ${size(r.pageSize)})`],
            ['resident budget', r.residentBytes === 0 ? 'unlimited' : size(r.residentBytes)],
            ['memory servers', r.servers.length ? r.servers.join(', ') : 'the daemon pool'],
            ['replicas', r.replicas],
            ['prefetch', r.prefetch],
            ['warm on attach', r.warmOnAttach ? 'on (replays the last recorded run when a process attaches)' : 'off'],
            ['on unavailable', r.onUnavailable],
            ['dirty tracking', !st.pager || st.dirtyTracking === '' ? r.dirtyTracking
              : `${r.dirtyTracking}${st.dirtyTracking === r.dirtyTracking ? '' : ` (now ${st.dirtyTracking})`}${st.dirtyTrackingNote === '' ? '' : `: ${st.dirtyTrackingNote}`}`],
            ['owner', `uid ${r.ownerUid}, gid ${r.ownerGid}, mode ${r.mode}`],
            ['created', r.createdAt],
          ];
          if (!st.pager) return `${fields(base)}\n\nlive numbers: none — ${st.detail}`;
          const s = st;
          const f = s.faults;
          const lookups = s.cacheHits + s.cacheMisses;
          return [
            fields([
              ...base,
              ['resident pages', s.residentPages],
              ['dirty pages', s.dirtyPages],
              ['faults', `${f.cacheHit} cache hit, ${f.remote} remote, ${f.zero} zero, ${f.writeProtect} write-protect, ${f.sigbus} sigbus`],
              ['fault latency', `p50 ${s.faultP50Us} µs, p99 ${s.faultP99Us} µs`],
              ['cache hit ratio', lookups ? pct(s.cacheHits / lookups) : '-'],
              ['prefetch', `${s.prefetchPolicy === '' || s.prefetchPolicy === r.prefetch ? r.prefetch : `${r.prefetch} (now ${s.prefetchPolicy})`}: ${s.prefetchedPages} pages, ${s.prefetchUsedPages} seen used (or walked past by their stream), accuracy ${pct(s.prefetchAccuracy)}, coverage ${pct(s.prefetchCoverage)}, wasted ${size(s.prefetchWastedBytes)}`],
              ['evicted / written back', `${s.evictedPages} / ${s.writtenBackPages} pages`],
              ['write-back', `${s.writeBackStalled ? 'stalled: a memory server does not acknowledge writes; dirty pages stay resident' : 'ok'} (${s.writeBackStalls} stall(s) so far)`],
              ['remote in / out', `${size(s.remoteBytesIn)} / ${size(s.remoteBytesOut)}`],
            ]),
            '',
            s.attachments.length === 0 ? 'attachments: none' : table(['PID', 'UID', 'COMMAND', 'SINCE'], s.attachments.map((a) => [a.pid, a.uid, a.comm, a.since])),
          ].join('\n');
        });
      }),
    );

  region
    .command('delete <name>')
    .description('delete a region and free its pages on the memory servers (owner or root)')
    .option('--json', 'print JSON')
    .action(async (name: string, o, cmd: Command) =>
      withClient(cmd, async (c, out) => {
        const res = await c.deleteRegion(name);
        print(out, { ...regionJson(res.region!), pagesFreed: Number(res.pagesFreed) }, () => `deleted region "${name}" (${Number(res.pagesFreed)} pages freed on the memory servers)`);
      }),
    );

  region
    .command('resize <name>')
    .description("change a region's resident budget on this host (owner or root)")
    .requiredOption('--resident <size>', 'new resident budget, e.g. 256MiB (0 = unlimited)', sizeArg('--resident'))
    .option('--json', 'print JSON')
    .action(async (name: string, o, cmd: Command) =>
      withClient(cmd, async (c, out) => {
        const r = await c.updateRegion(name, { residentBytes: o.resident });
        print(out, regionJson(r), () => `region "${name}": resident budget ${Number(r.residentBytes) === 0 ? 'unlimited' : size(Number(r.residentBytes))}`);
      }),
    );

  region
    .command('prefetch <name> <policy>')
    .description("change a region's prefetch policy (owner or root); it applies from the next fault")
    .addHelpText('after', '\npolicy: auto, none, readahead, stride or trend')
    .option('--json', 'print JSON')
    .action(async (name: string, policy: string, o, cmd: Command) =>
      withClient(cmd, async (c, out) => {
        const r = await c.updateRegion(name, { prefetch: policy });
        print(out, regionJson(r), () => `region "${name}": prefetch ${r.prefetch}`);
      }),
    );

  region
    .command('warm-on-attach <name>')
    .addArgument(new Argument('<state>', 'on or off').choices(['on', 'off']))
    .description("replay on attach (owner or root): when on, every attach of the region fetches the pages the last attached process touched, before they are touched")
    .option('--json', 'print JSON')
    .action(async (name: string, onOff: string, o, cmd: Command) =>
      withClient(cmd, async (c, out) => {
        const r = await c.updateRegion(name, { warmOnAttach: onOff === 'on' });
        print(out, regionJson(r), () => `region "${name}": warm on attach ${r.warmOnAttach ? 'on' : 'off'}`);
      }),
    );

  for (const [verb, what] of [
    ['sync', 'write back every dirty page and make the memory servers durable'],
    ['evict', 'drop every clean resident page now'],
    ['warm', 'replay: fetch the pages the last attached process touched, in its order, before they are touched again'],
  ] as const) {
    region
      .command(`${verb} <name>`)
      .description(what)
      .option('--json', 'print JSON')
      .action(async (name: string, o, cmd: Command) =>
        withClient(cmd, async (c, out) => {
          const bar = out.json ? () => {} : progressBar(`${verb} ${name}`);
          const last = verb === 'sync' ? await c.syncRegion(name, bar) : verb === 'evict' ? await c.evictRegion(name, bar) : await c.warmRegion(name, bar);
          const json = { region: name, pagesDone: Number(last.pagesDone), pagesTotal: Number(last.pagesTotal), bytesDone: Number(last.bytesDone), message: last.message };
          print(out, json, () => `${verb} "${name}": ${json.pagesDone} pages (${size(json.bytesDone)})${json.message ? `: ${json.message}` : ''}`);
        }),
      );
  }

  region
    .command('heatmap <name>')
    .description('draw which pages of a region are resident, dirty and hot, as an SVG picture')
    .option('-o, --output <file>', 'where to write the SVG; - for stdout (default: NAME-heatmap.svg)')
    .option('--columns <n>', 'cells across (default 64)', intArg('--columns', 1, 4096))
    .option('--json', 'print JSON')
    .action(async (name: string, o, cmd: Command) =>
      withClient(cmd, async (c, out) => {
        const r = await writeHeatmap(c, name, { output: o.output ?? null, columns: o.columns ?? null });
        if (r.file === '-') return;
        print(out, r, () => `wrote ${r.file}: region "${name}", ${r.pages} pages of ${size(r.pageSize)}, ${r.residentPages} resident, ${r.dirtyPages} dirty, ${r.faults} faults`);
      }),
    );

  program
    .command('stats')
    .description("the daemon's numbers; --watch: a live view of rates, regions and memory servers")
    .option('--json', 'print JSON (with --watch: one JSON object per line and refresh)')
    .option('-w, --watch', 'refresh every --interval until Ctrl-C (redraws in place on a terminal, one block per refresh otherwise)')
    .option('--interval <duration>', 'time between refreshes with --watch, from 100ms to 1h (default 1s)', durationArg('--interval', 100, 3_600_000))
    .option('--count <n>', 'with --watch: stop after N refreshes', intArg('--count', 1, 1_000_000_000))
    .action(async (o, cmd: Command) => {
      if (!o.watch && (o.interval !== undefined || o.count !== undefined)) cmd.error('error: --interval and --count need --watch', { exitCode: 2 });
      if (o.watch) {
        const code = await withClient(cmd, (c, out) =>
          runWatch(c, { intervalMs: o.interval ?? 1000, count: o.count ?? null, json: out.json, tty: process.stdout.isTTY === true && !out.json, write: (t) => process.stdout.write(t), screen: () => ({ rows: process.stdout.rows, columns: process.stdout.columns }) }),
        );
        if (code !== 0) throw new CliError('stats --watch: the last refresh could not reach farmemd', code);
        return;
      }
      return withClient(cmd, async (c, out) => {
        const s = await c.daemonStats();
        const json = {
          version: s.version,
          pid: s.pid,
          uptimeSeconds: s.uptimeSeconds,
          state: s.state,
          socket: s.socket,
          attachSocket: s.attachSocket,
          stateDir: s.stateDir,
          regions: s.regions,
          pager: s.pager,
          pagerDetail: s.pagerDetail,
          attachments: s.attachments,
          cacheCapacityBytes: Number(s.cacheCapacityBytes),
          cacheBytes: Number(s.cacheBytes),
          cacheHits: Number(s.cacheHits),
          cacheMisses: Number(s.cacheMisses),
          residentCapBytes: Number(s.residentCapBytes),
          residentBytes: Number(s.residentBytes),
          faults: faultsJson(s.faults),
          remoteBytesIn: Number(s.remoteBytesIn),
          remoteBytesOut: Number(s.remoteBytesOut),
          dirtyPages: Number(s.dirtyPages),
          evictions: Number(s.evictions),
          writebacks: Number(s.writebacks),
        };
        print(out, json, () => {
          const head: Array<[string, string | number]> = [
            ['farmemd', `${json.version}, pid ${json.pid}, ${json.state}, up ${json.uptimeSeconds.toFixed(0)} s`],
            ['control socket', json.socket],
            ['attach socket', json.attachSocket || '(not listening: no attach server in this daemon)'],
            ['state dir', json.stateDir],
            ['regions', json.regions],
            ['resident cap', json.residentCapBytes === 0 ? 'none' : size(json.residentCapBytes)],
          ];
          if (!json.pager) return fields([...head, ['pager', `none — ${json.pagerDetail}`]]);
          const lookups = json.cacheHits + json.cacheMisses;
          const f = json.faults;
          return fields([
            ...head,
            ['pager', json.pagerDetail],
            ['attachments', json.attachments],
            ['faults', `${f.cacheHit} cache hit, ${f.remote} remote, ${f.zero} zero, ${f.writeProtect} write-protect, ${f.sigbus} sigbus`],
            ['page cache', `${size(json.cacheBytes)} of ${size(json.cacheCapacityBytes)}, hit ratio ${lookups ? pct(json.cacheHits / lookups) : '-'}`],
            ['resident', size(json.residentBytes)],
            ['dirty pages', json.dirtyPages],
            ['evictions / write-backs', `${json.evictions} / ${json.writebacks}`],
            ['remote in / out', `${size(json.remoteBytesIn)} / ${size(json.remoteBytesOut)}`],
          ]);
        });
      });
    });

  program
    .command('demo')
    .description('run a workload against a region (creating "demo" if missing): write a pattern, write it back and drop it, read it back from the memory servers and check it; prints faults, hit ratio and throughput')
    .option('--region <name>', 'the region to use', 'demo')
    .option('--size <size>', 'size when the region must be created', sizeArg('--size'), 64 * 1024 * 1024)
    .option('--resident <size>', 'resident budget when the region must be created (default: a quarter of --size)', sizeArg('--resident'))
    .option('--pages <n>', 'pages to touch (default: the whole region)', intArg('--pages', 1, 2 ** 31))
    .option('--pattern <order>', 'page order: seq, random or random:SEED', 'seq')
    .option('--seed <n>', 'seed of the bytes written', intArg('--seed', 0, 1_000_000_000), 1)
    .option('--attach-socket <path>', "farmemd's attach socket (default: the one farmemd reports)")
    .option('--json', 'print the summary as JSON (progress still goes to stderr)')
    .addHelpText('after', '\nExit codes: 0 every page read back as written, 1 a page differed or farmemd failed, 2 usage error.')
    .action(async (o, cmd: Command) => {
      const order = parseOrder(o.pattern);
      if (order === null) throw new CliError(`Expected seq, random or random:SEED for --pattern but received ${JSON.stringify(o.pattern)}`, 2);
      const code = await withClient(cmd, (c, out) =>
        runDemo(
          c,
          {
            region: o.region,
            sizeBytes: o.size,
            residentBytes: o.resident ?? Math.floor(o.size / 4 / 4096) * 4096,
            pages: o.pages ?? null,
            seed: o.seed,
            order,
            orderLabel: o.pattern,
            attachSocket: o.attachSocket ?? null,
            json: out.json,
          },
          { tty: process.stderr.isTTY === true, out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) },
        ),
      );
      if (code !== 0) throw new CliError('demo: verification failed', code);
    });

  const serverJson = (s: farmem.v1.IServerInfo) => ({
    address: s.address ?? '',
    weight: Number(s.weight),
    tls: s.tls === true,
    embedded: s.embedded === true,
    state: s.state ?? '',
    detail: s.detail ?? '',
    capacityBytes: Number(s.capacityBytes),
    usedBytes: Number(s.usedBytes),
    regions: Number(s.regions),
    pool:
      s.pool == null
        ? null
        : {
            state: s.pool.state ?? '',
            latencyMs: Number(s.pool.latencyMs ?? 0),
            failures: Number(s.pool.failures ?? 0),
            instanceId: s.pool.instanceId ?? '',
            underReplicatedGroups: Number(s.pool.underReplicatedGroups ?? 0),
            repairedGroups: Number(s.pool.repairedGroups ?? 0),
            copiedBytes: Number(s.pool.copiedBytes ?? 0),
            repairing: s.pool.repairing === true,
            restartsDetected: Number(s.pool.restartsDetected ?? 0),
            pendingGroups: Number(s.pool.pendingGroups ?? 0),
            draining: s.pool.draining === true,
            discardedPages: Number(s.pool.discardedPages ?? 0),
            discardsPending: Number(s.pool.discardsPending ?? 0),
          },
  });

  const servers = program
    .command('servers')
    .description('the memory servers this daemon uses, whether they answer, their pool state (up/suspect/down, latency, failures), repair progress and the pages each freed (old copies discarded); add or remove one')
    .option('--json', 'print JSON')
    .addHelpText('after', EXIT_CODES)
    .action(async (o, cmd: Command) =>
      withClient(cmd, async (c, out) => {
        const json = (await c.listServers()).map(serverJson);
        print(out, json, () =>
          json.length === 0
            ? 'no memory servers (configure [[memory_servers]] in farmemd.toml, or let farmemd start its embedded one)'
            : table(
                ['ADDRESS', 'STATE', 'POOL', 'LATENCY', 'FAILS', 'UNDER-REPL', 'PENDING', 'REPAIRED', 'COPIED', 'DISCARDED', 'USED', 'CAPACITY', 'REGIONS', 'WEIGHT', 'KIND', 'DETAIL'],
                json.map((s) => [
                  s.address,
                  s.state,
                  s.pool === null ? '-' : s.pool.state + (s.pool.draining ? ' (draining)' : s.pool.repairing ? ' (repairing)' : ''),
                  s.pool === null || s.pool.latencyMs === 0 ? '-' : `${s.pool.latencyMs.toFixed(2)} ms`,
                  s.pool === null ? '-' : s.pool.failures,
                  s.pool === null ? '-' : s.pool.underReplicatedGroups,
                  s.pool === null ? '-' : s.pool.pendingGroups,
                  s.pool === null ? '-' : s.pool.repairedGroups,
                  s.pool === null ? '-' : size(s.pool.copiedBytes),
                  s.pool === null ? '-' : s.pool.discardedPages + (s.pool.discardsPending > 0 ? ` (${s.pool.discardsPending} groups owed)` : ''),
                  size(s.usedBytes),
                  size(s.capacityBytes),
                  s.regions,
                  s.weight,
                  `${s.embedded ? 'embedded' : 'remote'}${s.tls ? ', tls' : ''}`,
                  s.detail,
                ]),
              ),
        );
      }),
    );
  servers.exitOverride();

  servers
    .command('add <address>')
    .description('add a memory server (host:port or unix:PATH) to the daemon pool (root): the page groups that now rank it among their top R copies move to it in the background; kept across restarts')
    .option('--weight <w>', 'relative share of page groups (default 1)', intArg('--weight', 1, 1000))
    .option('--token-file <file>', 'file holding the bearer token for the server (farmemd reads it, now and at each start)')
    .option('--ca <file>', 'TLS: PEM file of the CA that signed the server certificate (default: the system roots)')
    .option('--cert <file>', 'TLS: PEM client certificate, for servers that require one (with --key)')
    .option('--key <file>', 'TLS: PEM key of the client certificate (with --cert)')
    .option('--server-name <name>', 'TLS: name to check the server certificate against (default: the address host)')
    .option('--json', 'print JSON')
    .addHelpText('after', '\nAny of --ca, --cert, --key, --server-name makes the connection TLS (like the [memory_servers.tls] table of the\nconfiguration file); farmemd reads the files now and at each start.')
    .action(async (address: string, o: { weight?: number; tokenFile?: string; ca?: string; cert?: string; key?: string; serverName?: string }, cmd: Command) => {
      const file = (f: string | undefined) => (f === undefined ? null : path.resolve(f));
      const tls = tlsOrNull({ ca: file(o.ca), cert: file(o.cert), key: file(o.key), serverName: o.serverName ?? null });
      // Checked here first: a typo is named by its flag, before anything is sent.
      if (tls !== null) {
        try {
          checkTlsFiles(tls, { ca: '--ca', cert: '--cert', key: '--key' });
        } catch (e) {
          throw new CliError((e as Error).message, 2);
        }
      }
      await withClient(cmd, async (c, out) => {
        const s = serverJson(await c.addServer(address, o.weight ?? 1, file(o.tokenFile), tls));
        print(out, s, () => `added memory server ${s.address} (${s.state}${s.detail ? `: ${s.detail}` : ''}${s.tls ? ', tls' : ''}); groups that now rank it move to it in the background (see farmem servers)`);
      });
    });

  servers
    .command('remove <address>')
    .description('remove a memory server from the daemon pool (root): its page groups move to the servers ranked next, then it is forgotten; waits for that unless --no-wait')
    .option('--no-wait', 'return once the move started')
    .option('--json', 'print JSON')
    .action(async (address: string, o: { wait: boolean }, cmd: Command) =>
      withClient(cmd, async (c, out) => {
        let s = serverJson(await c.removeServer(address));
        if (o.wait) {
          for (;;) {
            const now = (await c.listServers()).find((x) => x.address === address);
            if (now === undefined) break;
            s = serverJson(now);
            if (process.stderr.isTTY) process.stderr.write(`\rdraining ${address}: ${s.pool?.pendingGroups ?? 0} group(s) to move   `);
            await new Promise((r) => setTimeout(r, 250));
          }
          if (process.stderr.isTTY) process.stderr.write('\n');
          print(out, { ...s, removed: true }, () => `removed memory server ${address}: its groups are on the other servers`);
        } else {
          print(out, { ...s, removed: false }, () => `removing memory server ${address}: its groups are moving to the other servers (see farmem servers)`);
        }
      }),
    );

  return program;
}

/** Runs the CLI; resolves with the exit code. */
export async function run(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return 0;
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    if (e instanceof CliError) {
      process.stderr.write(`farmem: ${e.message}\n`);
      return e.exitCode;
    }
    if (e instanceof ControlError) {
      process.stderr.write(`farmem: ${e.message}\n`);
      return e.code === 'INVALID_ARGUMENT' ? 2 : 1;
    }
    process.stderr.write(`farmem: ${(e as Error)?.stack ?? String(e)}\n`);
    return 1;
  }
}
