// /etc/fstab: lines of type efs are file systems the administrator wants
// mountable, so their tunnels are kept ready (except noauto lines, which get
// a tunnel only when mounted).
import { readFile } from 'node:fs/promises';
import { parseOptions, withSpecTarget, type MountOptions } from './options.js';
import { parseSpec } from './target.js';

export interface FstabEntry {
  line: number;
  fsId: string;
  path: string;
  dir: string;
  options: MountOptions;
  noauto: boolean;
}

export interface FstabProblem {
  line: number;
  message: string;
}

/** fstab escapes space, tab, newline and backslash as octal (\040 …). */
export function unescapeOctal(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseFstab(text: string): { entries: FstabEntry[]; problems: FstabProblem[] } {
  const entries: FstabEntry[] = [];
  const problems: FstabProblem[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = i + 1;
    const content = raw.replace(/#.*$/, '').trim();
    if (content === '') return;
    const fields = content.split(/\s+/);
    if (fields[2] !== 'efs') return; // not ours (a malformed non-efs line is mount's business)
    if (fields.length < 3 || fields.length > 6) {
      problems.push({ line, message: `expected 3 to 6 fields, found ${fields.length}` });
      return;
    }
    const spec = parseSpec(unescapeOctal(fields[0] as string));
    if (!spec) {
      problems.push({ line, message: `"${fields[0]}" is not a file system id like fs-12345678 or fs-12345678:/path` });
      return;
    }
    const dir = unescapeOctal(fields[1] as string);
    if (!dir.startsWith('/')) {
      problems.push({ line, message: `mount point "${fields[1]}" is not an absolute path` });
      return;
    }
    let options: MountOptions;
    try {
      options = withSpecTarget(parseOptions(fields[3] === 'defaults' ? '' : fields[3]), spec);
    } catch (err) {
      problems.push({ line, message: (err as Error).message });
      return;
    }
    entries.push({ line, fsId: spec.fsId, path: spec.path, dir, options, noauto: Object.hasOwn(options, 'noauto') });
  });
  return { entries, problems };
}

export async function readFstab(file: string): Promise<{ entries: FstabEntry[]; problems: FstabProblem[] }> {
  try {
    return parseFstab(await readFile(file, 'utf8'));
  } catch (err) {
    // A missing fstab (deleted, about to be recreated) wants nothing.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { entries: [], problems: [] };
    throw err;
  }
}
