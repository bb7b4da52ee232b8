// The helper that efs-relayd runs inside another network namespace (the
// netns= option), as `nsenter --net=PATH -- efs-relayd --netns-helper`.
// Node cannot enter a namespace itself, and a socket belongs to the namespace
// it was made in: so the helper makes the tunnel's sockets there and hands
// each one over to the daemon on the IPC channel, which relays on them as on
// its own. It holds nothing once a socket is handed over: TLS, the copy and
// every byte stay in the daemon. It ends when the daemon goes.
import net, { connect, type Socket } from 'node:net';
import { getSystemErrorName } from 'node:util';

/** What the daemon asks: a listener, or a TCP connection, in this namespace. */
export type NetnsAsk =
  | { id: number; op: 'listen'; host: string; port: number }
  | { id: number; op: 'connect'; host: string; port: number; timeoutMs: number };

/** The answer, with the socket's handle on success. `code` is the errno name (EADDRINUSE, ECONNREFUSED, …). */
export type NetnsAnswer = { id: number; ok: true } | { id: number; ok: false; code: string; message: string };

/** Sent once, when the helper runs inside the namespace and listens for asks. */
export const READY = 'netns-helper-ready';

/**
 * Node's own bind-without-listen, which cluster uses to hand a port to its workers: a socket bound here and listened
 * on only in the daemon. A socket that listened here too could have a client's connection accepted here, in the
 * moment before this copy is closed, and lost. Returns the handle, or a negative errno.
 */
const bindHandle = (net as unknown as {
  _createServerHandle: (address: string, port: number, addressType: number, fd?: number, flags?: number) => object | number;
})._createServerHandle;

/** The libuv handle under a socket, taken from it: the JS object is let go without closing the handle. */
function detach(s: Socket): object {
  const holder = s as unknown as { _handle: object | null };
  const handle = holder._handle as object;
  holder._handle = null;
  return handle;
}

/**
 * Send a handle as is ('net.Native'), so the daemon wraps it with its own options. Node closes the sender's copy
 * of a net.Socket it sends, but not of a raw handle: once written to the channel, the socket travels in the
 * message, and this process's copy is closed here (else every tunnel and connection would hold a descriptor here).
 */
function hand(answer: NetnsAnswer, handle: object): void {
  process.send?.(answer, handle as never, {}, () => (handle as { close: () => void }).close());
}

function failed(id: number, err: NodeJS.ErrnoException): NetnsAnswer {
  return { id, ok: false, code: err.code ?? 'EIO', message: err.message };
}

function listen(ask: Extract<NetnsAsk, { op: 'listen' }>): void {
  const bound = bindHandle(ask.host, ask.port, net.isIPv6(ask.host) ? 6 : 4);
  const refuse = (code: string): void => {
    process.send?.({ id: ask.id, ok: false, code, message: `bind ${code} ${ask.host}:${ask.port}` } satisfies NetnsAnswer);
  };
  if (typeof bound === 'number') return refuse(getSystemErrorName(bound));
  // libuv keeps a failed bind's EADDRINUSE for the listen() that follows, in this process's handle: the socket sent
  // would be unbound, and the daemon's listen would bind it to a random port on every address. So the socket must
  // show the address asked for, now.
  const at: { address?: string; port?: number } = {};
  const err = (bound as { getsockname: (out: object) => number }).getsockname(at);
  if (err !== 0 || at.address !== ask.host || at.port !== ask.port) {
    (bound as { close: () => void }).close();
    return refuse(err !== 0 ? getSystemErrorName(err) : 'EADDRINUSE');
  }
  hand({ id: ask.id, ok: true }, bound);
}

function connectTo(ask: Extract<NetnsAsk, { op: 'connect' }>): void {
  const sock = connect({ host: ask.host, port: ask.port });
  // No byte is read here: the daemon's TLS session starts on the handle (and a server never speaks first in TLS).
  sock.pause();
  const timer = setTimeout(() => sock.destroy(Object.assign(new Error(`connect ETIMEDOUT ${ask.host}:${ask.port}`), { code: 'ETIMEDOUT' })), ask.timeoutMs);
  sock.once('error', (err) => {
    clearTimeout(timer);
    process.send?.(failed(ask.id, err));
  });
  sock.once('connect', () => {
    clearTimeout(timer);
    const handle = detach(sock);
    sock.destroy();
    hand({ id: ask.id, ok: true }, handle);
  });
}

export function runNetnsHelper(): void {
  if (!process.send) {
    process.stderr.write('efs-relayd --netns-helper is started by efs-relayd itself, on an IPC channel\n');
    process.exit(2);
  }
  process.on('message', (ask: NetnsAsk) => (ask.op === 'listen' ? listen(ask) : connectTo(ask)));
  // The daemon is gone: nothing here is of use to anyone.
  process.on('disconnect', () => process.exit(0));
  process.send(READY);
}
