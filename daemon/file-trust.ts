// Whether a file the daemon trusts (a CA bundle, its config file) can be
// changed by a user other than root. Whoever can change a CA bundle can make
// tunnels trust a CA of their own, and whoever can change the config can
// point tls.ca_file anywhere: the TLS verification is only as strong as them.
import { lstat, realpath } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import type { Stats } from 'node:fs';
import { linkHops } from './links.js';
import type { Logger } from './log.js';

/** Why a file or directory can be changed by a user other than root and `owner`, or null. A sticky directory (/tmp) keeps others from replacing root's entries. */
function exposure(path: string, st: Stats, owner: number): string | null {
  if (st.uid !== 0 && st.uid !== owner) return `${path} is owned by uid ${st.uid}`;
  const sticky = st.isDirectory() && (st.mode & 0o1000) !== 0;
  const mode = (st.mode & 0o7777).toString(8).padStart(4, '0');
  if ((st.mode & 0o002) !== 0 && !sticky) return `${path} is writable by every user (mode ${mode})`;
  if ((st.mode & 0o020) !== 0 && st.gid !== 0 && !sticky) return `${path} is writable by group ${st.gid} (mode ${mode})`;
  return null;
}

/** The path and every directory above it. */
function chain(path: string): string[] {
  const out = [path];
  for (let p = dirname(path); ; p = dirname(p)) {
    out.push(p);
    if (p === dirname(p)) return out;
  }
}

/**
 * The first reason a user other than root and `owner` (the daemon's own
 * user, when it runs unprivileged) could change what `file` holds: the file,
 * or a directory on its path (someone who can write a directory can replace
 * the entries in it), as named, at each link along the way, and after
 * symbolic links. Null when only root can. A file that is not there is
 * judged by the directories it would be in; that it is missing, the caller
 * reports on its own.
 */
export async function whoElseCanChange(file: string, owner: number): Promise<string | null> {
  const named = resolve(file);
  // Null for a file that is not there (now): whoever can write a directory it would be in can put theirs there.
  const real = await realpath(named).catch(() => null);
  // Each link along the way too: whoever can write the directory of a link in the middle can make it lead elsewhere.
  const hops = await linkHops(named);
  const seen = new Set<string>();
  for (const path of [...hops.flatMap(chain), ...(real === null ? [] : chain(real))]) {
    if (seen.has(path)) continue;
    seen.add(path);
    // A symbolic link's own owner and mode do not matter: the directory holding it and where it leads (the real path) do.
    const st = await lstat(path).catch(() => null);
    if (st === null || st.isSymbolicLink()) continue;
    const why = exposure(path, st, owner);
    if (why) return why;
  }
  return null;
}

/** What a trusted file is to the daemon, for the log line. */
export type TrustedFile = 'CA bundle' | 'config file';

const CONSEQUENCE: Record<TrustedFile, string> = {
  'CA bundle': 'can make the tunnels that verify with it trust a CA of their own',
  'config file': 'can point tls.ca_file at a CA bundle of their own, applied at the next restart',
};

/** Why another user than root (or the daemon's own) could change the file, or null. */
export function whoElseCanChangeForDaemon(file: string): Promise<string | null> {
  return whoElseCanChange(file, process.getuid?.() ?? 0);
}

/** The warning that `file` is exposed (`why`): the same line at a read and when a later check finds it. */
export function warnExposed(file: string, what: TrustedFile, why: string, log: Logger): void {
  log.warn(what === 'CA bundle' ? 'tls.ca_file_exposed' : 'config.file_exposed', {
    code: 'TRUST_FILE_WRITABLE', file,
    msg: `${why}: whoever can change ${what} ${file} ${CONSEQUENCE[what]}; it is used all the same`,
  });
}

/**
 * Judges a trusted file as the daemon reads it: warns, at every read, while another user could change it, and
 * keeps what it found, so that the looks between reads (trust-watch.ts) say only what changes after.
 */
export interface TrustJudge {
  atRead(file: string, what: TrustedFile): Promise<void>;
}
