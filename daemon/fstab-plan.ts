// Which efs lines of fstab get a tunnel, and why the others do not. Pure:
// the fstab watcher applies the plan, and `efsctl doctor` shows its problems
// without asking the daemon, so both judge a line by the same rules.
import { asRelayError, type ErrorCode } from './errors.js';
import type { Config } from './config.js';
import type { FstabEntry, FstabProblem } from './fstab.js';
import { iamAuthorization, ocspChecking, tunnelOptions, type MountOptions } from './options.js';
import { AZ_ID_NOT_ASKED, checkSpecName, resolveTarget } from './target.js';
import { requestedPort } from './ports.js';
import type { MetadataAzId, MetadataRegion } from './instance-region.js';
import { caFileFor, verifyLevel } from './tls-policy.js';

/** An efs line that gets no tunnel, or whose mount would be refused. */
export interface FstabLineProblem {
  line: number;
  /** Null when the line has no usable file system id. */
  fsId: string | null;
  code: ErrorCode;
  /** What is wrong and what the daemon does about it, without the file name. */
  message: string;
  /** What to do. */
  hint: string;
}

export interface FstabPlan {
  /** Tunnel options by file system, from its first valid line that is not noauto. */
  wanted: Map<string, MountOptions>;
  /** The line each wanted file system comes from. */
  lineOf: Map<string, number>;
  problems: FstabLineProblem[];
}

/** What makes a tunnel another one, as the tunnel manager compares it: port asked for, target, CA bundle, verify level, OCSP, access point, IAM, network namespace. */
interface TunnelIdentity { tlsport: string; target: string; cafile: string; verify: string; ocsp: string; accesspoint: string; iam: string; netns: string }

function identity(e: FstabEntry, o: MountOptions, cfg: Config, metadata: MetadataRegion, azId: MetadataAzId): TunnelIdentity {
  const t = resolveTarget(e.fsId, o, {}, cfg, metadata, azId);
  checkSpecName(e, t);
  const target = t.address === t.dnsName ? t.dnsName : `${t.address} (${t.dnsName})`;
  return { tlsport: o.tlsport ?? 'any', target, cafile: caFileFor(o, cfg), verify: String(verifyLevel(o)), ocsp: ocspChecking(o, cfg.tls.ocsp), accesspoint: o.accesspoint ?? 'none', iam: iamAuthorization(o), netns: o.netns ?? 'none' };
}

/** How a later line's tunnel differs from the first line's, each as "what (this line's here, the first line's there)". */
function differences(first: TunnelIdentity, later: TunnelIdentity): string[] {
  return (Object.keys(first) as Array<keyof TunnelIdentity>)
    .filter((k) => first[k] !== later[k])
    .map((k) => `${k} (${later[k]} here, ${first[k]} there)`);
}

/**
 * Judge the parsed lines. A noauto line gets no tunnel from fstab, but its
 * options are still checked: its mount would be refused just the same. The
 * region comes from the line, the config or instance metadata (what the
 * daemon last heard from it), as for the daemon and for mounts at boot, which
 * have no user environment to take AWS_REGION from.
 */
export function planFstab(
  parsed: { entries: FstabEntry[]; problems: FstabProblem[] }, cfg: Config, metadata: MetadataRegion, azId = AZ_ID_NOT_ASKED,
): FstabPlan {
  const wanted = new Map<string, MountOptions>();
  const lineOf = new Map<string, number>();
  const identities = new Map<string, TunnelIdentity>();
  /** tlsport= of each wanted file system's line: a port serves one file system. */
  const portOwners = new Map<number, string>();
  const problems: FstabLineProblem[] = parsed.problems.map((p) => ({
    line: p.line, fsId: null, code: p.code ?? 'BAD_OPTION', message: `${p.message}; line skipped`,
    hint: p.hint ?? 'An efs line is `FS_ID[:/PATH] DIR efs OPTIONS 0 0`, as fstab(5) describes (FS_ID may also be the file system\'s DNS name, or a DNS name whose CNAME leads to it); escape a space in a path as \\040.',
  }));
  for (const e of parsed.entries) {
    let options: MountOptions;
    let id: TunnelIdentity;
    let port: number | null;
    try {
      options = tunnelOptions({ tls: null, ...e.options });
      id = identity(e, options, cfg, metadata, azId);
      port = requestedPort(options, cfg);
    } catch (err) {
      const { code, message, hint } = asRelayError(err);
      // A noauto line is mounted by hand, where AWS_REGION may name the region, and instance metadata is asked again.
      if (e.noauto && (code === 'NO_REGION' || code === 'NO_AZ_ID')) continue;
      // Instance metadata may answer later: the watcher tries a NO_AZ_ID line again, so it is not skipped for good.
      problems.push({ line: e.line, fsId: e.fsId, code, message: code === 'NO_AZ_ID' ? message : `${message}; line skipped`, hint });
      continue;
    }
    if (e.noauto) continue;
    const first = identities.get(e.fsId);
    if (first) {
      // One file system, one tunnel: a later line that wants another one would only fail at its mount.
      const differ = differences(first, id);
      if (differ.length > 0) {
        const from = lineOf.get(e.fsId);
        problems.push({
          line: e.line, fsId: e.fsId, code: 'BAD_OPTION',
          message: `${e.fsId} is also on line ${from} with another ${differ.join(', ')}; a file system has one tunnel, made from line ${from}, so this line's mount would be refused`,
          hint: `Give every line of ${e.fsId} the same tlsport, target (mounttargetip, az, region), cafile, verify, accesspoint and iam (awsprofile, awscredsuri), or leave them out of the later lines.`,
        });
      }
      continue;
    }
    const owner = port === null ? undefined : portOwners.get(port);
    if (port !== null && owner !== undefined) {
      problems.push({
        line: e.line, fsId: e.fsId, code: 'PORT_TAKEN',
        message: `tlsport ${port} is also asked for ${owner} on line ${lineOf.get(owner)}; a port serves one file system, so this line gets no tunnel and its mount would be refused`,
        hint: 'Give each file system its own tlsport=, or leave tlsport= out so that the daemon picks a free port.',
      });
      continue;
    }
    if (port !== null) portOwners.set(port, e.fsId);
    wanted.set(e.fsId, options);
    lineOf.set(e.fsId, e.line);
    identities.set(e.fsId, id);
  }
  problems.sort((a, b) => a.line - b.line);
  return { wanted, lineOf, problems };
}
