// Tunnel records: one JSON file per file system in the state dir, written
// atomically. A record is the promise "this fs has a relay on this port";
// the daemon restores it on the same port after any restart, because NFS
// mounts keep pointing at that port. Ports that mounts still name after a
// forced stop are kept beside them, in left-mounted/.
import { EventEmitter } from 'node:events';
import { mkdir, open, readdir, readFile, rename, rm, lstat } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join } from 'node:path';
import { RelayError, noDescriptorError, noDescriptorLeft } from './errors.js';
import { FS_ID } from './target.js';
import type { MountOptions } from './options.js';

export const RECORD_VERSION = 1;

export type RecordSource = 'efsctl' | 'mount.efs' | 'fstab' | 'manual';

export interface TunnelRecord {
  version: typeof RECORD_VERSION;
  fs_id: string;
  port: number;
  target: { dns_name: string; address: string; port: number; region: string };
  options: MountOptions;
  created: string;
  source: RecordSource;
  /** Mount points using the tunnel (filled in by attach). */
  mounts: string[];
  /**
   * Other local ports the tunnel listens on, because mounts made before it name them (a second efs-utils mount of
   * the file system, taken over). Each goes once no mount names it. Absent in records of older versions: none.
   */
  extra_ports?: number[];
  /**
   * For a target given by name: DNS's last answer for `name`, so that a daemon restarted while DNS does not answer
   * still knows where the mount target is (the certificate is verified against the name as always). Absent before
   * the first answer, after DNS said the name has none, and in records of older versions. With `mount_target`, the
   * address is the mount target the EFS API gave while DNS has no address for the name (efs.mount_target_fallback).
   */
  dns_answer?: { name: string; addresses: string[]; answered_at: string; mount_target?: string };
}

/** Every local port a record's tunnel listens on: its own, then the extra ones. */
export function portsOf(rec: Pick<TunnelRecord, 'port' | 'extra_ports'>): number[] {
  return [rec.port, ...(rec.extra_ports ?? [])];
}

export interface InvalidFile {
  file: string;
  reason: string;
}

export interface StateChange {
  kind: 'written' | 'removed';
  fsId: string;
}

/**
 * A port that a mount still names after its tunnel was stopped with
 * --force: no other file system's tunnel is given it, and the next tunnel
 * for this one gets it back. Kept in the state dir so a daemon restart
 * remembers whose port it is.
 */
export interface LeftMount {
  port: number;
  fs_id: string;
  mounts: string[];
  stopped: string;
}

const RECORD_FILE = /^(fs-[0-9a-f]+)\.json$/;
const TEMP_FILE = /^\..*\.tmp-\d+-\d+$/;
/** Sub-directory of the state dir for LeftMount files (loadAll skips directories). */
const LEFT_DIR = 'left-mounted';
const LEFT_FILE = /^(\d+)\.json$/;

/** FD_LIMIT for a read that found no descriptor to open `path` with (its tunnel must not go for that); any other error as it is. */
function noDescriptor(err: NodeJS.ErrnoException, path: string): Error {
  return noDescriptorLeft(err) ? noDescriptorError(err, path) : err;
}

export class StateStore extends EventEmitter<{ change: [StateChange] }> {
  readonly dir: string;
  private tmpSeq = 0;

  constructor(dir: string) {
    super();
    this.dir = dir;
  }

