// OCSP checking of the mount target's certificate chain: the `ocsp` mount
// option, for which efs-utils has stunnel check with OCSPaia = yes. As stunnel
// does, every certificate of the verified chain but the root that names OCSP
// responders (its Authority Information Access) must be answered "good" by one
// of them, in a response signed by its issuer or by a responder that issuer
// authorized for OCSP (RFC 6960 4.2.2.2). "Revoked" refuses the connection;
// no conclusive answer refuses it too (stunnel's OCSPrequire = yes). A
// certificate that names no responder passes, as in stunnel.
//
// Unlike stunnel, which asks on every full handshake, an answer is kept and
// reused until it is an hour old; when asking again fails, it is reused for
// as long as it is valid (its nextUpdate), so that a responder's outage does
// not fail an NFS client's reconnect. A resumed session, which stunnel does
// not check, is asked about as the one it resumes (relay.ts).
import { createHash, verify as verifySignature, X509Certificate } from 'node:crypto';
import { NULL, certificateFields, children, content, dotted, element, encoding, generalizedTime, octets, oid, publicKeyHash, seq, tlv, type Element } from './der.js';
import type { DetailedPeerCertificate } from 'node:tls';
import { RelayError } from './errors.js';
import { ask } from './http-ask.js';

const SHA1_OID = '1.3.14.3.2.26';
const OCSP_BASIC_OID = '1.3.6.1.5.5.7.48.1.1';
const OCSP_SIGNING_OID = '1.3.6.1.5.5.7.3.9';
/**
 * The hash of each signature algorithm an OCSP response may be signed with (RSA PKCS#1 v1.5 and ECDSA). Not SHA-1:
 * a chosen-prefix collision could forge a "good" answer, and current responders sign with SHA-256.
 */
const SIGNATURE_HASH: Record<string, string> = {
  '1.2.840.113549.1.1.11': 'sha256',
  '1.2.840.113549.1.1.12': 'sha384',
  '1.2.840.113549.1.1.13': 'sha512',
  '1.2.840.10045.4.3.2': 'sha256',
  '1.2.840.10045.4.3.3': 'sha384',
  '1.2.840.10045.4.3.4': 'sha512',
};
const RESPONSE_STATUS = ['successful', 'malformedRequest', 'internalError', 'tryLater', '4', 'sigRequired', 'unauthorized'];
const REVOCATION_REASON = [
  'unspecified', 'keyCompromise', 'cACompromise', 'affiliationChanged', 'superseded', 'cessationOfOperation',
  'certificateHold', '7', 'removeFromCRL', 'privilegeWithdrawn', 'aACompromise',
];

/** How far an answer's dates may be off this host's clock (OpenSSL's ocsp -validity_period default). */
export const CLOCK_LEEWAY_MS = 5 * 60_000;
/** An answer is asked for again once it is this old. */
export const REFRESH_MS = 3_600_000;
/** Each responder's limit, connect to last byte (stunnel's TIMEOUTocsp). */
export const RESPONDER_TIMEOUT_MS = 5_000;

/** What an OCSP request names: the certificate, by its issuer's name and key and its serial number (RFC 6960 4.1.1). */
export interface CertId {
  nameHash: Buffer;
  keyHash: Buffer;
  /** The serial number INTEGER's content, as the certificate encodes it. */
  serial: Buffer;
}

/** `cert`'s CertID, with SHA-1 as every responder takes it. */
export function certId(cert: X509Certificate, issuer: X509Certificate): CertId {
  const [c, i] = [cert.raw, issuer.raw];
  const [cf, isf] = [certificateFields(c), certificateFields(i)];
  return {
    nameHash: createHash('sha1').update(encoding(i, isf.subject)).digest(),
    keyHash: publicKeyHash(encoding(i, isf.spki)),
    serial: content(c, cf.serial),
  };
}

const certIdDer = (id: CertId): Buffer => seq(seq(oid(SHA1_OID), NULL), octets(id.nameHash), octets(id.keyHash), tlv(0x02, id.serial));

