// The client certificate an access point or IAM mount presents, as efs-utils
// makes it: self-signed with the host's own RSA key, CN the host name, and
// EFS's extensions naming the access point (1.3.6.1.4.1.4843.7.1), carrying
// the IAM authorization (…7.2: a SigV4 signature tied to the key) and naming
// the file system (…7.3), valid from 15 minutes before it is made to 3 hours
// after. The mount target reads them from it. Node can sign but not
// write certificates, so the few DER structures are written here; the key
// never leaves the daemon's memory (efs-utils keeps one in a file). It also
// reads those extensions out of an efs-utils mount's certificate (takeover).
import { createHash, createPublicKey, generateKeyPair, randomBytes, sign, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import type { AwsCredentials } from './aws-credentials.js';
import { signConnect } from './sigv4.js';

/** EFS's certificate extensions (efs-utils' ca_extension_builder). */
export const ACCESS_POINT_OID = '1.3.6.1.4.1.4843.7.1';
export const FILE_SYSTEM_OID = '1.3.6.1.4.1.4843.7.3';
const SUBJECT_KEY_ID_OID = '2.5.29.14';
const COMMON_NAME_OID = '2.5.4.3';
const SHA256_WITH_RSA_OID = '1.2.840.113549.1.1.11';

/** efs-utils' NOT_BEFORE_MINS and NOT_AFTER_HOURS. */
export const NOT_BEFORE_MS = 15 * 60_000;
export const NOT_AFTER_MS = 3 * 3_600_000;
/** efs-utils' key size (openssl genpkey rsa_keygen_bits:3072). */
const RSA_BITS = 3072;

function length(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

const tlv = (tag: number, content: Buffer): Buffer => Buffer.concat([Buffer.from([tag]), length(content.length), content]);
const seq = (...items: Buffer[]): Buffer => tlv(0x30, Buffer.concat(items));
const set = (...items: Buffer[]): Buffer => tlv(0x31, Buffer.concat(items));
const utf8 = (s: string): Buffer => tlv(0x0c, Buffer.from(s, 'utf8'));
const octets = (b: Buffer): Buffer => tlv(0x04, b);
const bits = (b: Buffer): Buffer => tlv(0x03, Buffer.concat([Buffer.from([0]), b]));
const explicit = (n: number, content: Buffer): Buffer => tlv(0xa0 + n, content);
const NULL = Buffer.from([0x05, 0x00]);

function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number) as [number, number, ...number[]];
  const out = [40 * a + b];
  for (const n of rest) {
    const base128: number[] = [n % 128];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) base128.unshift(0x80 | (v % 128));
    out.push(...base128);
  }
  return tlv(0x06, Buffer.from(out));
}

/** A positive INTEGER from unsigned big-endian bytes. */
function integer(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0) i++;
  const v = b.subarray(i);
  return tlv(0x02, (v[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v);
}

/** UTCTime, YYMMDDHHMMSSZ: RFC 5280's form for dates before 2050. */
function utcTime(d: Date): Buffer {
  const two = (n: number): string => String(n).padStart(2, '0');
  return tlv(0x17, Buffer.from(`${two(d.getUTCFullYear() % 100)}${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}${two(d.getUTCHours())}${two(d.getUTCMinutes())}${two(d.getUTCSeconds())}Z`, 'ascii'));
}

/** The content of the DER element at `at`, and where the next one starts. */
function element(der: Buffer, at: number): { tag: number; start: number; end: number } {
  const tag = der[at] as number;
  let len = der[at + 1] as number;
  let start = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (der[start + i] as number);
    start += n;
  }
  return { tag, start, end: start + len };
}

/**
 * SHA-1 of a SubjectPublicKeyInfo's key bits: the key identifier (RFC 5280, method 1), and the PublicKeyHash
 * that an IAM signature names (efs-utils' get_public_key_sha1), so that the signature is good for this key only.
 */
export function publicKeyHash(spki: Buffer): Buffer {
  const outer = element(spki, 0);
  const algorithm = element(spki, outer.start);
  const key = element(spki, algorithm.end);
  return createHash('sha1').update(spki.subarray(key.start + 1, key.end)).digest(); // past the count of unused bits
}