  async ensureDir(): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
  }

  fileFor(fsId: string): string {
    return join(this.dir, `${fsId}.json`);
  }

  /** Every valid record, and every file that is not one (never deleted). */
  async loadAll(): Promise<{ records: TunnelRecord[]; invalid: InvalidFile[] }> {
    const records: TunnelRecord[] = [];
    const invalid: InvalidFile[] = [];
    const ports = new Map<number, string>();
    for (const name of await listFiles(this.dir).catch((err: NodeJS.ErrnoException) => Promise.reject(noDescriptor(err, this.dir)))) {
      const path = join(this.dir, name);
      try {
        const rec = await this.read(name);
        for (const port of portsOf(rec)) {
          const other = ports.get(port);
          if (other !== undefined) throw new Error(`port ${port} is already claimed by ${other}`);
        }
        for (const port of portsOf(rec)) ports.set(port, rec.fs_id);
        records.push(rec);
      } catch (err) {
        // A file that could not be opened for want of a descriptor is neither invalid nor removed: the whole reading
        // fails, and its caller changes no tunnel on it.
        const e = noDescriptor(err as NodeJS.ErrnoException, path);
        if (e !== err) throw e;
        invalid.push({ file: path, reason: (err as Error).message });
      }
    }
    return { records, invalid };
  }

  private async read(name: string): Promise<TunnelRecord> {
    const m = RECORD_FILE.exec(name);
    if (!m) throw new Error('not a tunnel record (expected a name like fs-12345678.json)');
    return validateRecord(parseJson(await readFile(join(this.dir, name), 'utf8')), m[1] as string);
  }

  async write(rec: TunnelRecord): Promise<void> {
    await this.writeAtomic(this.dir, `${rec.fs_id}.json`, rec);
    this.emit('change', { kind: 'written', fsId: rec.fs_id });
  }

  async remove(fsId: string): Promise<void> {
    const file = this.fileFor(fsId);
    try {
      await rm(file, { force: true });
      await this.syncDir(this.dir);
    } catch (err) {
      throw new RelayError('STATE_WRITE_FAILED', `Cannot remove ${file}: ${(err as Error).message}`, { cause: err });
    }
    this.emit('change', { kind: 'removed', fsId });
  }

  leftFileFor(port: number): string {
    return join(this.dir, LEFT_DIR, `${port}.json`);
  }

  async writeLeftMount(left: LeftMount): Promise<void> {
    const dir = join(this.dir, LEFT_DIR);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    await this.writeAtomic(dir, `${left.port}.json`, left);
  }

  async removeLeftMount(port: number): Promise<void> {
    await rm(this.leftFileFor(port), { force: true });
  }

  /** Every valid LeftMount file, and every file there that is not one (never deleted). */
  async loadLeftMounts(): Promise<{ left: LeftMount[]; invalid: InvalidFile[] }> {
    const dir = join(this.dir, LEFT_DIR);
    const left: LeftMount[] = [];
    const invalid: InvalidFile[] = [];
    let names: string[];
    try {
      names = await listFiles(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { left, invalid };
      throw err;
    }
    for (const name of names) {
      const path = join(dir, name);
      try {
        const m = LEFT_FILE.exec(name);
        if (!m) throw new Error('not a left-behind mount (expected a name like 20049.json)');
        left.push(validateLeftMount(parseJson(await readFile(path, 'utf8')), Number(m[1])));
      } catch (err) {
        invalid.push({ file: path, reason: (err as Error).message });
      }
    }
    return { left, invalid };
  }

  /** Temp file, fsync, rename, fsync of the directory. Fails with STATE_WRITE_FAILED, leaving no temp file behind. */
  private async writeAtomic(dir: string, name: string, data: unknown): Promise<void> {
    const final = join(dir, name);
    const tmp = join(dir, `.${name}.tmp-${process.pid}-${++this.tmpSeq}`);
    try {
      const fh = await open(tmp, 'w', 0o600);
      try {
        await fh.writeFile(JSON.stringify(data, null, 2) + '\n');
        await fh.sync();
      } finally {
        await fh.close();
      }
      await rename(tmp, final);
      await this.syncDir(dir);
    } catch (err) {
      // A half-written temp file on a full file system would only take more of its space.
      await rm(tmp, { force: true }).catch(() => {});
      throw new RelayError('STATE_WRITE_FAILED', `Cannot write ${final}: ${(err as Error).message}`, { cause: err });
    }
  }

  private async syncDir(dir: string): Promise<void> {
    const dh = await open(dir, 'r');
    try {
      await dh.sync();
    } finally {
      await dh.close();
    }
  }
}

/**
 * The plain files of a state directory, sorted by name. The control socket
 * and sub-directories are not state; nor is a temp file left by a crash
 * mid-write (the rename never happened, so the old file, if any, is intact).
 */
async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const name of (await readdir(dir)).sort()) {
    if (TEMP_FILE.test(name)) continue;
    try {
      if ((await lstat(join(dir, name))).isFile()) out.push(name);
    } catch {
      // removed while we listed
    }
  }
  return out;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`not valid JSON: ${(err as Error).message}`);
  }
}

