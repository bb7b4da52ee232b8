// Plain TCP clients of a relay port, as an NFS client would be.
import { connect, createServer, type Socket } from 'node:net';

export interface Exchange {
  received: Buffer;
  error: string | null;
}

/** Connect, send `data`, half-close, and collect everything until the relay closes. */
export function exchange(port: number, data: Buffer | string, opts: { end?: boolean; timeoutMs?: number } = {}): Promise<Exchange> {
  return new Promise((resolve) => {
    const sock = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    let error: string | null = null;
    const timer = setTimeout(() => {
      error = 'timeout';
      sock.destroy();
    }, opts.timeoutMs ?? 15_000);
    sock.on('connect', () => {
      sock.write(data);
      if (opts.end !== false) sock.end();
    });
    sock.on('data', (d: Buffer) => chunks.push(d));
    sock.on('end', () => sock.end());
    sock.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
    sock.on('close', () => {
      clearTimeout(timer);
      resolve({ received: Buffer.concat(chunks), error });
    });
  });
}

export function openClient(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: '127.0.0.1', port, allowHalfOpen: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

/** Resolves when `port` on 127.0.0.1 can be bound (nothing holds it), rejects otherwise. */
export function expectPortFree(port: number): Promise<void> {
  const probe = createServer();
  return new Promise<void>((resolve, reject) => {
    probe.once('error', reject);
    probe.listen(port, '127.0.0.1', () => probe.close(() => resolve()));
  });
}

/** Something listens on 127.0.0.1:PORT: listening there fails with EADDRINUSE. */
export function expectPortTaken(port: number): Promise<void> {
  const probe = createServer();
  return new Promise<void>((resolve, reject) => {
    probe.once('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' ? resolve() : reject(err)));
    probe.listen(port, '127.0.0.1', () => probe.close(() => reject(new Error(`nothing listens on 127.0.0.1:${port}`))));
  });
}
