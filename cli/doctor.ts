// efsctl doctor: what this host needs for EFS over TLS, one check per line,
// each with ok, warn or fail and what to do. Runs on the CLI side only
// (listeners.ts uses systeminformation, which runs shell commands; the daemon never does).
import { execFile } from 'node:child_process';
import { lookup } from 'node:dns/promises';
import { access, constants, readFile, stat, statfs } from 'node:fs/promises';
import { connect, isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { splitListen, type Config } from '../daemon/config.js';
import { ERRORS, isErrorCode } from '../daemon/errors.js';
import { followFstabAliases, readFstab, type FstabEntry } from '../daemon/fstab.js';
import { followAlias } from '../daemon/spec-alias.js';
import { planFstab } from '../daemon/fstab-plan.js';
import { readProcMounts, tunnelPortOf } from '../daemon/proc-mounts.js';
import { StateStore, portsOf } from '../daemon/state.js';
import { AZ_ID_NOT_ASKED, METADATA_NOT_ASKED, hasOwnRoots, isCrossAccount, joinHost, resolveTarget } from '../daemon/target.js';
import { fallsBackToApi, findMountTarget, type MountTarget } from '../daemon/mount-target-api.js';
import type { MountOptions } from '../daemon/options.js';
import { azIdFromMetadata, regionFromMetadata, type MetadataAzId, type MetadataRegion } from '../daemon/instance-region.js';
import { caFileFor, parseCaBundle } from '../daemon/tls-policy.js';
import { formatOptions } from '../daemon/options.js';
import { whoElseCanChange } from '../daemon/file-trust.js';
import { fdUsage } from '../daemon/fd-watch.js';
import { isNoAddress, noAddressMessage, type DnsAnswer } from '../daemon/target-lookup.js';
import type { TunnelDetail, TunnelView } from '../daemon/tunnels.js';
import type { ConfigStatus } from '../daemon/config-reload.js';
import type { FstabStatus } from '../daemon/fstab-watch.js';
import { call } from './client.js';
import { describeListener, listenersOn, listening, type Listener } from './listeners.js';
import { alive } from './processes.js';
import { describeOs } from './os-release.js';
import { efsUtilsConfigs, efsUtilsMounts, efsUtilsNamespacedMount } from '../daemon/efs-utils-configs.js';

export type Status = 'ok' | 'warn' | 'fail';

export interface Check {
  name: string;
  status: Status;
  message: string;
  /** What to do; null when the check is ok. */
  fix: string | null;
}

export interface DoctorReport {
  checks: Check[];
  summary: Record<Status, number>;
}

const TIMEOUT_MS = 3_000;
/** File systems whose name and port are checked at the same time. */
const FS_CHECKS_AT_ONCE = 8;

/** Run the tasks, at most `n` at a time; their results in the tasks' order. */
function pooled<T>(tasks: Array<() => Promise<T>>, n: number): Array<Promise<T>> {
  const done: Array<(r: Promise<T>) => void> = [];
  const results = tasks.map(() => new Promise<T>((resolve) => done.push(resolve)));
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < tasks.length) {
      const i = next++;
      const r = (tasks[i] as () => Promise<T>)();
      (done[i] as (r: Promise<T>) => void)(r);
      await r.catch(() => undefined); // the caller sees the failure through results[i]
    }
  };
  for (let k = 0; k < Math.min(n, tasks.length); k++) void worker();
  return results;
}

const ok = (name: string, message: string): Check => ({ name, status: 'ok', message, fix: null });
const bad = (name: string, status: 'warn' | 'fail', message: string, fix: string): Check => ({ name, status, message, fix });

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<T>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms / 1000} s`)), ms);
    }),
  ]);
}

async function osCheck(): Promise<Check> {
  const os = await describeOs();
  const text = `${os.distro}${os.version ? ` ${os.version}` : ''}${os.codename ? ` (${os.codename})` : ''}, kernel ${os.kernel}, ${os.arch}`;
  if (os.platform !== 'linux') return bad('os', 'fail', text, 'efs-relay runs on Linux only.');
  return ok('os', text);
}

async function kernelNfsCheck(): Promise<Check> {
  const text = await readFile('/proc/filesystems', 'utf8').catch(() => '');
  if (/\bnfs4\b/.test(text)) return ok('kernel_nfs4', 'the kernel has an NFSv4 client (nfs4 in /proc/filesystems)');
  return bad('kernel_nfs4', 'fail', 'the kernel cannot mount NFS 4.1: no nfs4 in /proc/filesystems',
    'Load the NFS client with `modprobe nfs` (installed with nfs-common or nfs-utils); in a container, mount on the host instead.');
}

async function mountHelperCheck(cfg: Config): Promise<Check> {
  try {
    await access(cfg.mount.command, constants.X_OK);
    return ok('mount_nfs4', `${cfg.mount.command} is installed`);
  } catch {
    return bad('mount_nfs4', 'fail', `${cfg.mount.command} is missing`, 'Install it: `apt-get install nfs-common` or `dnf install nfs-utils`.');
  }
}

/** Above this share of its descriptor limit, the daemon is near FD_LIMIT. */
const FD_WARN_SHARE = 0.8;

/** The daemon's open file descriptors against its limit: each relayed connection takes two. */
async function fdCheck(pid: number): Promise<Check> {
  let open: number;
  let limit: number | null;
  try {
    ({ open, limit } = await fdUsage(pid));
  } catch (err) {
    return bad('fds', 'warn', `cannot read the daemon's descriptors (pid ${pid}): ${(err as Error).message}`, 'Run efsctl doctor as root, on the daemon\'s host.');
  }
  if (limit === null) return ok('fds', `${open} open, no limit`);
  const text = `${open} of ${limit} file descriptors open (each relayed connection takes two)`;
  if (open >= limit * FD_WARN_SHARE) {
    return bad('fds', 'warn', `${text}: near the limit, after which connections fail with FD_LIMIT`, ERRORS.FD_LIMIT.hint);
  }
  return ok('fds', text);
}

