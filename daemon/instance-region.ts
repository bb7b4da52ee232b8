// The AWS region from EC2 instance metadata: efs-utils' last source of a
// region, after the region= option, AWS_REGION, AWS_DEFAULT_REGION and the
// config file. Without it, the plain fstab line `fs-12345678 /mnt efs
// _netdev,tls 0 0` would need efs.region on every EC2 instance. Asked at
// start, and only when efs.region is not set; when the service did not
// answer, asked again in the background and when a request needs the region,
// so that one slow answer at boot does not fail every such mount until a restart.
// Also the instance's availability zone ID, which only crossaccount mounts
// need, asked when one does.
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { REGION } from './options.js';
import { Backoff } from './backoff.js';
import { ask, type Answer } from './http-ask.js';

/** What instance metadata said of the region: the region, or why there is none (for the NO_REGION message). */
export type MetadataRegion = { region: string; why: null } | { region: null; why: string };

/** One ask's outcome; `again`: it may answer another time (no answer, or a server error), so it is worth asking again. */
export interface MetadataLookup {
  result: MetadataRegion;
  again: boolean;
}

/** Each request's limit, connect to last byte: where there is no metadata service (off EC2), start-up waits this long at most twice. */
const REQUEST_TIMEOUT_MS = 1_000;
/** The token is used at once, for one request. */
const TOKEN_TTL_S = 60;

/** 429 (throttled) and 5xx pass; a 401, 403 or 404 is how this instance's metadata is set up, and stays. */
function passes(status: number): boolean {
  return status === 429 || status >= 500;
}

/** One item of instance metadata, or why there is none; `again` as in MetadataLookup. */
export type ItemLookup = { value: string; why: null; again: false } | { value: null; why: string; again: boolean };

/**
 * IMDSv2 (a session token, then the item under /latest/meta-data/ with it), falling back to a request without a
 * token (IMDSv1) when the token is refused, as efs-utils does. `what` names the item in messages; `valid` judges
 * its value.
 */
export async function metadataItem(base: string, path: string, what: string, valid: RegExp): Promise<ItemLookup> {
  const at = `instance metadata at ${base}`;
  const none = (why: string, again: boolean): ItemLookup => ({ value: null, why, again });
  let token: string | null = null;
  try {
    const t = await ask(`${base}/latest/api/token`, 'PUT', { 'X-aws-ec2-metadata-token-ttl-seconds': String(TOKEN_TTL_S) }, REQUEST_TIMEOUT_MS);
    // A busy service is not one that refuses tokens: asking without one would only mislead the message.
    if (passes(t.status)) return none(`${at} answered HTTP ${t.status} for a token`, true);
    if (t.status === 200 && t.body !== '') token = t.body;
  } catch (err) {
    return none(`${at} did not answer (${(err as Error).message})`, true);
  }
  let r: Answer;
  try {
    r = await ask(`${base}/latest/meta-data/${path}`, 'GET', token === null ? {} : { 'X-aws-ec2-metadata-token': token }, REQUEST_TIMEOUT_MS);
  } catch (err) {
    return none(`${at} did not answer (${(err as Error).message})`, true);
  }
  if (r.status !== 200) return none(`${at} answered HTTP ${r.status} for the ${what}${token === null ? ' (without a token, which it refused)' : ''}`, passes(r.status));
  const value = r.body.trim();
  if (!valid.test(value)) return none(`${at} gave "${value.slice(0, 40)}", which is not ${/^[aeiou]/.test(what) ? 'an' : 'a'} ${what}`, false);
  return { value, why: null, again: false };
}

export async function regionFromMetadata(base: string): Promise<MetadataLookup> {
  const r = await metadataItem(base, 'placement/region', 'region', REGION);
  return r.value === null ? { result: { region: null, why: r.why }, again: r.again } : { result: { region: r.value, why: null }, again: false };
}

/**
 * An availability zone ID (use1-az1; a Local Zone's usw2-lax1-az1), the same zone in every account, unlike its
 * name. Judged only as one DNS label, since it goes into a DNS name: AWS adds new forms.
 */
const AZ_ID = /^(?=.{1,63}$)[a-z0-9]+(-[a-z0-9]+)*$/;

/** What instance metadata said of this instance's availability zone ID (crossaccount mounts), or why there is none. */
export type MetadataAzId = { az_id: string; why: null } | { az_id: null; why: string };

