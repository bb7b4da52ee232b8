// One request, one response over the daemon's control socket.
import { connect } from 'node:net';
import { RelayError, isErrorCode } from '../daemon/errors.js';
import { PROTOCOL_VERSION, type Response } from '../daemon/protocol.js';

export const DEFAULT_SOCKET = '/run/efs-relay/control.sock';

/** efs-utils reads the region from the mounting user's environment; requests carry ours to the daemon. */
export function callerRegionEnv(): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of ['AWS_REGION', 'AWS_DEFAULT_REGION']) if (process.env[k]) env[k] = process.env[k] as string;
  return env;
}

/** How often a waiting caller tries the socket again. */
const WAIT_RETRY_MS = 100;
/** A wait is reported once it lasts this long: a daemon's usual start (under a second) stays out of the log. */
const WAIT_NOTICE_MS = 1_000;

/**
 * One request. With waitMs, a daemon that is not listening yet (no socket,
 * or nothing accepting on it: it is starting) is tried again until waitMs
 * has passed; onWait hears once, after a second of waiting, what it waits
 * for ("Cannot reach …; waiting up to 10 s for it to start"). Nothing was
 * sent in such a try, so any request may be repeated.
 */
export async function call(
  socketPath: string, method: string, params: Record<string, unknown> = {}, timeoutMs = 30_000,
  waitMs = 0, onWait?: (text: string) => void,
): Promise<unknown> {
  const start = Date.now();
  const deadline = start + waitMs;
  let told = false;
  for (;;) {
    try {
      return await callOnce(socketPath, method, params, timeoutMs);
    } catch (err) {
      if (!notListening(err) || Date.now() + WAIT_RETRY_MS > deadline) throw err;
      if (!told && Date.now() - start >= WAIT_NOTICE_MS) {
        onWait?.(`${(err as RelayError).message}; waiting up to ${waitMs / 1000} s for it to start`);
        told = true;
      }
      await new Promise((r) => setTimeout(r, WAIT_RETRY_MS));
    }
  }
}

/**
 * A daemon that listens but drops the connection unanswered is running: starting it is not the fix. Out of file
 * descriptors, libuv accepts a waiting connection and closes it at once.
 */
const DROPPED_HINT = 'efs-relayd is running but could not take the connection: see its log (journalctl -u efs-relayd) for daemon.fd_limit, and if it is out of file descriptors, raise LimitNOFILE or close connections; efsctl doctor checks it.';

function notListening(err: unknown): boolean {
  const cause = err instanceof RelayError ? (err.cause as NodeJS.ErrnoException | undefined) : undefined;
  return cause?.code === 'ENOENT' || cause?.code === 'ECONNREFUSED';
}

async function callOnce(socketPath: string, method: string, params: Record<string, unknown>, timeoutMs: number): Promise<unknown> {
  const res = await new Promise<Response>((resolve, reject) => {
    const sock = connect(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new RelayError('DAEMON_UNREACHABLE', `efs-relayd did not answer "${method}" on ${socketPath} within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify({ v: PROTOCOL_VERSION, id: 1, method, params }) + '\n'));
    sock.on('data', (chunk: string) => {
      buf += chunk;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      try {
        resolve(JSON.parse(buf.slice(0, nl)) as Response);
      } catch {
        reject(new RelayError('INTERNAL', `efs-relayd sent a malformed response: ${buf.slice(0, 200)}`));
      }
    });
    sock.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'EPIPE' || err.code === 'ECONNRESET') {
        reject(new RelayError('DAEMON_UNREACHABLE', `efs-relayd at ${socketPath} took the connection and dropped it before answering "${method}" (${err.code})`, { cause: err, hint: DROPPED_HINT }));
        return;
      }
      const why =
        err.code === 'ENOENT' ? 'no socket there (is the daemon running?)'
        : err.code === 'ECONNREFUSED' ? 'nothing is listening on it (the daemon is not running)'
        : err.code === 'EACCES' ? 'permission denied (the socket is root-only: run efsctl as root)'
        : err.message;
      reject(new RelayError('DAEMON_UNREACHABLE', `Cannot reach efs-relayd at ${socketPath}: ${why}`, { cause: err }));
    });
    sock.on('close', () => {
      clearTimeout(timer);
      reject(new RelayError('DAEMON_UNREACHABLE', `efs-relayd closed ${socketPath} without answering "${method}"`, { hint: DROPPED_HINT }));
    });
  });
  if (res.ok) return res.result;
  const code = isErrorCode(res.error?.code) ? res.error.code : 'INTERNAL';
  throw new RelayError(code, res.error?.message ?? 'unknown error', { hint: res.error?.hint });
}
