// One relay per file system: a plaintext listener on loopback, and for each
// accepted connection its own verified TLS connection to the mount target.
// The copy loops follow ghostunnel's proxy: each direction copies with
// backpressure; when one direction ends, the other side is half-closed and
// return traffic may drain until the close timeout; an error on either side
// closes both.
import { EventEmitter } from 'node:events';
import { createServer, isIP, isIPv4, type OnReadOpts, type Server, type Socket } from 'node:net';
import type { X509Certificate } from 'node:crypto';
import { connect as tlsConnect, type ConnectionOptions, type SecureContext, type TLSSocket } from 'node:tls';
import { adoptAccepted, Pipe, PLAIN_POOL, TLS_POOL } from './copy.js';
import { RelayError, type ErrorCode } from './errors.js';
import { classifySessionError, classifyUpstreamError, diagnoseRefusal, identityChecker, tlsErrorText, type TlsMaxVersion, type Trust } from './tls-policy.js';
import { peerChain, type OcspChecker } from './ocsp.js';
import { joinHost } from './target.js';
import { DNS_RETRY_MS, TargetLookup, type DnsAnswer, type MountTargetFallback } from './target-lookup.js';
import type { NetNamespace } from './netns.js';

const KEEPALIVE_DELAY_MS = 60_000;
/** How long one diagnosis of a version/cipher refusal is reused. */
const DIAGNOSIS_TTL_MS = 60_000;
// Alerts that do not tell a version refusal from a cipher refusal.
const AMBIGUOUS: ReadonlySet<ErrorCode> = new Set(['TLS_PROTOCOL_REFUSED', 'TLS_CIPHER_REFUSED']);

export interface RelaySpec {
  fsId: string;
  port: number;
  /** Must be a loopback address: the listener carries plaintext NFS. */
  listenHost: string;
  /** The name the certificate must carry, sent as SNI (certificateName). */
  certName: string;
  address: string;
  targetPort: number;
  secureContext: SecureContext;
  /** Under verify=3, the CA bundle's fingerprints: the server's own certificate must be one of them. Else null. */
  held: ReadonlySet<string> | null;
  maxVersion: TlsMaxVersion;
  connectTimeoutMs: number;
  closeTimeoutMs: number;
  /** For a target given by name: DNS's last answer as the tunnel's record kept it from an earlier run. */
  dnsAnswer?: DnsAnswer | null;
  /** For a target given by name: where to ask for the mount target when DNS has no address for it (efs.mount_target_fallback). */
  mountTargetFallback?: MountTargetFallback | null;
  /** With the `ocsp` option: asks whether the verified chain is revoked before a byte is relayed. Else null. */
  ocsp?: OcspChecker | null;
  /** With netns=: the namespace whose loopback it listens on and from which it reaches the target. Else null. */
  netns?: NetNamespace | null;
}

export interface LastError {
  code: ErrorCode;
  message: string;
  at: string;
}

/** Plain numbers, read by whoever wants them (metrics read them at scrape time). */
export interface RelayCounters {
  connectionsActive: number;
  connectionsOk: number;
  connectionsFailed: number;
  bytesUpstream: number;
  bytesDownstream: number;
  handshakeFailures: Map<ErrorCode, number>;
  /** Established sessions that a TLS error ended (not a reset or a close). */
  sessionFailures: Map<ErrorCode, number>;
}

export interface RelayEvents {
  handshake: [seconds: number];
  handshake_failed: [error: RelayError];
  session_failed: [error: RelayError];
  /** A connection could not be accepted (most often: no file descriptor left); the NFS client sees it closed. */
  accept_failed: [error: RelayError];
  connection_closed: [];
  /** DNS gave no answer for the target's name, and a connection or probe went to the address of its last answer. */
  dns_fallback: [error: RelayError];
  /** DNS answers again after fallbacks. */
  dns_answered: [address: string];
  /** DNS's last answer changed (null: forgotten, as the name has no address), to be kept in the tunnel's record. */
  dns_changed: [answer: DnsAnswer | null];
  /** DNS has no address for the name, and connections go to the EFS API's mount target (said once until DNS has one). */
  mount_target_from_api: [message: string];
}

