// efsctl: a thin client of efs-relayd's control socket.
// Exit codes: 0 done, 1 request failed, 2 bad usage, 3 daemon unreachable.
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { RelayError, asRelayError } from '../daemon/errors.js';
import { attachOptions, onlyTunnelOptions, parseOptions, tunnelOptions } from '../daemon/options.js';
import { checkFsId, isAlias, joinHost, requireSpec } from '../daemon/target.js';
import type { AttachResult } from '../daemon/mounter.js';
import type { ReloadResult } from '../daemon/config-reload.js';
import type { UnencryptedMount } from '../daemon/proc-mounts.js';
import { portsOf } from '../daemon/state.js';
import type { AddResult, TunnelDetail, TunnelView } from '../daemon/tunnels.js';
import { VERSION } from '../daemon/version.js';
import { DEFAULT_SOCKET, call, callerRegionEnv } from './client.js';
import { doctor, formatCheck, formatSummary } from './doctor.js';
import { takeover, takeoverAll, type TakeoverResult } from './takeover.js';
import { DEFAULT_CONFIG_PATH, loadConfig, type Config } from '../daemon/config.js';
import { tunnelDetail, tunnelTable } from './format.js';
import { daemonsRunning, type RunningDaemon } from './running-daemon.js';

const USAGE = `Usage: efsctl [--socket PATH] [--config PATH] [--wait SECONDS] VERB [ARGS] [--json]

Verbs:
  add FS_ID [-o OPTS]     start (or return the existing) TLS tunnel for a file system
  attach FS_ID[:/path] DIR [-o OPTS]
                          add, then mount NFS 4.1 through the tunnel at DIR; instead of FS_ID,
                          the file system's DNS name or a DNS alias (CNAME) of it
  detach DIR              unmount DIR; its tunnel stops once nothing uses it
  list [--json]           every tunnel: port, target, state, connections, bytes, last error
  status FS_ID [--json]   one tunnel in detail, with its history
  stop FS_ID [--force]    stop a tunnel (refused while mounted, unless --force)
  reload [--json]         make the daemon read its config file again; says what it applied
                          and what waits for a restart (systemctl reload runs this)
  takeover DIR|--all [--json]
                          move a mount that an amazon-efs-utils stunnel (or efs-proxy) serves
                          onto an efs-relay tunnel on the same local port, without unmounting it;
                          --all: every NFS mount through a local port
  version [--json]        versions of efsctl and of the running daemon
  doctor [--json]         check this host for what EFS over TLS needs, and say what to fix

Options:
  --socket PATH   control socket (default ${DEFAULT_SOCKET}, or control_socket of --config)
  --config PATH   the daemon's config file (default ${DEFAULT_CONFIG_PATH}); doctor checks what it names
  -o OPTS         efs-utils mount options, e.g. -o region=us-east-1,mounttargetip=10.0.0.5
  --wait SECONDS  if the daemon is not listening yet (starting), try again for up to SECONDS
                  (every verb but doctor; the unit waits this way until the daemon answers)
  --json          machine-readable output (shapes in the README)
  -h, --help      this text

Exit codes: 0 done, 1 the request failed, 2 bad usage, 3 the daemon cannot be reached.`;

const EXIT = { ok: 0, failed: 1, usage: 2, unreachable: 3 } as const;

class UsageError extends Error {}

interface Parsed {
  verb: string;
  args: string[];
  socket: string;
  /** --socket was given: the socket is the user's word, not the config file's. */
  socketGiven: boolean;
  config: Config;
  /** The config file, absolute. */
  configFile: string;
  json: boolean;
  options: string | undefined;
  force: boolean;
  /** takeover --all: every mount a stunnel serves. */
  all: boolean;
  /** --wait: how long a daemon that is not listening yet is waited for. */
  waitMs: number;
}