/** The zone ID from instance metadata at `base` (efs.metadata_url; "" turns asking off). */
export async function azIdFromMetadata(base: string): Promise<MetadataAzId> {
  if (base === '') return { az_id: null, why: 'instance metadata is not asked (efs.metadata_url is "")' };
  const r = await metadataItem(base, 'placement/availability-zone-id', 'availability zone ID', AZ_ID);
  return r.value === null ? { az_id: null, why: r.why } : { az_id: r.value, why: null };
}

/** What the daemon knows of the instance's region, as those who resolve targets read it. */
export interface RegionSource {
  readonly current: MetadataRegion;
  /**
   * Before a request that can only take its region from instance metadata: ask again now if the last ask went
   * unanswered (waits for an ask already under way). Does nothing once the region is known, or when metadata
   * answered that it has none.
   */
  askAgainIfUnanswered(): Promise<void>;
  /** This instance's availability zone ID, asked when a crossaccount mount or the EFS API fallback needs it (InstanceRegion.azId). */
  azId(): Promise<MetadataAzId>;
}

/** Background asks after an unanswered one: 5 s, doubling, then every 5 minutes. */
const RETRY_FIRST_MS = 5_000;
const RETRY_MAX_MS = 300_000;

/** The daemon's knowledge of the instance's region from metadata. */
export class InstanceRegion implements RegionSource {
  current: MetadataRegion;
  private again = false;
  private asking: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly retryWait = new Backoff(RETRY_FIRST_MS, RETRY_MAX_MS);
  private stopped = false;
  private asks = 0;
  private readonly listeners: Array<(region: string) => void> = [];
  private knownAzId: MetadataAzId | null = null;
  private askingAzId: Promise<MetadataAzId> | null = null;

  constructor(private readonly cfg: Config, private readonly log: Logger) {
    this.current = cfg.efs.region !== '' ? { region: null, why: 'instance metadata is not asked (efs.region is set)' }
      : cfg.efs.metadata_url === '' ? { region: null, why: 'instance metadata is not asked (efs.metadata_url is "")' }
        : { region: null, why: 'instance metadata has not answered yet' };
  }

  /**
   * This instance's availability zone ID, for crossaccount mounts: asked when one needs it, since most hosts never
   * do; an answer is kept, and a failure asked again at the next need (a mount, an fstab retry).
   */
  azId(): Promise<MetadataAzId> {
    if (this.knownAzId) return Promise.resolve(this.knownAzId);
    this.askingAzId ??= azIdFromMetadata(this.cfg.efs.metadata_url).then((r) => {
      this.askingAzId = null;
      if (r.az_id !== null) {
        this.knownAzId = r;
        this.log.info('region.az_id_from_metadata', { msg: `this instance's availability zone ID is ${r.az_id}: crossaccount mounts reach its mount target, and a mount target from the EFS API is taken in it`, az_id: r.az_id, url: this.cfg.efs.metadata_url });
      }
      return r;
    });
    return this.askingAzId;
  }

  /** Called once the region is known, after an ask that did not find it at start. */
  onRegion(fn: (region: string) => void): void {
    this.listeners.push(fn);
  }

  /** The first ask, at start; unless efs.region names the region already or metadata is off. */
  async lookup(): Promise<void> {
    if (this.cfg.efs.region !== '' || this.cfg.efs.metadata_url === '') return;
    await this.ask('at start');
  }

  askAgainIfUnanswered(): Promise<void> {
    if (this.asking) return this.asking;
    if (!this.again || this.stopped) return Promise.resolve();
    return this.ask('for a request');
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private ask(why: 'at start' | 'for a request' | 'in the background'): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    const url = this.cfg.efs.metadata_url;
    const first = this.asks++ === 0;
    this.asking = regionFromMetadata(url).then(({ result, again }) => {
      this.asking = null;
      this.current = result;
      this.again = again;
      if (result.region !== null) {
        this.log.info('region.from_metadata', { msg: `file systems that name no region are in ${result.region}, the region of this instance`, region: result.region, url, asked: why });
        if (!first) for (const fn of this.listeners) fn(result.region);
        return;
      }
      // Logged once: a service that stays silent (off EC2) would otherwise fill the log every 5 minutes.
      if (first) {
        this.log.info('region.metadata_unavailable', {
          msg: `${result.why}; a file system that names no region needs region=, AWS_REGION or efs.region (set efs.metadata_url: "" off EC2 to skip asking)` +
            (again ? `; asked again in ${RETRY_FIRST_MS / 1000} s, then less often, and whenever a request needs the region` : ''),
          url,
        });
      }
      if (again && !this.stopped) {
        this.timer = setTimeout(() => void this.ask('in the background'), this.retryWait.take());
        this.timer.unref();
      }
    });
    return this.asking;
  }
}