function validateRecord(data: unknown, fsIdFromName: string): TunnelRecord {
  const fail = (what: string): never => {
    throw new RelayError('STATE_FILE_INVALID', what);
  };
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return fail('expected a JSON object');
  const r = data as Record<string, unknown>;
  if (r.version !== RECORD_VERSION) fail(`unsupported record version ${JSON.stringify(r.version)} (this daemon reads ${RECORD_VERSION})`);
  if (typeof r.fs_id !== 'string' || !FS_ID.test(r.fs_id)) fail('"fs_id" must be a file system id like fs-12345678');
  if (r.fs_id !== fsIdFromName) fail(`"fs_id" ${String(r.fs_id)} does not match the file name`);
  if (typeof r.port !== 'number' || !Number.isInteger(r.port) || r.port < 1 || r.port > 65535) fail('"port" must be an integer port');
  const t = r.target as Record<string, unknown> | undefined;
  if (
    typeof t !== 'object' || t === null ||
    typeof t.dns_name !== 'string' || typeof t.address !== 'string' || typeof t.region !== 'string' ||
    typeof t.port !== 'number' || !Number.isInteger(t.port)
  )
    fail('"target" must have dns_name, address, region (strings) and port (integer)');
  const o = r.options;
  if (typeof o !== 'object' || o === null || Array.isArray(o) || !Object.values(o).every((v) => v === null || typeof v === 'string'))
    fail('"options" must map option names to strings or null');
  if (typeof r.created !== 'string' || Number.isNaN(Date.parse(r.created))) fail('"created" must be an ISO time');
  if (!['efsctl', 'mount.efs', 'fstab', 'manual'].includes(r.source as string)) fail('"source" must be efsctl, mount.efs, fstab or manual');
  const mounts = r.mounts ?? [];
  if (!Array.isArray(mounts) || !mounts.every((m) => typeof m === 'string')) fail('"mounts" must be a list of paths');
  const extra: unknown = r.extra_ports ?? [];
  if (!Array.isArray(extra) || !extra.every((p) => Number.isInteger(p) && p >= 1 && p <= 65535) || new Set([r.port, ...extra]).size !== extra.length + 1)
    return fail('"extra_ports" must be a list of integer ports, each other than "port" and the others');
  const rec = { ...(r as unknown as TunnelRecord), mounts: mounts as string[] };
  if (extra.length > 0) rec.extra_ports = extra as number[];
  else delete rec.extra_ports;
  // Only a fallback for when DNS does not answer: one that is not well formed is dropped, not the tunnel.
  if (!validDnsAnswer(r.dns_answer)) delete rec.dns_answer;
  return rec;
}

function validDnsAnswer(a: unknown): a is TunnelRecord['dns_answer'] {
  if (typeof a !== 'object' || a === null) return false;
  const { name, addresses, answered_at: at, mount_target: mountTarget } = a as Record<string, unknown>;
  return typeof name === 'string' && Array.isArray(addresses) && addresses.length > 0 && addresses.every((x) => typeof x === 'string' && isIP(x) !== 0) &&
    typeof at === 'string' && !Number.isNaN(Date.parse(at)) && (mountTarget === undefined || typeof mountTarget === 'string');
}

function validateLeftMount(data: unknown, portFromName: number): LeftMount {
  const r = (typeof data === 'object' && data !== null && !Array.isArray(data) ? data : {}) as Record<string, unknown>;
  if (r.port !== portFromName) throw new Error(`"port" must be ${portFromName}, as in the file name`);
  if (typeof r.fs_id !== 'string' || !FS_ID.test(r.fs_id)) throw new Error('"fs_id" must be a file system id like fs-12345678');
  if (!Array.isArray(r.mounts) || !r.mounts.every((m) => typeof m === 'string')) throw new Error('"mounts" must be a list of paths');
  if (typeof r.stopped !== 'string') throw new Error('"stopped" must be an ISO time');
  return { port: portFromName, fs_id: r.fs_id, mounts: r.mounts as string[], stopped: r.stopped };
}
