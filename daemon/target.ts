// Where a tunnel goes: the file system's DNS name, the name its certificate
// must carry, and the address actually dialled (the name, or mounttargetip=).
import { isIP } from 'node:net';
import { RelayError } from './errors.js';
import type { Config } from './config.js';
import type { MountOptions, SpecTarget } from './options.js';
import type { MetadataAzId, MetadataRegion } from './instance-region.js';

export const FS_ID = /^fs-[0-9a-f]+$/;

/** "host:rest" (a port, or an NFS path), with an IPv6 address in brackets, as mount.nfs4 and every reader want it. */
export function joinHost(host: string, rest: string | number): string {
  return `${isIP(host) === 6 ? `[${host}]` : host}:${rest}`;
}

export interface Target {
  /** The file system's DNS name from efs.dns_name_format: with az=, the zone's name of it. */
  dnsName: string;
  /** The name the server certificate must match, and the SNI sent (certificateName). */
  certName: string;
  /** What is dialled: the DNS name, or the mounttargetip address. */
  address: string;
  port: number;
  region: string;
}

export function checkFsId(fsId: string): void {
  if (!FS_ID.test(fsId)) {
    throw new RelayError('BAD_FS_ID', `Invalid file system name: ${fsId}`);
  }
}

/** The region environment of whoever asked (efsctl forwards its own). */
export interface RegionEnv {
  AWS_REGION?: string | undefined;
  AWS_DEFAULT_REGION?: string | undefined;
}

/** What tools that run without the daemon know of instance metadata (doctor with the daemon down, tests). */
export const METADATA_NOT_ASKED: MetadataRegion = { region: null, why: 'instance metadata was not asked' };

/** The region a request names without instance metadata: option, AWS_REGION, AWS_DEFAULT_REGION, config, in efs-utils' order. */
export function namedRegion(opts: MountOptions, env: RegionEnv, cfg: Config): string | undefined {
  return opts.region || env.AWS_REGION || env.AWS_DEFAULT_REGION || cfg.efs.region || undefined;
}

/** efs-utils order: namedRegion, then instance metadata (as the daemon last heard it). */
export function resolveRegion(fsId: string, opts: MountOptions, env: RegionEnv, cfg: Config, metadata: MetadataRegion): string {
  const region = namedRegion(opts, env, cfg) || metadata.region;
  if (region) return region;
  throw new RelayError(
    'NO_REGION',
    `Cannot determine the AWS region of ${fsId}: no region= option, AWS_REGION and AWS_DEFAULT_REGION are unset, ` +
      `efs.region is not set in the config, and ${metadata.why}`,
  );
}

/**
 * The name a mount target's certificate must carry, sent as SNI: the DNS name from the file system id on, as
 * efs-utils writes stunnel's checkHost. An az= name (us-east-1a.fs-….efs.…) is in no mount target's certificate.
 * efs.dns_name_format always holds {fs_id}.
 */
export function certificateName(fsId: string, dnsName: string): string {
  const at = dnsName.indexOf(fsId);
  return at < 0 ? dnsName : dnsName.slice(at);
}

// The partitions whose regions efs-utils' efs-utils.conf gives their own sections ([mount.cn-north-1] and the
// like): a region's name says which one it is in. `suffix`: its DNS suffix. `ownRoots`: its mount targets are
// verified against the system's CA bundle (stunnel_cafile = /etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem),
// not against Amazon's public roots.
const PARTITIONS: ReadonlyArray<{ prefix: RegExp; suffix: string; ownRoots: boolean }> = [
  { prefix: /^cn-/, suffix: 'amazonaws.com.cn', ownRoots: false },
  { prefix: /^us-iso-/, suffix: 'c2s.ic.gov', ownRoots: true },
  { prefix: /^us-isob-/, suffix: 'sc2s.sgov.gov', ownRoots: true },
  { prefix: /^us-isof-/, suffix: 'csp.hci.ic.gov', ownRoots: true },
  { prefix: /^eu-isoe-/, suffix: 'cloud.adc-e.uk', ownRoots: true },
  { prefix: /^eusc-/, suffix: 'amazonaws.eu', ownRoots: true },
];

