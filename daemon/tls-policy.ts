// The TLS policy, in one place: TLS 1.2 with AES-256-GCM (optionally TLS 1.3
// with TLS_AES_256_GCM_SHA384), the configured CA bundle only, and the file
// system's DNS name checked whatever address is dialled.
import { constants, X509Certificate } from 'node:crypto';
import { checkServerIdentity, connect, createSecureContext, type PeerCertificate, type SecureContext } from 'node:tls';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Config } from './config.js';
import { RelayError, type ErrorCode } from './errors.js';
import type { MountOptions } from './options.js';
import type { ClientPems } from './client-cert.js';

export const TLS12_CIPHERS = 'ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384';
export const TLS13_CIPHERS = 'TLS_AES_256_GCM_SHA384';

export type TlsMaxVersion = 'TLSv1.2' | 'TLSv1.3';

/**
 * The certificates of a PEM bundle, or why it is not one: each
 * BEGIN/END CERTIFICATE block must parse. OpenSSL would skip or stop at a
 * broken block without a word, leaving a tunnel that trusts less than the
 * file says (or nothing), so a broken block is an error here.
 */
export function parseCaBundle(pem: string): X509Certificate[] | string {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) return 'no PEM certificate in the file';
  const certs: X509Certificate[] = [];
  for (const [i, block] of blocks.entries()) {
    try {
      certs.push(new X509Certificate(block));
    } catch {
      return `certificate ${i + 1} of ${blocks.length} does not parse (a file still being written, or damaged)`;
    }
  }
  if ((pem.match(/-----BEGIN CERTIFICATE-----/g) ?? []).length !== blocks.length) return 'a certificate has no END line (a file still being written, or damaged)';
  return certs;
}

/** The bundle's text and its certificates; CA_BUNDLE_UNREADABLE when it cannot be used. */
export async function readCaBundle(file: string): Promise<{ pem: string; certificates: X509Certificate[] }> {
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (err) {
    throw new RelayError('CA_BUNDLE_UNREADABLE', `Cannot use CA bundle ${file}: ${(err as Error).message}`);
  }
  const certs = parseCaBundle(pem);
  if (typeof certs === 'string') throw new RelayError('CA_BUNDLE_UNREADABLE', `Cannot use CA bundle ${file}: ${certs}`);
  return { pem, certificates: certs };
}

/** What one CA bundle gives the tunnels that verify with it. */
export interface Trust {
  ctx: SecureContext;
  /** SHA-256 fingerprints of the bundle's certificates, as PeerCertificate.fingerprint256 writes them: what verify=3 accepts as the server's own. */
  held: ReadonlySet<string>;
}

/** Built once per CA bundle (TunnelManager keeps them); every tunnel and connection verifying with that bundle shares it. */
export function policyTrust(pem: string, certificates: readonly X509Certificate[], maxVersion: TlsMaxVersion): Trust {
  return { ctx: policyContext(pem, maxVersion), held: new Set(certificates.map((c) => c.fingerprint256)) };
}

/** The trust of a tunnel whose bundle cannot be read: nothing. */
export function noTrust(maxVersion: TlsMaxVersion): Trust {
  return policyTrust('', [], maxVersion);
}

/**
 * The verify level a tunnel's options ask for, as the tunnel manager and the fstab plan compare it. 3 is stunnel's
 * level 3: besides the chain and the name, the server's own certificate must be one of the bundle's. Any other
 * level is 2: 0 and 1 are refused before a tunnel is made.
 */
export function verifyLevel(options: MountOptions): 2 | 3 {
  return options.verify === '3' ? 3 : 2;
}

/**
 * The TLS context of a CA bundle (policyTrust), presenting `client` (an access point or IAM tunnel's certificate and
 * key, client-cert.ts) when given.
 */
export function policyContext(caPem: string, maxVersion: TlsMaxVersion, client?: ClientPems): SecureContext {
  // `ca` replaces Node's built-in store, so only the bundle is trusted.
  // TLS 1.3 suites are named explicitly so that no AES-128 or ChaCha suite is offered.
  return createSecureContext({
    ca: caPem === '' ? [] : caPem, // [] trusts nothing (a tunnel whose bundle is unreadable)
    minVersion: 'TLSv1.2',
    maxVersion,
    ciphers: maxVersion === 'TLSv1.3' ? `${TLS13_CIPHERS}:${TLS12_CIPHERS}` : TLS12_CIPHERS,
    // No renegotiation, as efs-utils configures stunnel (renegotiation = no): Node verifies the
    // server certificate once, after the first handshake, and would not look at one a renegotiation brings.
    secureOptions: constants.SSL_OP_NO_RENEGOTIATION,
    ...(client ? { cert: client.cert, key: client.key } : {}),
  });
}