// Which flags each verb takes, so a misplaced flag is a usage error, not silently ignored.
const VERB_FLAGS: Record<string, { args: number; flags: string[]; usage: string }> = {
  add: { args: 1, flags: ['options', 'json', 'wait'], usage: 'FS_ID' },
  attach: { args: 2, flags: ['options', 'json', 'wait'], usage: 'FS_ID[:/path] DIR' },
  detach: { args: 1, flags: ['json', 'wait'], usage: 'DIR' },
  list: { args: 0, flags: ['json', 'wait'], usage: '' },
  status: { args: 1, flags: ['json', 'wait'], usage: 'FS_ID' },
  stop: { args: 1, flags: ['force', 'json', 'wait'], usage: 'FS_ID' },
  version: { args: 0, flags: ['json', 'wait'], usage: '' },
  reload: { args: 0, flags: ['json', 'wait'], usage: '' },
  // DIR, or --all without one.
  takeover: { args: 1, flags: ['all', 'json', 'wait'], usage: 'DIR' },
  // doctor reports a daemon that is down; it does not wait for one.
  doctor: { args: 0, flags: ['json'], usage: '' },
};

async function parse(argv: string[]): Promise<Parsed | 'help'> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        socket: { type: 'string' },
        config: { type: 'string' },
        json: { type: 'boolean' },
        options: { type: 'string', short: 'o' },
        force: { type: 'boolean' },
        all: { type: 'boolean' },
        wait: { type: 'string' },
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
  if (values.all && spec.flags.includes('all')) {
    if (args.length !== 0) throw new UsageError(`"${verb} --all" takes no ${spec.usage}, got ${args.join(' ')}`);
  } else if (args.length !== spec.args) {
    const what = spec.args === 0 ? 'no arguments' : `${spec.args} argument${spec.args > 1 ? 's' : ''} (${spec.usage})`;
    throw new UsageError(`"${verb}" takes ${what}, got ${args.length}`);
  }
  for (const flag of ['json', 'options', 'force', 'wait', 'all'] as const) {
    if (values[flag] !== undefined && !spec.flags.includes(flag)) {
      throw new UsageError(`"${verb}" does not take ${flag === 'options' ? '-o' : `--${flag}`}`);
    }
  }
  const wait = values.wait === undefined ? 0 : Number(values.wait);
  if (values.wait !== undefined && (values.wait.trim() === '' || !Number.isFinite(wait) || wait < 0)) {
    throw new UsageError(`--wait takes a number of seconds, got "${values.wait}"`);
  }
  // --config names the daemon's config: its socket, and what doctor checks.
  const configFile = resolve(values.config ?? DEFAULT_CONFIG_PATH);
  const config = await loadConfig(configFile);
  return {
    verb,
    args,
    config,
    configFile,
    socket: values.socket ?? config.control_socket,
    socketGiven: values.socket !== undefined,
    json: values.json ?? false,
    options: values.options,
    force: values.force ?? false,
    all: values.all ?? false,
    waitMs: wait * 1000,
  };
}

// Mount retries (3 attempts of up to 30 s each) fit inside this.
const MOUNT_TIMEOUT_MS = 150_000;

function print(text: string): void {
  process.stdout.write(text + '\n');
}

/**
 * Ask for a reload on the socket the config file names; if nothing answers
 * there, on the one the daemon running that file listens on. After an edit
 * of control_socket, that daemon still serves the socket it started with
 * (the key applies at a restart), and `systemctl reload` must still reach it.
 */
async function reload(p: Parsed, ask: (method: string) => Promise<unknown>, say: (text: string) => void): Promise<unknown> {
  try {
    return await ask('reload');
  } catch (err) {
    if (p.socketGiven || asRelayError(err).code !== 'DAEMON_UNREACHABLE') throw err;
    const running = (await daemonsRunning(p.configFile)).filter((d) => d.socket !== p.socket);
    if (running.length !== 1) throw err;
    const [{ pid, socket }] = running as [RunningDaemon];
    say(`efs-relayd (pid ${pid}) runs ${p.configFile} but listens on ${socket}, not on ${p.socket}, which the file names now ` +
      `(control_socket changes at a restart); reloading it there`);
    return call(socket, 'reload');
  }
}

