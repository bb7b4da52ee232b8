// /etc/fstab: lines of type efs are file systems the administrator wants
// mountable, so their tunnels are kept ready (except noauto lines, which get
// a tunnel only when mounted).
import { readFile } from 'node:fs/promises';
import { asRelayError, type ErrorCode, type RelayError } from './errors.js';
import { parseOptions, tunnelOptions, withSpecTarget, type MountOptions, type SpecTarget } from './options.js';
import { isAlias, parseSpecOrAlias, type AliasSpec, type MountSpec } from './target.js';

export interface FstabEntry extends SpecTarget {
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
  /** The error table's code and hint, when not the plan's for a line that does not parse (BAD_OPTION). */
  code?: ErrorCode;
  hint?: string;
}

/** A line whose spec is an alias (CNAME) of a file system's name: which file system it is, only DNS says. */
export interface FstabAlias {
  line: number;
  spec: AliasSpec;
  dir: string;
  /** Its options, without what the file system's name adds (region, az). */
  options: MountOptions;
  noauto: boolean;
}

export interface ParsedFstab {
  entries: FstabEntry[];
  problems: FstabProblem[];
  aliases: FstabAlias[];
}

/** An alias line whose file system is not known: DNS did not lead from it to a file system's name. */
export interface UnfollowedAlias {
  line: number;
  alias: string;
  error: RelayError;
}

/** fstab escapes space, tab, newline and backslash as octal (\040 …). */
export function unescapeOctal(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_m, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

export function parseFstab(text: string): ParsedFstab {
  const entries: FstabEntry[] = [];
  const problems: FstabProblem[] = [];
  const aliases: FstabAlias[] = [];
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
    const spec = parseSpecOrAlias(unescapeOctal(fields[0] as string));
    if (!spec) {
      problems.push({ line, message: `"${fields[0]}" is not a file system id like fs-12345678 or fs-12345678:/path, the file system's DNS name, or a DNS alias of it` });
      return;
    }
    const dir = unescapeOctal(fields[1] as string);
    if (!dir.startsWith('/')) {
      problems.push({ line, message: `mount point "${fields[1]}" is not an absolute path` });
      return;
    }
    let options: MountOptions;
    try {
      options = parseOptions(fields[3] === 'defaults' ? '' : fields[3]);
      if (!isAlias(spec)) options = withSpecTarget(options, spec);
    } catch (err) {
      problems.push({ line, message: (err as Error).message });
      return;
    }
    const noauto = Object.hasOwn(options, 'noauto');
    if (isAlias(spec)) aliases.push({ line, spec, dir, options, noauto });
    else entries.push(entryOf(spec, line, dir, options, noauto));
  });
  return { entries, problems, aliases };
}

/**
 * The alias lines as entries of the file systems their CNAME records lead to (`follow`: spec-alias.ts), in line
 * order among the others. A noauto alias line is left to its mount, which follows it then, as efs-utils does; its
 * options are checked all the same.
 */
export async function followFstabAliases(
  parsed: ParsedFstab,
  follow: (spec: AliasSpec) => Promise<MountSpec>,
): Promise<{ entries: FstabEntry[]; problems: FstabProblem[]; unfollowed: UnfollowedAlias[] }> {
  const entries = [...parsed.entries];
  const problems = [...parsed.problems];
  const unfollowed: UnfollowedAlias[] = [];
  const valid = parsed.aliases.filter((a) => {
    // Options that no file system could take are the line's problem, whatever DNS says (noauto lines too).
    try {
      tunnelOptions({ tls: null, ...a.options });
      return true;
    } catch (err) {
      const { code, message, hint } = asRelayError(err);
      problems.push({ line: a.line, message, code, hint });
      return false;
    }
  });
  await Promise.all(valid.filter((a) => !a.noauto).map(async (a) => {
    let spec: MountSpec;
    try {
      spec = await follow(a.spec);
    } catch (err) {
      unfollowed.push({ line: a.line, alias: a.spec.alias, error: asRelayError(err) });
      return;
    }
    try {
      entries.push(entryOf(spec, a.line, a.dir, withSpecTarget(a.options, spec), false));
    } catch (err) {
      problems.push({ line: a.line, message: (err as Error).message });
    }
  }));
  entries.sort((x, y) => x.line - y.line);
  problems.sort((x, y) => x.line - y.line);
  unfollowed.sort((x, y) => x.line - y.line);
  return { entries, problems, unfollowed };
}

/** A line's entry; the DNS name its spec gave (and the alias that led to it) stay, for the plan's check against the target. */
function entryOf(spec: MountSpec, line: number, dir: string, options: MountOptions, noauto: boolean): FstabEntry {
  const named = { ...(spec.name === undefined ? {} : { name: spec.name }), ...(spec.alias === undefined ? {} : { alias: spec.alias }) };
  return { ...named, line, fsId: spec.fsId, path: spec.path, dir, options, noauto };
}

export async function readFstab(file: string): Promise<ParsedFstab> {
  try {
    return parseFstab(await readFile(file, 'utf8'));
  } catch (err) {
    // A missing fstab (deleted, about to be recreated) wants nothing.
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { entries: [], problems: [], aliases: [] };
    throw err;
  }
}