/**
 * Whether the daemon runs its config file as it is: an edit that no reload
 * has read yet, or keys that wait for a restart, are not in effect, and a
 * file that did not load would stop the next start.
 */
async function configCheck(c: ConfigStatus | undefined): Promise<Check> {
  if (!c) return ok('config', 'the daemon does not say which config it runs (an older efs-relayd)');
  const reload = 'Run `systemctl reload efs-relayd` (or `efsctl reload`): it applies what it can and says what waits for a restart.';
  let modified: Date | null = null;
  try {
    modified = (await stat(c.file)).mtime;
  } catch {
    // No file: the daemon runs the defaults, as it would after a restart.
  }
  const changedAfter = (iso: string | null): boolean => modified !== null && iso !== null && modified.getTime() > Date.parse(iso);
  // The file that failed is still there, unchanged since.
  if (!c.last_reload_successful && !changedAfter(c.last_reload_at)) {
    return bad('config', 'fail', `${c.file} did not load at the last reload (${c.last_reload_at}): efs-relayd would not start with it (at the next reboot or upgrade)`,
      `\`efsctl reload\` names the file, line and key; fix them, then reload. ${reload}`);
  }
  if (changedAfter(c.loaded_at)) {
    return bad('config', 'warn', `${c.file} changed at ${modified?.toISOString()}, after efs-relayd last loaded it (${c.loaded_at}): the change is not in effect`, reload);
  }
  if (c.restart_needed.length > 0) {
    return bad('config', 'warn', `${c.restart_needed.join(', ')} changed in ${c.file} but keep${c.restart_needed.length === 1 ? 's' : ''} the running value until efs-relayd restarts`,
      'Run `systemctl restart efs-relayd` when a moment suits: tunnels come back on their ports, and open NFS connections reconnect.');
  }
  if (modified === null) return ok('config', `${c.file} does not exist: efs-relayd runs the defaults, as it would after a restart`);
  return ok('config', `efs-relayd runs ${c.file} as it is (loaded ${c.loaded_at})`);
}

/** Below this, a full state dir is near: records are small, but tmpfs gives each file a page. */
const STATE_DIR_MIN_FREE = 1 << 20;

const mib = (bytes: number): string => `${(bytes / (1 << 20)).toFixed(bytes < 10 << 20 ? 1 : 0)} MiB`;

/** Room in the state dir (/run, a small tmpfs): where it runs out, no tunnel or mount change can be recorded. */
async function stateDirCheck(cfg: Config): Promise<Check> {
  let s;
  try {
    s = await statfs(cfg.state_dir);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') return bad('state_dir', 'warn', `${cfg.state_dir} does not exist`, 'efs-relayd makes it at start: start the daemon, or check state_dir in the config file.');
    return bad('state_dir', 'warn', `cannot look at ${cfg.state_dir}: ${e.message}`, 'Run efsctl doctor as root.');
  }
  const free = s.bavail * s.bsize;
  const text = `${cfg.state_dir}: ${mib(free)} free of ${mib(s.blocks * s.bsize)}`;
  // access() answers EROFS even for root, whom permissions never stop.
  const readOnly = await access(cfg.state_dir, constants.W_OK).then(() => false, (err: NodeJS.ErrnoException) => err.code === 'EROFS');
  if (readOnly) {
    return bad('state_dir', 'fail', `${cfg.state_dir}: read-only file system: no tunnel can be added or stopped, and no mount change recorded (STATE_WRITE_FAILED)`,
      'Remount that file system read-write (`findmnt -T` of the state dir shows which). Running tunnels are not affected.');
  }
  if (free < STATE_DIR_MIN_FREE) {
    return bad('state_dir', 'warn', `${text}: new tunnels and mount changes cannot be recorded once it is full (STATE_WRITE_FAILED)`,
      'Free space on that file system (`df -h` of it; /run is a small tmpfs). Running tunnels are not affected.');
  }
  return ok('state_dir', text);
}

async function caBundleCheck(cfg: Config): Promise<Check> {
  let pem: string;
  try {
    pem = await readFile(cfg.tls.ca_file, 'utf8');
  } catch (err) {
    return bad('ca_bundle', 'fail', `cannot read ${cfg.tls.ca_file}: ${(err as Error).message}`, 'Reinstall efs-relay, or point tls.ca_file at the Amazon root CAs.');
  }
  const certs = parseCaBundle(pem);
  if (typeof certs === 'string') return bad('ca_bundle', 'fail', `${cfg.tls.ca_file}: ${certs}; no tunnel can verify its mount target (CA_BUNDLE_UNREADABLE)`, 'Restore the Amazon root CA bundle (reinstall efs-relay), or fix the file tls.ca_file names.');
  const now = Date.now();
  const live = certs.filter((c) => Date.parse(c.validTo) > now);
  if (live.length === 0) return bad('ca_bundle', 'fail', `every certificate in ${cfg.tls.ca_file} has expired`, 'Check the clock; then update the bundle.');
  const soonest = Math.min(...live.map((c) => Date.parse(c.validTo)));
  const text = `${cfg.tls.ca_file}: ${certs.length} certificate${certs.length > 1 ? 's' : ''}, ${live.length} valid, next expiry ${new Date(soonest).toISOString().slice(0, 10)}`;
  if (live.length < certs.length) return bad('ca_bundle', 'warn', text, 'Some CA certificates have expired; update the bundle.');
  return ok('ca_bundle', text);
}

/**
 * A file system in a partition with roots of its own (the ISO regions, the European Sovereign Cloud) whose tunnel
 * verifies against a bundle of Amazon's public roots alone: efs-utils verifies those mount targets against the
 * system's CA bundle, and Amazon's roots do not sign them. Null when there is none.
 */