/** Pass the source's end on as a half-close of the destination. */
function passEnd(src: Socket, dst: Socket, onEnd: () => void): void {
  src.on('end', () => {
    dst.end();
    onEnd();
  });
}

export interface ProbeResult {
  ok: boolean;
  at: string;
  duration_seconds: number;
  code: ErrorCode | null;
  message: string | null;
  /** When the server certificate expires (ISO time), if the handshake got that far. */
  cert_expiry: string | null;
}

/** How a handshake with the mount target ended: a probe's, or a client connection's. */
export type HandshakeOutcome = Pick<ProbeResult, 'ok' | 'at' | 'code' | 'message'>;

/**
 * When the peer certificate expires (ISO time), or null when there is none
 * (yet). Read from the X509Certificate handle: getPeerCertificate() would
 * build a whole object (fingerprints, DER, public key) for one date.
 */
function certExpiry(sock: TLSSocket): string | null {
  const validTo = sock.getPeerX509Certificate?.()?.validTo;
  const t = validTo ? Date.parse(validTo) : NaN;
  return Number.isNaN(t) ? null : new Date(t).toISOString();
}

/** Seconds since `started` (performance.now()) in whole microseconds, so that JSON and /metrics show 0.005543, not 0.0055426499999994125. */
function secondsSince(started: number): number {
  return Math.round((performance.now() - started) * 1000) / 1e6;
}

export function isLoopback(host: string): boolean {
  if (host === '::1' || host === 'localhost') return true;
  return isIPv4(host) && host.startsWith('127.');
}

export class Relay extends EventEmitter<RelayEvents> {
  readonly spec: RelaySpec;
  readonly counters: RelayCounters = {
    connectionsActive: 0,
    connectionsOk: 0,
    connectionsFailed: 0,
    bytesUpstream: 0,
    bytesDownstream: 0,
    handshakeFailures: new Map(),
    sessionFailures: new Map(),
  };
  lastError: LastError | null = null;
  lastConnectedAt: string | null = null;
  /** The handshake of the latest client connection: with probes off, the only word on the target's health. */
  lastHandshake: HandshakeOutcome | null = null;
  private server: Server | null = null;
  /** Listeners on other ports than the tunnel's (listenAlso), by port. */
  private readonly extra = new Map<number, Server>();
  private readonly sockets = new Set<Socket>();
  private readonly verify: ReturnType<typeof identityChecker>;
  private diagnosis: { at: number; result: Promise<{ code: ErrorCode; detail: string } | null> } | null = null;
  /** The last TLS session the target gave us: the next connection resumes it, skipping a full handshake. */
  private session: Buffer | undefined;
  /**
   * With `ocsp`: the verified chain of the connection that gave `session`. A resumed session has no certificates to
   * show (getPeerCertificate is empty), yet its chain is asked about again as a new one's is.
   */
  private sessionChain: X509Certificate[] = [];
  /** Finds the target's address when it is a DNS name (no mounttargetip); null for an address. */
  private readonly names: TargetLookup | null;
  /** Connections and probes still waiting for DNS: a timeout then blames DNS, not the mount target. */
  private readonly resolving = new WeakSet<object>();
  /** Connections and probes whose verified chain the OCSP responders are being asked about. */
  private readonly vetting = new WeakSet<object>();

  constructor(spec: RelaySpec) {
    super();
    this.spec = spec;
    this.verify = identityChecker(spec.certName, () => this.spec.held);
    this.names = isIP(spec.address) === 0
      ? new TargetLookup(spec.address, {
        fallback: (e) => {
          this.lastError = { code: e.code, message: e.message, at: new Date().toISOString() };
          this.emit('dns_fallback', e);
        },
        answered: (address) => this.emit('dns_answered', address),
        changed: (answer) => this.emit('dns_changed', answer),
        fromApi: (message) => this.emit('mount_target_from_api', message),
      }, spec.dnsAnswer, spec.mountTargetFallback ?? null)
      : null;
  }

