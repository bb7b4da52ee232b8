// The efs-utils mount option set: one parser and validator, used by efsctl
// (to fail fast, before any request) and by the daemon (which trusts nobody).
// Rules and messages follow amazon-efs-utils' check_options_validity.
import { isIP } from 'node:net';
import { RelayError } from './errors.js';

/** key → value; a flag option (`tls`) has the value null. Order is kept. */
export type MountOptions = Record<string, string | null>;

/** Options that configure the tunnel, not mount.nfs4 (efs-utils' EFS_ONLY_OPTIONS, so none of them reaches mount.nfs4). */
export const TUNNEL_OPTIONS = [
  'tls', 'notls', 'tlsport', 'region', 'az', 'mounttargetip', 'verify', 'cafile', 'ocsp', 'noocsp',
  'accesspoint', 'iam', 'awsprofile', 'awscredsuri', 'netns', 'rolearn', 'jwtpath', 'crossaccount', 'fsap',
  // efs-utils 2's choice of stunnel over efs-proxy: efs-relay is the tunnel either way.
  'stunnel',
] as const;

// efs-utils rejects these outright.
const UNSUPPORTED = ['capath'];

// Accepted by efs-utils but not implemented by this release: refused, never ignored.
const NOT_YET: Record<string, string> = {
  fsap: 'efs-utils\' "fsap" option',
};

const AP_ID = /^fsap-[0-9a-f]{17}$/;
/** An IAM role's ARN, in any partition (efs-utils' ROLEARN_REGEX_PATTERN's cases: a 12-digit account, a role name with a path). */
const ROLE_ARN = /^arn:aws(-[a-z]+)*:iam::\d{12}:role\/[\w+=,.@\/-]*[\w+=,.@-]$/;
/** An absolute path without white space, commas or equals signs: a web identity token's file (efs-utils' JWTPATH_REGEX_PATTERN's cases), a network namespace. */
const PLAIN_PATH = /^\/[^\s,=]+$/;
/** An AWS region's name, like us-east-1. */
export const REGION = /^[a-z]{2,4}(-[a-z]+)+-\d+$/;
/** An availability zone's name, like us-east-1a (its ID, like use1-az2, is another form). */
export const AZ_NAME = /^[a-z]{2,4}(-[a-z]+)+-\d+[a-z]$/;

const bad = (message: string, hint?: string): never => {
  throw new RelayError('BAD_OPTION', message, { hint });
};

/** What a mount spec given as a DNS name says of the target (target.ts, MountSpec). */
export interface SpecTarget {
  /** The DNS name the spec gave, or its alias (CNAME chain) led to. */
  name?: string;
  /** The alias the spec gave, whose CNAME records led to `name` (spec-alias.ts). */
  alias?: string;
  region?: string;
  az?: string;
}

/**
 * The options with what a DNS-name spec names: its region, unless region= is given, and the availability zone
 * of a zone's name (us-east-1a.fs-….efs.…), as efs-utils takes it. An az= of another zone is efs-utils' error.
 */
export function withSpecTarget(opts: MountOptions, spec: SpecTarget): MountOptions {
  const out = { ...opts };
  if (spec.region && out.region === undefined) out.region = spec.region;
  // A crossaccount name's label is the zone's ID (use1-az2.fs-…), not an az=: the whole name must be the one the
  // tunnel dials (checkSpecName), as in efs-utils' match_device.
  if (spec.az !== undefined && !Object.hasOwn(out, 'crossaccount')) {
    if (Object.hasOwn(out, 'az') && out.az !== spec.az) {
      bad(spec.alias === undefined
        ? `The DNS name "${spec.name ?? ''}" does not match the az provided in the mount options, expected = ${out.az ?? ''}, given = ${spec.az}`
        : `The hostname "${spec.name ?? ''}" resolved by the specified domain name "${spec.alias}" does not match the az provided in the mount options, expected = ${out.az ?? ''}, given = ${spec.az}`);
    }
    out.az = spec.az;
  }
  return out;
}

/** Parse `a,b=c,d=e=f`; a value that contains `=` is kept whole. */
export function parseOptions(text: string | undefined | null): MountOptions {
  const opts: MountOptions = {};
  if (!text) return opts;
  for (const part of text.split(',')) {
    const item = part.trim();
    if (item === '') continue;
    const eq = item.indexOf('=');
    if (eq === 0) bad(`Option "${item}" has no name`);
    if (eq < 0) opts[item] = null;
    else opts[item.slice(0, eq)] = item.slice(eq + 1);
  }
  return opts;
}