async function partitionCaCheck(fs: FsTarget[]): Promise<Check | null> {
  const amazonOnly = new Map<string, Promise<boolean>>();
  const onlyAmazonRoots = (file: string): Promise<boolean> => {
    let known = amazonOnly.get(file);
    if (!known) {
      known = readFile(file, 'utf8').then((pem) => {
        const certs = parseCaBundle(pem);
        return typeof certs !== 'string' && certs.every((c) => /^O=Amazon$/m.test(c.subject) && /^CN=Amazon Root CA \d+$/m.test(c.subject));
      }, () => false);
      amazonOnly.set(file, known);
    }
    return known;
  };
  const found: FsTarget[] = [];
  for (const t of fs) if (hasOwnRoots(t.region) && (await onlyAmazonRoots(t.caFile))) found.push(t);
  if (found.length === 0) return null;
  const which = found.map((t) => `${t.fsId} (${t.region}) against ${t.caFile}`).join(', ');
  return bad('partition_ca', 'warn',
    `${found.length === 1 ? 'a file system' : 'file systems'} in a partition whose mount targets Amazon's public root CAs do not sign, verifying against those roots alone: ${which}; ${found.length === 1 ? 'its' : 'their'} handshakes would be refused (TLS_UNTRUSTED_CHAIN)`,
    'Set tls.ca_file, or cafile= on the mount or fstab line, to a bundle that holds the partition\'s CAs: efs-utils uses the system\'s (/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem on RHEL and Amazon Linux, /etc/ssl/certs/ca-certificates.crt on Debian and Ubuntu).');
}

/**
 * The files the TLS verification rests on can be changed by root only:
 * tls.ca_file, the cafile= of each tunnel and fstab line, and the config file
 * (which names the bundle). The daemon logs the same finding each time it
 * reads one.
 */
async function trustFilesCheck(cfg: Config, configFile: string, tunnels: TunnelView[], fstab: FstabEntry[]): Promise<Check> {
  const named = [...tunnels.map((t) => t.options.cafile), ...fstab.map((e) => e.options.cafile)];
  const bundles = new Set([resolve(cfg.tls.ca_file), ...named.flatMap((f) => (f ? [resolve(f)] : []))]);
  const files: Array<[string, string]> = [...[...bundles].map((f): [string, string] => [f, 'CA bundle']), [configFile, 'config file']];
  const found: string[] = [];
  for (const [file, what] of files) {
    // Judged for efs-relayd, which runs as root, whoever runs doctor.
    const why = await whoElseCanChange(file, 0);
    if (why) found.push(`${what} ${file}: ${why}`);
  }
  if (found.length > 0) {
    return bad('trust_files', 'fail', `a user other than root can change what the TLS verification trusts: ${found.join('; ')}`,
      `${ERRORS.TRUST_FILE_WRITABLE.hint} [TRUST_FILE_WRITABLE]`);
  }
  return ok('trust_files', `only root can change the ${bundles.size === 1 ? 'CA bundle' : `${bundles.size} CA bundles`} and the config file`);
}

/**
 * TLS 1.2 servers no longer send their time (OpenSSL randomises that field),
 * so the skew is judged from this host's own time synchronisation.
 */
async function clockCheck(): Promise<Check> {
  const out = await new Promise<string | null>((resolve) => {
    execFile('timedatectl', ['show', '-p', 'NTPSynchronized', '--value'], { timeout: TIMEOUT_MS }, (err, stdout) => resolve(err ? null : stdout.trim()));
  });
  if (out === 'yes') return ok('clock', 'the system clock is synchronised (NTP)');
  if (out === 'no') {
    return bad('clock', 'warn', 'the system clock is not synchronised', 'Enable chrony or systemd-timesyncd: a skewed clock makes valid certificates look expired.');
  }
  return bad('clock', 'warn', 'cannot tell whether the clock is synchronised (timedatectl gave no answer; servers do not report their time over TLS 1.2)',
    'Check time synchronisation by hand (`chronyc tracking`); a skewed clock makes valid certificates look expired.');
}

/** A TCP connect, closed at once: 'connected', 'timeout', or the socket's error. */
function tcpConnect(host: string, port: number, timeoutMs: number): Promise<'connected' | 'timeout' | Error> {
  return new Promise((resolve) => {
    const sock = connect({ host, port, timeout: timeoutMs });
    const done = (r: 'connected' | 'timeout' | Error): void => {
      sock.destroy();
      resolve(r);
    };
    sock.once('connect', () => done('connected'));
    sock.once('timeout', () => done('timeout'));
    sock.once('error', (err) => done(err));
  });
}

/** What is wrong with some mounts, and what to do. */
interface Problems {
  problems: string[];
  fixes: string[];
}

/**
 * Mounts through the port of a tunnel of the answering daemon that does not listen there (state `error`): another
 * process holds the port, or another file system's efs-utils mount goes through it (PORT_CLAIMED). The tunnel's
 * last error says which, and its code's hint what to do.
 */
async function stalledMounts(doubtful: { dir: string; port: number }[], holders: ReadonlyMap<number, TunnelView>, servers: ReadonlyMap<number, Listener>, daemonPid: number | null): Promise<Problems & { dirs: Set<string> }> {
  const dirs = new Set<string>();
  const problems: string[] = [];
  const fixes = new Set<string>();
  for (const m of doubtful) {
    const server = servers.get(m.port);
    // Served by the daemon itself: the tunnel's error is about another of its ports.
    if (server?.pid != null && server.pid === daemonPid) continue;
    if (server === undefined && (await tcpConnect('127.0.0.1', m.port, 1_000)) === 'connected') continue; // cannot tell whose: not judged
    const t = holders.get(m.port) as TunnelView;
    dirs.add(m.dir);
    const why = t.last_error ? `${t.last_error.code}: ${t.last_error.message}` : 'see `efsctl status`';
    problems.push(`${m.dir} (port ${m.port}): the port of ${t.fs_id}'s tunnel, which does not listen there${server ? ` (${describeListener(server)} does)` : ''}; ${why}`);
    // A daemon newer than this efsctl may send a code it does not know.
    const code = t.last_error?.code;
    fixes.add(isErrorCode(code) ? `${ERRORS[code].hint} [${code}]` : `Run \`efsctl status ${t.fs_id}\`.`);
  }
  return { problems, fixes: [...fixes], dirs };
}

