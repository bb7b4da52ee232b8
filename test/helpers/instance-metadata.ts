// An EC2 instance metadata service stand-in on loopback: the token, the
// region and (when given) the availability zone ID and the instance's IAM
// role with its credentials, as IMDS answers them. `v2` refuses a request without a valid token
// (an instance that requires IMDSv2); `v1` has no token endpoint (the
// fallback efs-utils takes); `silent` accepts the connection and never answers;
// `busy` answers HTTP 503 to everything. `mode` may change while it runs, as a
// service that comes up late does.
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface MetadataRequest {
  method: string;
  path: string;
  token: string | null;
  ttl: string | null;
}

export type MetadataMode = 'v2' | 'v1' | 'silent' | 'busy';

export class InstanceMetadataStandIn {
  readonly requests: MetadataRequest[] = [];
  private server: Server | null = null;
  /** The session token it hands out, and the only one it answers the region to in v2 mode. */
  readonly token = `token-${Math.random().toString(36).slice(2)}`;

  /**
   * `azId`: what placement/availability-zone-id answers; `role`: the instance profile's role and the credentials
   * document iam/security-credentials/NAME answers. Without them, 404, as for paths the service does not have.
   */
  constructor(private readonly opts: { host: string; mode: MetadataMode; region: string; azId?: string; role?: { name: string; document: string } }) {}

  set role(role: { name: string; document: string } | undefined) {
    this.opts.role = role;
  }

  set mode(mode: MetadataMode) {
    this.opts.mode = mode;
  }

  set azId(azId: string | undefined) {
    this.opts.azId = azId;
  }

  get url(): string {
    return `http://${this.opts.host}:${(this.server!.address() as AddressInfo).port}`;
  }

  async start(): Promise<this> {
    this.server = createServer((req, res) => this.answer(req, res));
    await new Promise<void>((resolve, reject) => {
      this.server!.once('error', reject);
      this.server!.listen(0, this.opts.host, resolve);
    });
    return this;
  }

  private answer(req: IncomingMessage, res: import('node:http').ServerResponse): void {
    const header = (name: string): string | null => (typeof req.headers[name] === 'string' ? req.headers[name] : null);
    this.requests.push({ method: req.method ?? '', path: req.url ?? '', token: header('x-aws-ec2-metadata-token'), ttl: header('x-aws-ec2-metadata-token-ttl-seconds') });
    if (this.opts.mode === 'silent') return; // the request hangs until the client gives up
    if (this.opts.mode === 'busy') return void res.writeHead(503).end();
    if (req.method === 'PUT' && req.url === '/latest/api/token') {
      if (this.opts.mode === 'v1') return void res.writeHead(404).end();
      return void res.writeHead(200, { 'content-type': 'text/plain' }).end(this.token);
    }
    if (req.method === 'GET' && req.url === '/latest/meta-data/placement/region') {
      if (this.opts.mode === 'v2' && header('x-aws-ec2-metadata-token') !== this.token) return void res.writeHead(401).end();
      return void res.writeHead(200, { 'content-type': 'text/plain' }).end(this.opts.region);
    }
    if (req.method === 'GET' && req.url === '/latest/meta-data/placement/availability-zone-id' && this.opts.azId !== undefined) {
      if (this.opts.mode === 'v2' && header('x-aws-ec2-metadata-token') !== this.token) return void res.writeHead(401).end();
      return void res.writeHead(200, { 'content-type': 'text/plain' }).end(this.opts.azId);
    }
    const role = this.opts.role;
    const creds = '/latest/meta-data/iam/security-credentials/';
    if (req.method === 'GET' && role && (req.url === creds || req.url === creds + role.name)) {
      if (this.opts.mode === 'v2' && header('x-aws-ec2-metadata-token') !== this.token) return void res.writeHead(401).end();
      return void res.writeHead(200, { 'content-type': 'text/plain' }).end(req.url === creds ? role.name : role.document);
    }
    res.writeHead(404).end();
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((resolve) => (this.server ? this.server.close(() => resolve()) : resolve()));
  }
}
