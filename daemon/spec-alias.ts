// A mount spec given as a DNS alias of a file system's name
// (files.example.com:/ whose CNAME leads to fs-….efs.REGION.amazonaws.com),
// followed as efs-utils does (match_device): the spec names the file system
// its CNAME chain ends at, which is then mounted as if its name were given.
// The tunnel still dials that name and checks it in the certificate, so an
// alias can only choose a file system, never weaken the check.
//
// Only DNS holds CNAME records (/etc/hosts has none), so the servers of
// /etc/resolv.conf are asked, read afresh at every spec: at boot DHCP may
// write the file after the daemon started.
import { Resolver } from 'node:dns/promises';
import { RelayError } from './errors.js';
import { hostName, isAlias, requireSpec, specOfName, type AliasSpec, type MountSpec } from './target.js';

/** CNAME records followed at most, as resolvers bound a chain; a longer one is taken for a loop. */
export const MAX_ALIAS_HOPS = 8;

/** How long one DNS question may take, and how often it is asked, before the spec is given up. */
const QUESTION_TIMEOUT_MS = 2_000;
const QUESTION_TRIES = 2;

const DOCS = 'https://docs.aws.amazon.com/efs/latest/ug/mounting-fs-mount-cmd-dns-name.html';

/** The CNAME target of `name`, or null when DNS says the name has none; throws when DNS says no such name or gives no answer. */
export type CnameQuestion = (name: string) => Promise<string | null>;

/** DNS's answer for one name's CNAME record, from the servers in /etc/resolv.conf as they are now. */
export const askDns: CnameQuestion = async (name) => {
  const resolver = new Resolver({ timeout: QUESTION_TIMEOUT_MS, tries: QUESTION_TRIES });
  try {
    const [target] = await resolver.resolveCname(name);
    return target ?? null;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENODATA') return null;
    throw err;
  }
};

/** requireSpec, with an alias followed to the file system's name (which keeps the alias, for messages). */
export async function resolveSpec(text: string, ask: CnameQuestion = askDns): Promise<MountSpec> {
  const spec = requireSpec(text);
  return isAlias(spec) ? followAlias(spec, ask) : spec;
}

/** The file system an alias leads to: its CNAME chain, hop by hop, until a file system's DNS name. */
export async function followAlias(spec: AliasSpec, ask: CnameQuestion = askDns): Promise<MountSpec> {
  const chain = [spec.alias];
  const shown = (): string => chain.join(' → ');
  for (let hop = 0; hop < MAX_ALIAS_HOPS; hop++) {
    const name = chain[chain.length - 1] as string;
    let next: string | null;
    try {
      next = await ask(name);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'EUNKNOWN';
      const why = code === 'ENOTFOUND' ? `DNS has no name ${name}` : `DNS gave no answer for ${name} (${code})`;
      throw new RelayError(
        'DNS_FAILED',
        `Failed to resolve "${spec.alias}" - check that the specified DNS name is a CNAME record resolving to a valid EFS DNS name (${chain.length > 1 ? `${shown()}: ` : ''}${why})`,
        {
          cause: err,
          // DNS's answer that the name does not exist is final, as in target-lookup.ts; no answer is not.
          final: code === 'ENOTFOUND',
          hint: code === 'ENOTFOUND'
            ? 'Check the name, and its CNAME record (`dig CNAME NAME` shows it), or mount by the file system id instead.'
            : 'Check the DNS servers in /etc/resolv.conf (`dig CNAME NAME` asks them), or mount by the file system id instead.',
        },
      );
    }
    if (next === null) break;
    const reached = hostName(next);
    chain.push(reached);
    const efs = specOfName(reached, spec.path);
    if (efs) return { ...efs, alias: spec.alias };
  }
  const why = chain.length > MAX_ALIAS_HOPS
    ? `${shown()}: more than ${MAX_ALIAS_HOPS} CNAME records, taken for a loop`
    : chain.length === 1
      ? `${spec.alias} has no CNAME record`
      : `${shown()}, which has no CNAME record and is not a file system's name like fs-12345678.efs.us-east-1.amazonaws.com`;
  throw new RelayError(
    'BAD_FS_ID',
    `The specified CNAME "${spec.alias}" did not resolve to a valid DNS name for an EFS mount target. Please refer to the EFS documentation for mounting with DNS names for examples: ${DOCS} (${why})`,
    { hint: 'Point the name\'s CNAME record at the file system\'s DNS name (fs-12345678.efs.REGION.amazonaws.com, or a zone\'s name of it), or mount by the file system id.' },
  );
}