/**
 * Mounts that efs-utils' configs give to another file system than the tunnel whose port they go through: left by
 * an older efs-relay, which could give a port to a tunnel while efs-utils' mount through it had no stunnel. While
 * that tunnel serves the port, the mount's NFS traffic reaches the wrong mount target.
 */
async function misroutedMounts(through: { dir: string; port: number }[], holders: ReadonlyMap<number, TunnelView>, stateDir: string): Promise<Problems> {
  const wrong = (await efsUtilsMounts(through.filter((m) => holders.has(m.port)), stateDir)).filter((m) => holders.get(m.port)?.fs_id !== m.fs_id);
  return {
    problems: wrong.map((m) => `${m.dir} (port ${m.port}): efs-utils' config ${m.file} mounts ${m.fs_id} there, but the port is ${holders.get(m.port)?.fs_id}'s tunnel, so its NFS traffic goes to the wrong file system's mount target`),
    fixes: wrong.map((m) => `Unmount ${m.dir} and mount ${m.fs_id} again (\`mount -t efs -o tls ${m.fs_id} ${m.dir}\`): it gets a port of its own.`),
  };
}

/**
 * Mounts through a local port where no efs-relay tunnel listens. Where
 * nothing listens (left by `efsctl stop --force`, or the daemon is down)
 * their NFS I/O waits; where another process does, doctor names it: most
 * likely an efs-utils stunnel not yet moved over, or an efs-relayd other
 * than the one answering on the socket. The state dir says whose port a
 * force-stopped tunnel had.
 */
async function tunnelMountsCheck(cfg: Config, tunnels: TunnelView[], daemon: { socket: string; pid: number | null }): Promise<Check> {
  let mounts;
  try {
    mounts = await readProcMounts(cfg.mount.proc_mounts);
  } catch (err) {
    return bad('mounts', 'warn', `cannot read ${cfg.mount.proc_mounts}: ${(err as Error).message}`, 'Run efsctl doctor as root on the host that mounts EFS.');
  }
  const daemonUp = daemon.pid !== null;
  // Each port of the answering daemon's tunnels, own or extra, and the tunnel that holds it.
  const holders = new Map(tunnels.flatMap((t) => portsOf(t).map((p) => [p, t] as const)));
  const through = mounts.flatMap((m) => {
    const port = tunnelPortOf(m);
    return port === null ? [] : [{ dir: m.dir, port }];
  });
  const orphans: typeof through = [];
  const served: typeof through = [];
  /** efs-utils mounts made with netns=, whose stunnel serves them inside that namespace, where the connect does not reach. */
  const inNamespaces: Array<(typeof through)[number] & { netns: string; pid: number }> = [];
  for (const m of through) {
    if (holders.has(m.port)) continue;
    if ((await tcpConnect('127.0.0.1', m.port, 1_000)) === 'connected') {
      served.push(m);
      continue;
    }
    const ns = await efsUtilsNamespacedMount(m.dir, m.port, cfg.mount.efs_utils_state_dir);
    if (ns?.pid != null && alive(ns.pid) && (await listening(m.port, ns.pid))) inNamespaces.push({ ...m, netns: ns.netns, pid: ns.pid });
    else orphans.push(m);
  }
  const doubtful = through.filter((m) => holders.get(m.port)?.state === 'error');
  // One listing for both kinds: systeminformation runs netstat or ss, slow on a host with many sockets.
  const listed = [...served, ...doubtful].map((m) => m.port);
  const servers = await withTimeout(listenersOn(listed), 10_000, 'listing listening sockets').catch(() => new Map<number, Listener>());
  const stalled = await stalledMounts(doubtful, holders, servers, daemon.pid);
  const misrouted = await misroutedMounts(through.filter((m) => !stalled.dirs.has(m.dir)), holders, cfg.mount.efs_utils_state_dir);
  const wrong: Problems = { problems: [...misrouted.problems, ...stalled.problems], fixes: [...misrouted.fixes, ...stalled.fixes] };
  if (orphans.length > 0) {
    const left = await new StateStore(cfg.state_dir).loadLeftMounts().catch(() => ({ left: [] }));
    const owners = new Map(left.left.map((l) => [l.port, l.fs_id]));
    const what = orphans.map((m) => `${m.dir} (port ${m.port}${owners.has(m.port) ? `, ${owners.get(m.port)}` : ''})`);
    const fixes = await Promise.all(orphans.map(async (m) => {
      const owner = owners.get(m.port);
      if (owner !== undefined) {
        // A running tunnel of that file system takes the port as an extra one when asked with its own options.
        const running = tunnels.find((t) => t.fs_id === owner);
        if (!running) return `\`efsctl add ${owner}\` gives ${m.dir} its port back`;
        return `\`efsctl add ${owner} -o ${formatOptions({ ...running.options, tlsport: String(m.port) })}\` gives ${m.dir} its port back, as an extra port of the tunnel on port ${running.port}`;
      }
      // An efs-utils mount whose stunnel died: its config says what to revive it with.
      const { files } = await efsUtilsConfigs(m.dir, m.port, cfg.mount.efs_utils_state_dir);
      if (files.length === 1) return `\`efsctl takeover ${m.dir}\` revives it from efs-utils' config ${files[0]}`;
      return `\`efsctl add FS_ID -o tlsport=${m.port}\` with the file system mounted at ${m.dir}`;
    }));
    const cause = daemonUp ? 'no tunnel listens there' : 'efs-relayd is not answering';
    return bad('mounts', 'fail', [`${what.join(', ')}: mounted through a local port, but ${cause}; NFS I/O there waits`, ...wrong.problems].join('; '),
      [`${daemonUp ? '' : 'Start efs-relayd; then, for a tunnel it does not restore: '}${fixes.join('; ')}; or unmount.`, ...wrong.fixes].join(' '));
  }
  // A tunnel the answering daemon started after doctor listed its tunnels is its own.
  const others = served.filter((m) => !daemonUp || servers.get(m.port)?.pid !== daemon.pid);
  const relayd = others.filter((m) => servers.get(m.port)?.relayd);
  const foreign = others.filter((m) => !servers.get(m.port)?.relayd);
  const by = (m: (typeof through)[number]): string => `${m.dir} (port ${m.port}, served by ${describeListener(servers.get(m.port))})`;
  const problems: string[] = [];
  const fixes: string[] = [];
  if (relayd.length > 0) {
    problems.push(`${relayd.map(by).join(', ')}: ${daemonUp ? `another efs-relayd than the one answering on ${daemon.socket} (pid ${daemon.pid})` : `that efs-relayd does not answer on ${daemon.socket}`}`);
    fixes.push(daemonUp
      ? 'Run one efs-relayd per host (two compete for the same ports); stop the one whose tunnels are not mounted'
      : 'Point efsctl at the control socket that daemon uses (--socket, or control_socket in the file given with --config)');
  }
  if (foreign.length > 0) {
    const stunnel = foreign.some((m) => /stunnel/.test(servers.get(m.port)?.name ?? ''));
    problems.push(`${foreign.map(by).join(', ')}: mounted through a local port that another process serves, not efs-relayd${stunnel ? ' (an efs-utils stunnel)' : ''}`);
    fixes.push(stunnel
      ? 'To carry them through efs-relay without unmounting, run `efsctl takeover DIR` for each, or `efsctl takeover --all`; or unmount each and mount it again with `mount -t efs -o tls` or `efsctl attach`'
      : 'To carry them through efs-relay, unmount each and mount it again with `mount -t efs -o tls` or `efsctl attach`');
  }
  if (inNamespaces.length > 0) {
    problems.push(`${inNamespaces.map((m) => `${m.dir} (port ${m.port}, served by pid ${m.pid} in network namespace ${m.netns})`).join(', ')}: mounted through a local port that an efs-utils stunnel serves inside another network namespace, not efs-relayd`);
    fixes.push('To carry them through efs-relay without unmounting, run `efsctl takeover DIR` for each, or `efsctl takeover --all`; or unmount each and mount it again with `mount -t efs -o tls,netns=PATH`');
  }
  if (wrong.problems.length > 0) {
    return bad('mounts', 'fail', [...wrong.problems, ...problems].join('; '), [...wrong.fixes, ...(fixes.length > 0 ? [`${fixes.join('. ')}.`] : [])].join(' '));
  }
  if (problems.length > 0) return bad('mounts', 'warn', problems.join('; '), `${fixes.join('. ')}.`);
  return ok('mounts', through.length === 0 ? 'no NFS mount goes through a local tunnel port' : `${through.length} mount${through.length === 1 ? '' : 's'} through tunnels, each with its tunnel`);
}

