// efsctl: a thin client of efs-relayd's control socket.
// Exit codes: 0 done, 1 request failed, 2 bad usage, 3 daemon unreachable.
import { parseArgs } from 'node:util';
import { RelayError, asRelayError } from '../daemon/errors.js';
import { onlyTunnelOptions, parseOptions, tunnelOptions } from '../daemon/options.js';
import { checkFsId } from '../daemon/target.js';
import type { AddResult, TunnelDetail, TunnelView } from '../daemon/tunnels.js';
import { VERSION } from '../daemon/version.js';
import { DEFAULT_SOCKET, call } from './client.js';
import { tunnelDetail, tunnelTable } from './format.js';

const USAGE = `Usage: efsctl [--socket PATH] VERB [ARGS] [--json]

Verbs:
  add FS_ID [-o OPTS]     start (or return the existing) TLS tunnel for a file system
  list [--json]           every tunnel: port, target, state, connections, bytes, last error
  status FS_ID [--json]   one tunnel in detail, with its history
  stop FS_ID [--force]    stop a tunnel (refused while mounted, unless --force)
  version [--json]        versions of efsctl and of the running daemon

Options:
  --socket PATH   control socket (default ${DEFAULT_SOCKET})
  -o OPTS         efs-utils mount options, e.g. -o region=us-east-1,mounttargetip=10.0.0.5
  --json          machine-readable output (shapes in the README)
  -h, --help      this text

Exit codes: 0 done, 1 the request failed, 2 bad usage, 3 the daemon cannot be reached.`;

const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;

class UsageError extends Error {}

interface Parsed {
  verb: string;
  args: string[];
  socket: string;
  json: boolean;
  options: string | undefined;
  force: boolean;
}

// Which flags each verb takes, so a misplaced flag is a usage error, not silently ignored.
const VERB_FLAGS: Record<string, { args: number; flags: string[] }> = {
  add: { args: 1, flags: ['options', 'json'] },
  list: { args: 0, flags: ['json'] },
  status: { args: 1, flags: ['json'] },
  stop: { args: 1, flags: ['force', 'json'] },
  version: { args: 0, flags: ['json'] },
};

function parse(argv: string[]): Parsed | 'help' {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        socket: { type: 'string' },
        json: { type: 'boolean' },
        options: { type: 'string', short: 'o' },
        force: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
      strict: true,
    });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return 'help';
  const [verb, ...args] = positionals;
  if (!verb) throw new UsageError('No verb given');
  const spec = VERB_FLAGS[verb];
  if (!spec) throw new UsageError(`Unknown verb "${verb}"`);
  if (args.length !== spec.args) {
    throw new UsageError(`"${verb}" takes ${spec.args === 0 ? 'no arguments' : `${spec.args} argument (FS_ID)`}, got ${args.length}`);
  }
  for (const flag of ['json', 'options', 'force'] as const) {
    if (values[flag] !== undefined && !spec.flags.includes(flag)) {
      throw new UsageError(`"${verb}" does not take ${flag === 'options' ? '-o' : `--${flag}`}`);
    }
  }
  return {
    verb,
    args,
    socket: values.socket ?? DEFAULT_SOCKET,
    json: values.json ?? false,
    options: values.options,
    force: values.force ?? false,
  };
}

function print(text: string): void {
  process.stdout.write(text + '\n');
}

async function run(p: Parsed): Promise<void> {
  const out = (json: unknown, human: string): void => print(p.json ? JSON.stringify(json, null, 2) : human);
  switch (p.verb) {
    case 'add': {
      const fsId = p.args[0] as string;
      // Check locally first: bad input never reaches the daemon and changes nothing.
      checkFsId(fsId);
      const opts = parseOptions(p.options);
      onlyTunnelOptions(opts);
      tunnelOptions(opts);
      const env: Record<string, string> = {};
      for (const k of ['AWS_REGION', 'AWS_DEFAULT_REGION']) if (process.env[k]) env[k] = process.env[k] as string;
      const res = (await call(p.socket, 'add', { fs_id: fsId, options: p.options ?? '', env, source: 'efsctl' })) as AddResult;
      const t = res.tunnel;
      out(
        res,
        `${t.fs_id}: ${res.created ? 'tunnel started' : 'tunnel already running'} on 127.0.0.1:${t.port} ` +
          `→ ${t.target.address}:${t.target.port} (TLS, verified as ${t.target.dns_name})`,
      );
      return;
    }
    case 'list': {
      const res = (await call(p.socket, 'list')) as { tunnels: TunnelView[] };
      out(res, tunnelTable(res.tunnels));
      return;
    }
    case 'status': {
      const fsId = p.args[0] as string;
      checkFsId(fsId);
      const res = (await call(p.socket, 'status', { fs_id: fsId })) as TunnelDetail;
      out(res, tunnelDetail(res));
      return;
    }
    case 'stop': {
      const fsId = p.args[0] as string;
      checkFsId(fsId);
      const res = (await call(p.socket, 'stop', { fs_id: fsId, force: p.force })) as TunnelView;
      out({ stopped: res }, `${res.fs_id}: tunnel on port ${res.port} stopped`);
      return;
    }
    case 'version': {
      let daemon: Record<string, unknown> | null = null;
      let unreachable: RelayError | null = null;
      try {
        daemon = (await call(p.socket, 'version', {}, 5_000)) as Record<string, unknown>;
      } catch (err) {
        unreachable = asRelayError(err);
      }
      out(
        { efsctl: VERSION, daemon },
        `efsctl ${VERSION}\n` +
          (daemon
            ? `efs-relayd ${String(daemon.version)} (pid ${String(daemon.pid)}, Node ${String(daemon.node)}, OpenSSL ${String(daemon.openssl)})`
            : `efs-relayd: not reachable`),
      );
      if (unreachable) throw unreachable;
      return;
    }
  }
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const json = argv.includes('--json');
  let parsed: Parsed | 'help';
  try {
    parsed = parse(argv);
  } catch (err) {
    process.stderr.write(`efsctl: ${(err as Error).message} [USAGE]\n\n${USAGE}\n`);
    return EXIT.usage;
  }
  if (parsed === 'help') {
    print(USAGE);
    return EXIT.ok;
  }
  try {
    await run(parsed);
    return EXIT.ok;
  } catch (err) {
    const e = asRelayError(err);
    process.stderr.write(`efsctl: ${e.message} [${e.code}]\nefsctl: ${e.hint}\n`);
    if (json && parsed.verb !== 'version') print(JSON.stringify({ error: e.toJSON() }, null, 2));
    return e.code === 'DAEMON_UNREACHABLE' ? EXIT.unreachable : EXIT.failed;
  }
}

process.exitCode = await main();
