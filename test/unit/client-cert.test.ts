import { expect } from 'chai';
import { X509Certificate, createPublicKey, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ACCESS_POINT_OID, ClientCertificates, ClientKey, FILE_SYSTEM_OID, NOT_AFTER_MS, NOT_BEFORE_MS, RENEW_BELOW_MS, clientCertificate, presentedIdentity } from '../../daemon/client-cert.js';
import { run, tempDir } from '../helpers/daemon.js';
import { certificateExtensions, utf8StringHex } from '../helpers/pki.js';

const AP = 'fsap-0123456789abcdef0';
const FS = 'fs-12345678';

describe('the client certificate of an access point tunnel', function () {
  this.timeout(30_000);
  let key: KeyObject;
  before(async () => {
    key = (await new ClientKey().get()).key;
  });

  it('is efs-utils\' certificate as openssl reads it: self-signed with the host\'s 3072-bit RSA key, CN the host name, the access point and file system in EFS\'s extensions, valid from 15 minutes before to 3 hours after', async () => {
    const now = new Date('2026-11-28T12:00:00Z');
    const { pem, notAfter } = clientCertificate(key, { fsId: FS, accessPoint: AP, commonName: 'ip-10-0-1-25.ec2.internal' }, now);
    expect(notAfter.toISOString()).to.equal('2026-11-28T15:00:00.000Z');
    const dir = tempDir('efs-relay-client-cert-');
    const file = join(dir, 'cert.pem');
    writeFileSync(file, pem);
    const x = new X509Certificate(pem);
    expect([x.subject, x.issuer, x.publicKey.asymmetricKeyDetails?.modulusLength]).to.deep.equal(['CN=ip-10-0-1-25.ec2.internal', 'CN=ip-10-0-1-25.ec2.internal', 3072]);
    expect([new Date(x.validFrom).getTime(), new Date(x.validTo).getTime()]).to.deep.equal([now.getTime() - NOT_BEFORE_MS, now.getTime() + NOT_AFTER_MS]);
    expect(x.verify(createPublicKey(key))).to.equal(true);
    // openssl takes it as its own issuer, signed with sha256WithRSAEncryption, in version 3.
    expect((await run('openssl', ['verify', '-attime', String(now.getTime() / 1000), '-CAfile', file, file])).stdout).to.equal(`${file}: OK\n`);
    const text = (await run('openssl', ['x509', '-in', file, '-noout', '-text'])).stdout;
    expect(text).to.contain('Version: 3 (0x2)').and.to.contain('Signature Algorithm: sha256WithRSAEncryption');
    // Each extension's value is a UTF8String, as efs-utils writes them (ASN1:UTF8String:…).
    expect(certificateExtensions(pem)).to.deep.include({ [ACCESS_POINT_OID]: utf8StringHex(AP), [FILE_SYSTEM_OID]: utf8StringHex(FS) });
    // The key identifier is the one openssl computes for the same key (subjectKeyIdentifier = hash).
    writeFileSync(join(dir, 'key.pem'), key.export({ type: 'pkcs8', format: 'pem' }));
    const theirs = (await run('openssl', ['req', '-new', '-x509', '-key', join(dir, 'key.pem'), '-subj', '/CN=x', '-days', '1', '-addext', 'subjectKeyIdentifier=hash'])).stdout;
    const ski = (c: string): string | undefined => /Subject Key Identifier:\s*\n\s*([0-9A-F:]+)/.exec(c)?.[1];
    writeFileSync(join(dir, 'theirs.pem'), theirs);
    expect(ski(text)).to.equal(ski((await run('openssl', ['x509', '-in', join(dir, 'theirs.pem'), '-noout', '-text'])).stdout)).and.to.match(/^[0-9A-F:]{59}$/);
  });

  it('reads EFS\'s extensions back out of a certificate, its own or one openssl made as efs-utils does (a critical flag, IAM\'s extension, none at all)', async () => {
    const own = clientCertificate(key, { fsId: FS, accessPoint: AP, commonName: 'h' }, new Date());
    expect(presentedIdentity(new X509Certificate(own.pem).raw)).to.deep.equal({ accessPoint: AP, fsId: FS, iam: false });
    const dir = tempDir('efs-relay-client-cert-');
    writeFileSync(join(dir, 'key.pem'), key.export({ type: 'pkcs8', format: 'pem' }));
    const made = async (...exts: string[]): Promise<Buffer> => new X509Certificate((await run('openssl', ['req', '-new', '-x509', '-key', join(dir, 'key.pem'), '-subj', '/CN=h', '-days', '1',
      ...exts.flatMap((e) => ['-addext', e])])).stdout).raw;
    expect(presentedIdentity(await made(`${FILE_SYSTEM_OID}=critical,ASN1:UTF8String:${FS}`, '1.3.6.1.4.1.4843.7.2=ASN1:UTF8String:signed'))).to.deep.equal({ accessPoint: null, fsId: FS, iam: true });
    expect(presentedIdentity(await made())).to.deep.equal({ accessPoint: null, fsId: null, iam: false });
  });

  it('keeps one certificate per file system and access point, and makes a new one once less than 2 hours of it are left', async () => {
    let now = new Date('2026-11-28T12:00:00Z');
    const certs = new ClientCertificates('host', () => now);
    const first = await certs.identity(FS, AP);
    expect(await certs.identity(FS, AP)).to.equal(first);
    expect((await certs.identity(FS, 'fsap-0123456789abcdef1')).cert).to.not.equal(first.cert);
    now = new Date(now.getTime() + NOT_AFTER_MS - RENEW_BELOW_MS - 1);
    expect(await certs.identity(FS, AP), 'still 2 hours left').to.equal(first);
    now = new Date(now.getTime() + 2);
    const renewed = await certs.identity(FS, AP);
    expect(renewed.cert).to.not.equal(first.cert);
    expect(renewed.key, 'the host\'s key stays').to.equal(first.key);
    expect(new Date(new X509Certificate(renewed.cert).validFrom).getTime()).to.equal(Math.floor((now.getTime() - NOT_BEFORE_MS) / 1000) * 1000);
  });
});