interface FsTarget {
  fsId: string;
  /** Looked up when address is not an IP address. */
  dnsName: string;
  /** What the certificate must carry. */
  certName: string;
  address: string;
  /** The network namespace its tunnel connects from (netns=), or undefined for the daemon's own. */
  netns?: string;
  region: string;
  /** The CA bundle it verifies with. */
  caFile: string;
  /** The tunnel's or the line's options (az=, crossaccount, awsprofile=: what the EFS API fallback asks with). */
  options: MountOptions;
}

function targets(cfg: Config, tunnels: TunnelView[], fstab: FstabEntry[], metadata: MetadataRegion, azId: MetadataAzId): FsTarget[] {
  const out = new Map<string, FsTarget>();
  for (const t of tunnels) {
    out.set(t.fs_id, {
      fsId: t.fs_id, dnsName: t.target.dns_name, certName: t.target.cert_name, address: t.target.address, netns: t.netns ?? undefined,
      region: t.target.region, caFile: caFileFor(t.options, cfg), options: t.options,
    });
  }
  for (const e of fstab) {
    if (out.has(e.fsId)) continue;
    try {
      const t = resolveTarget(e.fsId, e.options, process.env, cfg, metadata, azId);
      out.set(e.fsId, {
        fsId: e.fsId, dnsName: t.dnsName, certName: t.certName, address: t.address, netns: e.options.netns ?? undefined,
        region: t.region, caFile: caFileFor(e.options, cfg), options: e.options,
      });
    } catch {
      // No region (or crossaccount zone ID) known for this line: no name to check (the fstab check reports it).
    }
  }
  return [...out.values()];
}

/**
 * Where the region of a file system that names none comes from: efs.region,
 * or what instance metadata told the daemon (or doctor, when the daemon is down). Informational: a mount that
 * names its region needs neither, and fstab lines that need one are judged
 * by the fstab check.
 */
function regionCheck(cfg: Config, metadata: MetadataRegion, from: 'efs-relayd' | 'doctor'): Check {
  if (cfg.efs.region !== '') return ok('region', `file systems that name no region are in ${cfg.efs.region} (efs.region)`);
  if (metadata.region !== null) {
    return ok('region', `file systems that name no region are in ${metadata.region} (instance metadata, ${from === 'doctor' ? 'asked by doctor, since efs-relayd does not answer' : 'as efs-relayd last heard it'})`);
  }
  return ok('region', `no default region: ${metadata.why}; each mount names its region (region= or AWS_REGION), or set efs.region`);
}