/** A bundle's trust for an access point or IAM tunnel: the same CA bundle and verify=3 set, and its client certificate. */
export function clientTrust(caPem: string, bundle: Trust, maxVersion: TlsMaxVersion, client: ClientPems): Trust {
  return { ctx: policyContext(caPem, maxVersion, client), held: bundle.held };
}

/** The CA bundle a tunnel verifies with: its cafile=, else tls.ca_file; normalised, so that one file compares equal. */
export function caFileFor(options: MountOptions, cfg: Config): string {
  return resolve(options.cafile || cfg.tls.ca_file);
}

/** Node's code for a server certificate that verify=3 refuses, mapped to TLS_CERT_NOT_IN_BUNDLE. */
const NOT_IN_BUNDLE = 'ERR_EFS_RELAY_CERT_NOT_IN_BUNDLE';

/**
 * Runs once the chain has verified: the file system's name, not the dialled address, and under verify=3
 * (`held` gives the bundle's fingerprints, else null) the certificate itself in the bundle.
 */
export function identityChecker(certName: string, held: () => ReadonlySet<string> | null): (host: string, cert: PeerCertificate) => Error | undefined {
  return (_host, cert) => {
    const mismatch = checkServerIdentity(certName, cert);
    if (mismatch) return mismatch;
    const pinned = held();
    if (pinned === null || pinned.has(cert.fingerprint256)) return undefined;
    return Object.assign(new Error(`its certificate (SHA-256 ${cert.fingerprint256}) is not one of the CA bundle's, which verify=3 requires`), { code: NOT_IN_BUNDLE });
  };
}

// The handshake_failure alert (40), as OpenSSL 3.0 (Node 20) and 3.2+ (Node 24) name it.
const HANDSHAKE_FAILURE_ALERT = ['ERR_SSL_SSLV3_ALERT_HANDSHAKE_FAILURE', 'ERR_SSL_SSL/TLS_ALERT_HANDSHAKE_FAILURE'] as const;

// OpenSSL / Node error codes → our stable codes.
const BY_NODE_CODE: Record<string, ErrorCode> = {
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: 'TLS_UNTRUSTED_CHAIN',
  UNABLE_TO_GET_ISSUER_CERT: 'TLS_UNTRUSTED_CHAIN',
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: 'TLS_UNTRUSTED_CHAIN',
  SELF_SIGNED_CERT_IN_CHAIN: 'TLS_UNTRUSTED_CHAIN',
  CERT_SIGNATURE_FAILURE: 'TLS_UNTRUSTED_CHAIN',
  CERT_UNTRUSTED: 'TLS_UNTRUSTED_CHAIN',
  CERT_REJECTED: 'TLS_UNTRUSTED_CHAIN',
  INVALID_CA: 'TLS_UNTRUSTED_CHAIN',
  DEPTH_ZERO_SELF_SIGNED_CERT: 'TLS_SELF_SIGNED',
  ERR_TLS_CERT_ALTNAME_INVALID: 'TLS_HOSTNAME_MISMATCH',
  [NOT_IN_BUNDLE]: 'TLS_CERT_NOT_IN_BUNDLE',
  CERT_HAS_EXPIRED: 'TLS_CERT_EXPIRED',
  CERT_NOT_YET_VALID: 'TLS_CERT_NOT_YET_VALID',
  ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION: 'TLS_PROTOCOL_REFUSED',
  ERR_SSL_UNSUPPORTED_PROTOCOL: 'TLS_PROTOCOL_DOWNGRADE',
  ...Object.fromEntries(HANDSHAKE_FAILURE_ALERT.map((c) => [c, 'TLS_CIPHER_REFUSED'] as const)),
  ERR_SSL_NO_SHARED_CIPHER: 'TLS_CIPHER_REFUSED',
  ERR_SSL_NO_CIPHERS_AVAILABLE: 'TLS_CIPHER_REFUSED',
  ERR_SSL_WRONG_CIPHER_RETURNED: 'TLS_CIPHER_REFUSED',
  ECONNREFUSED: 'CONNECT_REFUSED',
  ECONNRESET: 'UPSTREAM_RESET',
  EPIPE: 'UPSTREAM_RESET',
  ETIMEDOUT: 'CONNECT_TIMEOUT',
  EHOSTUNREACH: 'CONNECT_TIMEOUT',
  ENETUNREACH: 'CONNECT_TIMEOUT',
  EMFILE: 'FD_LIMIT',
  ENFILE: 'FD_LIMIT',
  ENOTFOUND: 'DNS_FAILED',
  EAI_AGAIN: 'DNS_FAILED',
};

