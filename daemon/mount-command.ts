// The NFS mount line efs-utils would run, and running it with efs-utils'
// retry rule (3 attempts, backoff 1.5^i plus jitter, only for timeouts and
// resets).
import { spawn } from 'node:child_process';
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
  return [command, `127.0.0.1:${path}`, dir, '-o', nfsOptions(user, port)];
}

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * Run a command with a time limit. On timeout the child is killed and the
 * result returned at once: a child stuck on a hung NFS mount may not die
 * until the mount answers, and nobody waits for it.
 */
export function runCommand(argv: string[], timeoutMs: number): Promise<CommandResult> {
  return new Promise((resolve) => {
    const [cmd, ...args] = argv as [string, ...string[]];
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let settled = false;
    const settle = (r: CommandResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      settle({ code: 128 + 9, stdout, stderr, timedOut: true });
    }, timeoutMs);
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.on('error', (err) => settle({ code: 127, stdout, stderr: `${stderr}${err.message}`, timedOut: false }));
    child.on('close', (code) => settle({ code: code ?? 128, stdout, stderr, timedOut: false }));
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

/** Run the mount command; retry only what efs-utils retries. Throws MOUNT_FAILED with the last exit code and stderr. */
export async function runMount(argv: string[], policy: RetryPolicy = EFS_UTILS_RETRY): Promise<{ attempts: number }> {
  for (let i = 0; ; i++) {
    const r = await runCommand(argv, policy.timeoutMs);
    if (r.code === 0 && !r.timedOut) return { attempts: i + 1 };
    const why = r.timedOut ? `timed out after ${policy.timeoutMs / 1000} s` : `exited with ${r.code}`;
    const detail = r.stderr.trim() || r.stdout.trim();
    if (i + 1 < policy.attempts && (r.timedOut || RETRYABLE.test(detail))) {
      await new Promise((res) => setTimeout(res, (policy.base ** i + Math.random()) * 1000));
      continue;
    }
    throw new RelayError('MOUNT_FAILED', `${argv[0]} ${why} after ${i + 1} attempt${i ? 's' : ''}${detail ? `: ${detail}` : ''}`);
  }
}
