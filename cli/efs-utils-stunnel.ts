// What an efs-utils stunnel serves, read from the config file efs-utils
// wrote for it (/var/run/efs/stunnel-config.FS.MOUNT.PORT; efs-utils 2's
// efs-proxy reads the same file): the local port it accepts on, the mount
// target it connects to and the name the certificate must carry (checkHost).
// Where a mount's file is: daemon/efs-utils-configs.ts. The reading is pure, so
// that `efsctl takeover` can show exactly which tunnel options replace the
// stunnel before touching anything.
import { isIP } from 'node:net';
import type { Config } from '../daemon/config.js';
import { RelayError } from '../daemon/errors.js';
import type { PresentedIdentity } from '../daemon/client-cert.js';
import { AZ_NAME, parseOptions } from '../daemon/options.js';
import { AZ_ID_NOT_ASKED, METADATA_NOT_ASKED, dnsNameSuffix, parseEfsName, resolveTarget } from '../daemon/target.js';

export interface StunnelService {
  /** The [section] it is in; '' for the global part. */
  section: string;
  accept: string;
  connect: string | null;
  checkHost: string | null;
  /** A client certificate it presents (efs-utils writes one for access points and IAM). */
  cert: string | null;
  /** stunnel's verify level, as efs-utils writes it from verify= (2 by default). */
  verify: string | null;
  /** OCSPaia: "yes" when efs-utils had stunnel ask OCSP responders (the ocsp option, or stunnel_check_cert_validity). */
  ocspAia: string | null;
}

/** Every service of a stunnel config (a section, or the global part, that has `accept`). */
export function parseStunnelConfig(text: string): StunnelService[] {
  const sections = new Map<string, Record<string, string>>([['', {}]]);
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith(';') || line.startsWith('#')) continue;
    const header = /^\[(.*)\]$/.exec(line);
    if (header) {
      current = (header[1] as string).trim();
      if (!sections.has(current)) sections.set(current, {});
      continue;
    }
    const eq = line.indexOf('=');
    if (eq < 0) continue;
    // stunnel's keys are case-insensitive (checkHost, CAfile, ...).
    (sections.get(current) as Record<string, string>)[line.slice(0, eq).trim().toLowerCase()] = line.slice(eq + 1).trim();
  }
  const out: StunnelService[] = [];
  for (const [section, keys] of sections) {
    if (keys.accept === undefined) continue;
    out.push({ section, accept: keys.accept, connect: keys.connect ?? null, checkHost: keys.checkhost ?? null, cert: keys.cert ?? null, verify: keys.verify ?? null,
      // A service option in the global part is every service's default.
      ocspAia: keys.ocspaia ?? sections.get('')?.ocspaia ?? null,
    });
  }
  return out;
}

/** host:port, [v6]:port, or a bare port (stunnel's forms of accept and connect). */
function splitHostPort(value: string): { host: string | null; port: number } {
  const m = /^(?:\[([^\]]+)\]|(.*)):(\d+)$/.exec(value);
  if (m) return { host: (m[1] ?? m[2]) as string, port: Number(m[3]) };
  return { host: null, port: Number(value) };
}

/** The tunnel that replaces a stunnel: the file system, its efsctl options, and what it will connect to and verify. */
export interface TunnelFromStunnel {
  fsId: string;
  /** -o for `efsctl add`: region, tlsport, mounttargetip or az when the stunnel connected to one, and ocsp when it asked OCSP responders. */
  options: string;
  /** The file system's DNS name the tunnel has: the stunnel's checkHost, or its availability zone's name of it. */
  dnsName: string;
  /** The name the tunnel checks in the mount target's certificate: the stunnel's checkHost. */
  certName: string;
  /** Where the stunnel connected. */
  connectHost: string;
  /**
   * For a crossaccount mount's stunnel (it connects to ZONE_ID.FS….): that zone ID, which the tunnel takes from
   * instance metadata instead, so the takeover checks that metadata gives the same one before it stops anything.
   */
  crossAccountAzId?: string;
  /**
   * The stunnel's certificate carries IAM authorization: the takeover adds the options that find the same
   * credentials (iamOptionsFor, from efs-utils' state file) before it stops anything.
   */
  iam?: true;
}

