// /proc/mounts: which NFS mounts exist, and which of them go through a
// tunnel (device 127.0.0.1:… with port=<tunnel port>).
import { readFile } from 'node:fs/promises';
import { parseOptions, type MountOptions } from './options.js';
import { unescapeOctal } from './fstab.js';

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
export function unencryptedEfsMounts(mounts: MountEntry[], dnsSuffix: string, targetAddresses: ReadonlySet<string>): UnencryptedMount[] {
  const efsName = new RegExp(`(?:^|\\.)(fs-[0-9a-f]+)\\.efs\\.[a-z0-9-]+\\.${dnsSuffix.replace(/[.]/g, '\\.')}$`);
  const out: UnencryptedMount[] = [];
  for (const m of mounts) {
    if (!m.type.startsWith('nfs') || tunnelPortOf(m) !== null) continue;
    const colon = m.device.lastIndexOf(':');
    const host = (colon < 0 ? m.device : m.device.slice(0, colon)).replace(/^\[|\]$/g, '');
    const name = efsName.exec(host);
    if (name || targetAddresses.has(host) || (m.options.addr && targetAddresses.has(m.options.addr))) {
      out.push({ device: m.device, dir: m.dir, fs_id: name ? (name[1] as string) : null });
    }
  }
  return out;
}
