// What this host runs, for efsctl doctor, read from os-release(5) and the
// kernel. Not systeminformation's osInfo: it runs `hostname -f` synchronously,
// which asks DNS for this host's name and, with the resolver down (when users
// run doctor), froze doctor before its first line until the resolver gave up.
import { readFile } from 'node:fs/promises';
import { arch, release } from 'node:os';

export interface OsDescription {
  /** NAME= ("Debian GNU/Linux"), or "Linux" when os-release is missing. */
  distro: string;
  /** VERSION_ID= ("12"), or "". */
  version: string;
  /** VERSION_CODENAME= ("bookworm"), or "". */
  codename: string;
  kernel: string;
  arch: string;
  platform: NodeJS.Platform;
}

/** os-release(5): the first of these that exists. */
const OS_RELEASE_FILES = ['/etc/os-release', '/usr/lib/os-release'];

/** KEY=VALUE lines of os-release(5); a value may be quoted ("…" or '…') with backslash escapes. */
export function parseOsRelease(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*([A-Z0-9_]+)=(.*?)\s*$/.exec(line);
    if (!m) continue;
    let value = m[2]!;
    const quote = value[0];
    if ((quote === '"' || quote === "'") && value.length >= 2 && value.endsWith(quote)) {
      value = value.slice(1, -1).replace(/\\(.)/g, '$1');
    }
    out[m[1]!] = value;
  }
  return out;
}

export async function describeOs(files = OS_RELEASE_FILES): Promise<OsDescription> {
  let fields: Record<string, string> = {};
  for (const f of files) {
    const text = await readFile(f, 'utf8').catch(() => null);
    if (text !== null) {
      fields = parseOsRelease(text);
      break;
    }
  }
  return {
    distro: fields.NAME ?? 'Linux',
    version: fields.VERSION_ID ?? '',
    codename: fields.VERSION_CODENAME ?? '',
    kernel: release(),
    arch: arch(),
    platform: process.platform,
  };
}