const partitionOf = (region: string) => PARTITIONS.find((p) => p.prefix.test(region));

/** Whether efs-utils verifies the region's mount targets against the system's CA bundle (the ISO partitions, the European Sovereign Cloud). */
export function hasOwnRoots(region: string): boolean {
  return partitionOf(region)?.ownRoots ?? false;
}

/** efs.dns_name_suffix, or when that is "" the region's own, as efs-utils' per-region config sections give it. */
export function dnsNameSuffix(region: string, cfg: Config): string {
  if (cfg.efs.dns_name_suffix !== '') return cfg.efs.dns_name_suffix;
  return partitionOf(region)?.suffix ?? 'amazonaws.com';
}

export function dnsNameFor(fsId: string, region: string, az: string | null, cfg: Config): string {
  let format = cfg.efs.dns_name_format;
  if (!az) format = format.replace('{az}.', '').replace('{az}', '');
  return format
    .replaceAll('{az}', az ?? '')
    .replaceAll('{fs_id}', fsId)
    .replaceAll('{region}', region)
    .replaceAll('{dns_name_suffix}', dnsNameSuffix(region, cfg));
}

/**
 * A spec's DNS name (or the one its alias led to) must be the name the tunnel dials, as efs-utils requires
 * (match_device): a region= of another region, or another DNS suffix, would silently reach another name.
 */
export function checkSpecName(spec: SpecTarget, target: Target): void {
  if (spec.name === undefined || spec.name === target.dnsName) return;
  const what = spec.alias === undefined
    ? `The DNS name "${spec.name}"`
    : `The hostname "${spec.name}" resolved by the specified domain name "${spec.alias}"`;
  throw new RelayError(
    'BAD_OPTION',
    `${what} is not the file system's DNS name for these mount options and efs-relay's config, ${target.dnsName}: their region=, efs.dns_name_suffix or efs.dns_name_format disagree with the name`,
    { hint: 'Leave region= out (the name gives it), set efs.dns_name_suffix to the name\'s suffix, or mount by the file system id.' },
  );
}

/** Whether the options ask for a crossaccount mount, whose target only this instance's availability zone ID names. */
export function isCrossAccount(opts: MountOptions): boolean {
  return Object.hasOwn(opts, 'crossaccount');
}

/** What a request that never asked instance metadata for the availability zone ID knows of it. */
export const AZ_ID_NOT_ASKED: MetadataAzId = { az_id: null, why: 'instance metadata was not asked' };

/**
 * efs-utils' name of a crossaccount mount's target, whatever efs.dns_name_format says: the zone ID (the same
 * zone in every account, where a zone's name is not) before the file system's name.
 */
function crossAccountName(fsId: string, region: string, cfg: Config, azId: MetadataAzId): string {
  if (azId.az_id === null) {
    throw new RelayError('NO_AZ_ID', `Cannot retrieve AZ-ID from metadata service. This is required for the crossaccount mount option: ${azId.why}`);
  }
  return `${azId.az_id}.${fsId}.efs.${region}.${dnsNameSuffix(region, cfg)}`;
}

export function resolveTarget(fsId: string, opts: MountOptions, env: RegionEnv, cfg: Config, metadata: MetadataRegion, azId = AZ_ID_NOT_ASKED): Target {
  checkFsId(fsId);
  const region = resolveRegion(fsId, opts, env, cfg, metadata);
  const dnsName = isCrossAccount(opts) ? crossAccountName(fsId, region, cfg, azId) : dnsNameFor(fsId, region, opts.az ?? null, cfg);
  return { dnsName, certName: certificateName(fsId, dnsName), address: opts.mounttargetip || dnsName, port: cfg.efs.port, region };
}

/** What a mount spec names. A DNS name (SpecTarget) gives its region, and its availability zone in the zone's form. */
export interface MountSpec extends SpecTarget {
  fsId: string;
  path: string;
}

