// The client certificate an access point or IAM mount presents, as efs-utils
// makes it: self-signed with the host's own RSA key, CN the host name, and
// EFS's extensions naming the access point (1.3.6.1.4.1.4843.7.1), carrying
// the IAM authorization (…7.2: a SigV4 signature tied to the key) and naming
// the file system (…7.3), valid from 15 minutes before it is made to 3 hours
// after. The mount target reads them from it. Node can sign but not
// write certificates, so it is written in DER (der.ts) here; the key
// never leaves the daemon's memory (efs-utils keeps one in a file). It also
// reads those extensions out of an efs-utils mount's certificate (takeover).
import { createPublicKey, generateKeyPair, randomBytes, sign, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import type { AwsCredentials } from './aws-credentials.js';
import { NULL, bits, certificateFields, children, content, dotted, element, explicit, integer, octets, oid, publicKeyHash, seq, set, utcTime, utf8 } from './der.js';
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
  const { extensions } = certificateFields(der);
  const values = new Map<string, Buffer>();
  const list = extensions ? children(der, extensions)[0] : undefined;
  for (const ext of list ? children(der, list) : []) {
    // extnID, critical BOOLEAN if present, then the OCTET STRING value.
    const [id, ...rest] = children(der, ext);
    const v = rest.find((e) => e.tag === 0x04);
    if (id && v) values.set(dotted(content(der, id)), content(der, v));
  }
  const text = (id: string): string | null => {
    const v = values.get(id);
    return v ? content(v, element(v, 0)).toString('utf8') : null;
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
