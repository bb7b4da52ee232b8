// AWS Signature Version 4. Above all the one an IAM mount's client
// certificate carries (efs-utils' efs_client_auth_builder): a signed
// "Connect" request to the file system, tied to the certificate's key by the
// key's SHA-1, so that the mount target can check who connects; always the
// same GET, in efs-utils' own canonical form. And the standard header form,
// for the AWS APIs the daemon calls signed: STS's AssumeRole, for a profile
// that assumes a role (aws-credentials.ts), and EFS's DescribeMountTargets,
// for a mount target that DNS has no name for (mount-target-api.ts).
import { createHash, createHmac } from 'node:crypto';

const ALGORITHM = 'AWS4-HMAC-SHA256';
const SERVICE = 'elasticfilesystem';
/** The signature stays good this long (efs-utils' X-Amz-Expires). */
const EXPIRES_S = 86_400;

/** What is signed, besides the request's fixed parts. */
export interface ConnectRequest {
  /** SHA-1 of the certificate key's bits, hex (publicKeyHash). */
  publicKeyHash: string;
  accessKeyId: string;
  sessionToken: string | null;
  region: string;
  fsId: string;
  date: Date;
}

const two = (n: number): string => String(n).padStart(2, '0');
/** YYYYMMDD, UTC. */
const day = (d: Date): string => `${d.getUTCFullYear()}${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}`;
/** YYYYMMDDTHHMMSSZ, UTC. */
export const amzDate = (d: Date): string => `${day(d)}T${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}Z`;
const scope = (d: Date, region: string, service = SERVICE): string => `${day(d)}/${region}/${service}/aws4_request`;
const sha256 = (s: string): string => createHash('sha256').update(s, 'utf8').digest('hex');

/** Python's quote_plus, which efs-utils applies to the query's values: RFC 3986's unreserved set stays, space is +. */
function quotePlus(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`).replace(/%20/g, '+');
}

export function canonicalRequest(r: ConnectRequest): string {
  const query: Record<string, string> = {
    Action: 'Connect',
    PublicKeyHash: quotePlus(r.publicKeyHash),
    'X-Amz-Algorithm': ALGORITHM,
    'X-Amz-Credential': quotePlus(`${r.accessKeyId}/${scope(r.date, r.region)}`),
    'X-Amz-Date': quotePlus(amzDate(r.date)),
    'X-Amz-Expires': String(EXPIRES_S),
    'X-Amz-SignedHeaders': 'host',
  };
  if (r.sessionToken !== null) query['X-Amz-Security-Token'] = quotePlus(r.sessionToken);
  const sorted = Object.keys(query).sort().map((k) => `${k}=${query[k]}`).join('&');
  // efs-utils' form, which the mount target checks: one header line and no blank line after it.
  return ['GET', '/', sorted, `host:${r.fsId}`, 'host', sha256('')].join('\n');
}

export function stringToSign(canonical: string, date: Date, region: string, service = SERVICE): string {
  return [ALGORITHM, amzDate(date), scope(date, region, service), sha256(canonical)].join('\n');
}

export function signature(toSign: string, date: Date, secretAccessKey: string, region: string, service = SERVICE): string {
  const hmac = (key: Buffer | string, msg: string): Buffer => createHmac('sha256', key).update(msg, 'utf8').digest();
  const key = [day(date), region, service, 'aws4_request'].reduce<Buffer>((k, part) => hmac(k, part), Buffer.from(`AWS4${secretAccessKey}`, 'utf8'));
  return createHmac('sha256', key).update(toSign, 'utf8').digest('hex');
}

/** RFC 3986's encoding, which SigV4 wants of each query name and value: only the unreserved characters stay. */
function uriEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/** Paths the daemon signs: its own fixed ones, of unreserved characters, which SigV4 takes as they are. */
const PLAIN_PATH = /^\/[A-Za-z0-9\-._~/]*$/;

/**
 * An AWS API request to sign in SigV4's header form: a form POST to / (STS), or a GET of a plain path with a
 * query (EFS's DescribeMountTargets).
 */
export interface ApiRequest {
  method: 'GET' | 'POST';
  url: URL;
  body: string;
  /** The body's Content-Type, signed when given. */
  contentType?: string;
  region: string;
  service: string;
  date: Date;
}

/** The headers that carry `r` signed with these credentials: host, x-amz-date, content-type, x-amz-security-token, authorization. */
export function signApiRequest(r: ApiRequest, c: { accessKeyId: string; secretAccessKey: string; sessionToken: string | null }): Record<string, string> {
  const path = r.url.pathname || '/';
  if (!PLAIN_PATH.test(path)) throw new Error(`signApiRequest signs paths of unreserved characters only, not ${r.url.href}`);
  const query = [...r.url.searchParams].map(([k, v]) => [uriEncode(k), uriEncode(v)] as const)
    .sort(([a, x], [b, y]) => (a < b ? -1 : a > b ? 1 : x < y ? -1 : x > y ? 1 : 0)).map(([k, v]) => `${k}=${v}`).join('&');
  const headers: Record<string, string> = { host: r.url.host, 'x-amz-date': amzDate(r.date) };
  if (r.contentType !== undefined) headers['content-type'] = r.contentType;
  if (c.sessionToken !== null) headers['x-amz-security-token'] = c.sessionToken;
  const names = Object.keys(headers).sort();
  const canonical = [r.method, path, query, ...names.map((n) => `${n}:${(headers[n] as string).trim().replace(/\s+/g, ' ')}`), '', names.join(';'), sha256(r.body)].join('\n');
  const sig = signature(stringToSign(canonical, r.date, r.region, r.service), r.date, c.secretAccessKey, r.region, r.service);
  return { ...headers, authorization: `${ALGORITHM} Credential=${c.accessKeyId}/${scope(r.date, r.region, r.service)}, SignedHeaders=${names.join(';')}, Signature=${sig}` };
}

/** The hex signature of a Connect request with these credentials. */
export function signConnect(r: ConnectRequest, secretAccessKey: string): string {
  return signature(stringToSign(canonicalRequest(r), r.date, r.region), r.date, secretAccessKey, r.region);
}