export function formatOptions(opts: MountOptions): string {
  return Object.entries(opts)
    .map(([k, v]) => (v === null ? k : `${k}=${v}`))
    .join(',');
}

/** efs-utils' validity rules, with its messages. Throws BAD_OPTION. */
export function checkOptionsValidity(opts: MountOptions): void {
  const has = (k: string): boolean => Object.hasOwn(opts, k);
  const unsupported = UNSUPPORTED.filter(has);
  if (unsupported.length) bad(`Unsupported mount options detected: ${unsupported.map((o) => `"${o}"`).join(', ')}`);

  if (has('tls')) {
    if (has('port')) bad('The "port" and "tls" options are mutually exclusive');
    if (has('ocsp') && has('noocsp')) bad('The "ocsp" and "noocsp" options are mutually exclusive');
    if (has('notls')) bad('The "tls" and "notls" options are mutually exclusive');
  }
  if (has('tlsport')) {
    const v = opts.tlsport ?? '';
    if (!/^\d+$/.test(v)) bad(`tlsport option [${v}] is not an integer`);
  }
  if (has('accesspoint')) {
    if (!has('tls')) bad('The "tls" option is required when mounting via "accesspoint"');
    if (!AP_ID.test(opts.accesspoint ?? '')) bad(`Access Point ID ${opts.accesspoint ?? ''} is malformed`);
  }
  if (has('iam') && !has('tls')) bad('The "tls" option is required when mounting via "iam"');
  if (has('awsprofile') && !has('iam'))
    bad('The "iam" option is required when mounting with named profile option, "awsprofile"');
  if (has('awscredsuri')) {
    if (!has('iam')) bad('The "iam" option is required when mounting with "awscredsuri"');
    if (has('awsprofile')) bad('The "awscredsuri" and "awsprofile" options are mutually exclusive');
    if (!(opts.awscredsuri ?? '').startsWith('/')) bad(`awscredsuri ${opts.awscredsuri ?? ''} is malformed`);
  }
  // They go into files and requests of their own: malformed ones, a newline above all, are refused before anything.
  if (has('rolearn') && !ROLE_ARN.test(opts.rolearn ?? '')) bad(`rolearn ${opts.rolearn ?? ''} is malformed`);
  if (has('jwtpath') && !PLAIN_PATH.test(opts.jwtpath ?? '')) bad(`jwtpath ${opts.jwtpath ?? ''} is malformed`);
  // efs-utils ignores either without iam, or one without the other; a tunnel never ignores what it is asked.
  if ((has('rolearn') || has('jwtpath')) && !has('iam')) bad('The "iam" option is required when mounting with a web identity, "rolearn" and "jwtpath"');
  if (has('rolearn') !== has('jwtpath')) bad('The "rolearn" and "jwtpath" options name a web identity together: give both');
  if (has('rolearn') && (has('awsprofile') || has('awscredsuri'))) bad('A web identity ("rolearn" and "jwtpath") and "awsprofile" or "awscredsuri" are mutually exclusive');
  if (has('region') && !REGION.test(opts.region ?? '')) bad(`region option [${opts.region ?? ''}] is not an AWS region`);
  if (has('az') && !AZ_NAME.test(opts.az ?? '')) bad(`az option [${opts.az ?? ''}] is not an availability zone name`);
  if (has('mounttargetip') && isIP(opts.mounttargetip ?? '') === 0)
    bad(`mounttargetip option [${opts.mounttargetip ?? ''}] is not an IP address`);
  if (has('verify') && !['0', '1', '2', '3'].includes(opts.verify ?? ''))
    bad(`verify option [${opts.verify ?? ''}] must be 0, 1, 2 or 3`);
  if (has('cafile') && !(opts.cafile ?? '').startsWith('/')) bad(`cafile option [${opts.cafile ?? ''}] must be an absolute path`);
  // One argument of nsenter, never a shell's: still, a path only (efs-utils once ran it through a shell).
  if (has('netns') && !PLAIN_PATH.test(opts.netns ?? ''))
    bad(`netns option [${opts.netns ?? ''}] must be the absolute path of a network namespace, like /var/run/netns/NAME or /proc/PID/ns/net`);
  if (has('crossaccount')) {
    if (has('mounttargetip')) bad('mounttargetip option is incompatible with crossaccount option.');
    // efs-utils drops az= for crossaccount; a zone's name given and not used would mislead whoever reads the line.
    if (has('az')) bad('The "az" and "crossaccount" options are mutually exclusive: crossaccount reaches the mount target of this instance\'s availability zone ID');
  }
}

