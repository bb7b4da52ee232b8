import { expect } from 'chai';
import { X509Certificate } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { certId, CLOCK_LEEWAY_MS, OcspChecker, ocspRequest, readOcspResponse, REFRESH_MS, responderUrls, type CertId } from '../../daemon/ocsp.js';
import { RelayError } from '../../daemon/errors.js';
import { run, tempDir } from '../helpers/daemon.js';
import { OcspAuthority } from '../helpers/ocsp-authority.js';
import type { Pem } from '../helpers/pki.js';

const HOST = '127.0.0.76';
const PORT = 18081;
const URL = `http://${HOST}:${PORT}`;

/** The leaf's verified chain, leaf first, as peerChain gives it from a TLS socket (the daemon's tests prove that). */
function chainOf(leafPem: string, ca: OcspAuthority): X509Certificate[] {
  return [new X509Certificate(leafPem), new X509Certificate(ca.intermediate.cert), new X509Certificate(ca.root.cert)];
}

async function refusal(p: Promise<unknown>): Promise<RelayError> {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(err, 'a refusal').to.be.instanceOf(RelayError);
  return err as RelayError;
}

describe('OCSP checking of the mount target\'s chain (the ocsp option)', function () {
  this.timeout(30_000);
  let ca: OcspAuthority;
  before(async () => {
    ca = await new OcspAuthority(tempDir('efs-relay-ocsp-'), URL).start(HOST, PORT);
  });
  after(async () => {
    await ca.stop();
  });
  beforeEach(() => {
    ca.mode = 'answer';
  });

  /** The DER answer of `issuer`'s responder about the certificate `id` names. */
  const asked = async (issuer: 'root' | 'intermediate', id: CertId): Promise<Buffer> => {
    const answer = await fetch(`${URL}/${issuer}`, { method: 'POST', body: ocspRequest(id), headers: { 'Content-Type': 'application/ocsp-request' } });
    return Buffer.from(await answer.arrayBuffer());
  };
  /** A new leaf, and its responder's answer about it. */
  const freshAnswer = async (): Promise<{ leaf: Pem; issuer: X509Certificate; id: CertId; der: Buffer }> => {
    const leaf = ca.leaf('fs-12345678.efs.us-east-1.amazonaws.com');
    const [cert, issuer] = chainOf(leaf.cert, ca) as [X509Certificate, X509Certificate];
    const id = certId(cert, issuer);
    return { leaf, issuer, id, der: await asked('intermediate', id) };
  };

  it('writes a request that openssl reads as one CertID with SHA-1 of the issuer\'s name and key and the certificate\'s serial', async () => {
    const leaf = ca.leaf('fs-12345678.efs.us-east-1.amazonaws.com');
    const id = certId(new X509Certificate(leaf.cert), new X509Certificate(ca.intermediate.cert));
    const dir = tempDir('efs-relay-ocsp-req-');
    writeFileSync(`${dir}/req.der`, ocspRequest(id));
    const text = (await run('openssl', ['ocsp', '-reqin', `${dir}/req.der`, '-req_text'])).stdout;
    expect(text).to.contain('Hash Algorithm: sha1');
    expect(text).to.contain(`Issuer Name Hash: ${id.nameHash.toString('hex').toUpperCase()}`);
    expect(text).to.contain(`Issuer Key Hash: ${id.keyHash.toString('hex').toUpperCase()}`);
    expect(text).to.contain(`Serial Number: ${new X509Certificate(leaf.cert).serialNumber.toUpperCase()}`);
    expect(text).not.to.contain('Nonce');
  });

  it('reads the responder URL of each certificate from its Authority Information Access', () => {
    const leaf = ca.leaf('fs-12345678.efs.us-east-1.amazonaws.com');
    expect(responderUrls(new X509Certificate(leaf.cert))).to.deep.equal([`${URL}/intermediate`]);
    expect(responderUrls(new X509Certificate(ca.intermediate.cert))).to.deep.equal([`${URL}/root`]);
    expect(responderUrls(new X509Certificate(ca.root.cert))).to.deep.equal([]);
  });

  it('passes a chain whose leaf and intermediate CA the responders call good, asking about each once and not about the root', async () => {
    const leaf = ca.leaf('fs-12345678.efs.us-east-1.amazonaws.com');
    const before = { ...ca.asked };
    const checker = new OcspChecker();
    await checker.check(chainOf(leaf.cert, ca));
    expect(ca.asked.intermediate - before.intermediate, 'the leaf, asked of the intermediate\'s delegated responder').to.equal(1);
    expect(ca.asked.root - before.root, 'the intermediate, asked of the root\'s responder').to.equal(1);
    // Kept: a second connection asks nobody.
    await checker.check(chainOf(leaf.cert, ca));
    expect(ca.asked).to.deep.equal({ root: before.root + 1, intermediate: before.intermediate + 1 });
  });

  it('refuses a revoked leaf with TLS_CERT_REVOKED, naming the certificate, when and why', async () => {
    const leaf = ca.leaf('fs-0badbad0.efs.us-east-1.amazonaws.com');
    ca.revoke('intermediate', leaf);
    const err = await refusal(new OcspChecker().check(chainOf(leaf.cert, ca)));
    expect(err.code).to.equal('TLS_CERT_REVOKED');
    expect(err.message).to.match(/^The certificate "fs-0badbad0\.efs\.us-east-1\.amazonaws\.com" \(serial [0-9A-F]+\) was revoked on \d{4}-\d\d-\d\dT[\d:.]+Z \(keyCompromise\), its OCSP responder says$/);
  });

  it('refuses every leaf of a revoked intermediate CA, asked of the root\'s responder', async () => {
    const other = new OcspAuthority(tempDir('efs-relay-ocsp-revoked-ica-'), `http://${HOST}:${PORT + 1}`);
    await other.start(HOST, PORT + 1);
    try {
      const leaf = other.leaf('fs-12345678.efs.us-east-1.amazonaws.com');
      other.revoke('root', other.intermediate);
      const err = await refusal(new OcspChecker().check(chainOf(leaf.cert, other)));
      expect(err.code).to.equal('TLS_CERT_REVOKED');
      expect(err.message).to.contain('"efs-relay test OCSP intermediate CA"');
    } finally {
      await other.stop();
    }
  });

  it('refuses with TLS_CERT_STATUS_UNKNOWN, saying why for each responder, when none answers: HTTP errors, nothing listening, answers signed by a key the issuer never authorized or over SHA-1', async () => {
    const leaf = ca.leaf('fs-12345678.efs.us-east-1.amazonaws.com');
    ca.mode = 'unavailable';
    let err = await refusal(new OcspChecker().check(chainOf(leaf.cert, ca)));
    expect(err.code).to.equal('TLS_CERT_STATUS_UNKNOWN');
    expect(err.message).to.contain(`${URL}/`).and.to.contain('HTTP status 503');

    ca.mode = 'forged';
    err = await refusal(new OcspChecker().check(chainOf(leaf.cert, ca)));
    expect(err.code).to.equal('TLS_CERT_STATUS_UNKNOWN');
    expect(err.message).to.contain('the answer is not signed by the certificate\'s issuer, nor by a responder that issuer authorized for OCSP');

    // A good answer signed over SHA-1, which a chosen-prefix collision could forge, is no answer.
    ca.mode = 'sha1';
    err = await refusal(new OcspChecker().check(chainOf(leaf.cert, ca)));
    expect(err.code).to.equal('TLS_CERT_STATUS_UNKNOWN');
    expect(err.message).to.contain('the answer is signed with an algorithm efs-relay does not check (1.2.840.10045.4.1)');

    await ca.stop();
    try {
      err = await refusal(new OcspChecker().check(chainOf(leaf.cert, ca)));
      expect(err.code).to.equal('TLS_CERT_STATUS_UNKNOWN');
      expect(err.message).to.match(/No OCSP responder said whether the certificate "[^"]+" \(serial [0-9A-F]+\) is good: http:\/\/127\.0\.0\.76:18081\/\w+: connect ECONNREFUSED/);
    } finally {
      await ca.start(HOST, PORT);
    }
  });

  it('refuses a certificate its responder does not know (status "unknown"), as stunnel does (OCSPrequire)', async () => {
    const leaf = ca.unrecorded('fs-12345678.efs.us-east-1.amazonaws.com');
    const err = await refusal(new OcspChecker().check(chainOf(leaf.cert, ca)));
    expect(err.code).to.equal('TLS_CERT_STATUS_UNKNOWN');
    expect(err.message).to.contain(`${URL}/intermediate: the responder does not know the certificate (status "unknown")`);
  });

  it('keeps an answer for an hour, then asks again; when the responder fails then, the last answer holds until its next update (and 5 minutes\' leeway)', async () => {
    // The responder's answers are good for 60 minutes (openssl ocsp -nmin 60) from now.
    const leaf = ca.leaf('fs-12345678.efs.us-east-1.amazonaws.com');
    const start = Date.now();
    let now = start;
    const checker = new OcspChecker(5_000, () => new Date(now));
    await checker.check(chainOf(leaf.cert, ca));
    const asked = ca.asked.intermediate;
    now = start + REFRESH_MS - 60_000;
    await checker.check(chainOf(leaf.cert, ca));
    expect(ca.asked.intermediate, 'within the hour: not asked').to.equal(asked);
    ca.mode = 'unavailable';
    now = start + REFRESH_MS + 60_000;
    await checker.check(chainOf(leaf.cert, ca));
    expect(ca.asked.intermediate, 'past the hour: asked again').to.equal(asked + 1);
    now = start + 60 * 60_000 + CLOCK_LEEWAY_MS + 60_000;
    const err = await refusal(checker.check(chainOf(leaf.cert, ca)));
    expect(err.code, 'past its next update and the leeway, nothing holds').to.equal('TLS_CERT_STATUS_UNKNOWN');
    expect(err.message).to.contain('HTTP status 503');
  });

  it('refuses an answer that is out of date or dated in the future by more than 5 minutes (the host\'s clock)', async () => {
    const { leaf, issuer, id, der } = await freshAnswer();
    const good = readOcspResponse(der, id, issuer, new Date());
    expect(good.status).to.equal('good');
    const next = good.nextUpdate!.getTime();
    expect(readOcspResponse(der, id, issuer, new Date(next + CLOCK_LEEWAY_MS - 1_000)).status).to.equal('good');
    expect(() => readOcspResponse(der, id, issuer, new Date(next + CLOCK_LEEWAY_MS + 1_000))).to.throw(/the answer is out of date \(its next update was due /);
    // Dated ahead of the clock (the root signs its own answers, so no responder certificate's dates come first).
    const [, ica, root] = chainOf(leaf.cert, ca) as [X509Certificate, X509Certificate, X509Certificate];
    const icaId = certId(ica, root);
    const rootDer = await asked('root', icaId);
    const thisUpdate = readOcspResponse(rootDer, icaId, root, new Date()).thisUpdate.getTime();
    expect(readOcspResponse(rootDer, icaId, root, new Date(thisUpdate - CLOCK_LEEWAY_MS + 1_000)).status).to.equal('good');
    expect(() => readOcspResponse(rootDer, icaId, root, new Date(thisUpdate - CLOCK_LEEWAY_MS - 1_000))).to.throw(/, in the future \(is this host's clock right\?\)/);
    // Another certificate's answer is not this one's.
    const other = certId(new X509Certificate(ca.leaf('fs-12345678.efs.us-east-1.amazonaws.com').cert), issuer);
    expect(() => readOcspResponse(der, other, issuer, new Date())).to.throw('the answer does not name the certificate asked about');
    // Nor is a damaged one anything.
    expect(() => readOcspResponse(der.subarray(0, der.length - 10), id, issuer, new Date())).to.throw(/DER: /);
  });

  it('reads 1,500 damaged copies of an answer without a crash: each is refused with a reason, or says what the signed answer says', async () => {
    const { issuer, id, der } = await freshAnswer();
    const now = new Date();
    const good = readOcspResponse(der, id, issuer, now);
    // A fixed seed, so that a failure can be run again as it was.
    let seed = 20261129;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2 ** 31;
      return seed % n;
    };
    let refused = 0;
    for (let i = 0; i < 1_500; i++) {
      const copy = Buffer.from(der);
      for (let k = 1 + random(3); k > 0; k--) copy[random(copy.length)] = random(256);
      let read: ReturnType<typeof readOcspResponse> | null = null;
      try {
        read = readOcspResponse(copy, id, issuer, now);
      } catch (err) {
        expect(err, `copy ${i}`).to.be.instanceOf(Error);
        expect((err as Error).message, `copy ${i}`).to.be.a('string').and.not.equal('');
        refused++;
        continue;
      }
      // Only bytes outside what the responder signed can change without a refusal: the answer is the same.
      expect(read, `copy ${i}`).to.deep.equal(good);
    }
    expect(refused, 'most damage is refused').to.be.above(1_000);
  });
});
