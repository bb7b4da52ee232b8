// The processes of this host and their command lines, from /proc. Another
// user's are readable as root only, as efsctl's verbs that need them run.
import { readdir, readFile } from 'node:fs/promises';

export interface ProcessInfo {
  pid: number;
  /** The command line, word by word; empty for a kernel thread or a process that went meanwhile. */
  argv: string[];
}

/** A process's command line, word by word ([] when it is gone or unreadable). */
export async function commandLine(pid: number): Promise<string[]> {
  return (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0').filter((a) => a !== '');
}

/** A process's environment ({} when it is gone or unreadable). */
export async function environment(pid: number): Promise<Record<string, string>> {
  const vars = (await readFile(`/proc/${pid}/environ`, 'utf8').catch(() => '')).split('\0').filter((kv) => kv.includes('='));
  return Object.fromEntries(vars.map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
}

/** Every process but this one. */
export async function* processes(): AsyncGenerator<ProcessInfo> {
  for (const entry of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    yield { pid, argv: await commandLine(pid) };
  }
}

/** Whether the process exists (signal 0 checks without signalling). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The real user id a process runs as, or null when it is gone. */
export async function processUid(pid: number): Promise<number | null> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
  return uid === undefined ? null : Number(uid);
}