/**
 * The tunnel options that sign with the credentials efs-utils recorded for an iam mount (its state file's
 * awsCredentialsMethod), or why none can: efs-relay reads the same profiles (their keys, or the role they assume), ECS
 * URIs, EKS Pod Identity, web identities and instance role.
 */
export function iamOptionsFor(method: string | null): { options: string[]; same: (source: string) => boolean } | { why: string } {
  if (method === null) return { why: 'efs-utils\' state file for the mount does not say where its AWS credentials came from (awsCredentialsMethod)' };
  const colon = method.indexOf(':');
  const [how, what] = colon < 0 ? [method, ''] : [method.slice(0, colon), method.slice(colon + 1)];
  // `same`: whether the credentials efs-relay finds (AwsCredentials.source) come from that place.
  // named_profile:NAME: a role the profile assumed through botocore; efs-relay assumes it the same way.
  if (how === 'named_profile' && what !== '') return { options: ['iam', `awsprofile=${what}`], same: (s) => s === method };
  if ((how === 'credentials' || how === 'config') && what !== '') {
    return { options: ['iam', `awsprofile=${what}`], same: (s) => s === `credentials:${what}` || s === `config:${what}` };
  }
  if (how === 'ecs' && what.startsWith('/')) return { options: ['iam', `awscredsuri=${what}`], same: (s) => s === `ecs:${what}` };
  if (how === 'metadata') return { options: ['iam'], same: (s) => s.startsWith('metadata:') };
  // podidentity:URI,TOKEN_FILE: from the environment (efs-utils' and, as checked before anything stops, efs-relayd's).
  if (how === 'podidentity' && what !== '') return { options: ['iam'], same: (s) => s === method };
  // webidentity:ROLE_ARN,TOKEN_FILE (an ARN has no comma; the options check both).
  const identity = /^([^,]+),(\/.+)$/.exec(what);
  if (how === 'webidentity' && identity) {
    return { options: ['iam', `rolearn=${identity[1] as string}`, `jwtpath=${identity[2] as string}`], same: (s) => s === `webidentity:${what}` };
  }
  return { why: `its AWS credentials came from ${method}, which efs-relay cannot get (it reads profiles' keys and roles, the ECS agent, EKS Pod Identity, web identities and the instance's role)` };
}

/** The service that accepts on `port`, if any. */
export function serviceOn(services: StunnelService[], port: number): StunnelService | undefined {
  return services.find((s) => splitHostPort(s.accept).port === port);
}

/**
 * The tunnel options that make efs-relay do what the stunnel on `port` did.
 * Refuses (TAKEOVER_UNSAFE) anything it cannot carry over exactly, since a
 * tunnel to another place, or one that checks another name, would leave
 * the mount hanging once the stunnel is gone.
 * `presented`: what the client certificate of the service (cert =) names, as the caller read it from that file, or
 * null when it could not. efs-utils 2 writes one for every TLS mount; only an access point or IAM in it matter to
 * the mount target.
 */
