// Runs the built executables the way a user does: build/bin/efs-relayd with
// a config file in a temp dir, and build/bin/efsctl against its socket.
import { spawn, execFile, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { MountStandIn } from './mount-stand-in.js';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parse, stringify } from 'yaml';
import { bdiName } from '../../daemon/readahead.js';
import type { TunnelRecord } from '../../daemon/state.js';

export const ROOT = resolve(import.meta.dirname, '../../../..');
export const BIN = join(ROOT, 'build/bin');

const made: string[] = [];

export function tempDir(tag: string): string {
  const dir = mkdtempSync(join(tmpdir(), `efs-relay-${tag}-`));
  made.push(dir);
  return dir;
}

/** Remove every temp dir this process made (KEEP_TEST_TMP=1 keeps them for a post-mortem). */
export function removeTempDirs(): void {
  if (process.env.KEEP_TEST_TMP === '1') return;
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function run(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; input?: string; timeoutMs?: number } = {}): Promise<RunResult> {
  return new Promise((resolvePromise) => {
    const child = execFile(cmd, args, { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const code = err ? (typeof (err as { code?: unknown }).code === 'number' ? ((err as { code: number }).code) : 1) : 0;
        resolvePromise({ code, stdout, stderr });
      });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
  });
}

export type ConfigOverrides = Record<string, unknown>;

/** How long the resolver of a daemon started with `resolver` waits for an answer before it gives up (resolv.conf). */
export const RESOLVER_TIMEOUT_S = 5;

/**
 * `argv` as a command line that runs it in a mount namespace of its own whose /etc/resolv.conf names only `resolver`
 * (a loopback address serving DNS on port 53) and whose /etc/hosts names only localhost; the files go into `dir`.
 * unshare execs sh, which execs argv[0]: the child's pid is the program's, for signals and /proc.
 */
export function inOwnResolver(dir: string, resolver: string, argv: string[]): [string, string[]] {
  const files = {
    hosts: '127.0.0.1 localhost\n',
    'resolv.conf': `nameserver ${resolver}\noptions timeout:${RESOLVER_TIMEOUT_S} attempts:1\n`,
    'nsswitch.conf': 'hosts: files dns\n',
  };
  const binds = Object.entries(files).map(([name, text]) => {
    writeFileSync(join(dir, name), text);
    return `mount --bind ${join(dir, name)} /etc/${name}`;
  });
  return ['unshare', ['-m', 'sh', '-c', `${binds.join(' && ')} && exec "$@"`, 'sh', ...argv]];
}

/** Why a daemon cannot get a resolver of its own here (inOwnResolver), or null. */
export async function ownResolverUnavailable(): Promise<string | null> {
  if (process.getuid?.() !== 0) return 'a mount namespace for the daemon\'s own /etc/resolv.conf needs root';
  const r = await run('unshare', ['-m', 'sh', '-c', 'mount --bind /etc/hostname /etc/hostname']);
  return r.code === 0 ? null : `unshare -m with a bind mount failed here (${r.stderr.trim() || `exit ${r.code}`})`;
}

/** A running efs-relayd with its own state dir, socket and config. */
export class Daemon {
  readonly dir: string;
  readonly stateDir: string;
  readonly socket: string;
  readonly configFile: string;
  readonly mount: MountStandIn;
  readonly fstab: string;
  /**
   * The stand-in of /sys/class/bdi/MAJOR:MINOR/read_ahead_kb for the file system the test's directories are on,
   * which the recording mount command leaves them on: what the daemon sets after a mount (128, the kernel's NFS
   * default, before).
   */
  readonly readaheadFile: string;
  proc: ChildProcess | null = null;
  logs = '';
  exitCode: number | null = null;
  private exited: Promise<number> | null = null;

  constructor(readonly config: ConfigOverrides = {}, dir?: string) {
    this.dir = dir ?? tempDir('daemon');
    this.stateDir = (config.state_dir as string | undefined) ?? join(this.dir, 'state');
    this.socket = join(this.stateDir, 'control.sock');
    this.configFile = join(this.dir, 'config.yaml');
    // Nothing of the host's: a temp fstab, a /proc/mounts stand-in, and recording mount commands.
    this.mount = new MountStandIn(this.dir);
    this.fstab = join(this.dir, 'fstab');
    if (!existsSync(this.fstab)) writeFileSync(this.fstab, '# test fstab\n');
    const bdi = join(this.dir, 'bdi', bdiName(statSync(this.dir, { bigint: true }).dev));
    mkdirSync(bdi, { recursive: true });
    this.readaheadFile = join(bdi, 'read_ahead_kb');
    if (!existsSync(this.readaheadFile)) writeFileSync(this.readaheadFile, '128\n');
    const full = {
      state_dir: this.stateDir,
      fstab: this.fstab,
      metrics: { listen: '' },
      ...config,
      // Loopback only: no test asks the real instance metadata address.
      // Never an address off loopback: no instance metadata, and no EFS API (a test that falls back to one names its own).
      efs: { metadata_url: '', mount_target_fallback: false, ...(config.efs as Record<string, unknown> | undefined) },
      mount: {
        command: this.mount.mountCommand,
        umount_command: this.mount.umountCommand,
        proc_mounts: this.mount.procMounts,
        poll_interval: 0.1,
        network_check: '',
        efs_utils_state_dir: join(this.dir, 'efs-utils'),
        // Never the host's /sys/class/bdi: a mount's readahead goes to a stand-in directory.
        bdi_dir: join(this.dir, 'bdi'),
        ...(config.mount as Record<string, unknown> | undefined),
      },
    };
    writeFileSync(this.configFile, stringify(full));
  }

