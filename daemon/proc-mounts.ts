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
