// `efsctl takeover DIR`: move a mount that an amazon-efs-utils stunnel (or
// efs-utils 2's efs-proxy) serves onto an efs-relay tunnel on the same local port, without
// unmounting it. The mount names its port (port=N in /proc/mounts), so a
// tunnel that listens there instead of the stunnel carries it on: the NFS
// client sees its TCP connection close and reconnects, as it does after a
// network blip. Everything that could make the tunnel differ from the
// stunnel is checked before the stunnel is stopped; if the tunnel still
// cannot start, the stunnel is started again with its own command line.
import { spawn } from 'node:child_process';
import { readFile, readlink, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../daemon/config.js';
import { asRelayError, RelayError, type ErrorBody } from '../daemon/errors.js';
import { formatOptions, ocspChecking, parseOptions } from '../daemon/options.js';
import { requestedPort } from '../daemon/ports.js';
import { whoElseCanChange } from '../daemon/file-trust.js';
import { readProcMounts, tunnelPortOf, type MountEntry } from '../daemon/proc-mounts.js';
import { portsOf } from '../daemon/state.js';
import { caFileFor } from '../daemon/tls-policy.js';
import type { AddResult, TunnelView } from '../daemon/tunnels.js';
import { efsUtilsConfigs, efsUtilsNamespacedMount, efsUtilsStateFile, type EfsUtilsNamespacedMount } from '../daemon/efs-utils-configs.js';
import { awsCredentials, credentialPlaces } from '../daemon/aws-credentials.js';
import { azIdFromMetadata } from '../daemon/instance-region.js';
import { iamOptionsFor, parseStunnelConfig, serviceOn, tunnelFromStunnel, type TunnelFromStunnel } from './efs-utils-stunnel.js';
import { presentedIdentity, type PresentedIdentity } from '../daemon/client-cert.js';
import { X509Certificate } from 'node:crypto';
import { describeListener, listenersOn, listening } from './listeners.js';
import { alive, commandLine, environment, processes, processUid } from './processes.js';

export interface TakeoverResult {
  dir: string;
  fs_id: string;
  port: number;
  /** True when the mount already went through efs-relay: nothing was done. */
  already: boolean;
  /**
   * The stunnel (or efs-proxy) that served the mount; null when `already`. `pid` and `program` are null when it
   * had died: its config was found in mount.efs_utils_state_dir.
   */
  stunnel: { pid: number | null; program: string | null; config: string } | null;
  tunnel: TunnelView;
}

type Ask = (method: string, params?: Record<string, unknown>) => Promise<unknown>;

/** How long the stunnel may take to exit, and the port to come free, before the takeover is undone. */
const HANDOVER_MS = 5_000;

async function stopProcess(pid: number): Promise<void> {
  process.kill(pid, 'SIGTERM');
  for (let waited = 0; alive(pid) && waited < HANDOVER_MS; waited += 20) await sleep(20);
  if (alive(pid)) process.kill(pid, 'SIGKILL');
  for (let waited = 0; alive(pid) && waited < 1_000; waited += 20) await sleep(20);
}

/** The efs-utils watchdog restarts any stunnel of a mount it knows: it would fight the tunnel for the port. */
async function watchdogPid(): Promise<number | null> {
  for await (const p of processes()) if (p.argv.some((a) => basename(a) === 'amazon-efs-mount-watchdog')) return p.pid;
  return null;
}

/** Start the stunnel again as it ran, detached from efsctl, and wait for its port. */
async function restart(argv: string[], port: number): Promise<string | null> {
  try {
    const child = spawn(argv[0] as string, argv.slice(1), { detached: true, stdio: 'ignore' });
    const failed = new Promise<string>((resolve) => child.once('error', (err) => resolve(err.message)));
    child.unref();
    for (let waited = 0; waited < HANDOVER_MS; waited += 50) {
      const why = await Promise.race([failed, sleep(50, null)]);
      if (why !== null) return why;
      if (child.pid !== undefined && (await listening(port, child.pid))) return null;
    }
    return `nothing listens on port ${port} ${HANDOVER_MS / 1000} s after it started`;
  } catch (err) {
    return (err as Error).message;
  }
}

/** How a takeover puts a tunnel on the mount's port. */
interface Handover {
  plan: TunnelFromStunnel;
  /** The file system's unused tunnel, stopped to be made again on the mount's port (to be restarted if that fails). */
  idle: TunnelView | null;
  /** The file system's tunnel in use on another port, which takes the mount's port as an extra one. */
  busy: TunnelView | null;
}

/**
 * What every takeover checks before it changes anything: the config only root could have written, the tunnel it
 * makes (TAKEOVER_UNSAFE when the tunnel could not do the same), the port inside port_range, a tunnel of the file
 * system in use on another port reaching the same mount target with the same CA bundle, no efs-utils watchdog.
 * Then the file system's unused tunnel, if any, is stopped.
 */
async function prepare(
  dir: string, port: number, file: string, whose: string, mounts: MountEntry[], tunnels: TunnelView[], cfg: Config, ask: Ask, say: (text: string) => void,
  netns: string | null = null,
): Promise<Handover> {
  const exposed = await whoElseCanChange(file, 0);
  if (exposed !== null) {
    throw new RelayError('TAKEOVER_UNSAFE', `${exposed}: a user other than root could have changed ${file}, so it cannot be trusted to name the file system and mount target of ${dir}`);
  }
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new RelayError('TAKEOVER_UNSAFE', `cannot read ${file}, ${whose}: ${(err as Error).message}`);
  }
  const services = parseStunnelConfig(text);
  let plan = tunnelFromStunnel(services, port, file, cfg, await presentedBy(serviceOn(services, port)?.cert ?? null, dir));
  // A stunnel inside another network namespace is replaced by a tunnel there.
  if (netns !== null) plan = { ...plan, options: `${plan.options},netns=${netns}` };
  if (plan.iam) plan = await withIamOptions(plan, dir, port, cfg, ask);
  if (plan.crossAccountAzId !== undefined) {
    // The tunnel takes the zone ID from instance metadata, as the daemon asks it: it must be the stunnel's.
    const mine = await azIdFromMetadata(cfg.efs.metadata_url);
    if (mine.az_id !== plan.crossAccountAzId) {
      const why = mine.az_id === null ? `this instance's zone ID is not known to efs-relay (${mine.why})` : `instance metadata gives this instance's zone ID as ${mine.az_id}`;
      throw new RelayError('TAKEOVER_UNSAFE', `${file}: the stunnel connects to ${plan.connectHost}, the crossaccount mount target of availability zone ID ${plan.crossAccountAzId}, but ${why}, so a tunnel would not reach the same mount target`, {
        hint: 'Nothing was changed. Check that instance metadata answers (efs.metadata_url, `efsctl doctor`), then try again.',
      });
    }
  }
  requestedPort(parseOptions(plan.options), cfg); // PORT_OUT_OF_RANGE, before anything is stopped
  // A tunnel the daemon made for the file system's fstab line, which nothing uses yet, moves to the mount's port.
  const existing = tunnels.find((t) => t.fs_id === plan.fsId) ?? null;
  // /proc/mounts too: the daemon records a mount a moment after it appears (a takeover just before this one).
  const mountedAt = existing ? [...new Set([...existing.mounts, ...mounts.filter((m) => portsOf(existing).includes(tunnelPortOf(m) ?? -1)).map((m) => m.dir)])] : [];
  // A file system has one tunnel. One in use keeps its port and takes the mount's port as an extra one, which it can
  // only do if it reaches the same mount target, verified the same way, as the stunnel.
  const busy = existing && (mountedAt.length > 0 || existing.connections.active > 0) ? existing : null;
  if (busy) {
    const uses = mountedAt.length > 0 ? `mounted at ${mountedAt.join(', ')}` : `${busy.connections.active} open connection${busy.connections.active === 1 ? '' : 's'}`;
    const ocsp = [ocspChecking(busy.options, cfg.tls.ocsp), ocspChecking(parseOptions(plan.options), cfg.tls.ocsp)];
    const where = (ns: string | null): string => (ns ? `network namespace ${ns}` : 'the daemon\'s own network namespace');
    const differs = (busy.netns ?? null) !== netns ? `is in ${where(busy.netns ?? null)}, where the stunnel is in ${where(netns)}`
      : busy.target.address !== plan.connectHost || busy.target.dns_name !== plan.dnsName
      ? `connects to ${busy.target.address} (certificate name ${busy.target.cert_name}), where the stunnel connects to ${plan.connectHost} (${plan.certName})`
      : caFileFor(busy.options, cfg) !== cfg.tls.ca_file ? `verifies against ${caFileFor(busy.options, cfg)}, not tls.ca_file`
        : ocsp[0] !== ocsp[1] ? `${ocsp[0] === 'ocsp' ? 'asks' : 'does not ask'} OCSP responders (${ocsp[0]}), where the stunnel ${ocsp[1] === 'ocsp' ? 'does (OCSPaia = yes)' : 'does not'}` : null;
    if (differs !== null) {
      throw new RelayError('TAKEOVER_UNSAFE', `${plan.fsId} already has an efs-relay tunnel on port ${busy.port} (${uses}) that ${differs}; a file system has one tunnel, so ${dir}, which goes through port ${port}, can only move to it by a remount`);
    }
  }
  const idle = busy ? null : existing;
  const watchdog = await watchdogPid();
  if (watchdog !== null) {
    throw new RelayError('TAKEOVER_UNSAFE', `the efs-utils watchdog (amazon-efs-mount-watchdog, pid ${watchdog}) runs, and would start the stunnel again on port ${port}`, {
      hint: 'Nothing was changed. Stop it first (`systemctl stop amazon-efs-mount-watchdog`, or remove amazon-efs-utils), then try again.',
    });
  }
  if (idle) {
    say(`${dir}: ${plan.fsId}'s tunnel on port ${idle.port}, which nothing uses, moves to port ${port}`);
    await ask('stop', { fs_id: plan.fsId, force: false });
  }
  if (busy) say(`${dir}: ${plan.fsId}'s tunnel on port ${busy.port} takes port ${port} too, as an extra port that goes once no mount names it`);
  return { plan, idle, busy };
}