  /** For a target given by name: DNS's last answer (null before the first); undefined for a target given by address. */
  get dnsAnswer(): DnsAnswer | null | undefined {
    return this.names ? this.names.answer : undefined;
  }

  /** Connections and probes that went to DNS's last answer because DNS gave none (0 for a target given by address). */
  get dnsFallbacks(): number {
    return this.names?.fallbacks ?? 0;
  }

  /**
   * Verify new connections and probes against another CA bundle's context.
   * Open connections keep the session they verified. The cached session goes:
   * resuming it would skip verification under the new trust.
   */
  useContext(trust: Trust): void {
    this.spec.secureContext = trust.ctx;
    if (this.spec.held !== null) this.spec.held = trust.held;
    this.session = undefined;
    this.sessionChain = [];
  }

  /** Timeouts from now on (a config reload): a connection's handshake or half-close that starts later gets these. */
  useTimeouts(connectTimeoutMs: number, closeTimeoutMs: number): void {
    this.spec.connectTimeoutMs = connectTimeoutMs;
    this.spec.closeTimeoutMs = closeTimeoutMs;
  }

  get listening(): boolean {
    return this.server?.listening ?? false;
  }

  /** Listen on the tunnel's port. */
  async listen(): Promise<void> {
    this.server = await this.openServer(this.spec.port);
  }

  /**
   * Listen on another port too, for mounts that name it (an efs-utils mount of the file system, taken over): its
   * connections are this relay's, like those of its own port.
   */
  async listenAlso(port: number): Promise<void> {
    if (this.extra.has(port)) return;
    this.extra.set(port, await this.openServer(port));
  }

  /** The other ports this relay listens on. */
  get extraPorts(): number[] {
    return [...this.extra.keys()];
  }

  /** Stop listening on another port; its open connections carry on (close() ends them with the relay's). */
  async closeAlso(port: number): Promise<void> {
    const server = this.extra.get(port);
    this.extra.delete(port);
    if (server) await new Promise<void>((r) => server.close(() => r()));
  }