/** An OCSPRequest for one certificate, without a nonce (stunnel's OCSPnonce = no; public responders ignore it). */
export function ocspRequest(id: CertId): Buffer {
  return seq(seq(seq(seq(certIdDer(id))))); // OCSPRequest → TBSRequest → requestList → Request → CertID
}

/** The OCSP responders a certificate names (Authority Information Access, "OCSP - URI:"). */
export function responderUrls(cert: X509Certificate): string[] {
  return (cert.infoAccess ?? '').split('\n').flatMap((line) => {
    const m = /^OCSP - URI:(.+)$/.exec(line.trim());
    return m ? [m[1] as string] : [];
  });
}

/** What a responder said of one certificate. */
export interface OcspAnswer {
  status: 'good' | 'revoked' | 'unknown';
  thisUpdate: Date;
  nextUpdate: Date | null;
  revokedAt: Date | null;
  /** The revocation reason's name (RFC 5280 CRLReason), if the responder gave one. */
  reason: string | null;
}

/** The extended key usages of a certificate (Node 24 names them extKeyUsage, Node 20 keyUsage). */
function extendedKeyUsage(c: X509Certificate): string[] {
  return (c as X509Certificate & { extKeyUsage?: string[] }).extKeyUsage ?? c.keyUsage ?? [];
}

/** A responder certificate `issuer` signed for OCSP, valid now (RFC 6960 4.2.2.2: delegated by the CA that issued the certificate asked about). */
function delegatedBy(c: X509Certificate, issuer: X509Certificate, now: Date): boolean {
  return c.checkIssued(issuer) && c.verify(issuer.publicKey) && extendedKeyUsage(c).includes(OCSP_SIGNING_OID)
    && Date.parse(c.validFrom) <= now.getTime() && now.getTime() <= Date.parse(c.validTo);
}

function sameCertId(der: Buffer, e: Element, id: CertId): boolean {
  const [alg, nameHash, keyHash, serial] = children(der, e);
  const algOid = alg ? children(der, alg)[0] : undefined;
  if (!algOid || !nameHash || !keyHash || !serial || dotted(content(der, algOid)) !== SHA1_OID) return false;
  return content(der, nameHash).equals(id.nameHash) && content(der, keyHash).equals(id.keyHash) && content(der, serial).equals(id.serial);
}

/**
 * What an OCSP response (DER) says of the certificate `id` names, once its signature is checked against `issuer` or a
 * responder `issuer` delegated, and its dates against `now`. Throws, saying why, when it says nothing usable.
 */