/**
 * An iam mount's plan with the options that sign with the credentials efs-utils used: from its state file's
 * awsCredentialsMethod, checked against what the daemon would find now (the same lookup, in its config's files and
 * its environment), so that the mount keeps its IAM identity. Refused (TAKEOVER_UNSAFE) before anything changes
 * otherwise.
 */
async function withIamOptions(plan: TunnelFromStunnel, dir: string, port: number, cfg: Config, ask: Ask): Promise<TunnelFromStunnel> {
  const stateFile = efsUtilsStateFile(plan.fsId, dir, port, cfg.mount.efs_utils_state_dir);
  const unsafe = (why: string): never => {
    throw new RelayError('TAKEOVER_UNSAFE', `${dir} is an iam mount (its stunnel's client certificate carries IAM authorization), and ${why}`, {
      hint: 'Nothing was changed. Remount it through efs-relay with `-o tls,iam` (and the awsprofile= or awscredsuri= it had), or leave it to its stunnel.',
    });
  };
  const exposed = await whoElseCanChange(stateFile, 0);
  if (exposed !== null) unsafe(`${exposed}: a user other than root could have changed ${stateFile}, so it cannot be trusted to say whose credentials the mount uses`);
  let method: string | null;
  try {
    const state = JSON.parse(await readFile(stateFile, 'utf8')) as { awsCredentialsMethod?: unknown };
    method = typeof state.awsCredentialsMethod === 'string' ? state.awsCredentialsMethod : null;
  } catch (err) {
    return unsafe(`efs-utils' state file for it, ${stateFile}, cannot be read (${(err as Error).message}), so where its AWS credentials came from is unknown`);
  }
  const iam = iamOptionsFor(method);
  if ('why' in iam) return unsafe(iam.why);
  const options = [plan.options, ...iam.options].join(',');
  // The daemon looks credentials up in its own environment (AWS_PROFILE, the ECS agent's URI).
  const env = await environment(((await ask('version')) as { pid: number }).pid);
  const opts = parseOptions(options);
  const found = await awsCredentials(opts, credentialPlaces(cfg, opts.region ?? '', env)).then((c) => c.source, (err: unknown) => asRelayError(err));
  if (typeof found !== 'string') return unsafe(`efs-relay would find no credentials to sign with: ${found.message}`);
  if (!iam.same(found)) return unsafe(`efs-utils signed with credentials from ${method}, but efs-relay would sign with those from ${found}, another identity`);
  return { ...plan, options };
}