/**
 * The efs lines of fstab, judged as the daemon judges them (one check per
 * line that gets no tunnel or whose mount would be refused), so a line the
 * daemon only logged is seen before the next boot tries to mount it.
 */
async function fstabChecks(cfg: Config, metadata: MetadataRegion, daemonSaw: FstabStatus | null): Promise<{ checks: Check[]; entries: FstabEntry[]; azId: MetadataAzId }> {
  // The daemon's own read may fail where this one does not (no descriptor left in the daemon), and as root its
  // failure is the one to show.
  const unread = daemonSaw?.file === resolve(cfg.fstab) ? daemonSaw.read_error ?? null : null;
  const daemonCannot = unread && bad('fstab', 'fail', `efs-relayd: ${unread.message}; it applies no change of the file until it can`,
    `${unread.hint} [${unread.code}]`);
  let parsed;
  try {
    parsed = await readFstab(cfg.fstab);
  } catch (err) {
    const check = daemonCannot || bad('fstab', 'warn', `cannot read ${cfg.fstab}: ${(err as Error).message}`, 'Run efsctl doctor as root, or check the fstab key in the config file.');
    return { checks: [check], entries: [], azId: AZ_ID_NOT_ASKED };
  }
  // Alias lines are followed as the daemon follows them, through this host's DNS.
  const { unfollowed, ...lines } = await followFstabAliases(parsed, followAlias);
  // Crossaccount lines need this instance's zone ID, asked of instance metadata as the daemon asks it.
  const azId = lines.entries.some((e) => isCrossAccount(e.options)) ? await azIdFromMetadata(cfg.efs.metadata_url) : AZ_ID_NOT_ASKED;
  const { problems } = planFstab(lines, cfg, metadata, azId);
  const checks = problems.map((p) => ({ line: p.line, check: bad(`fstab line ${p.line}`, 'fail', `${cfg.fstab}:${p.line}: ${p.message}`,
    `Correct the line or remove it; until then a mount of this line at boot fails. ${p.hint} [${p.code}]`) }));
  // What only the daemon knows: a valid line whose tunnel could not be made (no free port, a full state dir).
  for (const u of unfollowed) {
    checks.push({ line: u.line, check: bad(`fstab line ${u.line}`, 'fail', `${cfg.fstab}:${u.line}: ${u.error.message}`,
      `${u.error.hint} Until DNS leads from ${u.alias} to a file system, a mount of this line fails. [${u.error.code}]`) });
  }
  if (daemonCannot) checks.push({ line: 0, check: daemonCannot });
  const judged = new Set([...problems, ...unfollowed].map((p) => p.line));
  for (const f of daemonSaw?.file === resolve(cfg.fstab) ? daemonSaw.failures : []) {
    if (judged.has(f.line)) continue;
    checks.push({ line: f.line, check: bad(`fstab line ${f.line}`, 'fail', `${cfg.fstab}:${f.line}: ${f.message}; efs-relayd has no tunnel for this line yet`,
      `${f.hint} efs-relayd tries the line again on its own; until it succeeds, a mount of this line fails. [${f.code}]`) });
  }
  if (checks.length === 0) {
    const count = parsed.entries.length + parsed.problems.length + parsed.aliases.length;
    const text = count === 0 ? `no efs lines in ${cfg.fstab}` : `${count} efs line${count === 1 ? '' : 's'} in ${cfg.fstab}, each valid`;
    return { checks: [ok('fstab', text)], entries: lines.entries, azId };
  }
  return { checks: checks.sort((a, b) => a.line - b.line).map((c) => c.check), entries: lines.entries, azId };
}

/**
 * With netns= tunnels or fstab lines: nsenter is installed, and each namespace is there now (one not there yet, a
 * container's that has not started, is a warning: its tunnel waits for it).
 */
