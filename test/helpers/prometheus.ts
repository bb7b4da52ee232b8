// A real Prometheus (Debian's package) scraping the daemon every second.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { run, sleep, tempDir } from './daemon.js';

export async function prometheusUnavailable(): Promise<string | null> {
  for (const bin of ['prometheus', 'promtool']) {
    if ((await run('sh', ['-c', `command -v ${bin}`])).code !== 0) return `${bin} is not installed (as root: apt-get install prometheus)`;
  }
  return null;
}

export interface Sample {
  metric: Record<string, string>;
  value: [number, string];
}

export class Prometheus {
  private proc: ChildProcess | null = null;
  private log = '';
  readonly url: string;

  constructor(private readonly target: string, readonly port = 19090) {
    this.url = `http://127.0.0.1:${port}`;
  }

  async start(): Promise<this> {
    const dir = tempDir('prometheus');
    const config = join(dir, 'prometheus.yml');
    writeFileSync(config, stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      scrape_configs: [{ job_name: 'efs-relay', static_configs: [{ targets: [this.target] }] }],
    }));
    this.proc = spawn('prometheus', [
      `--config.file=${config}`, `--storage.tsdb.path=${join(dir, 'data')}`, `--web.listen-address=127.0.0.1:${this.port}`,
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    this.proc.stderr?.on('data', (d: Buffer) => (this.log += d.toString()));
    for (let i = 0; i < 200; i++) {
      try {
        if ((await fetch(`${this.url}/-/ready`)).ok) return this;
      } catch {
        // not listening yet
      }
      await sleep(100);
    }
    throw new Error(`prometheus did not become ready:\n${this.log.slice(-2000)}`);
  }

  async query(expr: string): Promise<Sample[]> {
    const res = await fetch(`${this.url}/api/v1/query?query=${encodeURIComponent(expr)}`);
    const body = (await res.json()) as { status: string; data: { result: Sample[] }; error?: string };
    if (body.status !== 'success') throw new Error(`query ${expr} failed: ${body.error}`);
    return body.data.result;
  }

  /** The single value of an instant query, or null when it has no result. */
  async value(expr: string): Promise<number | null> {
    const r = await this.query(expr);
    return r.length ? Number(r[0]!.value[1]) : null;
  }

  async stop(): Promise<void> {
    if (!this.proc || this.proc.exitCode !== null) return;
    const exited = new Promise((r) => this.proc?.once('exit', r));
    this.proc.kill('SIGTERM');
    await exited;
  }
}