/**
 * What the stunnel's client certificate names to the mount target (an access point, IAM), read from its file; null
 * when there is none or it cannot be read (tunnelFromStunnel refuses then). Trusted like the config: only root may
 * be able to change it, since an access point in it decides what the mount sees.
 */
async function presentedBy(certFile: string | null, dir: string): Promise<PresentedIdentity | null> {
  if (certFile === null) return null;
  const exposed = await whoElseCanChange(certFile, 0);
  if (exposed !== null) {
    throw new RelayError('TAKEOVER_UNSAFE', `${exposed}: a user other than root could have changed ${certFile}, so it cannot be trusted to name the access point of ${dir}`);
  }
  try {
    return presentedIdentity(new X509Certificate(await readFile(certFile)).raw);
  } catch {
    return null;
  }
}

/** Put the tunnel on the mount's port: a new tunnel, or an extra port of the file system's tunnel in use. */
function handOver(h: Handover, ask: Ask): Promise<AddResult> {
  const method = h.busy ? 'add_port' : 'add';
  return ask(method, { fs_id: h.plan.fsId, options: h.plan.options, env: {}, source: 'efsctl' }) as Promise<AddResult>;
}

/**
 * A mount whose stunnel has died: nothing listens on its port, and its I/O waits. efs-utils' config for it
 * (stunnel-config.FS.MOUNT.PORT in mount.efs_utils_state_dir) still says what the stunnel did, so a tunnel on that
 * port revives the mount, with the same checks as a takeover.
 */
