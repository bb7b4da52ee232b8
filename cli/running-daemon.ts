// The efs-relayd that runs a given config file, and the control socket it
// listens on, found in /proc. For `efsctl reload` after control_socket was
// changed in that file: the running daemon still serves the socket it
// started with, which the file no longer names.
import { readdir, readFile, readlink } from 'node:fs/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_PATH } from '../daemon/config.js';
import { isRelaydArg } from './listeners.js';
import { processes } from './processes.js';

export interface RunningDaemon {
  pid: number;
  /** The control socket it listens on. */
  socket: string;
}

/** /proc/net/unix's flag for a listening socket (__SO_ACCEPTCON). */
const ACCEPTING = 0x10000;

/** The config file a daemon's command line names, as an absolute path; null when the arguments are not the daemon's. */
function configOf(argv: string[], cwd: string): string | null {
  // argv[0] is node or efs-relayd; for node, argv[1] is the script.
  const at = argv.findIndex(isRelaydArg);
  if (at < 0) return null;
  try {
    const { values } = parseArgs({ args: argv.slice(at + 1), options: { config: { type: 'string' } }, strict: false });
    const file = typeof values.config === 'string' ? values.config : DEFAULT_CONFIG_PATH;
    return resolve(cwd, file);
  } catch {
    return null;
  }
}

/** Paths of the listening Unix stream sockets, by inode. */
async function listeningUnixSockets(): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const text = await readFile('/proc/net/unix', 'utf8').catch(() => '');
  for (const line of text.split('\n').slice(1)) {
    // Num RefCount Protocol Flags Type St Inode Path (a path may hold spaces)
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || (parseInt(f[3] as string, 16) & ACCEPTING) === 0 || f[4] !== '0001') continue;
    out.set(f[6] as string, f.slice(7).join(' '));
  }
  return out;
}

/**
 * Every efs-relayd process whose command line names configFile (or names
 * none, when configFile is the default), with the control socket it listens
 * on. Needs root, as reading another user's /proc/PID/fd does.
 */
export async function daemonsRunning(configFile: string): Promise<RunningDaemon[]> {
  const want = resolve(configFile);
  const sockets = await listeningUnixSockets();
  const found: RunningDaemon[] = [];
  for await (const { pid, argv } of processes()) {
    if (!argv.some(isRelaydArg)) continue;
    const cwd = await readlink(`/proc/${pid}/cwd`).catch(() => '/');
    if (configOf(argv, cwd) !== want) continue;
    for (const fd of await readdir(`/proc/${pid}/fd`).catch(() => [] as string[])) {
      const inode = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => ''))?.[1];
      const path = inode === undefined ? undefined : sockets.get(inode);
      if (path?.startsWith('/')) found.push({ pid, socket: path });
    }
  }
  return found;
}
