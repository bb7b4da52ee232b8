// Which process listens on a local TCP port: for doctor's word on a mount
// that goes through a port no tunnel of the answering daemon has (an
// efs-utils stunnel, or an efs-relayd that efsctl is not talking to).
// CLI side only: systeminformation runs netstat or ss.
import { readFile } from 'node:fs/promises';
import { commandLine } from './processes.js';
import si from 'systeminformation';

export interface Listener {
  pid: number | null;
  /** The process name netstat/ss gives, or null when it could not tell (not root). */
  name: string | null;
  /** The process runs efs-relayd (by its name, or by its command line when Node runs the script). */
  relayd: boolean;
}

const ANY_OR_LOOPBACK = new Set(['127.0.0.1', '0.0.0.0', '*', '::', '::ffff:127.0.0.1']);

/** A command-line word that starts efs-relayd: the binary, or the script Node runs. */
export function isRelaydArg(arg: string): boolean {
  return arg === 'efs-relayd' || arg.endsWith('/efs-relayd') || arg.endsWith('/efs-relayd.mjs');
}

async function runsRelayd(pid: number, name: string | null): Promise<boolean> {
  if (name === 'efs-relayd') return true;
  return (await commandLine(pid)).some(isRelaydArg);
}

/**
 * The local port of each socket in LISTEN state in a /proc/net/tcp or tcp6 table (`sl local_address rem_address
 * st …`, the port in hex after the colon, st 0A for LISTEN): who listens, without a connection or a process list.
 */
export function listeningPorts(table: string): number[] {
  const ports: number[] = [];
  for (const line of table.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[3] === '0A') ports.push(parseInt((f[1] ?? '').split(':').at(-1) ?? '', 16));
  }
  return ports;
}

/**
 * Whether something listens on 127.0.0.1 (or any address) at `port`, from /proc/net/tcp: cheap enough to poll. With
 * `pid`, in that process's network namespace (/proc/PID/net/tcp), where a stunnel under nsenter listens.
 */
export async function listening(port: number, pid?: number): Promise<boolean> {
  const net = pid === undefined ? '/proc/net' : `/proc/${pid}/net`;
  for (const table of [`${net}/tcp`, `${net}/tcp6`]) {
    if (listeningPorts(await readFile(table, 'utf8').catch(() => '')).includes(port)) return true;
  }
  return false;
}

/** The listener on 127.0.0.1 for each of the ports; a port nobody could be found for is left out. */
export async function listenersOn(ports: readonly number[]): Promise<Map<number, Listener>> {
  const wanted = new Set(ports);
  const found = new Map<number, Listener>();
  if (wanted.size === 0) return found;
  let conns: Awaited<ReturnType<typeof si.networkConnections>>;
  try {
    conns = await si.networkConnections();
  } catch {
    return found;
  }
  for (const c of conns) {
    const port = Number(c.localPort);
    if (c.protocol !== 'tcp' && c.protocol !== 'tcp6') continue;
    if (c.state !== 'LISTEN' || !wanted.has(port) || found.has(port) || !ANY_OR_LOOPBACK.has(c.localAddress)) continue;
    const pid = Number.isInteger(c.pid) && c.pid > 0 ? c.pid : null;
    const name = c.process ? c.process : null;
    found.set(port, { pid, name, relayd: pid !== null && (await runsRelayd(pid, name)) });
  }
  return found;
}

/** "stunnel pid 4242", "efs-relayd pid 812", or what is known of it. */
export function describeListener(l: Listener | undefined): string {
  if (!l || (l.pid === null && l.name === null)) return 'a process doctor could not name';
  return [l.relayd ? 'efs-relayd' : l.name ?? 'a process', l.pid !== null ? `pid ${l.pid}` : null].filter(Boolean).join(' ');
}