/** One taken-over mount, as takeover prints it. */
function takeoverText(res: TakeoverResult): string {
  const t = res.tunnel;
  const on = res.port === t.port ? `127.0.0.1:${t.port}` : `127.0.0.1:${res.port} (an extra port, beside its own ${t.port})`;
  const tunnel = `the tunnel of ${t.fs_id} on ${on} → ${joinHost(t.target.address, t.target.port)} (TLS; its certificate must name ${t.target.cert_name})`;
  if (res.already) return `${res.dir} already goes through efs-relay: ${tunnel}`;
  if (res.stunnel?.pid === null) return `${res.dir}, whose stunnel had died, now goes through ${tunnel}, made from ${res.stunnel.config}; its NFS client reconnects through efs-relay`;
  return `${res.dir} moved from ${res.stunnel?.program} pid ${res.stunnel?.pid} onto ${tunnel}; the mount was not touched, and its NFS client reconnects through efs-relay`;
}

async function run(p: Parsed): Promise<void> {
  const out = (json: unknown, human: string): void => print(p.json ? JSON.stringify(json, null, 2) : human);
  // Said once, on stderr, so that a boot log or a script shows what it is waiting for.
  const waiting = (text: string): void => {
    process.stderr.write(`efsctl: ${text}\n`);
  };
  const ask = (method: string, params: Record<string, unknown> = {}, timeoutMs?: number): Promise<unknown> =>
    call(p.socket, method, params, timeoutMs, p.waitMs, waiting);
  switch (p.verb) {
    case 'add': {
      const fsId = p.args[0] as string;
      // Check locally first: bad input never reaches the daemon and changes nothing.
      checkFsId(fsId);
      const opts = parseOptions(p.options);
      onlyTunnelOptions(opts);
      tunnelOptions(opts);
      const res = (await ask('add', { fs_id: fsId, options: p.options ?? '', env: callerRegionEnv(), source: 'efsctl' })) as AddResult;
      const t = res.tunnel;
      const others = portsOf(t).slice(1); // a daemon older than extra ports sends none
      const many = others.length > 1;
      const extra = others.length === 0 ? '' : `\n${t.fs_id}: also on port${many ? 's' : ''} ${others.join(', ')}, for the mounts that name ${many ? 'them' : 'it'}`;
      out(
        res,
        `${t.fs_id}: ${res.created ? 'tunnel started' : 'tunnel already running'} on 127.0.0.1:${t.port} ` +
          `→ ${joinHost(t.target.address, t.target.port)} (TLS; its certificate must name ${t.target.cert_name})${extra}`,
      );
      return;
    }
    case 'list': {
      const res = (await ask('list')) as { tunnels: TunnelView[]; unencrypted_mounts: UnencryptedMount[] };
      out(res, tunnelTable(res.tunnels, res.unencrypted_mounts));
      return;
    }
    case 'status': {
      const fsId = p.args[0] as string;
      checkFsId(fsId);
      const res = (await ask('status', { fs_id: fsId })) as TunnelDetail;
      out(res, tunnelDetail(res));
      return;
    }
    case 'attach': {
      // Fail fast on a bad spec or options; an alias's az is known only once the daemon has followed it.
      const spec = requireSpec(p.args[0] as string);
      const dir = resolve(p.args[1] as string);
      attachOptions(p.options ?? '', isAlias(spec) ? {} : spec);
      const res = (await ask('attach', {
        spec: p.args[0], dir, options: p.options ?? '', env: callerRegionEnv(), source: 'efsctl',
      }, MOUNT_TIMEOUT_MS)) as AttachResult;
      const t = res.tunnel;
      out(res, res.already_mounted
        ? `${dir} is already mounted from ${res.fs_id} through 127.0.0.1:${t?.port}`
        : `${res.fs_id}:${res.path} mounted at ${dir} through 127.0.0.1:${t?.port} (TLS to ${t ? joinHost(t.target.address, t.target.port) : '?'})`);
      return;
    }
    case 'detach': {
      const dir = resolve(p.args[0] as string);
      const res = (await ask('detach', { dir }, MOUNT_TIMEOUT_MS)) as { dir: string; fs_id: string; tunnel_stopped: boolean };
      out(res, `${dir} unmounted; ${res.tunnel_stopped ? `the tunnel for ${res.fs_id} stopped (nothing else uses it)` : `the tunnel for ${res.fs_id} keeps running (still in use)`}`);
      return;
    }
    case 'stop': {
      const fsId = p.args[0] as string;
      checkFsId(fsId);
      const res = (await ask('stop', { fs_id: fsId, force: p.force })) as TunnelView;
      // A forced stop leaves mounts without their tunnel: say what that means for them and how to recover.
      const ports = portsOf(res);
      const [through, back] = ports.length > 1 ? [`ports ${ports.join(', ')}`, 'the ports'] : [`port ${res.port}`, 'the port'];
      const left = res.mounts.length === 0 ? '' :
        `\n${res.mounts.join(', ')} still mounted through ${through}: their I/O waits until \`efsctl add ${res.fs_id}\` gives ${back} back, or unmount them`;
      out({ stopped: res }, `${res.fs_id}: tunnel on port ${res.port} stopped${left}`);
      return;
    }
    case 'reload': {
      // A file that does not load changes nothing. If --config names it, parse() has said so already; else the daemon does (CONFIG_INVALID).
      const res = (await reload(p, ask, waiting)) as ReloadResult;
      const one = res.restart_needed.length === 1;
      const pending = res.restart_needed.length === 0 ? '' :
        `\nNot applied until efs-relayd restarts: ${res.restart_needed.join(', ')} (the daemon keeps the value${one ? '' : 's'} it started with; ` +
        `systemctl restart efs-relayd applies ${one ? 'it' : 'them'}, and open NFS connections then reconnect)`;
      out(res, `Reloaded ${res.file}: ${res.applied.length > 0 ? `applied ${res.applied.join(', ')}` : 'no change that a reload applies'}${pending}`);
      return;
    }
    case 'takeover': {
      if (p.all) {
        // Each mount is printed as it is done: a host with many mounts sees progress.
        const res = await takeoverAll(p.config, ask, waiting, (r) => {
          if (p.json) return;
          print('result' in r ? takeoverText(r.result) : `${r.dir} not moved: ${r.error.message} [${r.error.code}]`);
        });
        const already = res.moved.filter((r) => r.already).length;
        const total = res.moved.length + res.failed.length;
        out(res, total === 0
          ? `no NFS mount goes through a local port (${p.config.mount.proc_mounts}): nothing to take over`
          : `${res.moved.length - already} moved, ${already} already through efs-relay, ${res.failed.length} not moved`);
        if (res.failed.length > 0) process.exitCode = EXIT.failed;
        return;
      }
      const res = await takeover(resolve(p.args[0] as string), p.config, ask, waiting);
      out(res, takeoverText(res));
      return;
    }
    case 'doctor': {
      // A person sees each check as it is made; a script gets the whole report at the end.
      const report = await doctor(p.config, p.configFile, p.socket, p.json ? undefined : (c) => print(formatCheck(c)));
      if (p.json) out(report, '');
      else print(formatSummary(report));
      if (report.summary.fail > 0) process.exitCode = EXIT.failed;
      return;
    }
    case 'version': {
      let daemon: Record<string, unknown> | null = null;
      let unreachable: RelayError | null = null;
      try {
        daemon = (await ask('version', {}, 5_000)) as Record<string, unknown>;
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
    parsed = await parse(argv);
  } catch (err) {
    if (err instanceof RelayError) {
      process.stderr.write(`efsctl: ${err.message} [${err.code}]\nefsctl: ${err.hint}\n`);
      return EXIT.failed;
    }
    process.stderr.write(`efsctl: ${(err as Error).message} [USAGE]\n\n${USAGE}\n`);
    return EXIT.usage;
  }
  if (parsed === 'help') {
    print(USAGE);
    return EXIT.ok;
  }
  try {
    await run(parsed);
    return typeof process.exitCode === 'number' ? process.exitCode : EXIT.ok;
  } catch (err) {
    const e = asRelayError(err);
    process.stderr.write(`efsctl: ${e.message} [${e.code}]\nefsctl: ${e.hint}\n`);
    if (json && parsed.verb !== 'version') print(JSON.stringify({ error: e.toJSON() }, null, 2));
    return e.code === 'DAEMON_UNREACHABLE' ? EXIT.unreachable : EXIT.failed;
  }
}

// Not top-level await: the same module also runs inside the single-executable build (CommonJS).
void main().then((code) => {
  process.exitCode = code;
});