export function readOcspResponse(der: Buffer, id: CertId, issuer: X509Certificate, now: Date): OcspAnswer {
  const top = element(der, 0);
  const [statusEl, bytesEl] = children(der, top);
  if (statusEl?.tag !== 0x0a) throw new Error('the answer is not an OCSP response');
  const code = content(der, statusEl)[0] ?? -1;
  if (code !== 0) throw new Error(`the responder answered "${RESPONSE_STATUS[code] ?? code}"`);
  const responseBytes = bytesEl?.tag === 0xa0 ? children(der, bytesEl)[0] : undefined;
  const [typeEl, basicEl] = responseBytes ? children(der, responseBytes) : [];
  if (!typeEl || !basicEl || dotted(content(der, typeEl)) !== OCSP_BASIC_OID) throw new Error('the answer is not a basic OCSP response');

  const basic = content(der, basicEl);
  const [tbsEl, algEl, sigEl, certsEl] = children(basic, element(basic, 0));
  if (!tbsEl || !algEl || sigEl?.tag !== 0x03) throw new Error('the answer is not a basic OCSP response');
  const algOid = children(basic, algEl)[0];
  const algorithm = algOid ? dotted(content(basic, algOid)) : '?';
  const hash = SIGNATURE_HASH[algorithm];
  if (!hash) throw new Error(`the answer is signed with an algorithm efs-relay does not check (${algorithm})`);
  const signature = content(basic, sigEl).subarray(1); // past the count of unused bits
  // [0] EXPLICIT SEQUENCE OF Certificate, if the responder sent its own certificate.
  const certList = certsEl?.tag === 0xa0 ? children(basic, certsEl)[0] : undefined;
  const included = certList ? children(basic, certList).map((e) => new X509Certificate(encoding(basic, e))) : [];
  const signers = [issuer, ...included.filter((c) => delegatedBy(c, issuer, now))];
  const signed = encoding(basic, tbsEl);
  const verifies = (s: X509Certificate): boolean => {
    try {
      return verifySignature(hash, signed, s.publicKey, signature);
    } catch {
      return false; // a key of another kind than the algorithm (an RSA signature, an EC key)
    }
  };
  if (!signers.some(verifies)) {
    throw new Error('the answer is not signed by the certificate\'s issuer, nor by a responder that issuer authorized for OCSP');
  }

  const fields = children(basic, tbsEl);
  const [, , responses] = fields[0]?.tag === 0xa0 ? fields.slice(1) : fields; // version, responderID, producedAt, responses
  for (const single of responses ? children(basic, responses) : []) {
    const [cid, status, thisEl, ...more] = children(basic, single);
    if (!cid || !status || thisEl?.tag !== 0x18 || !sameCertId(basic, cid, id)) continue;
    const thisUpdate = generalizedTime(content(basic, thisEl));
    const nextEl = more.find((e) => e.tag === 0xa0);
    const nextTime = nextEl ? children(basic, nextEl)[0] : undefined;
    const nextUpdate = nextTime ? generalizedTime(content(basic, nextTime)) : null;
    if (thisUpdate.getTime() > now.getTime() + CLOCK_LEEWAY_MS) throw new Error(`the answer is dated ${thisUpdate.toISOString()}, in the future (is this host's clock right?)`);
    if (nextUpdate && nextUpdate.getTime() < now.getTime() - CLOCK_LEEWAY_MS) throw new Error(`the answer is out of date (its next update was due ${nextUpdate.toISOString()})`);
    const answer = { thisUpdate, nextUpdate, revokedAt: null, reason: null };
    if (status.tag === 0x80) return { ...answer, status: 'good' };
    if (status.tag === 0x82) return { ...answer, status: 'unknown' };
    if (status.tag !== 0xa1) throw new Error('the answer has a status OCSP does not define');
    const [at, reasonEl] = children(basic, status);
    const reasonCode = reasonEl?.tag === 0xa0 ? children(basic, reasonEl)[0] : undefined;
    return {
      ...answer,
      status: 'revoked',
      revokedAt: at ? generalizedTime(content(basic, at)) : null,
      reason: reasonCode ? REVOCATION_REASON[content(basic, reasonCode)[0] ?? 0] ?? null : null,
    };
  }
  throw new Error('the answer does not name the certificate asked about');
}

/** A certificate as messages name it: its subject's CN (or whole subject) and serial number. */
function named(c: X509Certificate): string {
  const cn = /^CN=(.*)$/m.exec(c.subject)?.[1] ?? c.subject.replaceAll('\n', ', ');
  return `"${cn}" (serial ${c.serialNumber})`;
}

const stillValid = (a: OcspAnswer, now: number): boolean => a.nextUpdate === null || a.nextUpdate.getTime() >= now - CLOCK_LEEWAY_MS;

/**
 * The verified chain of a TLS socket's peer, leaf first, from getPeerCertificate(true): Node completes it up to the
 * root from the CA bundle, where getPeerX509Certificate() stops at the certificates the peer sent.
 */
export function peerChain(peer: DetailedPeerCertificate | undefined): X509Certificate[] {
  const chain: X509Certificate[] = [];
  for (let c = peer; c?.raw && chain.length < 10; c = c.issuerCertificate) {
    chain.push(new X509Certificate(c.raw));
    if (c.issuerCertificate === c) break; // the root, its own issuer
  }
  return chain;
}

/**
 * Asks OCSP responders, keeping their answers: one for the whole daemon, since the tunnels of a region share the
 * mount targets' intermediate CA.
 */
export class OcspChecker {
  private readonly answers = new Map<string, { answer: OcspAnswer; asked: number }>();
  private readonly asking = new Map<string, Promise<OcspAnswer>>();