async function netnsCheck(tunnels: TunnelView[], fstab: FstabEntry[]): Promise<Check | null> {
  const paths = [...new Set([...tunnels.flatMap((t) => t.netns ?? []), ...fstab.flatMap((e) => e.options.netns ?? [])])].sort();
  if (paths.length === 0) return null;
  const dirs = (process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin').split(':').filter(Boolean);
  const installed = await Promise.all(dirs.map((d) => access(join(d, 'nsenter'), constants.X_OK).then(() => true, () => false)));
  if (!installed.includes(true)) {
    return bad('netns', 'fail', `nsenter is not installed, and netns= tunnels need it to enter ${paths.join(', ')}`, 'Install util-linux (`apt-get install util-linux`, `dnf install util-linux`). [NETNS_FAILED]');
  }
  const missing: string[] = [];
  for (const p of paths) if (!(await stat(p).then(() => true, () => false))) missing.push(p);
  if (missing.length > 0) {
    return bad('netns', 'warn', `${missing.join(', ')} ${missing.length === 1 ? 'is' : 'are'} not there now; the tunnels in ${missing.length === 1 ? 'it' : 'them'} wait (NETNS_FAILED) and mounts from there fail`,
      `Start what makes the namespace (its container, \`ip netns add\`), or correct netns= in the mount or fstab line. ${ERRORS.NETNS_FAILED.hint} [NETNS_FAILED]`);
  }
  return ok('netns', `nsenter is installed; ${paths.length === 1 ? 'the network namespace' : 'each network namespace'} of netns= is there: ${paths.join(', ')}`);
}

/** Where the reach check goes: DNS's answer, or the daemon's last one; null when there is none. */
interface Reachable {
  address: string;
  /** How the address was found, for the message ("" for an address given, or DNS's answer now). */
  how: string;
}

/** What lets DNS name a mount target again, after a mount target from the EFS API (the two dns warnings' fix). */
const VPC_DNS_FIX = ' For DNS to name the mount target, turn on DNS hostnames and DNS resolution in the VPC, or use its resolver. [DNS_FAILED]';

/**
 * For a name DNS has no address for: the mount target the EFS API gives, as the daemon would ask it at the next
 * connection (efs.mount_target_fallback), or why it gives none; null when the fallback is off or not for this file
 * system.
 */
async function mountTargetCheck(cfg: Config, t: FsTarget): Promise<MountTarget | Error | null> {
  if (!fallsBackToApi(cfg, t.options)) return null;
  return findMountTarget(cfg, t.fsId, t.region, t.options, async () => (await azIdFromMetadata(cfg.efs.metadata_url)).az_id)
    .catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
}

/**
 * The name resolves. When DNS does not answer, `lastAnswer` asks the daemon where its tunnel sends connections
 * meanwhile (DNS's last answer): mounts still work then, so it is a warning, not a failure. Also where the reach
 * check goes, so that a name is looked up once: a resolver that does not answer holds a lookup thread for seconds.
 */
async function dnsCheck(cfg: Config, t: FsTarget, lastAnswer: () => Promise<DnsAnswer | null>): Promise<{ check: Check; reach: Reachable | null }> {
  const name = `dns ${t.fsId}`;
  if (isIP(t.address)) return { check: ok(name, `uses mounttargetip=${t.address}; ${t.certName} is only checked in the certificate`), reach: { address: t.address, how: '' } };
  try {
    const r = await withTimeout(lookup(t.dnsName), TIMEOUT_MS, `resolving ${t.dnsName}`);
    return { check: ok(name, `${t.dnsName} resolves to ${r.address}`), reach: { address: r.address, how: '' } };
  } catch (err) {
    // The daemon's words: DNS answered that there is no such name, or did not answer.
    const code = (err as NodeJS.ErrnoException).code;
    if (code && isNoAddress(code)) {
      // The daemon may connect to the mount target the EFS API gave it instead (efs.mount_target_fallback).
      const fromApi = await lastAnswer().catch(() => null);
      const address = fromApi?.mount_target !== undefined ? fromApi.addresses[0] : undefined;
      if (address === undefined) {
        // No connection has asked yet (a line of fstab not mounted yet): doctor asks the EFS API as the daemon will.
        const found = await mountTargetCheck(cfg, t);
        if (found === null) return { check: bad(name, 'fail', noAddressMessage(t.dnsName, code), `${ERRORS.DNS_FAILED.hint} [DNS_FAILED]`), reach: null };
        if (found instanceof Error) {
          return { check: bad(name, 'fail', `${noAddressMessage(t.dnsName, code)}; the EFS API gave no mount target to connect to instead: ${found.message}`, `${ERRORS.DNS_FAILED.hint} [DNS_FAILED]`), reach: null };
        }
        return {
          check: bad(name, 'warn', `${noAddressMessage(t.dnsName, code)}; the EFS API gives ${found.address}, ${found.description}, where efs-relayd will send ${t.fsId}'s connections, still verified against ${t.certName}`,
            `Mounts work, as with efs-utils' fall_back_to_mount_target_ip_address.${VPC_DNS_FIX}`),
          reach: { address: found.address, how: ' (the EFS API\'s mount target)' },
        };
      }
      return {
        check: bad(name, 'warn', `${noAddressMessage(t.dnsName, code)}; efs-relayd sends ${t.fsId}'s connections to ${address}, ${fromApi!.mount_target} as the EFS API gave it (${fromApi!.answered_at}), still verified against ${t.certName}`,
          `Mounts work meanwhile, as with efs-utils' fall_back_to_mount_target_ip_address.${VPC_DNS_FIX}`),
        reach: { address, how: ' (the EFS API\'s mount target)' },
      };
    }
    const message = !code ? `DNS gave no answer for ${t.dnsName} within ${TIMEOUT_MS / 1000} s` : `DNS gave no answer for ${t.dnsName} (${code})`;
    const last = await lastAnswer().catch(() => null);
    const address = last?.addresses[0];
    if (address === undefined) return { check: bad(name, 'fail', message, `${ERRORS.DNS_FAILED.hint} [DNS_FAILED]`), reach: null };
    return {
      check: bad(name, 'warn', `${message}; efs-relayd sends ${t.fsId}'s connections to ${address}, DNS's last answer (${last!.answered_at}), still verified against ${t.certName}`,
        `Mounts go on meanwhile (the tunnel's record keeps that answer across a daemon restart), but a mount target that moves is not followed: fix the resolver. ${ERRORS.DNS_FAILED.hint} [DNS_FAILED]`),
      reach: { address, how: ' (DNS\'s last answer)' },
    };
  }
}

async function reachCheck(t: FsTarget, port: number, to: Reachable | null): Promise<Check> {
  const name = `reach ${t.fsId}`;
  if (to === null) return bad(name, 'warn', `not checked: DNS gave no address for ${t.dnsName} (dns ${t.fsId})`, 'Fix the name first; see the dns check.');
  const where = `TCP ${joinHost(to.address, port)}${to.how}`;
  // From here the mount target may be out of reach, or another host: the tunnel's health probe asks from there.
  if (t.netns !== undefined) return ok(name, `${where} not checked from here: ${t.fsId}'s tunnel connects from network namespace ${t.netns} (netns=); its health probe does (\`efsctl status ${t.fsId}\`)`);
  const r = await tcpConnect(to.address, port, TIMEOUT_MS);
  if (r === 'connected') return ok(name, `${where} answers`);
  if (r === 'timeout') {
    return bad(name, 'fail', `${where} did not answer within ${TIMEOUT_MS / 1000} s`,
      'Allow TCP 2049 from this host in the mount target\'s security group. [CONNECT_TIMEOUT]');
  }
  return bad(name, 'fail', `${where}: ${r.message}`,
    'Check the mount target address and its security group (TCP 2049). [CONNECT_REFUSED]');
}

async function metricsCheck(cfg: Config): Promise<Check> {
  if (cfg.metrics.listen === '') return ok('metrics', 'the metrics endpoint is off (metrics.listen is empty)');
  const { host, port } = splitListen(cfg.metrics.listen);
  const url = `http://${host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host}:${port}/healthz`;
  try {
    const res = await withTimeout(fetch(url), TIMEOUT_MS, `GET ${url}`);
    const body = (await res.json()) as { failing?: Array<{ fs_id: string; code: string }> };
    if (res.status === 200) return ok('metrics', `${url} answers: healthy`);
    const failing = (body.failing ?? []).map((f) => `${f.fs_id} ${f.code}`).join(', ');
    return bad('metrics', 'warn', `${url} answers: unhealthy (${failing})`, 'Run `efsctl status FS_ID` for each failing tunnel.');
  } catch (err) {
    // fetch() hides the socket error in its cause.
    const cause = (err as { cause?: { code?: string } }).cause?.code;
    return bad('metrics', 'fail', `${url}: ${cause ? `cannot connect (${cause})` : (err as Error).message}`, 'Start efs-relayd, or check metrics.listen in the config file.');
  }
}

/**
 * Every check, in a fixed order. `onCheck` sees each one as soon as it is made, so that a person watching sees
 * progress while a name or port that does not answer takes its few seconds.
 */
export async function doctor(cfg: Config, configFile: string, socket: string, onCheck: (c: Check) => void = () => {}): Promise<DoctorReport> {
  const checks: Check[] = [];
  const add = (...made: Check[]): void => {
    for (const c of made) {
      checks.push(c);
      onCheck(c);
    }
  };
  add(await osCheck());
  add(await kernelNfsCheck());
  add(await mountHelperCheck(cfg));
  let tunnels: TunnelView[] = [];
  let daemonPid: number | null = null;
  // The daemon's answer from instance metadata; without the daemon, doctor asks it the same way.
  let metadata: MetadataRegion = METADATA_NOT_ASKED;
  let metadataFrom: 'efs-relayd' | 'doctor' = 'efs-relayd';
  let fstabSeen: FstabStatus | null = null;
  try {
    const v = (await call(socket, 'version', {}, TIMEOUT_MS)) as { version: string; pid: number; config?: ConfigStatus; instance_region?: MetadataRegion };
    metadata = v.instance_region ?? METADATA_NOT_ASKED;
    tunnels = ((await call(socket, 'list', {}, TIMEOUT_MS)) as { tunnels: TunnelView[] }).tunnels;
    // An older daemon has no `fstab` method: doctor then judges the lines alone.
    fstabSeen = (await call(socket, 'fstab', {}, TIMEOUT_MS).catch(() => null)) as FstabStatus | null;
    daemonPid = v.pid;
    add(ok('daemon', `efs-relayd ${v.version} (pid ${v.pid}) answers on ${socket}, ${tunnels.length} tunnel${tunnels.length === 1 ? '' : 's'}`));
    add(await fdCheck(v.pid));
    add(await configCheck(v.config));
  } catch (err) {
    add(bad('daemon', 'fail', (err as Error).message, 'Start it with `systemctl start efs-relayd` (or run `efs-relayd` as root).'));
    // So that fstab lines that name no region are judged as the daemon will judge them at the next boot.
    if (cfg.efs.region === '' && cfg.efs.metadata_url !== '') {
      metadata = (await regionFromMetadata(cfg.efs.metadata_url)).result;
      metadataFrom = 'doctor';
    }
  }
  add(await tunnelMountsCheck(cfg, tunnels, { socket, pid: daemonPid }));
  add(regionCheck(cfg, metadata, metadataFrom));
  const fstab = await fstabChecks(cfg, metadata, fstabSeen);
  add(...fstab.checks);
  add(await stateDirCheck(cfg));
  add(await caBundleCheck(cfg));
  const fs = targets(cfg, tunnels, fstab.entries, metadata, fstab.azId);
  const partition = await partitionCaCheck(fs);
  if (partition) add(partition);
  add(await trustFilesCheck(cfg, configFile, tunnels, fstab.entries));
  add(await clockCheck());
  const namespaces = await netnsCheck(tunnels, fstab.entries);
  if (namespaces) add(namespaces);
  if (fs.length === 0) add(ok('file systems', 'no tunnels and no efs lines in fstab: no name or mount target to check'));
  // Several file systems at once: each one that does not answer costs up to TIMEOUT_MS per check.
  const lastAnswer = (fsId: string) => async (): Promise<DnsAnswer | null> =>
    daemonPid !== null && tunnels.some((t) => t.fs_id === fsId) ? ((await call(socket, 'status', { fs_id: fsId }, TIMEOUT_MS)) as TunnelDetail).dns ?? null : null;
  const perFs = pooled(fs.map((t) => async () => {
    const dns = await dnsCheck(cfg, t, lastAnswer(t.fsId));
    return [dns.check, await reachCheck(t, cfg.efs.port, dns.reach)];
  }), FS_CHECKS_AT_ONCE);
  for (const both of perFs) add(...(await both));
  add(await metricsCheck(cfg));
  const summary: Record<Status, number> = { ok: 0, warn: 0, fail: 0 };
  for (const c of checks) summary[c.status]++;
  return { checks, summary };
}

/** The name column fits every fixed check name; a longer one (a file system's) pushes its message right. */
const NAME_WIDTH = 12;

/** One check as doctor prints it, printed as soon as it is made: the fix under a problem. */
export function formatCheck(c: Check): string {
  const width = Math.max(NAME_WIDTH, c.name.length);
  return [`${c.status.padEnd(4)}  ${c.name.padEnd(width)}  ${c.message}`, ...(c.fix ? [`${' '.repeat(6 + NAME_WIDTH)}  fix: ${c.fix}`] : [])].join('\n');
}

/** The count that ends doctor's output. */
export function formatSummary(r: DoctorReport): string {
  return `\n${r.summary.ok} ok, ${r.summary.warn} warn, ${r.summary.fail} fail`;
}