export function classifyUpstreamError(err: unknown): ErrorCode {
  if (err instanceof RelayError) return err.code;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code && BY_NODE_CODE[code]) return BY_NODE_CODE[code];
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || (code ?? '').startsWith('ERR_SSL_')) return 'TLS_HANDSHAKE_FAILED';
  // "Client network socket disconnected before secure TLS connection was established"
  if (code === 'ECONNABORTED' || /socket disconnected before secure/i.test((err as Error)?.message ?? '')) return 'UPSTREAM_RESET';
  return 'TLS_HANDSHAKE_FAILED';
}

// During a handshake that alert refuses our ciphers; after it, it ends a session whose renegotiation we refused.
const RENEGOTIATION_ENDED: ReadonlySet<string> = new Set(HANDSHAKE_FAILURE_ALERT);

const NODE_SYSTEM_CA_ADVICE = /; if the root CA is installed locally, try running Node\.js with --use-system-ca\.?$/;

/**
 * OpenSSL's reason out of Node's error text: "…:error:0A000410:SSL routines:
 * ssl3_read_bytes:sslv3 alert handshake failure:…/rec_layer_s3.c:1601:SSL alert
 * number 40" → "sslv3 alert handshake failure (alert 40)"; "…:Provider routines:
 * ossl_gcm_stream_update:cipher operation failed:…" → "cipher operation failed".
 * Other texts are returned as they are.
 */
export function tlsErrorText(err: unknown): string {
  // Node 24 adds advice to a chain it cannot verify. It does not apply here: the daemon verifies against its CA
  // bundle alone, by design, and its binary takes no Node.js flag. The error code's own hint says what to do.
  const text = (err instanceof Error ? err.message : String(err)).trim().replace(NODE_SYSTEM_CA_ADVICE, '');
  const m = /:error:[0-9A-F]+:[^:]*routines:[^:]*:([^:]+):[^:]*:\d+:?(?:SSL alert number (\d+))?$/.exec(text);
  if (!m) return text;
  return m[2] ? `${m[1]} (alert ${m[2]})` : (m[1] as string);
}

/** The codes an established session can end with (classifySessionError). */
export const SESSION_FAILURE_CODES = ['TLS_SESSION_FAILED', 'TLS_RENEGOTIATION_REFUSED'] as const satisfies readonly ErrorCode[];

/**
 * Drops NODE_TLS_REJECT_UNAUTHORIZED=0 from this process's environment; true if it was there. Every TLS client of
 * the daemon says rejectUnauthorized itself, so the variable changes nothing here; dropped all the same, so that Node
 * does not warn that TLS is unverified and no child process inherits it.
 */
export function dropVerifyOverride(env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NODE_TLS_REJECT_UNAUTHORIZED !== '0') return false;
  delete env.NODE_TLS_REJECT_UNAUTHORIZED;
  return true;
}

/**
 * Our code for the error that ended an established TLS session, or null for
 * a reset or a close, which end a connection normally (as in ghostunnel).
 */
export function classifySessionError(err: unknown): (typeof SESSION_FAILURE_CODES)[number] | null {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? '';
  if (!code.startsWith('ERR_SSL_')) return null;
  // After the handshake, a handshake_failure alert is the server giving up
  // on the renegotiation that we refused (SSL_OP_NO_RENEGOTIATION).
  if (RENEGOTIATION_ENDED.has(code)) return 'TLS_RENEGOTIATION_REFUSED';
  return 'TLS_SESSION_FAILED';
}

/**
 * A server that aborts our handshake with a bare alert does not say whether
 * it disliked our TLS version or our ciphers. To name the right cause, make
 * one more handshake that accepts anything, read what the server picks, and
 * close before any application byte. Only runs after a refusal.
 */
export function diagnoseRefusal(
  address: string, port: number, servername: string, maxVersion: TlsMaxVersion, timeoutMs = 3_000,
): Promise<{ code: ErrorCode; detail: string } | null> {
  return new Promise((resolve) => {
    const sock = connect({
      host: address, port, servername,
      minVersion: 'TLSv1', maxVersion: 'TLSv1.3', ciphers: 'ALL:@SECLEVEL=0',
      rejectUnauthorized: false,
    });
    const done = (v: { code: ErrorCode; detail: string } | null): void => {
      clearTimeout(timer);
      sock.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    sock.once('secureConnect', () => {
      const protocol = sock.getProtocol() ?? 'unknown';
      const cipher = sock.getCipher()?.name ?? 'unknown';
      const detail = `the server negotiates ${protocol} with ${cipher}`;
      if (['SSLv3', 'TLSv1', 'TLSv1.1'].includes(protocol)) done({ code: 'TLS_PROTOCOL_DOWNGRADE', detail });
      else if (protocol === 'TLSv1.3' && maxVersion === 'TLSv1.2') done({ code: 'TLS_PROTOCOL_REFUSED', detail });
      else done({ code: 'TLS_CIPHER_REFUSED', detail });
    });
    sock.once('error', () => done(null));
  });
}