export function tunnelFromStunnel(services: StunnelService[], port: number, file: string, cfg: Config, presented: PresentedIdentity | null = null): TunnelFromStunnel {
  const refuse = (why: string): never => {
    throw new RelayError('TAKEOVER_UNSAFE', `${file}: ${why}`);
  };
  const svc = serviceOn(services, port);
  if (!svc) return refuse(`no service accepts on port ${port}`);
  if (svc.connect === null) return refuse(`the service${svc.section ? ` [${svc.section}]` : ''} has no connect`);
  if (svc.cert !== null && presented === null) {
    return refuse(`the service presents a client certificate (cert = ${svc.cert}) that could not be read, so what it names to the mount target (an access point, IAM authorization) is unknown`);
  }
  // What the stunnel's certificate names, when it presents one.
  const shown = svc.cert === null ? null : presented;
  if (svc.verify !== null && Number(svc.verify) >= 3) {
    return refuse(`the service verifies with verify = ${svc.verify}: the mount target's own certificate must be in its CAfile. The tunnel verifies against tls.ca_file, not that CAfile, so it would check less than the stunnel did`);
  }
  if (svc.checkHost === null) {
    return refuse('the service has no checkHost, so the name its mount target\'s certificate must carry is unknown (efs-utils leaves it out when stunnel cannot check host names)');
  }
  const named = parseEfsName(svc.checkHost);
  // efs-utils' checkHost is the file system's name, never a zone's name of it.
  if (!named || named.az !== undefined) return refuse(`checkHost ${svc.checkHost} is not an EFS file system name like fs-12345678.efs.us-east-1.amazonaws.com`);
  const { fsId, region, suffix } = named;
  if (shown?.fsId && shown.fsId !== fsId) {
    return refuse(`the client certificate ${svc.cert ?? ''} names ${shown.fsId}, where checkHost ${svc.checkHost} names ${fsId}`);
  }
  const ours = dnsNameSuffix(region, cfg);
  if (suffix !== ours) {
    return refuse(`checkHost ${svc.checkHost} ends in ${suffix}, but the tunnel's names in ${region} end in ${ours} (efs.dns_name_suffix), so it would check another name`);
  }
  const to = splitHostPort(svc.connect);
  if (to.host === null || to.port !== cfg.efs.port) return refuse(`connect = ${svc.connect} is not a host and port ${cfg.efs.port} (efs.port)`);
  const options = [`region=${region}`, `tlsport=${port}`];
  let zoneId: string | undefined;
  if (isIP(to.host)) options.push(`mounttargetip=${to.host}`);
  else if (to.host !== svc.checkHost) {
    // efs-utils connects to AZ.FS.efs.REGION.SUFFIX for an az= mount, and checks FS.efs.REGION.SUFFIX; for a
    // crossaccount mount AZ is the zone's ID (use1-az2), not its name.
    const az = new RegExp(`^([a-z0-9-]+)\\.${svc.checkHost.replaceAll('.', '\\.')}$`).exec(to.host)?.[1];
    if (az === undefined) return refuse(`connect = ${svc.connect} names neither ${svc.checkHost}, an availability zone's name or ID of it, nor an address`);
    if (AZ_NAME.test(az)) options.push(`az=${az}`);
    else {
      options.push('crossaccount');
      zoneId = az;
    }
  }
  // A stunnel that asked OCSP responders is replaced by a tunnel that asks them too, never by one that checks less.
  if (svc.ocspAia?.toLowerCase() === 'yes') options.push('ocsp');
  // The access point is what the mount target reads from the certificate; the tunnel presents its own that names it.
  if (shown?.accessPoint) options.push(`accesspoint=${shown.accessPoint}`);
  const target = resolveTarget(fsId, parseOptions(options.join(',')), {}, cfg, METADATA_NOT_ASKED, zoneId === undefined ? AZ_ID_NOT_ASKED : { az_id: zoneId, why: null });
  if (target.address !== to.host) {
    return refuse(`with efs.dns_name_format ${cfg.efs.dns_name_format} the tunnel would connect to ${target.address}, not to ${to.host} as the stunnel does`);
  }
  if (target.certName !== svc.checkHost) {
    return refuse(`with efs.dns_name_format ${cfg.efs.dns_name_format} the tunnel would check ${target.certName} in the certificate, not checkHost ${svc.checkHost} as the stunnel does`);
  }
  return {
    fsId, options: options.join(','), dnsName: target.dnsName, certName: target.certName, connectHost: to.host,
    ...(zoneId === undefined ? {} : { crossAccountAzId: zoneId }), ...(shown?.iam ? { iam: true as const } : {}),
  };
}