/**
 * The options a tunnel is made from. Beyond efs-utils' rules: a tunnel is
 * always TLS and always verified, so `notls` and `verify` below 2 are refused,
 * and options this release cannot honour are refused rather than ignored.
 */
export function tunnelOptions(opts: MountOptions): MountOptions {
  if (Object.hasOwn(opts, 'notls')) {
    checkOptionsValidity(opts);
    bad('The "notls" option cannot make a tunnel: efs-relay only carries EFS traffic over TLS');
  }
  // Every tunnel is TLS, so efs-utils' rules for a tls mount apply whether or not "tls" is written (`efsctl add FS -o
  // accesspoint=…` needs no "tls").
  checkOptionsValidity({ tls: null, ...opts });
  if (opts.verify === '0' || opts.verify === '1')
    bad(`verify=${opts.verify} is refused: efs-relay always verifies the certificate chain and the file system name`);
  for (const [k, what] of Object.entries(NOT_YET)) {
    if (Object.hasOwn(opts, k)) {
      bad(`The "${k}" option is not supported yet: this release does not implement ${what}`,
        'Leave the option out if the mount does not need it; a mount that needs it cannot go through efs-relay in this release (the README lists the options it takes).');
    }
  }
  const out: MountOptions = {};
  for (const [k, v] of Object.entries(opts)) if ((TUNNEL_OPTIONS as readonly string[]).includes(k)) out[k] = v;
  return out;
}

/** How a tunnel's options authorize with IAM, in words: tunnels that differ in it are different tunnels. */
export function iamAuthorization(o: MountOptions): string {
  if (!Object.hasOwn(o, 'iam')) return 'without IAM authorization';
  if (o.awscredsuri) return `with IAM authorization by awscredsuri=${o.awscredsuri}`;
  if (o.awsprofile) return `with IAM authorization by awsprofile=${o.awsprofile}`;
  if (o.rolearn && o.jwtpath) return `with IAM authorization by rolearn=${o.rolearn} and jwtpath=${o.jwtpath}`;
  return 'with IAM authorization';
}

/**
 * Whether a tunnel asks OCSP responders about the mount target's certificate chain: `ocsp` or `noocsp` as its options
 * say, else as `byDefault` (tls.ocsp, efs-utils' stunnel_check_cert_validity; false by default, as there).
 */
export function ocspChecking(o: MountOptions, byDefault: boolean): 'ocsp' | 'noocsp' {
  if (Object.hasOwn(o, 'ocsp')) return 'ocsp';
  if (Object.hasOwn(o, 'noocsp')) return 'noocsp';
  return byDefault ? 'ocsp' : 'noocsp';
}

/** For `efsctl add`: every option must be a tunnel option. */
export function onlyTunnelOptions(opts: MountOptions): void {
  const others = Object.keys(opts).filter((k) => !(TUNNEL_OPTIONS as readonly string[]).includes(k));
  if (others.length === 0) return;
  // "port" with "tls" is efs-utils' own error; give that message first.
  checkOptionsValidity(opts);
  throw new RelayError(
    'UNKNOWN_OPTION',
    `Unknown tunnel option${others.length > 1 ? 's' : ''}: ${others.map((o) => `"${o}"`).join(', ')}`,
  );
}

/**
 * Split the user's options: what makes the tunnel, and everything for
 * mount.nfs4. `tunnel` is null when `notls` asks for a plaintext mount, which
 * only the daemon may allow (policy.require_tls).
 */
export function attachOptions(text: string, spec: SpecTarget = {}): { all: MountOptions; tunnel: MountOptions | null } {
  const all = withSpecTarget(parseOptions(text), spec);
  if (Object.hasOwn(all, 'notls')) {
    checkOptionsValidity(all);
    return { all, tunnel: null };
  }
  // Every efs-relay mount is a TLS mount, so efs-utils' rules for "tls" apply (e.g. no "port=").
  return { all, tunnel: tunnelOptions({ tls: null, ...all }) };
}
