// The HTTP endpoint: /metrics for Prometheus and /healthz for load balancers
// and humans. Loopback only, unless metrics.allow_remote says otherwise.
import { createServer, type Server } from 'node:http';
import type { Metrics } from './metrics.js';
import { RelayError } from './errors.js';
import { splitListen, type Config } from './config.js';
import type { Logger } from './log.js';
import { isLoopback } from './relay.js';
import type { TunnelManager } from './tunnels.js';
import { health } from './health.js';

/** Why metrics.listen may not be served: a non-loopback address without allow_remote. Null when it may. */
export function metricsListenRefusal(metrics: Config['metrics']): RelayError | null {
  if (metrics.listen === '' || metrics.allow_remote || isLoopback(splitListen(metrics.listen).host)) return null;
  return new RelayError('CONFIG_INVALID', `metrics.listen ${metrics.listen} is not a loopback address`, {
    hint: 'Set metrics.allow_remote: true to serve metrics beyond this host, or listen on 127.0.0.1.',
  });
}

export class MetricsServer {
  private server: Server | null = null;

  constructor(
    private readonly cfg: Config,
    /** Called only when the endpoint is on: the metrics sample the event loop's delay on a timer. */
    private readonly makeMetrics: () => Metrics,
    private readonly manager: TunnelManager,
    private readonly log: Logger,
  ) {}

  /** Listen on metrics.listen; an empty listen means no endpoint. */
  async start(): Promise<void> {
    if (this.cfg.metrics.listen === '') return;
    const { host, port } = splitListen(this.cfg.metrics.listen);
    const refused = metricsListenRefusal(this.cfg.metrics);
    if (refused) throw refused;
    if (!isLoopback(host)) {
      this.log.warn('metrics.remote', { msg: `serving /metrics and /healthz on ${this.cfg.metrics.listen}, reachable from other hosts (metrics.allow_remote is on)` });
    }
    const metrics = this.makeMetrics();
    const server = createServer((req, res) => {
      const path = (req.url ?? '/').split('?')[0];
      if (path !== '/metrics' && path !== '/healthz') {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics or /healthz\n');
        return;
      }
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('method not allowed\n');
        return;
      }
      if (path === '/healthz') {
        const body = health(this.manager);
        res.writeHead(body.status === 'ok' ? 200 : 503, { 'content-type': 'application/json' });
        res.end(req.method === 'HEAD' ? undefined : JSON.stringify(body) + '\n');
        return;
      }
      metrics.scrape().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(req.method === 'HEAD' ? undefined : text);
        },
        (err: Error) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) =>
        reject(new RelayError('LISTEN_FAILED', `Cannot serve metrics on ${this.cfg.metrics.listen}: ${err.message}`)));
      server.listen({ host, port }, () => resolve());
    });
    this.server = server;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (s) await new Promise<void>((r) => { s.close(() => r()); s.closeAllConnections(); });
  }
}
