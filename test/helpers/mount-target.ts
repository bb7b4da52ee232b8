// A stand-in for an EFS mount target: a TLS server on a loopback address
// (127.0.0.2:2049 like a real one), in front of ganesha or an echo service.
// With `record`, a plain TCP hop in front keeps every byte that arrived on
// the wire, so a test can prove that no plaintext reached the server.
import { createServer as createTcpServer, connect, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket, type SecureVersion } from 'node:tls';
import type { Pem } from './pki.js';

export interface StandInOptions {
  host: string;
  port: number;
  cert: Pem;
  backend: { host: string; port: number } | 'echo';
  minVersion?: SecureVersion;
  maxVersion?: SecureVersion;
  ciphers?: string;
  record?: boolean;
  /** Ask each client for a certificate, as EFS does (and keep it in clientCertificates); any is taken, as EFS takes a self-signed one. */
  askClientCert?: boolean;
}

/** Echo service: every byte back, and on the client's FIN a trailer, then FIN. */
export const ECHO_TRAILER = '<server-saw-eof>';

export class MountTargetStandIn {
  /** Raw bytes that arrived at the listening address (only with `record`). */
  readonly wire: Buffer[] = [];
  /** Decrypted bytes the TLS server received from clients. */
  readonly received: Buffer[] = [];
  handshakes = 0;
  /** What each accepted TLS session negotiated. */
  readonly sessions: Array<{ protocol: string | null; cipher: string; servername: string | false; resumed?: boolean }> = [];
  /** With askClientCert: the certificate each session's client presented (PEM), or null for none. */
  readonly clientCertificates: Array<string | null> = [];
  private tls: TlsServer | null = null;
  private front: Server | null = null;
  private readonly sockets = new Set<Socket>();

  constructor(readonly opts: StandInOptions) {}

  async start(): Promise<this> {
    const o = this.opts;
    const tls = createTlsServer(
      {
        key: o.cert.key,
        cert: o.cert.cert,
        minVersion: o.minVersion ?? 'TLSv1.2',
        maxVersion: o.maxVersion ?? 'TLSv1.3',
        ...(o.ciphers ? { ciphers: o.ciphers } : {}),
        ...(o.askClientCert ? { requestCert: true, rejectUnauthorized: false } : {}),
        allowHalfOpen: true,
      },
      (s) => this.serve(s),
    );
    tls.on('tlsClientError', () => {});
    this.tls = tls;
    this.track(tls);
    if (!o.record) {
      await listen(tls, o.host, o.port);
      return this;
    }
    const inner = await listen(tls, '127.0.0.1', 0);
    const front = createTcpServer({ allowHalfOpen: true }, (client) => {
      this.sockets.add(client);
      client.on('close', () => this.sockets.delete(client));
      const to = connect({ host: '127.0.0.1', port: inner });
      this.sockets.add(to);
      to.on('close', () => this.sockets.delete(to));
      client.on('data', (d: Buffer) => {
        this.wire.push(Buffer.from(d));
        to.write(d);
      });
      client.on('end', () => to.end());
      to.pipe(client);
      client.on('error', () => to.destroy());
      to.on('error', () => client.destroy());
    });
    this.front = front;
    await listen(front, o.host, o.port);
    return this;
  }

  wireBytes(): Buffer {
    return Buffer.concat(this.wire);
  }

  private track(server: Server): void {
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
  }

  private serve(s: TLSSocket): void {
    this.handshakes++;
    const session = { protocol: s.getProtocol(), cipher: s.getCipher().name, servername: (s as TLSSocket & { servername: string | false }).servername };
    // Reported only when true, so tests of a first session compare as before.
    this.sessions.push(s.isSessionReused() ? { ...session, resumed: true } : session);
    if (this.opts.askClientCert) this.clientCertificates.push(s.getPeerX509Certificate()?.toString() ?? null);
    this.sockets.add(s);
    s.on('close', () => this.sockets.delete(s));
    s.on('error', () => s.destroy());
    const backend = this.opts.backend;
    if (backend === 'echo') {
      s.on('data', (d: Buffer) => {
        if (this.received.length < 64) this.received.push(Buffer.from(d.subarray(0, 256)));
        if (!s.write(d)) s.pause();
      });
      s.on('drain', () => s.resume());
      s.on('end', () => s.end(ECHO_TRAILER));
      return;
    }
    const to = connect({ host: backend.host, port: backend.port, allowHalfOpen: true });
    this.sockets.add(to);
    to.on('close', () => this.sockets.delete(to));
    s.pipe(to);
    to.pipe(s);
    s.on('data', (d: Buffer) => {
      if (this.received.length < 64) this.received.push(Buffer.from(d.subarray(0, 256)));
    });
    to.on('error', () => s.destroy());
    s.on('close', () => to.destroy());
  }

  /** Reset every TLS connection from the server side (RST, no close_notify). */
  resetAll(): void {
    // Only the TCP socket under a TLS session can send an RST; the TLS wrapper cannot.
    for (const s of this.sockets) if (!('encrypted' in s)) s.resetAndDestroy();
  }

  /** Open sockets on the server side (TLS and raw). */
  get openSockets(): number {
    return this.sockets.size;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(
      [this.front, this.tls].map((srv) => (srv && srv.listening ? new Promise<void>((r) => srv.close(() => r())) : undefined)),
    );
  }
}

function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port }, () => {
      server.off('error', reject);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr ? addr.port : port);
    });
  });
}