async function revive(dir: string, port: number, mounts: MountEntry[], tunnels: TunnelView[], cfg: Config, ask: Ask, say: (text: string) => void): Promise<TakeoverResult> {
  const found = await efsUtilsConfigs(dir, port, cfg.mount.efs_utils_state_dir);
  if (found.files.length !== 1) {
    throw new RelayError('TAKEOVER_NOT_STUNNEL', `${dir} goes through 127.0.0.1:${port}, where nothing listens, and ${cfg.mount.efs_utils_state_dir} has ${found.files.length === 0 ? 'no' : 'more than one'} efs-utils config for it (${found.pattern})`, {
      hint: 'Its I/O waits: unmount it (`umount -f -l DIR`) and mount it again with `mount -t efs -o tls` or `efsctl attach`.',
    });
  }
  const file = found.files[0] as string;
  const handover = await prepare(dir, port, file, 'efs-utils\' config of the mount', mounts, tunnels, cfg, ask, say);
  const { plan } = handover;
  say(`${dir}: nothing listens on 127.0.0.1:${port} (its stunnel is gone); efs-relay takes the port with -o ${plan.options} from ${file}`);
  return takeFreePort(dir, port, handover, file, ask);
}

/** Put the tunnel on the port of a mount whose stunnel is gone; if it cannot, the unused tunnel prepare() stopped comes back. */
async function takeFreePort(dir: string, port: number, handover: Handover, config: string, ask: Ask): Promise<TakeoverResult> {
  const { plan, idle } = handover;
  try {
    const added = await handOver(handover, ask);
    return { dir, fs_id: plan.fsId, port, already: false, stunnel: { pid: null, program: null, config }, tunnel: added.tunnel };
  } catch (err) {
    const e = asRelayError(err);
    if (idle) await ask('add', { fs_id: idle.fs_id, options: formatOptions(idle.options), env: {}, source: idle.source }).catch(() => undefined);
    throw new RelayError(e.code, `efs-relay could not take port ${port}: ${e.message}; ${dir} still has no tunnel`, { hint: e.hint });
  }
}

