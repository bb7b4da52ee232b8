// The AWS Signature Version 4 that an IAM mount's client certificate carries
// (efs-utils' efs_client_auth_builder): a signed "Connect" request to the
// file system, tied to the certificate's key by the key's SHA-1, so that the
// mount target can check who connects. Not a general SigV4 signer: the
// request is always the same GET, with efs-utils' canonical form.
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
const scope = (d: Date, region: string): string => `${day(d)}/${region}/${SERVICE}/aws4_request`;
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

export function stringToSign(canonical: string, date: Date, region: string): string {
  return [ALGORITHM, amzDate(date), scope(date, region), sha256(canonical)].join('\n');
}

export function signature(toSign: string, date: Date, secretAccessKey: string, region: string): string {
  const hmac = (key: Buffer | string, msg: string): Buffer => createHmac('sha256', key).update(msg, 'utf8').digest();
  const key = [day(date), region, SERVICE, 'aws4_request'].reduce<Buffer>((k, part) => hmac(k, part), Buffer.from(`AWS4${secretAccessKey}`, 'utf8'));
  return createHmac('sha256', key).update(toSign, 'utf8').digest('hex');
}

/** The hex signature of a Connect request with these credentials. */
export function signConnect(r: ConnectRequest, secretAccessKey: string): string {
  return signature(stringToSign(canonicalRequest(r), r.date, r.region), r.date, secretAccessKey, r.region);
}