/** What an EFS DNS name says: [AZ.]FS_ID.efs.REGION.SUFFIX. */
export interface EfsName {
  az?: string;
  fsId: string;
  region: string;
  suffix: string;
}

/**
 * The one reading of an EFS DNS name (a spec, a mount's device, a stunnel's checkHost): a file system's name, or
 * a zone's name of it with one label before. Lower case, as DNS names are compared; null for any other name.
 */
export function parseEfsName(host: string): EfsName | null {
  const m = /^(?:([a-z0-9-]+)\.)?(fs-[0-9a-f]+)\.efs\.([a-z0-9-]+)\.([a-z0-9-]+(?:\.[a-z0-9-]+)*)$/.exec(host);
  if (!m) return null;
  const [, az, fsId, region, suffix] = m as unknown as [string, string | undefined, string, string, string];
  return { ...(az === undefined ? {} : { az }), fsId, region, suffix };
}

/** A name as DNS compares it: lower case, without a trailing dot. */
export function hostName(text: string): string {
  return text.toLowerCase().replace(/\.$/, '');
}

/** HOST[:PATH], the path "/" when none is given; null for a path that is not absolute. */
function splitSpec(spec: string): { host: string; path: string } | null {
  const colon = spec.indexOf(':');
  const path = colon < 0 ? '/' : spec.slice(colon + 1) || '/';
  return path.startsWith('/') ? { host: colon < 0 ? spec : spec.slice(0, colon), path } : null;
}

/** The spec of a file system's DNS name (or a zone's name of it, in hostName's form) and a path; null for another name. */
export function specOfName(name: string, path: string): MountSpec | null {
  const efs = parseEfsName(name);
  if (!efs) return null;
  return { fsId: efs.fsId, path, name, region: efs.region, ...(efs.az === undefined ? {} : { az: efs.az }) };
}

/** A mount spec: fs-id, fs-id:/path, or the file system's DNS name (us-east-1a.fs-….efs.… too) with :/path. */
export function parseSpec(spec: string): MountSpec | null {
  const parts = splitSpec(spec);
  if (!parts) return null;
  if (FS_ID.test(parts.host)) return { fsId: parts.host, path: parts.path };
  return specOfName(hostName(parts.host), parts.path);
}

/** A mount spec whose host is some other DNS name: an alias (CNAME) of a file system's name, followed at mount. */
export interface AliasSpec {
  /** The name as given, in lower case, without a trailing dot. */
  alias: string;
  path: string;
}

/** A fully qualified host name: two labels or more, each of letters, digits and inner hyphens. Not an address. */
const HOST_NAME = /^(?=.{1,253}$)(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?$/;

/**
 * parseSpec, or an alias: a spec whose host is a DNS name of another form (files.example.com:/), which efs-utils
 * follows through its CNAME records to a file system's name (spec-alias.ts). Null for anything else, such as an IP
 * address or a name of one label.
 */
export function parseSpecOrAlias(spec: string): MountSpec | AliasSpec | null {
  const parsed = parseSpec(spec);
  if (parsed) return parsed;
  const parts = splitSpec(spec);
  if (!parts) return null;
  const host = hostName(parts.host);
  if (!HOST_NAME.test(host) || FS_ID.test(host.split('.')[0] as string)) return null;
  return { alias: host, path: parts.path };
}

export function isAlias(spec: MountSpec | AliasSpec): spec is AliasSpec {
  return 'alias' in spec;
}

/** parseSpecOrAlias for a user's request: an unusable spec is efs-utils' "Invalid file system name". */
export function requireSpec(spec: string): MountSpec | AliasSpec {
  const parsed = parseSpecOrAlias(spec);
  if (!parsed) {
    throw new RelayError('BAD_FS_ID', `Invalid file system name: ${spec}`, {
      hint: 'Give the id shown in the EFS console (fs-12345678, or fs-12345678:/path), the file system\'s DNS name, or a DNS name whose CNAME record leads to it.',
    });
  }
  return parsed;
}