export async function takeover(dir: string, cfg: Config, ask: Ask, say: (text: string) => void): Promise<TakeoverResult> {
  // Stopping efs-utils' stunnel, and naming who listens on a port, need root.
  if (process.getuid?.() !== 0) throw new RelayError('NOT_ROOT', 'only root can take a mount over from an efs-utils stunnel');
  const mounts = await readProcMounts(cfg.mount.proc_mounts);
  const mount = mounts.findLast((m) => m.dir === dir && m.type.startsWith('nfs'));
  if (!mount) throw new RelayError('TAKEOVER_NOT_STUNNEL', `${dir} is not an NFS mount (${cfg.mount.proc_mounts})`);
  const port = tunnelPortOf(mount);
  if (port === null) {
    throw new RelayError('TAKEOVER_NOT_STUNNEL', `${dir} is an NFS mount of ${mount.device}, not through a local port: it is not encrypted, and only a remount can put a tunnel under it`, {
      hint: 'Unmount it and mount it again with `mount -t efs -o tls` or `efsctl attach`.',
    });
  }
  const { tunnels } = (await ask('list')) as { tunnels: TunnelView[] };
  const mine = tunnels.find((t) => portsOf(t).includes(port));
  if (mine) return { dir, fs_id: mine.fs_id, port, already: true, stunnel: null, tunnel: mine };
  // Its stunnel may listen inside another network namespace, where the listings below do not look.
  const inNamespace = await efsUtilsNamespacedMount(dir, port, cfg.mount.efs_utils_state_dir);
  if (inNamespace) return takeoverInNamespace(dir, port, inNamespace, mounts, tunnels, cfg, ask, say);

  const listener = (await listenersOn([port])).get(port);
  if (!listener && !(await listening(port))) return revive(dir, port, mounts, tunnels, cfg, ask, say);
  if (!listener || listener.pid === null) {
    throw new RelayError('TAKEOVER_NOT_STUNNEL', `${dir} goes through 127.0.0.1:${port}, where ${describeListener(listener)} listens`, {
      hint: 'efsctl names the process that serves a port with ss or netstat (iproute2, net-tools), as root: install one and try again.',
    });
  }
  const pid = listener.pid;
  const argv = await commandLine(pid);
  const program = basename(argv[0] ?? '');
  if (!program.startsWith('stunnel') && program !== 'efs-proxy') {
    throw new RelayError('TAKEOVER_NOT_STUNNEL', `${dir} goes through 127.0.0.1:${port}, which ${describeListener(listener)} serves, not an efs-utils stunnel or efs-proxy`);
  }
  // efs-utils runs `stunnel CONFIG` (or `efs-proxy CONFIG`, which reads the same file).
  const file = argv.slice(1).findLast((a) => !a.startsWith('-'));
  if (file === undefined) throw new RelayError('TAKEOVER_UNSAFE', `${program} pid ${pid} (${argv.join(' ')}) names no config file to read its mount target from`);
  // efs-utils runs its stunnels as root from root's files. Anything else could name another file system or target
  // for a root mount: a process another user started on a port a dead stunnel left, or a config another user can edit.
  const uid = await processUid(pid);
  if (uid !== 0) {
    throw new RelayError('TAKEOVER_UNSAFE', `${program} pid ${pid} on port ${port} runs as uid ${uid ?? '?'}, not as root as efs-utils runs it, so its config cannot be trusted to name the file system of ${dir}`);
  }
  const handover = await prepare(dir, port, file, `the config of ${program} pid ${pid}`, mounts, tunnels, cfg, ask, say);
  say(`${dir}: stopping ${program} pid ${pid} (${file}); efs-relay takes 127.0.0.1:${port} over with -o ${handover.plan.options}`);
  const added = await switchOver(dir, port, handover, { pid, program, argv }, ask);
  return { dir, fs_id: handover.plan.fsId, port, already: false, stunnel: { pid, program, config: file }, tunnel: added.tunnel };
}

/**
 * Stop the stunnel and put the tunnel on its port, waiting a moment for the port to come free. If the tunnel still
 * cannot take it, the stunnel is started again with `argv` (its command line, or efs-utils' with nsenter), and the
 * file system's unused tunnel that prepare() stopped comes back.
 */
async function switchOver(dir: string, port: number, handover: Handover, stunnel: { pid: number; program: string; argv: string[] }, ask: Ask): Promise<AddResult> {
  const { idle } = handover;
  const { program, argv } = stunnel;
  await stopProcess(stunnel.pid);
  let added: AddResult | null = null;
  let failure: RelayError | null = null;
  for (let waited = 0; added === null && failure === null; waited += 50) {
    try {
      added = await handOver(handover, ask);
    } catch (err) {
      const e = asRelayError(err);
      // The stunnel's socket may outlive it by a moment.
      if (e.code !== 'PORT_TAKEN' || waited >= HANDOVER_MS) failure = e;
      else await sleep(50);
    }
  }
  if (failure === null && added !== null) return added;
  const e = failure ?? new RelayError('INTERNAL', 'no answer to add');
  const why = await restart(argv, port);
  let after = why === null
    ? `${program} was started again (${argv.join(' ')}), so ${dir} keeps its tunnel`
    : `starting ${program} again (${argv.join(' ')}) failed too: ${why}. ${dir} has no tunnel: its I/O waits until something listens on port ${port}`;
  if (idle) {
    const back = await ask('add', { fs_id: idle.fs_id, options: formatOptions(idle.options), env: {}, source: idle.source }).then(() => null, (err: unknown) => asRelayError(err).message);
    after += back === null ? `; ${idle.fs_id}'s unused tunnel is back` : `; ${idle.fs_id}'s unused tunnel could not be started again (${back}): the next change of fstab, or a mount, makes it`;
  }
  throw new RelayError(e.code, `efs-relay could not take port ${port} over: ${e.message}; ${after}`, { hint: e.hint });
}

/**
 * A mount whose stunnel runs inside another network namespace: ss and /proc/net/tcp here do not show it, so
 * efs-utils' state file names it (its pid and the nsenter command). The process at that pid is stopped only if it
 * is that stunnel: the program, run by root with that config, inside that namespace; a pid reused since by another
 * process is left alone, and the mount is revived as one whose stunnel died. The tunnel takes the port inside the
 * namespace (netns=).
 */