  private async openServer(port: number): Promise<Server> {
    const { listenHost } = this.spec;
    if (!isLoopback(listenHost)) {
      throw new RelayError('LISTEN_NOT_LOOPBACK', `Refusing to listen on ${listenHost}:${port}: relays listen on loopback only`);
    }
    const { netns } = this.spec;
    const where = netns ? `${listenHost} in network namespace ${netns.path}` : listenHost;
    // pauseOnConnect: no client byte is read until the TLS session is verified.
    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (c) => this.accept(c));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      const listening = (): void => {
        server.off('error', reject);
        resolve();
      };
      // In another namespace, its helper binds the port there and the server here takes the bound socket.
      if (netns) netns.listen(listenHost, port).then((handle) => server.listen(handle, listening), reject);
      else server.listen({ host: listenHost, port, exclusive: true }, listening);
    }).catch((err: NodeJS.ErrnoException) => {
      if (err instanceof RelayError) throw err;
      if (err.code === 'EADDRINUSE')
        throw new RelayError('PORT_TAKEN', `Port ${port} on ${where} is already in use by another process`);
      throw new RelayError('LISTEN_FAILED', `Cannot listen on ${where}:${port}: ${err.message}`, { cause: err });
    });
    // A socket from a namespace's helper is checked as the kernel sees it: plaintext NFS is never served elsewhere.
    const at = server.address();
    if (netns && (typeof at !== 'object' || at?.address !== listenHost || at.port !== port)) {
      server.close();
      throw new RelayError('LISTEN_FAILED', `Cannot listen on ${where}:${port}: the namespace's helper gave a socket on ${typeof at === 'object' && at ? `${at.address}:${at.port}` : String(at)}`);
    }
    // After listen, the server's errors are failed accepts: the client's connection is gone, so say why.
    server.on('error', (err: NodeJS.ErrnoException) => {
      const code = classifyUpstreamError(err) === 'FD_LIMIT' ? 'FD_LIMIT' : 'LISTEN_FAILED';
      const e = new RelayError(code, `Cannot accept a connection on ${where}:${port}: ${err.message}`, { cause: err });
      this.lastError = { code, message: e.message, at: new Date().toISOString() };
      this.emit('accept_failed', e);
    });
    return server;
  }

  /** Stop accepting (on every port); let open connections finish for up to drainMs, then close them. */
  async close(drainMs = 0): Promise<void> {
    const servers = [this.server, ...this.extra.values()].filter((s): s is Server => s !== null);
    this.server = null;
    this.extra.clear();
    const closed = Promise.all(servers.map((server) => new Promise<void>((r) => server.close(() => r()))));
    if (drainMs > 0 && this.sockets.size > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, drainMs);
        const check = (): void => {
          if (this.counters.connectionsActive === 0) {
            clearTimeout(timer);
            this.off('connection_closed', check);
            resolve();
          }
        };
        this.on('connection_closed', check);
        check();
      });
    }
    for (const s of this.sockets) s.destroy();
    await closed;
  }

  private accept(accepted: Socket): void {
    if (this.spec.netns) this.acceptInNamespace(accepted, this.spec.netns);
    else this.relayConnection(accepted, null, performance.now());
  }

  /**
   * Under netns=: the helper connects to the target inside the namespace first (DNS is asked here, in the daemon's
   * namespace), then the connection is relayed as any other, over that socket. The client waits unread meanwhile;
   * the connect timeout covers both steps.
   */
  private acceptInNamespace(accepted: Socket, ns: NetNamespace): void {
    const started = performance.now();
    this.sockets.add(accepted);
    accepted.on('error', () => accepted.destroy());
    this.reachInNamespace(ns, this.spec.connectTimeoutMs).then((raw) => {
      this.sockets.delete(accepted);
      if (accepted.destroyed) raw.destroy();
      else this.relayConnection(accepted, raw, started);
    }, (err: unknown) => {
      this.sockets.delete(accepted);
      void this.handshakeFailed(err).finally(() => accepted.destroy());
    });
  }

  /** A TCP connection to the target made inside the namespace, after DNS when the target is a name. */
  private reachInNamespace(ns: NetNamespace, timeoutMs: number): Promise<Socket> {
    const { spec, names, resolving } = this;
    const token = {}; // stands for the connection in `resolving` until it has a socket
    let timer: NodeJS.Timeout | undefined;
    let waiting = true;
    const address = !names ? Promise.resolve(spec.address) : new Promise<string>((resolve, reject) => {
      resolving.add(token);
      names.netLookup(() => resolving.delete(token), () => waiting)(spec.address, {}, (err, address) => {
        if (err) reject(err);
        else resolve(address as string);
      });
    });
    const reached = address.then((a) => ns.connect(a, spec.targetPort, timeoutMs));
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(this.timeoutError(timeoutMs, token)), timeoutMs);
    });
    // A socket that comes after the timeout is closed, not leaked.
    reached.then((raw) => { if (!waiting) raw.destroy(); }, () => {});
    return Promise.race([reached, late]).finally(() => {
      waiting = false;
      clearTimeout(timer);
    });
  }

  /** Relay one accepted connection; `raw` is the target's TCP connection when a namespace's helper made it. */
  private relayConnection(accepted: Socket, raw: Socket | null, started: number): void {
    const { spec, counters } = this;
    counters.connectionsActive++;
    // Both sockets read into pooled buffers (copy.ts): no Buffer is allocated per read.
    const upstream = new Pipe(PLAIN_POOL, counters, 'bytesUpstream');
    const downstream = new Pipe(TLS_POOL, counters, 'bytesDownstream');
    const { socket: client, adopted } = adoptAccepted(accepted, upstream.onread);
    client.setNoDelay(true);
    client.setKeepAlive(true, KEEPALIVE_DELAY_MS);
    this.sockets.add(client);

    const [offered, offeredChain] = [this.session, this.sessionChain];
    // tls.connect honours onread only on a socket it opens: a namespace's socket is copied with 'data' events.
    const up = this.dial(offered, raw ? undefined : downstream.onread, raw);
    // The chain this connection verified: its own in a full handshake, the offered session's when it resumes that.
    let verified: X509Certificate[] | null = null;
    const chain = (): X509Certificate[] => (verified ??= up.isSessionReused() ? offeredChain : peerChain(up.getPeerCertificate(true)));
    // A session verified under a CA bundle that has since changed is not kept for resumption.
    const trust = spec.secureContext;
    up.on('session', (s: Buffer) => {
      if (this.spec.secureContext !== trust) return;
      this.session = s;
      if (spec.ocsp) this.sessionChain = chain();
    });
    this.sockets.add(up);
    if (!raw) downstream.connect(up, client);

    let secure = false; // the handshake's outcome is known
    let established = false;
    let closeTimer: NodeJS.Timeout | null = null;
    let open = 2;
    // What is left of the connect timeout (a namespace's helper took the rest to connect).
    const connectMs = Math.max(0, spec.connectTimeoutMs - (performance.now() - started));
    const connectTimer = setTimeout(() => fail(this.timeoutError(spec.connectTimeoutMs, up)), connectMs);

    const fail = (err: unknown): void => {
      up.destroy();
      if (secure) {
        // Recorded before the client sees its connection go, as a refusal is below.
        if (established) this.sessionFailed(err);
        // A reset upstream is passed on as a reset, so the NFS client reconnects at once.
        if (!client.destroyed) client.resetAndDestroy();
        return;
      }
      secure = true; // count the failure once
      clearTimeout(connectTimer);
      // The client is closed only once the refusal is recorded, so whoever sees it close can read why.
      void this.handshakeFailed(err).finally(() => client.destroy());
    };

    const onClosed = (): void => {
      if (--open > 0) return;
      clearTimeout(connectTimer);
      if (closeTimer) clearTimeout(closeTimer);
      this.sockets.delete(client);
      this.sockets.delete(up);
      counters.connectionsActive--;
      this.emit('connection_closed');
    };
    // A side that closed cleanly after we ended the other one lets that
    // other side flush what it still holds; any other close tears both down.
    client.once('close', (hadError) => {
      upstream.closed();
      if (hadError || !up.writableEnded) up.destroy();
      onClosed();
    });
    up.once('close', (hadError) => {
      downstream.closed();
      if (hadError || !client.writableEnded) client.destroy();
      onClosed();
    });
    up.on('error', fail);
    client.on('error', () => {
      up.destroy();
      client.destroy();
    });

    const start = (): void => {
      if (secure) return;
      secure = true;
      established = true;
      clearTimeout(connectTimer);
      counters.connectionsOk++;
      this.lastConnectedAt = new Date().toISOString();
      this.lastHandshake = { ok: true, at: this.lastConnectedAt, code: null, message: null };
      this.emit('handshake', (performance.now() - started) / 1000);

      const halfClosed = (): void => {
        closeTimer ??= setTimeout(() => {
          up.destroy();
          client.destroy();
        }, spec.closeTimeoutMs);
      };
      if (adopted) upstream.connect(client, up);
      else upstream.feed(client, up);
      if (raw) downstream.feed(up, client);
      passEnd(client, up, halfClosed);
      passEnd(up, client, halfClosed);
      // Flowing mode, so that both sockets emit 'end' (onread delivers the bytes, not 'data').
      up.resume();
      client.resume();
    };
    // With `ocsp`, the session carries nothing until the responders have said the chain is good; the connect
    // timeout still runs, and a refusal is a failed handshake.
    up.once('secureConnect', () => {
      if (secure) return;
      if (!spec.ocsp) return start();
      this.vetting.add(up);
      spec.ocsp.check(chain()).then(() => {
        this.vetting.delete(up);
        if (!up.destroyed) start();
      }, fail);
    });
  }

  /**
   * A health probe: one TLS handshake to the target under the same policy,
   * then close without sending a byte of NFS.
   */
  probe(timeoutMs: number): Promise<ProbeResult> {
    const started = performance.now();
    const at = new Date().toISOString();
    const { netns } = this.spec;
    if (!netns) return this.probeOver(null, timeoutMs, started, at);
    const ended = async (err: unknown): Promise<ProbeResult> => {
      const { code, message } = await this.classify(err);
      return { ok: false, at, duration_seconds: secondsSince(started), code, message, cert_expiry: null };
    };
    return this.reachInNamespace(netns, timeoutMs).then((raw) => this.probeOver(raw, timeoutMs, started, at), ended);
  }

  private probeOver(raw: Socket | null, timeoutMs: number, started: number, at: string): Promise<ProbeResult> {
    return new Promise((resolve) => {
      let done = false;
      // No session is offered: a probe makes a full handshake, so it sees the certificate as a new connection would.
      const sock = this.dial(undefined, undefined, raw);
      const finish = (r: Omit<ProbeResult, 'at' | 'duration_seconds'>): void => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        sock.destroy();
        resolve({ ...r, at, duration_seconds: secondsSince(started) });
      };
      const timer = setTimeout(() => {
        const e = this.timeoutError(timeoutMs, sock);
        finish({ ok: false, code: e.code, message: e.message, cert_expiry: null });
      }, Math.max(0, timeoutMs - (performance.now() - started)));
      const failed = (err: unknown): void => {
        if (done) return;
        // The certificate of a refused server still tells when it expires.
        const cert_expiry = certExpiry(sock);
        void this.classify(err).then(({ code, message }) => finish({ ok: false, code, message, cert_expiry }));
      };
      sock.once('error', failed);
      // With `ocsp`, a probe asks the responders as a connection does (their answers are kept, so mostly not anew).
      sock.once('secureConnect', () => {
        const ok = (): void => finish({ ok: true, code: null, message: null, cert_expiry: certExpiry(sock) });
        if (!this.spec.ocsp) return ok();
        this.vetting.add(sock);
        this.spec.ocsp.check(peerChain(sock.getPeerCertificate(true))).then(ok, failed);
      });
    });
  }

  /**
   * TLS to the target under the tunnel's policy, with TCP_NODELAY and
   * keep-alive. tls.connect opens the TCP connection itself, since it honours
   * `onread` only then.
   */
  private dial(session: Buffer | undefined, onread?: OnReadOpts, raw: Socket | null = null): TLSSocket {
    const { spec, names, resolving } = this;
    // tls.connect honours allowHalfOpen and onread (Node passes them to the TLSSocket) though @types/node omits them.
    // The lookup answers asynchronously, so its callback finds `up` assigned.
    const up: TLSSocket = tlsConnect({
      // Over a socket that a namespace's helper connected, or a connection of its own.
      ...(raw ? { socket: raw } : { host: spec.address, port: spec.targetPort }),
      secureContext: spec.secureContext,
      servername: spec.certName,
      // Said, not left to the default, which NODE_TLS_REJECT_UNAUTHORIZED=0 in the environment would turn off.
      rejectUnauthorized: true,
      checkServerIdentity: this.verify,
      allowHalfOpen: true,
      session,
      ...(onread ? { onread } : {}),
      ...(names && !raw ? { lookup: names.netLookup(() => resolving.delete(up), () => !up.destroyed) } : {}),
    } as unknown as ConnectionOptions);
    if (names && !raw) resolving.add(up);
    up.setNoDelay(true);
    up.setKeepAlive(true, KEEPALIVE_DELAY_MS);
    return up;
  }

  /** The mount target as messages name it: "10.0.1.25:2049", "[fd00::25]:2049". */
  private get targetText(): string {
    return joinHost(this.spec.address, this.spec.targetPort);
  }

  private timeoutError(ms: number, sock: object): RelayError {
    if (this.resolving.has(sock)) {
      const failure = this.names?.failure;
      const why = failure ? ` (the resolver failed with ${failure}; asked again every ${DNS_RETRY_MS / 1000} s)` : '';
      return new RelayError('DNS_FAILED', `DNS has not answered for ${this.spec.address} after ${ms} ms${why}`);
    }
    if (this.vetting.has(sock)) {
      return new RelayError('TLS_CERT_STATUS_UNKNOWN', `No OCSP answer on the certificates of ${this.targetText} (${this.spec.certName}) after ${ms} ms (the ocsp option)`);
    }
    return new RelayError('CONNECT_TIMEOUT', `No TLS session with ${this.targetText} after ${ms} ms`);
  }

  /** Our code for a failed connection, asking the server once more when its alert was ambiguous. */
  private async classify(err: unknown): Promise<{ code: ErrorCode; message: string }> {
    const { spec } = this;
    let code = classifyUpstreamError(err);
    // OpenSSL's reason, not its whole error line (tlsErrorText).
    let message = err instanceof RelayError ? err.message : `TLS connection to ${this.targetText} (${spec.certName}) refused: ${tlsErrorText(err)}`;
    // Nothing was refused: the daemon could not open a socket at all.
    if (code === 'FD_LIMIT') message = `Cannot open a connection to ${this.targetText}: no file descriptor left (${(err as NodeJS.ErrnoException).code})`;
    // The diagnosis dials from the daemon's own namespace, which may not reach a namespace's target.
    if (AMBIGUOUS.has(code) && !spec.netns) {
      const now = Date.now();
      if (!this.diagnosis || now - this.diagnosis.at > DIAGNOSIS_TTL_MS) {
        this.diagnosis = { at: now, result: diagnoseRefusal(spec.address, spec.targetPort, spec.certName, spec.maxVersion) };
      }
      const found = await this.diagnosis.result;
      if (found) {
        code = found.code;
        message += ` (${found.detail})`;
      }
    }
    return { code, message };
  }

  /** An established session ended by a TLS error is recorded; a reset or close is a normal end. */
  private sessionFailed(err: unknown): void {
    const code = classifySessionError(err);
    if (code === null) return;
    const { spec, counters } = this;
    const message = `TLS session with ${this.targetText} (${spec.certName}) ended: ${tlsErrorText(err)}`;
    counters.sessionFailures.set(code, (counters.sessionFailures.get(code) ?? 0) + 1);
    this.lastError = { code, message, at: new Date().toISOString() };
    this.emit('session_failed', new RelayError(code, message, { cause: err }));
  }

  private async handshakeFailed(err: unknown): Promise<void> {
    const { counters } = this;
    this.session = undefined;
    counters.connectionsFailed++;
    const failedAt = new Date().toISOString();
    const { code, message } = await this.classify(err);
    counters.handshakeFailures.set(code, (counters.handshakeFailures.get(code) ?? 0) + 1);
    this.lastError = { code, message, at: new Date().toISOString() };
    // Classifying can take a handshake of its own: a connection verified meanwhile is the later news.
    if (!this.lastHandshake || this.lastHandshake.at <= failedAt) this.lastHandshake = { ok: false, at: failedAt, code, message };
    // A cause of our own (DNS: no such name) keeps its word on whether a retry can mend it.
    const final = err instanceof RelayError && err.code === code ? err.final : undefined;
    this.emit('handshake_failed', new RelayError(code, message, { cause: err, final }));
  }
}