  constructor(private readonly timeoutMs = RESPONDER_TIMEOUT_MS, private readonly now: () => Date = () => new Date()) {}

  /**
   * Resolves when every certificate of `chain` (leaf first, each followed by its issuer, root last: peerChain) that
   * names a responder is "good"; rejects with TLS_CERT_REVOKED, or TLS_CERT_STATUS_UNKNOWN when no responder gave a
   * conclusive answer.
   */
  async check(chain: readonly X509Certificate[]): Promise<void> {
    // Never pass what was not seen: a resumed session whose chain is unknown has none.
    if (chain.length === 0) throw new RelayError('TLS_CERT_STATUS_UNKNOWN', 'Cannot ask OCSP about the mount target\'s certificates: the TLS session shows none');
    const pairs: Array<[X509Certificate, X509Certificate]> = [];
    // The last is the CA bundle's own, trusted as it is (stunnel: "Ignoring the root certificate").
    for (let i = 0; i + 1 < chain.length; i++) {
      const [cert, issuer] = [chain[i] as X509Certificate, chain[i + 1] as X509Certificate];
      if (responderUrls(cert).length > 0) pairs.push([cert, issuer]);
    }
    const answers = await Promise.all(pairs.map(([cert, issuer]) => this.answer(cert, issuer).then((a) => [cert, a] as const)));
    for (const [cert, a] of answers) {
      if (a.status !== 'revoked') continue;
      const when = a.revokedAt ? ` on ${a.revokedAt.toISOString()}` : '';
      throw new RelayError('TLS_CERT_REVOKED', `The certificate ${named(cert)} was revoked${when}${a.reason ? ` (${a.reason})` : ''}, its OCSP responder says`);
    }
  }

  private async answer(cert: X509Certificate, issuer: X509Certificate): Promise<OcspAnswer> {
    // By the certificate's fingerprint, which Node has at hand: a kept answer costs a connection no DER or hashing.
    const key = cert.fingerprint256;
    const now = this.now().getTime();
    const held = this.answers.get(key);
    if (held && now - held.asked < REFRESH_MS && stillValid(held.answer, now)) return held.answer;
    let pending = this.asking.get(key);
    if (!pending) {
      pending = this.ask(cert, issuer).then((answer) => {
        const asked = this.now().getTime();
        // Answers past their next update are no use to anyone: dropped, so that replaced certificates do not pile up.
        for (const [k, a] of this.answers) if (!stillValid(a.answer, asked)) this.answers.delete(k);
        this.answers.set(key, { answer, asked });
        return answer;
      }).finally(() => this.asking.delete(key));
      this.asking.set(key, pending);
    }
    try {
      return await pending;
    } catch (err) {
      // The last answer still holds until its next update: a responder's outage does not fail connections meanwhile.
      if (held && stillValid(held.answer, this.now().getTime())) return held.answer;
      throw err;
    }
  }

  /** The first conclusive ("good" or "revoked") answer of the certificate's responders, in the order it names them. */
  private async ask(cert: X509Certificate, issuer: X509Certificate): Promise<OcspAnswer> {
    const why: string[] = [];
    const id = certId(cert, issuer);
    const request = ocspRequest(id);
    for (const url of responderUrls(cert)) {
      // OCSP answers are signed, so they travel over plain HTTP (stunnel too refuses an https: responder).
      if (!url.startsWith('http://')) {
        why.push(`${url}: not an http:// URL`);
        continue;
      }
      try {
        const r = await ask(url, 'POST', { 'Content-Type': 'application/ocsp-request', Accept: 'application/ocsp-response' }, this.timeoutMs, request);
        if (r.status !== 200) throw new Error(`HTTP status ${r.status}`);
        const answer = readOcspResponse(r.bytes, id, issuer, this.now());
        if (answer.status !== 'unknown') return answer;
        why.push(`${url}: the responder does not know the certificate (status "unknown")`);
      } catch (err) {
        why.push(`${url}: ${(err as Error).message}`);
      }
    }
    throw new RelayError('TLS_CERT_STATUS_UNKNOWN', `No OCSP responder said whether the certificate ${named(cert)} is good: ${why.join('; ')}`);
  }
}
