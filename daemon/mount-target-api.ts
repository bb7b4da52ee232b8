// The mount target of a file system, asked of the EFS API when DNS has no
// address for its name: efs-utils' fall_back_to_mount_target_ip_address
// (on by default there), for VPCs without DNS hostnames and hosts that do
// not use the VPC's resolver. DescribeMountTargets gives each mount target
// with its zone; the one in this instance's zone is taken (az= names
// another), as efs-utils takes it. Only where connections go comes from
// here: the certificate is still verified against the file system's name.
import { ask } from './http-ask.js';
import { signApiRequest } from './sigv4.js';
import { asRelayError } from './errors.js';
import { awsCredentials, credentialPlaces, type AwsCredentials } from './aws-credentials.js';
import { dnsNameSuffix, isCrossAccount } from './target.js';
import type { Config } from './config.js';
import type { MountOptions } from './options.js';

/** The API's answer within this, or the fallback fails (a connection waits for it within its own connect timeout too). */
const API_TIMEOUT_MS = 5_000;

export interface MountTargetQuery {
  fsId: string;
  region: string;
  /** The EFS API's base URL, ending in / (efs.api_url, or https://elasticfilesystem.REGION.SUFFIX/). */
  apiUrl: string;
  /** az=: the zone's name, as this account names it. */
  az: string | null;
  /** This instance's zone ID from instance metadata, when az= is not given; null when unknown (off EC2). */
  azId: string | null;
}

export interface MountTarget {
  address: string;
  /** The mount target's ID and zone, for the status line: "fsmt-… in use1-az1 (us-east-1a)". */
  description: string;
}

/** Why the API gave no mount target; `answered`: the API said so (a retry meets the same), not a failure to reach it. */
export class NoMountTarget extends Error {
  constructor(message: string, readonly answered: boolean) {
    super(message);
  }
}

interface Described {
  MountTargetId?: unknown;
  LifeCycleState?: unknown;
  IpAddress?: unknown;
  Ipv6Address?: unknown;
  AvailabilityZoneId?: unknown;
  AvailabilityZoneName?: unknown;
}

const text = (v: unknown): string => (typeof v === 'string' ? v : '');

/** The mount target to connect to, or NoMountTarget saying why there is none, in efs-utils' words where it has them. */
export async function mountTargetFromApi(q: MountTargetQuery, credentials: AwsCredentials): Promise<MountTarget> {
  const url = new URL(`2015-02-01/mount-targets?FileSystemId=${encodeURIComponent(q.fsId)}`, q.apiUrl);
  let r;
  try {
    const signed = signApiRequest({ method: 'GET', url, body: '', region: q.region, service: 'elasticfilesystem', date: new Date() }, credentials);
    const { host: _host, ...headers } = signed; // Node sends Host itself, the same value
    r = await ask(url.href, 'GET', { ...headers, Accept: 'application/json' }, API_TIMEOUT_MS);
  } catch (err) {
    throw new NoMountTarget(`could not connect to the EFS API at ${q.apiUrl} for DescribeMountTargets (${(err as Error).message})`, false);
  }
  let body: { MountTargets?: unknown; ErrorCode?: unknown; Message?: unknown; message?: unknown } = {};
  try {
    const parsed: unknown = JSON.parse(r.body);
    if (typeof parsed === 'object' && parsed !== null) body = parsed as typeof body;
  } catch {
    // An answer that is not a JSON object is said by its status below.
  }
  if (r.status !== 200) {
    const code = text(body.ErrorCode);
    const why = text(body.Message) || text(body.message);
    const message = code === 'FileSystemNotFound' ? `the EFS API says the file system ${q.fsId} is not found${why ? ` (${why})` : ''}`
      : `the EFS API refused DescribeMountTargets with the credentials from ${credentials.source} (HTTP ${r.status}${code ? ` ${code}` : ''}${why ? `: ${why}` : ''})`;
    // Throttling and the service's own failures pass; a refusal or an unknown file system does not.
    throw new NoMountTarget(message, r.status >= 400 && r.status < 500 && code !== 'ThrottlingException');
  }
  const all = (Array.isArray(body.MountTargets) ? body.MountTargets : []) as Described[];
  if (all.length === 0) {
    throw new NoMountTarget(`Cannot find mount target for the file system ${q.fsId}, please create a mount target in ${q.az ?? q.azId ?? 'any availability zone'}.`, true);
  }
  const available = all.filter((m) => m.LifeCycleState === 'available' && (text(m.IpAddress) || text(m.Ipv6Address)));
  if (available.length === 0) {
    throw new NoMountTarget(`No mount target created for the file system ${q.fsId} is in available state yet, please retry in 5 minutes.`, false);
  }
  const zones = `Available mount target(s) are in az ${available.map((m) => text(m.AvailabilityZoneName)).join(', ')}`;
  let chosen: Described | undefined;
  if (q.az !== null || q.azId !== null) {
    const zone = q.az ?? (q.azId as string);
    const inZone = all.find((m) => (q.az !== null ? m.AvailabilityZoneName === q.az : m.AvailabilityZoneId === q.azId));
    if (!inZone) {
      throw new NoMountTarget(`No matching mount target in the az ${zone}. Please create one mount target in ${zone}, or try the mount target in another AZ by passing the availability zone name option. ${zones}`, true);
    }
    if (!available.includes(inZone)) {
      throw new NoMountTarget(`Mount target in the az ${zone} is ${text(inZone.LifeCycleState) || 'in an unknown state'}, please retry in 5 minutes, or use the mount target in the other az by passing the availability zone name option. ${zones}`, false);
    }
    chosen = inZone;
  } else {
    // Off EC2, where no zone is known: efs-utils picks one at random; the same one each time here.
    chosen = [...available].sort((a, b) => text(a.AvailabilityZoneId).localeCompare(text(b.AvailabilityZoneId)))[0];
  }
  const m = chosen as Described;
  return {
    address: text(m.IpAddress) || text(m.Ipv6Address),
    description: `${text(m.MountTargetId) || 'a mount target'} in ${[text(m.AvailabilityZoneId), text(m.AvailabilityZoneName) && `(${text(m.AvailabilityZoneName)})`].filter(Boolean).join(' ') || 'an unnamed zone'}`,
  };
}

/**
 * Whether a tunnel with these options asks the EFS API when DNS has no address for its name: with
 * efs.mount_target_fallback on, and not for crossaccount, whose mount target is another account's.
 */
export function fallsBackToApi(cfg: Config, options: MountOptions): boolean {
  return cfg.efs.mount_target_fallback && !isCrossAccount(options);
}

/**
 * The mount target for a file system of `region` whose tunnel has these options, as the daemon asks it and doctor
 * too: with the credentials an iam mount of the options would sign with, at efs.api_url or the region's own EFS
 * API, in the zone az= names, else in this instance's zone (`instanceAzId`: null when unknown).
 */
export async function findMountTarget(cfg: Config, fsId: string, region: string, options: MountOptions, instanceAzId: () => Promise<string | null>): Promise<MountTarget> {
  const credentials = await awsCredentials(options, credentialPlaces(cfg, region, process.env)).catch((err: unknown) => {
    throw new NoMountTarget(`efs-relay has no AWS credentials to ask the EFS API with: ${asRelayError(err).message}`, false);
  });
  const az = options.az ?? null;
  const azId = az === null ? await instanceAzId() : null;
  const apiUrl = cfg.efs.api_url || `https://elasticfilesystem.${region}.${dnsNameSuffix(region, cfg)}/`;
  return mountTargetFromApi({ fsId, region, apiUrl, az, azId }, credentials);
}
