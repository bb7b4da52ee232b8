// The three paths under test, all on this machine:
//   plain    client → service                                   (the ceiling)
//   stunnel  client → stunnel client (as efs-utils writes it) → TLS terminator → service
//   relay    client → efs-relayd (defaults)                    → TLS terminator → service
// Both TLS paths talk to the same terminator: one stunnel server process.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { Daemon, ROOT, sleep, tempDir } from '../helpers/daemon.js';
import { Ganesha } from '../helpers/nfs.js';
import { TestPki, type Pem } from '../helpers/pki.js';

export const BULK_FS = 'fs-12345678';
export const NFS_FS = 'fs-0000beef';
export const REGION = 'us-east-1';
export const BULK_TARGET = '127.0.0.30';
export const NFS_TARGET = '127.0.0.31';
export const SERVICE_PORT = 18001;
export const STUNNEL_BULK_PORT = 18002;
export const STUNNEL_NFS_PORT = 18003;
/** The bench's efs-relayd serves /metrics here, as a daemon with its defaults does on 9792. */
export const RELAY_METRICS_PORT = 18004;

export type Path = 'plain' | 'stunnel' | 'relay';
export const PATHS: readonly Path[] = ['plain', 'stunnel', 'relay'];

/**
 * The order of the paths in a round: rotated by one each round (plain,
 * stunnel, relay; then stunnel, relay, plain; …), so that over three rounds
 * every path runs first, second and last once and no path always follows
 * the same neighbour.
 */
export function pathOrder(round: number): Path[] {
  const k = (round - 1) % PATHS.length;
  return [...PATHS.slice(k), ...PATHS.slice(0, k)];
}

export function waitPort(port: number, host = '127.0.0.1', timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tryOnce = (): void => {
      const s = connect({ host, port });
      s.once('connect', () => {
        s.destroy();
        resolve();
      });
      s.once('error', () => {
        if (Date.now() > deadline) reject(new Error(`nothing listens on ${host}:${port}`));
        else setTimeout(tryOnce, 50);
      });
    };
    tryOnce();
  });
}

export class Proc {
  log = '';
  constructor(readonly child: ChildProcess, readonly name: string) {
    child.stdout?.on('data', (d: Buffer) => (this.log += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (this.log += d.toString()));
  }
  get pid(): number {
    return this.child.pid as number;
  }
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const gone = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    await Promise.race([gone, sleep(5_000)]);
    if (this.child.exitCode === null) this.child.kill('SIGKILL');
  }
}

export interface Pki {
  ca: Pem;
  server: Pem;
}

export function makePki(dir: string): Pki {
  const pki = new TestPki(join(dir, 'pki'));
  const ca = pki.ca('bench');
  // One wildcard certificate serves every file system name, so the scale runs can use many fs ids.
  return { ca, server: pki.leaf(`*.efs.${REGION}.amazonaws.com`, ca) };
}

export function startService(): Promise<Proc> {
  const p = new Proc(spawn('node', [join(ROOT, 'build/js/test/bench/backend.js'), String(SERVICE_PORT)], { stdio: ['ignore', 'pipe', 'pipe'] }), 'service');
  return waitPort(SERVICE_PORT).then(() => p);
}

/** A command that runs another one (valgrind's callgrind), and what it needs in its environment. */
export interface Wrapper {
  argv: string[];
  env: NodeJS.ProcessEnv;
}

function stunnel(dir: string, name: string, conf: string, wrap?: Wrapper): Proc {
  const file = join(dir, `${name}.conf`);
  writeFileSync(file, conf);
  const argv = [...(wrap?.argv ?? []), 'stunnel', file];
  return new Proc(spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...wrap?.env } }), name);
}

/** The TLS terminator both TLS paths reach: AES-256-GCM over TLS 1.2, like an EFS mount target. */
export async function startTerminator(dir: string, pki: Pki, nfsPort: number): Promise<Proc> {
  const p = stunnel(dir, 'terminator', [
    'foreground = yes', 'pid =', 'debug = 3',
    `cert = ${pki.server.certFile}`, `key = ${pki.server.keyFile}`,
    'sslVersion = TLSv1.2', 'ciphers = ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384',
    'socket = l:TCP_NODELAY=1', 'socket = r:TCP_NODELAY=1',
    '[bulk]', `accept = ${BULK_TARGET}:2049`, `connect = 127.0.0.1:${SERVICE_PORT}`,
    '[nfs]', `accept = ${NFS_TARGET}:2049`, `connect = 127.0.0.1:${nfsPort}`, '',
  ].join('\n'));
  await waitPort(2049, BULK_TARGET);
  return p;
}

