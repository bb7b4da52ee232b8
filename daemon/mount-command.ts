// The NFS mount line efs-utils would run, and running it with efs-utils'
// retry rule (3 attempts, backoff 1.5^i plus jitter, only for timeouts and
// resets), unless the caller learns that no attempt can succeed.
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { RelayError } from './errors.js';
import { TUNNEL_OPTIONS, formatOptions, type MountOptions } from './options.js';

/** efs-utils' NFS defaults, in its order. */
const NFS_DEFAULTS: Array<[string, string | null]> = [
  ['nfsvers', '4.1'],
  ['rsize', '1048576'],
  ['wsize', '1048576'],
  ['hard', null],
  ['timeo', '600'],
  ['retrans', '2'],
  ['noresvport', null],
];

// A user option that replaces a default with another name.
const REPLACES: Record<string, string> = { vers: 'nfsvers', soft: 'hard' };

/** -o for mount.nfs4: the defaults (a user option replaces its default in place), port=, then the other user options. */
export function nfsOptions(user: MountOptions, port: number): string {
  const passthrough: MountOptions = {};
  for (const [k, v] of Object.entries(user)) if (!(TUNNEL_OPTIONS as readonly string[]).includes(k)) passthrough[k] = v;
  const out: MountOptions = {};
  for (const [k, v] of NFS_DEFAULTS) {
    const replacement = Object.keys(passthrough).find((u) => u === k || REPLACES[u] === k);
    if (replacement === undefined) out[k] = v;
    else {
      out[replacement] = passthrough[replacement] as string | null;
      delete passthrough[replacement];
    }
  }
  out.port = String(port);
  return formatOptions({ ...out, ...passthrough });
}

export function mountArgv(command: string, path: string, dir: string, user: MountOptions, port: number): string[] {
  return inNamespace(user, [command, `127.0.0.1:${path}`, dir, '-o', nfsOptions(user, port)]);
}

/**
 * Under netns=, the command runs inside that network namespace, as efs-utils runs it (`nsenter --net=PATH`): its
 * 127.0.0.1 is the namespace's, where the tunnel listens.
 */
export function inNamespace(user: MountOptions, argv: string[]): string[] {
  return user.netns ? ['nsenter', `--net=${user.netns}`, '--', ...argv] : argv;
}

/** The program an argv runs, past an nsenter prefix: what a message about its failure names. */
function programOf(argv: string[]): string {
  return (argv[0] === 'nsenter' ? argv[argv.indexOf('--') + 1] : argv[0]) ?? '';
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
  /** Killed because `stop` was aborted. */
  stopped: boolean;
}

/**
 * Run a command with a time limit. On timeout, or when `stop` is aborted, the
 * child is killed and the result returned at once: a child stuck on a hung
 * NFS mount may not die until the mount answers, and nobody waits for it.
 */
export function runCommand(argv: string[], timeoutMs: number, stop?: AbortSignal): Promise<CommandResult> {
  return new Promise((resolve) => {
    const [cmd, ...args] = argv as [string, ...string[]];
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let settled = false;
    const settle = (r: Omit<CommandResult, 'stdout' | 'stderr'> & { stderr?: string }): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      stop?.removeEventListener('abort', onStop);
      resolve({ stdout, stderr, ...r });
    };
    const kill = (why: 'timedOut' | 'stopped'): void => {
      child.kill('SIGKILL');
      settle({ code: 128 + 9, timedOut: why === 'timedOut', stopped: why === 'stopped' });
    };
    const timer = setTimeout(() => kill('timedOut'), timeoutMs);
    const onStop = (): void => kill('stopped');
    if (stop?.aborted) onStop();
    else stop?.addEventListener('abort', onStop, { once: true });
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => settle({ code: 127, stderr: `${stderr}${err.message}`, timedOut: false, stopped: false }));
    child.on('close', (code) => settle({ code: code ?? 128, timedOut: false, stopped: false }));
  });
}

const RETRYABLE = /timed? ?out|timeout|reset by peer/i;

export interface RetryPolicy {
  attempts: number;
  /** Base of the backoff in seconds: attempt i waits base^i plus up to 1 s of jitter. */
  base: number;
  timeoutMs: number;
}

export const EFS_UTILS_RETRY: RetryPolicy = { attempts: 3, base: 1.5, timeoutMs: 30_000 };

/**
 * Run the mount command; retry only what efs-utils retries. Throws MOUNT_FAILED with the last exit code and stderr.
 * Once `stop` is aborted (the caller knows no attempt can succeed), the attempt under way is killed and none follows.
 */
export async function runMount(
  argv: string[],
  policy: RetryPolicy = EFS_UTILS_RETRY,
  stop?: AbortSignal,
  retrying: (what: string, waitSeconds: number) => void = () => {},
): Promise<{ attempts: number }> {
  for (let i = 0; ; i++) {
    const r = await runCommand(argv, policy.timeoutMs, stop);
    if (r.code === 0 && !r.timedOut && !r.stopped) return { attempts: i + 1 };
    const program = programOf(argv);
    if (r.stopped) throw new RelayError('MOUNT_FAILED', `${program} was stopped during attempt ${i + 1}`);
    const why = r.timedOut ? `timed out after ${policy.timeoutMs / 1000} s` : `exited with ${r.code}`;
    const detail = r.stderr.trim() || r.stdout.trim();
    const failed = `${program} ${why} after ${i + 1} attempt${i ? 's' : ''}${detail ? `: ${detail}` : ''}`;
    if (i + 1 < policy.attempts && (r.timedOut || RETRYABLE.test(detail))) {
      const wait = policy.base ** i + Math.random();
      retrying(`${failed}; attempt ${i + 2} of ${policy.attempts} in ${wait.toFixed(1)} s`, wait);
      // An abort (the caller learnt no attempt can succeed) ends the wait at once, and with it the retries.
      if (await sleep(wait * 1000, true, { signal: stop }).catch(() => false)) continue;
    }
    throw new RelayError('MOUNT_FAILED', failed);
  }
}
