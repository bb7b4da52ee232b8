// /proc/mounts: which NFS mounts exist, and which of them go through a
// tunnel (device 127.0.0.1:… with port=<tunnel port>).
import { open, readFile, statfs, type FileHandle } from 'node:fs/promises';
import { parseOptions, type MountOptions } from './options.js';
import { unescapeOctal } from './fstab.js';
import { parseEfsName } from './target.js';

export interface MountEntry {
  device: string;
  dir: string;
  type: string;
  options: MountOptions;
}

export function parseProcMounts(text: string): MountEntry[] {
  const out: MountEntry[] = [];
  for (const raw of text.split('\n')) {
    const f = raw.trim().split(/\s+/);
    if (f.length < 4) continue;
    let options: MountOptions;
    try {
      options = parseOptions(f[3]);
    } catch {
      options = {};
    }
    out.push({ device: unescapeOctal(f[0] as string), dir: unescapeOctal(f[1] as string), type: f[2] as string, options });
  }
  return out;
}

/** The local tunnel port an NFS mount goes through, or null. */
export function tunnelPortOf(m: MountEntry): number | null {
  if (!m.type.startsWith('nfs') || !m.device.startsWith('127.0.0.1:')) return null;
  const port = Number(m.options.port);
  return Number.isInteger(port) && port > 0 ? port : null;
}

export async function readProcMounts(file: string): Promise<MountEntry[]> {
  return parseProcMounts(await readFile(file, 'utf8'));
}

/** The file system type statfs(2) reports for /proc. */
const PROC_SUPER_MAGIC = 0x9fa0;

/**
 * One mounts file read again and again (the mount watcher's poll). readFile
 * costs five thread-pool operations (open, fstat, read, read, close), and
 * each wakes the daemon twice: about 20 wakeups a second of an idle daemon.
 * On procfs the file stays open instead, and every read starts over at
 * offset 0, where the kernel lists the mount table as it is now: two
 * operations (the table, then end of file). Any other file, such as a test's
 * stand-in, is read afresh each time, since it may have been replaced.
 */
export class MountsFileReader {
  private handle: FileHandle | null = null;
  /** Decided at the first read that could stat the file. */
  private onProcfs: boolean | null = null;
  private buf = Buffer.allocUnsafe(16 * 1024);

  constructor(readonly file: string) {}

  async read(): Promise<MountEntry[]> {
    if (this.onProcfs === null) {
      const fs = await statfs(this.file).catch(() => null);
      // A file that cannot be looked at now is read the plain way, whose error says why.
      if (!fs) return readProcMounts(this.file);
      this.onProcfs = fs.type === PROC_SUPER_MAGIC;
    }
    if (!this.onProcfs) return readProcMounts(this.file);
    try {
      this.handle ??= await open(this.file, 'r');
      return parseProcMounts(await this.readAll(this.handle));
    } catch (err) {
      await this.close(); // opened anew at the next read
      throw err;
    }
  }

  /** The whole file from offset 0; a table bigger than the buffer doubles it. */
  private async readAll(handle: FileHandle): Promise<string> {
    let used = 0;
    for (;;) {
      if (used === this.buf.length) {
        const bigger = Buffer.allocUnsafe(this.buf.length * 2);
        this.buf.copy(bigger, 0, 0, used);
        this.buf = bigger;
      }
      const { bytesRead } = await handle.read(this.buf, used, this.buf.length - used, used);
      if (bytesRead === 0) return this.buf.toString('utf8', 0, used);
      used += bytesRead;
    }
  }

  async close(): Promise<void> {
    const handle = this.handle;
    this.handle = null;
    await handle?.close().catch(() => undefined);
  }
}

export interface UnencryptedMount {
  device: string;
  dir: string;
  /** The file system, when the device names one. */
  fs_id: string | null;
}

/**
 * NFS mounts that reach EFS without a local tunnel: a device on an EFS name
 * (`*.efs.<region>.<suffix>`) or on a known mount-target address.
 */
export function unencryptedEfsMounts(mounts: MountEntry[], suffixOf: (region: string) => string, targetAddresses: ReadonlySet<string>): UnencryptedMount[] {
  const out: UnencryptedMount[] = [];
  for (const m of mounts) {
    if (!m.type.startsWith('nfs') || tunnelPortOf(m) !== null) continue;
    const colon = m.device.lastIndexOf(':');
    const host = (colon < 0 ? m.device : m.device.slice(0, colon)).replace(/^\[|\]$/g, '');
    const parsed = parseEfsName(host.toLowerCase());
    // The name of a file system in its region's own suffix (efs.dns_name_suffix).
    const name = parsed && parsed.suffix === suffixOf(parsed.region) ? parsed : null;
    if (name || targetAddresses.has(host) || (m.options.addr && targetAddresses.has(m.options.addr))) {
      out.push({ device: m.device, dir: m.dir, fs_id: name ? name.fsId : null });
    }
  }
  return out;
}