async function takeoverInNamespace(
  dir: string, port: number, ns: EfsUtilsNamespacedMount, mounts: MountEntry[], tunnels: TunnelView[], cfg: Config, ask: Ask, say: (text: string) => void,
): Promise<TakeoverResult> {
  const exposed = await whoElseCanChange(ns.stateFile, 0);
  if (exposed !== null) {
    throw new RelayError('TAKEOVER_UNSAFE', `${exposed}: a user other than root could have changed ${ns.stateFile}, so it cannot be trusted to name the network namespace and the stunnel of ${dir}`);
  }
  const argv = ns.pid !== null && alive(ns.pid) ? await commandLine(ns.pid) : [];
  const program = basename(argv[0] ?? '');
  const pid = (program.startsWith('stunnel') || program === 'efs-proxy') && argv.includes(ns.config) ? ns.pid : null;
  if (pid !== null) {
    const uid = await processUid(pid);
    if (uid !== 0) throw new RelayError('TAKEOVER_UNSAFE', `${program} pid ${pid} of ${dir} runs as uid ${uid ?? '?'}, not as root as efs-utils runs it, so its config cannot be trusted to name the file system of ${dir}`);
    const [inside, want] = await Promise.all([readlink(`/proc/${pid}/ns/net`).catch(() => null), stat(ns.netns).then((st) => `net:[${st.ino}]`, () => null)]);
    if (inside === null || inside !== want) {
      throw new RelayError('TAKEOVER_UNSAFE', `${program} pid ${pid} of ${dir} runs in network namespace ${inside ?? '(unknown)'}, not in ${ns.netns} (${want ?? 'not there'}) as efs-utils' state file ${ns.stateFile} says`, {
        hint: 'Nothing was changed. Leave the mount to its stunnel, or unmount it and mount it again through efs-relay.',
      });
    }
  }
  const handover = await prepare(dir, port, ns.config, `efs-utils' config of the mount in network namespace ${ns.netns}`, mounts, tunnels, cfg, ask, say, ns.netns);
  const { plan } = handover;
  if (pid !== null) {
    say(`${dir}: stopping ${program} pid ${pid} in network namespace ${ns.netns} (${ns.config}); efs-relay takes 127.0.0.1:${port} there over with -o ${plan.options}`);
    // Started again, if need be, as efs-utils started it: under nsenter.
    const added = await switchOver(dir, port, handover, { pid, program, argv: ns.cmd }, ask);
    return { dir, fs_id: plan.fsId, port, already: false, stunnel: { pid, program, config: ns.config }, tunnel: added.tunnel };
  }
  say(`${dir}: its stunnel in network namespace ${ns.netns} is gone (pid ${ns.pid ?? '?'} in ${ns.stateFile}); efs-relay takes 127.0.0.1:${port} there with -o ${plan.options}`);
  return takeFreePort(dir, port, handover, ns.config, ask);
}

export interface TakeoverAllResult {
  /** Mounts moved, and those that went through efs-relay already (`already`). */
  moved: TakeoverResult[];
  /** Mounts through a local port that were not moved, and why. */
  failed: Array<{ dir: string; error: ErrorBody }>;
}

/**
 * `takeover --all`: every NFS mount through a local port, one after another,
 * each as `takeover DIR` would (a mount efs-relay carries already is left as it is).
 * `each` hears of every mount as it is done.
 */
export async function takeoverAll(
  cfg: Config, ask: Ask, say: (text: string) => void,
  each: (r: { dir: string; result: TakeoverResult } | { dir: string; error: RelayError }) => void,
): Promise<TakeoverAllResult> {
  const dirs = [...new Set((await readProcMounts(cfg.mount.proc_mounts)).filter((m) => tunnelPortOf(m) !== null).map((m) => m.dir))];
  const out: TakeoverAllResult = { moved: [], failed: [] };
  for (const dir of dirs) {
    try {
      const result = await takeover(dir, cfg, ask, say);
      out.moved.push(result);
      each({ dir, result });
    } catch (err) {
      const error = asRelayError(err);
      // Without the daemon, or as another user than root, no mount can move: say so once.
      if (error.code === 'DAEMON_UNREACHABLE' || error.code === 'NOT_ROOT') throw error;
      out.failed.push({ dir, error: error.toJSON() });
      each({ dir, error });
    }
  }
  return out;
}
