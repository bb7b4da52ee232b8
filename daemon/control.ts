// The control socket: newline-delimited JSON requests in, responses out. A bad
// request gets an error response; the connection and the daemon stay up.
import { createServer, connect, type Server, type Socket } from 'node:net';
import { chmod, rm } from 'node:fs/promises';
import { RelayError, asRelayError } from './errors.js';
import type { Logger } from './log.js';
import { MAX_REQUEST_BYTES, PROTOCOL_VERSION, type Request, type Response } from './protocol.js';

export type Handler = (params: Record<string, unknown>) => Promise<unknown> | unknown;

export class ControlServer {
  private server: Server | null = null;
  private readonly clients = new Set<Socket>();

  constructor(
    private readonly path: string,
    private readonly handlers: Record<string, Handler>,
    private readonly log: Logger,
  ) {}

  async listen(): Promise<void> {
    await this.ensureNotRunning();
    const server = createServer((sock) => this.serve(sock));
    // umask first, so the socket is never reachable by others, not even briefly.
    const oldMask = process.umask(0o177);
    try {
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.path, () => {
          server.off('error', reject);
          resolve();
        });
      });
    } finally {
      process.umask(oldMask);
    }
    await chmod(this.path, 0o600);
    server.on('error', (err) => this.log.error('control.error', { code: 'INTERNAL', msg: err.message }));
    this.server = server;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    for (const c of this.clients) c.destroy();
    if (server) await new Promise<void>((r) => server.close(() => r()));
    await rm(this.path, { force: true });
  }

  /** A socket file left by a crash is removed; a live daemon behind it is not displaced (that is an error). */
  async ensureNotRunning(): Promise<void> {
    const alive = await new Promise<boolean>((resolve) => {
      const probe = connect(this.path);
      probe.once('connect', () => {
        probe.destroy();
        resolve(true);
      });
      probe.once('error', () => resolve(false));
    });
    if (alive) {
      throw new RelayError('LISTEN_FAILED', `Another efs-relayd is already serving ${this.path}`, {
        hint: 'Stop the other daemon first (`systemctl stop efs-relayd`), or give this one another state_dir/control_socket.',
      });
    }
    await rm(this.path, { force: true });
  }

  private serve(sock: Socket): void {
    this.clients.add(sock);
    sock.on('close', () => this.clients.delete(sock));
    sock.on('error', () => sock.destroy());
    sock.setEncoding('utf8');
    let buf = '';
    let discarding = false; // inside an oversized line: drop bytes until its newline
    let chain: Promise<void> = Promise.resolve();
    const reply = (res: Response): void => {
      if (!sock.destroyed) sock.write(JSON.stringify(res) + '\n');
    };
    sock.on('data', (chunk: string) => {
      buf += chunk;
      for (;;) {
        const nl = buf.indexOf('\n');
        if (nl < 0) break;
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (discarding) {
          discarding = false;
          continue;
        }
        if (line.trim() === '') continue;
        chain = chain.then(() => this.handle(line).then(reply));
      }
      if (!discarding && Buffer.byteLength(buf) > MAX_REQUEST_BYTES) {
        buf = '';
        discarding = true;
        chain = chain.then(() =>
          reply(errorResponse(null, new RelayError('CONTROL_REQUEST_TOO_LARGE', `Request line is longer than ${MAX_REQUEST_BYTES} bytes; it was discarded`))),
        );
      } else if (discarding) {
        buf = '';
      }
    });
  }

  private async handle(line: string): Promise<Response> {
    if (Buffer.byteLength(line) > MAX_REQUEST_BYTES) {
      return errorResponse(null, new RelayError('CONTROL_REQUEST_TOO_LARGE', `Request line is longer than ${MAX_REQUEST_BYTES} bytes; it was discarded`));
    }
    let req: Request;
    try {
      req = parseRequest(line);
    } catch (err) {
      const e = asRelayError(err);
      this.log.warn('control.bad_request', { code: e.code, msg: e.message });
      return errorResponse(idOf(line), e);
    }
    const handler = Object.hasOwn(this.handlers, req.method) ? this.handlers[req.method] : undefined;
    if (!handler) {
      return errorResponse(req.id, new RelayError('CONTROL_UNKNOWN_METHOD', `Unknown method "${req.method}" (known: ${Object.keys(this.handlers).join(', ')})`));
    }
    try {
      const result = await handler(req.params ?? {});
      return { v: PROTOCOL_VERSION, id: req.id, ok: true, result };
    } catch (err) {
      const e = asRelayError(err);
      if (e.code === 'INTERNAL') this.log.error('control.internal_error', { code: e.code, msg: e.message, method: req.method });
      return errorResponse(req.id, e);
    }
  }
}

function errorResponse(id: Response['id'], err: RelayError): Response {
  return { v: PROTOCOL_VERSION, id, ok: false, error: err.toJSON() };
}

/** Best effort: echo the id of a request that failed validation. */
function idOf(line: string): Response['id'] {
  try {
    const id = (JSON.parse(line) as { id?: unknown }).id;
    return typeof id === 'number' || typeof id === 'string' ? id : null;
  } catch {
    return null;
  }
}

export function parseRequest(line: string): Request {
  const bad = (what: string): never => {
    throw new RelayError('CONTROL_BAD_REQUEST', what);
  };
  let data: unknown;
  try {
    data = JSON.parse(line);
  } catch (err) {
    return bad(`Request is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof data !== 'object' || data === null || Array.isArray(data)) return bad('Request must be a JSON object');
  const r = data as Record<string, unknown>;
  if (typeof r.v !== 'number') bad('Request field "v" (protocol version) must be a number');
  if (r.v !== PROTOCOL_VERSION)
    throw new RelayError('CONTROL_VERSION_MISMATCH', `Protocol version ${String(r.v)} is not supported (this daemon speaks ${PROTOCOL_VERSION})`);
  if (typeof r.id !== 'number' && typeof r.id !== 'string') bad('Request field "id" must be a number or a string');
  if (typeof r.method !== 'string') bad('Request field "method" must be a string');
  if (r.params !== undefined && (typeof r.params !== 'object' || r.params === null || Array.isArray(r.params)))
    bad('Request field "params" must be an object');
  return r as unknown as Request;
}
