// The AWS region from EC2 instance metadata: efs-utils' last source of a
// region, after the region= option, AWS_REGION, AWS_DEFAULT_REGION and the
// config file. Without it, the plain fstab line `fs-12345678 /mnt efs
// _netdev,tls 0 0` would need efs.region on every EC2 instance. Asked once,
// at start, and only when efs.region is not set.
import { request } from 'node:http';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { REGION } from './options.js';

/** What instance metadata said of the region: the region, or why there is none (for the NO_REGION message). */
export type MetadataRegion = { region: string; why: null } | { region: null; why: string };

/** Each request's limit, connect to last byte: where there is no metadata service (off EC2), start-up waits this long at most twice. */
const REQUEST_TIMEOUT_MS = 1_000;
/** The token is used at once, for one request. */
const TOKEN_TTL_S = 60;

interface Answer { status: number; body: string }

function ask(url: string, method: 'GET' | 'PUT', headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    // agent: false, so that no kept-alive socket outlives the two requests of a start-up.
    const req = request(url, { method, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        if (body.length < 4096) body += d;
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, body });
      });
      res.on('error', reject);
    });
    // The whole request, not only an idle socket, so that a trickling answer cannot hold start-up.
    const timer = setTimeout(() => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS / 1000} s`)), REQUEST_TIMEOUT_MS);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    req.end();
  });
}

/**
 * IMDSv2 (a session token, then the region with it), falling back to a
 * request without a token (IMDSv1) when the token is refused, as efs-utils does.
 */
export async function regionFromMetadata(base: string): Promise<MetadataRegion> {
  const at = `instance metadata at ${base}`;
  let token: string | null = null;
  try {
    const t = await ask(`${base}/latest/api/token`, 'PUT', { 'X-aws-ec2-metadata-token-ttl-seconds': String(TOKEN_TTL_S) });
    if (t.status === 200 && t.body !== '') token = t.body;
  } catch (err) {
    return { region: null, why: `${at} did not answer (${(err as Error).message})` };
  }
  let r: Answer;
  try {
    r = await ask(`${base}/latest/meta-data/placement/region`, 'GET', token === null ? {} : { 'X-aws-ec2-metadata-token': token });
  } catch (err) {
    return { region: null, why: `${at} did not answer (${(err as Error).message})` };
  }
  if (r.status !== 200) return { region: null, why: `${at} answered HTTP ${r.status} for the region${token === null ? ' (without a token, which it refused)' : ''}` };
  const region = r.body.trim();
  if (!REGION.test(region)) return { region: null, why: `${at} gave "${region.slice(0, 40)}", which is not a region` };
  return { region, why: null };
}

/** What the daemon knows of the instance's region, as those who resolve targets read it. */
export interface RegionSource {
  readonly current: MetadataRegion;
}

/** The daemon's one answer from instance metadata. */
export class InstanceRegion implements RegionSource {
  current: MetadataRegion;

  constructor(private readonly cfg: Config, private readonly log: Logger) {
    this.current = cfg.efs.region !== '' ? { region: null, why: 'instance metadata is not asked (efs.region is set)' }
      : cfg.efs.metadata_url === '' ? { region: null, why: 'instance metadata is not asked (efs.metadata_url is "")' }
        : { region: null, why: 'instance metadata has not answered yet' };
  }

  /** Ask, unless efs.region names the region already or metadata is off. */
  async lookup(): Promise<void> {
    const url = this.cfg.efs.metadata_url;
    if (this.cfg.efs.region !== '' || url === '') return;
    this.current = await regionFromMetadata(url);
    if (this.current.region !== null) {
      this.log.info('region.from_metadata', { msg: `file systems that name no region are in ${this.current.region}, the region of this instance`, region: this.current.region, url });
    } else {
      this.log.info('region.metadata_unavailable', {
        msg: `${this.current.why}; a file system that names no region needs region=, AWS_REGION or efs.region (set efs.metadata_url: "" off EC2 to skip asking)`, url,
      });
    }
  }
}