/** An OBJECT IDENTIFIER's content as dotted decimal. */
function dotted(content: Buffer): string {
  const first = content[0] ?? 0;
  const parts = [Math.min(2, Math.floor(first / 40)), first - 40 * Math.min(2, Math.floor(first / 40))];
  let v = 0;
  for (const byte of content.subarray(1)) {
    v = v * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  return parts.join('.');
}

/** EFS's extensions of a DER certificate that a client presents: what each names (null where it is absent). */
export interface PresentedIdentity {
  /** 1.3.6.1.4.1.4843.7.1, the access point. */
  accessPoint: string | null;
  /** 1.3.6.1.4.1.4843.7.3, the file system. */
  fsId: string | null;
  /** 1.3.6.1.4.1.4843.7.2 is there: IAM authorization, signed with AWS credentials. */
  iam: boolean;
}

export const IAM_AUTH_OID = '1.3.6.1.4.1.4843.7.2';

/** Reads EFS's extensions out of a DER certificate (Certificate → tbsCertificate → [3] extensions). Throws on malformed DER. */
export function presentedIdentity(der: Buffer): PresentedIdentity {
  const cert = element(der, 0);
  const tbs = element(der, cert.start);
  const values = new Map<string, Buffer>();
  for (let at = tbs.start; at < tbs.end;) {
    const e = element(der, at);
    if (e.end > tbs.end) throw new Error('a length runs past the certificate');
    if (e.tag === 0xa3) {
      const list = element(der, e.start);
      for (let x = list.start; x < list.end;) {
        const ext = element(der, x);
        const id = element(der, ext.start);
        // critical BOOLEAN, if present, then the OCTET STRING value.
        let v = element(der, id.end);
        if (v.tag === 0x01) v = element(der, v.end);
        values.set(dotted(der.subarray(id.start, id.end)), der.subarray(v.start, v.end));
        x = ext.end;
      }
    }
    at = e.end;
  }
  const text = (id: string): string | null => {
    const v = values.get(id);
    if (!v) return null;
    const s = element(v, 0);
    return v.subarray(s.start, s.end).toString('utf8');
  };
  return { accessPoint: text(ACCESS_POINT_OID), fsId: text(FILE_SYSTEM_OID), iam: values.has(IAM_AUTH_OID) };
}

const extension = (id: string, value: Buffer): Buffer => seq(oid(id), octets(value));
const name = (cn: string): Buffer => seq(set(seq(oid(COMMON_NAME_OID), utf8(cn))));

/** IAM authorization: whose credentials sign, for the file system's region. */
export interface IamAuth {
  credentials: AwsCredentials;
  region: string;
}

export interface ClientIdentity {
  fsId: string;
  accessPoint: string | null;
  iam: IamAuth | null;
  /** The host's name, at most 64 characters (efs-utils: socket.gethostname()[0:64]). */
  commonName: string;
}

/**
 * efs-utils' efs_client_auth SEQUENCE: the access key ID, the signature (its hex text as an OCTET STRING), the
 * time signed, and the session token of temporary credentials.
 */
function iamAuthorization(iam: IamAuth, fsId: string, keyHash: Buffer, now: Date): Buffer {
  const c = iam.credentials;
  const sig = signConnect({
    publicKeyHash: keyHash.toString('hex'), accessKeyId: c.accessKeyId, sessionToken: c.sessionToken, region: iam.region, fsId, date: now,
  }, c.secretAccessKey);
  return seq(
    utf8(c.accessKeyId),
    octets(Buffer.from(sig, 'ascii')),
    utcTime(now),
    ...(c.sessionToken === null ? [] : [explicit(0, utf8(c.sessionToken))]),
  );
}

/** A PEM certificate for `id`, self-signed with `key` (an RSA private key), valid around `now`. */
export function clientCertificate(key: KeyObject, id: ClientIdentity, now: Date): { pem: string; notAfter: Date } {
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const algorithm = seq(oid(SHA256_WITH_RSA_OID), NULL);
  const subject = name(id.commonName.slice(0, 64));
  // Whole seconds, as a certificate's times are written (UTCTime): the mount target signs the time written again.
  const signedAt = new Date(Math.floor(now.getTime() / 1000) * 1000);
  const notAfter = new Date(signedAt.getTime() + NOT_AFTER_MS);
  const keyHash = publicKeyHash(spki);
  const tbs = seq(
    explicit(0, integer(Buffer.from([2]))), // v3
    integer(randomBytes(16)),
    algorithm,
    subject, // issuer: self-signed
    seq(utcTime(new Date(signedAt.getTime() - NOT_BEFORE_MS)), utcTime(notAfter)),
    subject,
    spki,
    explicit(3, seq(
      extension(SUBJECT_KEY_ID_OID, octets(keyHash)),
      ...(id.accessPoint === null ? [] : [extension(ACCESS_POINT_OID, utf8(id.accessPoint))]),
      ...(id.iam === null ? [] : [extension(IAM_AUTH_OID, iamAuthorization(id.iam, id.fsId, keyHash, signedAt))]),
      extension(FILE_SYSTEM_OID, utf8(id.fsId)),
    )),
  );
  const der = seq(tbs, algorithm, bits(sign('sha256', tbs, key)));
  const body = der.toString('base64').replace(/.{1,64}/g, '$&\n');
  return { pem: `-----BEGIN CERTIFICATE-----\n${body}-----END CERTIFICATE-----\n`, notAfter };
}

/**
 * The host's RSA key for client certificates, and its PEM for TLS contexts: made on first need (a 3072-bit key takes
 * a moment), then kept in memory.
 */
export class ClientKey {
  private key: Promise<{ key: KeyObject; pem: string }> | null = null;

  get(): Promise<{ key: KeyObject; pem: string }> {
    this.key ??= promisify(generateKeyPair)('rsa', { modulusLength: RSA_BITS })
      .then(({ privateKey }) => ({ key: privateKey, pem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString() }));
    return this.key;
  }
}

/** A certificate is made again once less than this is left of it (efs-utils' watchdog renews its 3-hour ones hourly). */
export const RENEW_BELOW_MS = 2 * 3_600_000;
/** An IAM certificate is made again, with fresh credentials, once its credentials have less than this left. */
export const CREDENTIALS_RENEW_BELOW_MS = 15 * 60_000;

/** What a tunnel presents: its certificate and the host's key, in PEM. */
export interface ClientPems {
  cert: string;
  key: string;
}

/** What a tunnel's certificate names: an access point, IAM authorization (whose credentials are fetched when a certificate is made), or both. */
export interface ClientWant {
  accessPoint: string | null;
  iam: { region: string; credentials: () => Promise<AwsCredentials> } | null;
}

/** What a tunnel's client certificate is, as list and status show it (never a key or a secret). */
export interface ClientCertView {
  access_point: string | null;
  /** Where the credentials that signed its IAM authorization came from (AwsCredentials.source), or null without iam. */
  iam_credentials: string | null;
  not_after: string;
}

/** The client certificates of access point and IAM tunnels, one per file system and what it names, renewed as they age. */
export class ClientCertificates {
  private readonly key = new ClientKey();
  private readonly made = new Map<string, { pems: ClientPems; renewAt: number; view: ClientCertView }>();

  constructor(private readonly commonName: string, private readonly now: () => Date = () => new Date()) {}

  /**
   * The current certificate for fsId and what it names: the same object until it is made again, when less than
   * RENEW_BELOW_MS of it is left, or less than CREDENTIALS_RENEW_BELOW_MS of its credentials. Rejects as the
   * credentials do (NO_AWS_CREDENTIALS).
   */
  async identity(fsId: string, want: ClientWant): Promise<ClientPems> {
    const { key, pem: keyPem } = await this.key.get();
    const id = `${fsId} ${want.accessPoint ?? '-'} ${want.iam ? want.iam.region : '-'}`;
    const held = this.made.get(id);
    if (held && this.now().getTime() < held.renewAt) return held.pems;
    const iam = want.iam ? { region: want.iam.region, credentials: await want.iam.credentials() } : null;
    const now = this.now();
    const { pem, notAfter } = clientCertificate(key, { fsId, accessPoint: want.accessPoint, iam, commonName: this.commonName }, now);
    const expires = iam?.credentials.expiration?.getTime() ?? Infinity;
    const renewAt = Math.min(notAfter.getTime() - RENEW_BELOW_MS, expires - CREDENTIALS_RENEW_BELOW_MS);
    const pems = { cert: pem, key: keyPem };
    const view = { access_point: want.accessPoint, iam_credentials: iam?.credentials.source ?? null, not_after: notAfter.toISOString() };
    this.made.set(id, { pems, renewAt, view });
    return pems;
  }

  /** fsId's latest certificate, or null when it has none. */
  view(fsId: string): ClientCertView | null {
    let latest: ClientCertView | null = null;
    for (const [id, m] of this.made) if (id.startsWith(`${fsId} `) && (latest === null || m.view.not_after > latest.not_after)) latest = m.view;
    return latest;
  }

  /** A file system's tunnel is gone: its certificate is not kept. */
  forget(fsId: string): void {
    for (const id of this.made.keys()) if (id.startsWith(`${fsId} `)) this.made.delete(id);
  }
}