  /**
   * Start the daemon: build/bin/efs-relayd, or another binary of it (the packaged one). With `resolver` (a loopback
   * address serving DNS on port 53), it runs in a mount namespace of its own whose /etc/resolv.conf names only that
   * server and whose /etc/hosts names only localhost, so that it looks mount targets up as on a host, by name.
   * `timeoutMs`: how long it may take to answer on its socket (longer under valgrind).
   */
  async start(bin = join(BIN, 'efs-relayd'), resolver?: string, env: NodeJS.ProcessEnv = {}, timeoutMs = 10_000): Promise<this> {
    this.logs = '';
    this.exitCode = null;
    const [cmd, args] = resolver ? inOwnResolver(this.dir, resolver, [bin, '--config', this.configFile]) : [bin, ['--config', this.configFile]];
    const proc = spawn(cmd, args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...process.env, JOURNAL_STREAM: '', ...env },
    });
    this.proc = proc;
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (d: string) => (this.logs += d));
    this.exited = new Promise((r) => proc.on('exit', (code, signal) => r((this.exitCode = code ?? (signal ? 128 : 1)))));
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (this.exitCode !== null) throw new Error(`efs-relayd exited with ${this.exitCode}:\n${this.logs}`);
      if (await this.ping()) {
        // The socket answers a moment before the start-up line comes through the pipe, and tests read the log at once.
        const level = (parse(readFileSync(this.configFile, 'utf8')) as { log?: { level?: string } } | null)?.log?.level ?? 'info';
        while ((level === 'info' || level === 'debug') && !this.logs.includes('daemon.started') && this.exitCode === null && Date.now() < deadline) await sleep(10);
        return this;
      }
      await sleep(50);
    }
    throw new Error(`efs-relayd did not answer on ${this.socket} within ${timeoutMs / 1000} s:\n${this.logs}`);
  }

  private ping(): Promise<boolean> {
    return new Promise((r) => {
      const s = connect(this.socket);
      s.on('connect', () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
  }

  get pid(): number {
    if (!this.proc?.pid) throw new Error('daemon not running');
    return this.proc.pid;
  }

  /** Open file descriptors of the daemon process. */
  fdCount(): number {
    return readdirSync(`/proc/${this.pid}/fd`).length;
  }

  /**
   * Leave the running daemon no file descriptor to open another with: its soft RLIMIT_NOFILE lowered (with
   * prlimit, as a tighter LimitNOFILE would) to its lowest free descriptor number, so that the next open fails
   * with EMFILE while every descriptor it holds stays. First the daemon is let settle (its set of descriptors the
   * same for 500 ms): a connection that closes afterwards would free a lower number, and the next open would
   * take it. Returns what puts its limit back.
   */
  async withholdDescriptors(): Promise<() => void> {
    const pid = String(this.pid);
    const held = (): string => readdirSync(`/proc/${pid}/fd`).sort().join(' ');
    let last = held();
    for (let steady = 0, tries = 0; steady < 10 && tries < 100; tries++) {
      await sleep(50);
      const now = held();
      steady = now === last ? steady + 1 : 0;
      last = now;
    }
    const [soft, hard] = execFileSync('prlimit', ['--pid', pid, '--nofile', '--output', 'SOFT,HARD', '--noheadings', '--raw'], { encoding: 'utf8' }).trim().split(/\s+/);
    const numbers = new Set(last.split(' ').map(Number));
    let free = 0;
    while (numbers.has(free)) free++;
    execFileSync('prlimit', ['--pid', pid, `--nofile=${free}:${hard}`]);
    return () => execFileSync('prlimit', ['--pid', pid, `--nofile=${soft}:${hard}`]);
  }

  /**
   * Open fds with nothing passing through: the fewest of several samples.
   * One sample may catch a passing fd (the /proc/mounts poll's read, the
   * control connection of the efsctl call that just returned).
   */
  async fdCountAtRest(samples = 10, gapMs = 30): Promise<number> {
    let least = this.fdCount();
    for (let i = 1; i < samples; i++) {
      await sleep(gapMs);
      least = Math.min(least, this.fdCount());
    }
    return least;
  }

  /** Rewrite the config file through `change` (a reload or restart then reads it). */
  editConfig(change: (c: Record<string, unknown>) => Record<string, unknown>): void {
    writeFileSync(this.configFile, stringify(change(parse(readFileSync(this.configFile, 'utf8')) as Record<string, unknown>)));
  }

  /** A series' value in the daemon's /metrics now (metrics.listen must be set), or undefined when absent; a labelled one is named in full, `name{label="value"}`. */
  async scrapedValue(name: string): Promise<string | undefined> {
    const listen = (this.config.metrics as { listen: string }).listen;
    const text = await (await fetch(`http://${listen}/metrics`)).text();
    return new RegExp(`^${escapeRegExp(name)} (\\S+)$`, 'm').exec(text)?.[1];
  }

  /**
   * The stunnel config efs-utils leaves for its mount of `fsId` at `dir` through `port`, as in /var/run/efs:
   * stunnel-config.FS.MOUNT.PORT in this daemon's mount.efs_utils_state_dir, the mount point's slashes as dots.
   */
  efsUtilsConfig(fsId: string, dir: string, port: number, text = ''): string {
    const stateDir = join(this.dir, 'efs-utils');
    mkdirSync(stateDir, { recursive: true });
    const file = join(stateDir, `stunnel-config.${fsId}.${dir.slice(1).replaceAll('/', '.')}.${port}`);
    writeFileSync(file, text);
    return file;
  }

  /** A tunnel's record as the daemon wrote it in the state dir. */
  record(fsId: string): TunnelRecord {
    return JSON.parse(readFileSync(join(this.stateDir, `${fsId}.json`), 'utf8')) as TunnelRecord;
  }

  /** A directory to mount at: mnt/NAME in the daemon's own directory, made if missing. */
  mountPoint(name: string): string {
    const d = join(this.dir, 'mnt', name);
    mkdirSync(d, { recursive: true });
    return d;
  }

  async efsctl(...args: string[]): Promise<RunResult> {
    const r = await run(join(BIN, 'efsctl'), ['--socket', this.socket, ...args]);
    // The daemon logs before it answers, and its stderr is a pipe (written synchronously), so the lines are readable
    // here by now; but efsctl's exit may come first in the same turn of the event loop. One turn lets them in.
    await new Promise((done) => setImmediate(done));
    return r;
  }

  async efsctlJson<T>(...args: string[]): Promise<T> {
    const r = await this.efsctl(...args, '--json');
    if (r.code !== 0) throw new Error(`efsctl ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
    return JSON.parse(r.stdout) as T;
  }

  /**
   * SIGUSR1, as a logrotate script might send it, and what followed: whether
   * Node's debugger came up (its port answers, or its stderr line appeared)
   * and whether the daemon still runs.
   */
  async sigusr1(): Promise<{ debugger: boolean; running: boolean; logged: boolean }> {
    const before = this.logs.length;
    this.proc?.kill('SIGUSR1');
    const logged = await waitFor('the daemon to answer SIGUSR1', () => this.logs.includes('daemon.sigusr1_ignored', before), 2_000).catch(() => false);
    await sleep(300); // time for an inspector to open its port, were it starting
    const port = await new Promise<boolean>((r) => {
      const s = connect({ host: '127.0.0.1', port: 9229 });
      s.on('connect', () => (s.destroy(), r(true)));
      s.on('error', () => r(false));
    });
    return { debugger: port || this.logs.includes('Debugger listening'), running: this.exitCode === null, logged: Boolean(logged) };
  }

  /** Send a signal and wait for the exit code. */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number> {
    if (!this.proc || this.exitCode !== null) return this.exitCode ?? 0;
    this.proc.kill(signal);
    return (await this.exited) as number;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll until fn returns a truthy value, or fail after timeoutMs. */
export async function waitFor<T>(what: string, fn: () => T | Promise<T>, timeoutMs = 5_000): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last as NonNullable<T>;
    await sleep(25);
  }
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${JSON.stringify(last)})`);
}

/**
 * `count` valid tunnel records in `stateDir` (fs-10000000, fs-10000001, …),
 * on consecutive ports from `firstPort`, each to `address` port 2049 in
 * us-east-1: a daemon with many tunnels to restore.
 */
export function writeRecords(stateDir: string, count: number, firstPort: number, address: string): void {
  mkdirSync(stateDir, { recursive: true });
  for (let i = 0; i < count; i++) {
    const fsId = `fs-${(0x10000000 + i).toString(16)}`;
    writeFileSync(join(stateDir, `${fsId}.json`), JSON.stringify({
      version: 1, fs_id: fsId, port: firstPort + i,
      target: { dns_name: `${fsId}.efs.us-east-1.amazonaws.com`, address, port: 2049, region: 'us-east-1' },
      options: { mounttargetip: address, region: 'us-east-1' }, created: new Date().toISOString(), source: 'manual', mounts: [],
    }));
  }
}

/** `text` as a regular expression that matches exactly it. */
export function escapeRegExp(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Skip the running test or suite when `why` says something is missing, and print why: a skip always says why. */
export function skipIf(ctx: Mocha.Context, why: string | null): void {
  if (!why) return;
  console.log(`      skipped: ${why}`);
  ctx.skip();
}

/** "CMD is not installed (INSTALL)" when CMD is not on PATH, else null. */
export async function commandMissing(cmd: string, install: string): Promise<string | null> {
  return (await run('sh', ['-c', `command -v ${cmd}`])).code === 0 ? null : `${cmd} is not installed (${install})`;
}