/** A stunnel client exactly as efs-utils writes its config (one process per mount, as efs-utils runs them). */
/** `service`: more lines for its [efs] service (the client certificate efs-utils 2 adds, in takeover's tests). */
export async function startStunnelClient(dir: string, pki: Pki, name: string, port: number, target: string, fsId: string, wrap?: Wrapper, service: string[] = []): Promise<Proc> {
  const p = stunnel(dir, name, [
    'foreground = yes', 'pid =', 'debug = 3',
    `[efs]`,
    'client = yes',
    `accept = 127.0.0.1:${port}`,
    `connect = ${target}:2049`,
    'sslVersion = TLSv1.2',
    'renegotiation = no',
    'TIMEOUTbusy = 20',
    'TIMEOUTclose = 0',
    'TIMEOUTidle = 70',
    'delay = yes',
    'verify = 2',
    `CAfile = ${pki.ca.certFile}`,
    `checkHost = ${fsId}.efs.${REGION}.amazonaws.com`, ...service, '',
  ].join('\n'), wrap);
  await waitPort(port, '127.0.0.1', wrap ? 60_000 : 10_000);
  return p;
}

/**
 * efs-relayd's config in the bench: its defaults, but its own state dir,
 * ports and CA, no metrics endpoint unless asked for, the test harness's
 * fstab and mount command stand-ins, and the real /proc/mounts read at the
 * default one-second pace (the harness reads a stand-in every 0.1 s to keep
 * tests fast).
 */
export function relayConfig(pki: Pki, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return { tls: { ca_file: pki.ca.certFile }, port_range: { first: 22000, last: 23999 }, mount: { poll_interval: 1, proc_mounts: '/proc/mounts' }, ...extra };
}

/** The node a daemon runs on in the bench, and what it is. */
export interface RelayNode {
  bin: string;
  version: string;
  openssl: string;
}

type NodeRuntime = {
  pinnedNode(cache?: string, say?: (line: string) => void): string;
  describeNode(bin: string): { version: string; openssl: string };
};
let relayNodeOnce: Promise<RelayNode> | undefined;

/**
 * The node the bench's daemon runs on: the one the packaged binary carries (packaging/node-runtime.json, fetched
 * into build/node-runtime once), since that is the daemon users run; or `--relay-node=PATH` to measure another.
 */
export function relayNode(): Promise<RelayNode> {
  relayNodeOnce ??= (async () => {
    const runtime = (await import(join(ROOT, 'packaging/node-runtime.mjs'))) as NodeRuntime;
    const asked = process.argv.find((a) => a.startsWith('--relay-node='))?.slice('--relay-node='.length);
    const bin = asked || runtime.pinnedNode(undefined, (line) => process.stdout.write(`bench: ${line}\n`));
    return { bin, ...runtime.describeNode(bin) };
  })();
  return relayNodeOnce;
}

let launcher: string | undefined;

/** build/bin/efs-relayd as the bench runs it: the same daemon, on relayNode() (build/bin's runs the machine's node). */
export async function relayBin(): Promise<string> {
  if (launcher) return launcher;
  const file = join(tempDir('bench-launcher'), 'efs-relayd');
  writeFileSync(file, `#!/bin/sh\nexec '${(await relayNode()).bin}' '${join(ROOT, 'build/lib/efs-relayd.mjs')}' "$@"\n`, { mode: 0o755 });
  return (launcher = file);
}

export async function startRelay(pki: Pki, extra: Record<string, unknown> = {}, dir?: string): Promise<Daemon> {
  return new Daemon(relayConfig(pki, extra), dir).start(await relayBin());
}

/**
 * The bench's NFS server: the test suite's running ganesha when it lends it (EFS_RELAY_BENCH_NFS,
 * "nfsPort,mountPort,exportPath"), or the shared one, started here (Ganesha.stopShared stops it).
 */
export function benchGanesha(): Promise<Ganesha> {
  const lent = process.env.EFS_RELAY_BENCH_NFS?.split(',');
  return lent ? Promise.resolve(new Ganesha(Number(lent[0]), Number(lent[1]), lent[2])) : Ganesha.get();
}

export function benchDir(): string {
  return tempDir('bench');
}

/** First line that names `name` in a command's output (stunnel prints its version on stderr). */
export function toolVersion(cmd: string, args: string[], name: string): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.split('\n').find((l) => l.startsWith(name))?.trim() ?? 'unknown';
}
