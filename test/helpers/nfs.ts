// The real NFS side of the tests: nfs-ganesha serving a temp export, and the
// libnfs userspace client (nfs-cp, nfs-cat) talking to it through a port.
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync, createReadStream } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';
import { run, skipIf, sleep, tempDir } from './daemon.js';
import { alive } from '../../cli/processes.js';

export const NFS_PORT = 12049;
export const MOUNT_PORT = 13048;

function have(bin: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Why the NFS tests cannot run here, or null when they can. */
export function nfsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'nfs-ganesha must run as root (run `make test` as root)';
  for (const b of ['ganesha.nfsd', 'nfs-cp', 'nfs-cat', 'rpcbind']) {
    if (!have(b)) return `${b} is not installed (as root: apt-get install nfs-ganesha nfs-ganesha-vfs libnfs-utils rpcbind)`;
  }
  return null;
}

/** Skip the calling suite, saying why, when the NFS tools or root are missing. */
export function requireNfs(ctx: Mocha.Context): void {
  skipIf(ctx, nfsUnavailable());
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((r) => {
    const s = connect({ host: '127.0.0.1', port });
    s.on('connect', () => {
      s.destroy();
      r(true);
    });
    s.on('error', () => r(false));
  });
}

export class Ganesha {
  readonly dir: string;
  readonly exportPath: string;
  private pid = 0;
  private static shared: Promise<Ganesha> | null = null;

  /** With `exportPath`, this stands for a server that already runs (it is neither started nor stopped here). */
  constructor(readonly nfsPort = NFS_PORT, readonly mountPort = MOUNT_PORT, exportPath?: string) {
    if (exportPath) {
      this.dir = '';
      this.exportPath = exportPath;
      return;
    }
    this.dir = tempDir('ganesha');
    this.exportPath = join(this.dir, 'export');
    mkdirSync(this.exportPath);
  }

  /** One server for the whole run (it takes seconds to start and stop). */
  static get(): Promise<Ganesha> {
    Ganesha.shared ??= new Ganesha().start();
    return Ganesha.shared;
  }

  static async stopShared(): Promise<void> {
    const g = Ganesha.shared;
    Ganesha.shared = null;
    if (g) await (await g).stop();
  }

  async start(): Promise<this> {
    await ensureRpcbind();
    // A server left over from an interrupted run holds the ports; stop it first.
    const stalePid = '/run/efs-relay-test-ganesha.pid';
    if (existsSync(stalePid)) {
      const old = Number(readFileSync(stalePid, 'utf8'));
      if (old > 0 && alive(old)) {
        process.kill(old, 'SIGTERM');
        for (let i = 0; i < 200 && alive(old); i++) await sleep(50);
      }
    }
    const conf = `NFS_CORE_PARAM {
  Protocols = 3,4; NFS_Port = ${this.nfsPort}; MNT_Port = ${this.mountPort}; Bind_addr = 127.0.0.1;
  Enable_NLM = false; Enable_RQUOTA = false; Enable_UDP = false;
}
NFSV4 { Graceless = true; Minor_Versions = 0,1,2; }
NFS_KRB5 { Active_krb5 = false; }
EXPORT {
  Export_Id = 1; Path = ${this.exportPath}; Pseudo = /export; Access_Type = RW; Squash = No_Root_Squash;
  Protocols = 3,4; Transports = TCP; SecType = sys;
  FSAL { Name = VFS; }
}
`;
    writeFileSync(join(this.dir, 'ganesha.conf'), conf);
    const pidFile = join(this.dir, 'ganesha.pid');
    const res = await run('ganesha.nfsd', ['-f', join(this.dir, 'ganesha.conf'), '-L', join(this.dir, 'ganesha.log'), '-p', pidFile]);
    if (res.code !== 0) throw new Error(`ganesha.nfsd failed to start (${res.code}): ${res.stderr}`);
    for (let i = 0; i < 300; i++) {
      if ((await portOpen(this.nfsPort)) && (await portOpen(this.mountPort))) break;
      await sleep(50);
    }
    if (!(await portOpen(this.nfsPort))) throw new Error(`ganesha did not listen on ${this.nfsPort}; log: ${join(this.dir, 'ganesha.log')}`);
    this.pid = Number(readFileSync(pidFile, 'utf8'));
    writeFileSync(stalePid, String(this.pid));
    return this;
  }

  async stop(): Promise<void> {
    if (this.pid > 0 && alive(this.pid)) {
      process.kill(this.pid, 'SIGTERM');
      // Ganesha takes a few seconds to exit; the next one needs its ports.
      for (let i = 0; i < 400 && alive(this.pid); i++) await sleep(50);
      if (alive(this.pid)) process.kill(this.pid, 'SIGKILL');
    }
    rmSync('/run/efs-relay-test-ganesha.pid', { force: true });
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** NFSv3 URL (writes): the mount protocol goes straight to ganesha, NFS through `port`. */
  v3Url(name: string, port: number): string {
    return `nfs://127.0.0.1${this.exportPath}/${name}?nfsport=${port}&mountport=${this.mountPort}`;
  }

  /** NFSv4 URL (reads) through `port`. */
  v4Url(name: string, port: number): string {
    return `nfs://127.0.0.1/export/${name}?version=4&nfsport=${port}`;
  }
}

async function ensureRpcbind(): Promise<void> {
  if (await portOpen(111)) return;
  const r = await run('rpcbind', ['-w']);
  if (r.code !== 0) throw new Error(`rpcbind -w failed: ${r.stderr}`);
  for (let i = 0; i < 100 && !(await portOpen(111)); i++) await sleep(50);
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** nfs-cp a local file to an NFS URL. */
export async function nfsCp(src: string, url: string): Promise<void> {
  const r = await run('nfs-cp', [src, url], { timeoutMs: 120_000 });
  if (r.code !== 0) throw new Error(`nfs-cp ${src} ${url} failed (${r.code}): ${r.stderr}${r.stdout}`);
}

/** nfs-cat an NFS URL; returns the SHA-256 of what it printed and the byte count. */
export function nfsCatSha256(url: string): Promise<{ sha256: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn('nfs-cat', [url], { stdio: ['ignore', 'pipe', 'pipe'] });
    const h = createHash('sha256');
    let bytes = 0;
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      bytes += d.length;
      h.update(d);
    });
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      if (code !== 0) reject(new Error(`nfs-cat ${url} failed (${code}): ${err}`));
      else resolve({ sha256: h.digest('hex'), bytes });
    });
  });
}
