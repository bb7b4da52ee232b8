import { expect } from 'chai';
import { X509Certificate, createHash, createPublicKey, type KeyObject } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ACCESS_POINT_OID, CREDENTIALS_RENEW_BELOW_MS, ClientCertificates, ClientKey, FILE_SYSTEM_OID, IAM_AUTH_OID, NOT_AFTER_MS, NOT_BEFORE_MS, RENEW_BELOW_MS, clientCertificate, presentedIdentity } from '../../daemon/client-cert.js';
import { publicKeyHash } from '../../daemon/der.js';
import type { AwsCredentials } from '../../daemon/aws-credentials.js';
import { signConnect } from '../../daemon/sigv4.js';
import { run, tempDir } from '../helpers/daemon.js';
import { asn1Items, certificateExtensions, utf8StringHex } from '../helpers/pki.js';

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
    const { pem, notAfter } = clientCertificate(key, { fsId: FS, accessPoint: AP, iam: null, commonName: 'ip-10-0-1-25.ec2.internal' }, now);
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
    const own = clientCertificate(key, { fsId: FS, accessPoint: AP, iam: null, commonName: 'h' }, new Date());
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
    const ap = { accessPoint: AP, iam: null };
    const first = await certs.identity(FS, ap);
    expect(await certs.identity(FS, ap)).to.equal(first);
    expect((await certs.identity(FS, { accessPoint: 'fsap-0123456789abcdef1', iam: null })).cert).to.not.equal(first.cert);
    now = new Date(now.getTime() + NOT_AFTER_MS - RENEW_BELOW_MS - 1);
    expect(await certs.identity(FS, ap), 'still 2 hours left').to.equal(first);
    now = new Date(now.getTime() + 2);
    const renewed = await certs.identity(FS, ap);
    expect(renewed.cert).to.not.equal(first.cert);
    expect(renewed.key, 'the host\'s key stays').to.equal(first.key);
    expect(new Date(new X509Certificate(renewed.cert).validFrom).getTime()).to.equal(Math.floor((now.getTime() - NOT_BEFORE_MS) / 1000) * 1000);
  });
});

// efs-utils' test key (test_create_self_signed_cert.py) and the hash its get_public_key_sha1 gives for it.
const EFS_UTILS_PUBLIC_KEY = `-----BEGIN PUBLIC KEY-----
MIIBojANBgkqhkiG9w0BAQEFAAOCAY8AMIIBigKCAYEArGJgJTTwefL+jHV8A9EM
pX56n3ZJczM+4iPPSnledJzBcUO1VF+j6TOzy39BWBtvRjSs0nqd5wqw+1xHawhh
dJF5KsqMNGcP/y9fLi9Bm1vInHfQVan4NhXWh8SNbRZM1tNZV5/k+VnFur6ACHwq
eWppGXkGBASL0zG0MiCbOVMkwfv/E69APVC6ljnPXBWaDuggAClYheTv5RIU4wD1
c1nohRb0ZHyfZjELjnqLfY0eOqY+msQXzP0eUmZXCMvUkGxi5DJnNVKhw5y96QbB
RFO5ImQXpNsQmp8F9Ih1RIxNsl4csaEuK+/ZoJ68vR47oQNtPp1PjdIwcnQ3cOvO
HMxulMX21Fd/e9TsnqISOTOyebmYFgaHczg4JVu5lV699+7QWJm1a7M4ab0WgVVR
z27J0Lx/691MZB4TbGoEIFza30/sk6uTPxAzebzCaroXzT7uA6TIRtRpxt4X9a+4
6GhfgR5RJfFMb8rPGmaKWqA2YkTsZzRGHhbAzsJ/nEstAgMBAAE=
-----END PUBLIC KEY-----
`;

describe('the client certificate of an IAM tunnel', function () {
  this.timeout(30_000);
  let key: KeyObject;
  before(async () => {
    key = (await new ClientKey().get()).key;
  });
  const creds = (over: Partial<AwsCredentials> = {}): AwsCredentials => ({
    accessKeyId: 'AKIAEXAMPLEKEY', secretAccessKey: 'secret/EXAMPLE+key', sessionToken: 'IQoJb3Jp+token/with=signs', expiration: null, source: 'credentials:default', ...over,
  });

  it('hashes the public key as efs-utils does, for the signature to name it', () => {
    const spki = createPublicKey(EFS_UTILS_PUBLIC_KEY).export({ type: 'spki', format: 'der' });
    expect(publicKeyHash(spki).toString('hex')).to.equal('d9c2a68f2c4de49982e310d95e539a89abd6bc13');
  });

  it('carries efs-utils\' efs_client_auth as openssl reads it: the access key ID, the Connect signature\'s hex, the time signed and the session token, signed for this certificate\'s key', () => {
    const now = new Date('2026-11-28T12:00:00.700Z');
    const c = creds();
    const { pem } = clientCertificate(key, { fsId: FS, accessPoint: AP, iam: { credentials: c, region: 'eu-west-1' }, commonName: 'h' }, now);
    const exts = certificateExtensions(pem);
    // efs-utils' order: key identifier, access point, IAM, file system.
    expect(Object.keys(exts).filter((k) => k.startsWith('1.3.6.1.4.1.4843.'))).to.deep.equal([ACCESS_POINT_OID, IAM_AUTH_OID, FILE_SYSTEM_OID]);
    const items = asn1Items(exts[IAM_AUTH_OID]!);
    expect(items.map((i) => i.type)).to.deep.equal(['SEQUENCE', 'UTF8STRING', 'OCTET STRING', 'UTCTIME', 'cont [ 0 ]', 'UTF8STRING']);
    expect(items[1]!.value).to.equal(c.accessKeyId);
    expect(items[3]!.value).to.equal('261128120000Z');
    expect(items[5]!.value).to.equal(c.sessionToken);
    // The mount target signs the same request again with the secret it knows for the key ID, and the key's hash.
    const keyHash = createHash('sha1').update(new X509Certificate(pem).publicKey.export({ type: 'pkcs1', format: 'der' })).digest('hex');
    const expected = signConnect({ publicKeyHash: keyHash, accessKeyId: c.accessKeyId, sessionToken: c.sessionToken, region: 'eu-west-1', fsId: FS, date: new Date('2026-11-28T12:00:00Z') }, c.secretAccessKey);
    expect(items[2]!.value, 'the signature as text').to.equal(expected);
  });

  it('leaves the session token out for long-term keys, and the access point out when there is none', () => {
    const { pem } = clientCertificate(key, { fsId: FS, accessPoint: null, iam: { credentials: creds({ sessionToken: null }), region: 'us-east-1' }, commonName: 'h' }, new Date());
    const exts = certificateExtensions(pem);
    expect(Object.keys(exts).filter((k) => k.startsWith('1.3.6.1.4.1.4843.'))).to.deep.equal([IAM_AUTH_OID, FILE_SYSTEM_OID]);
    expect(asn1Items(exts[IAM_AUTH_OID]!).map((i) => i.type)).to.deep.equal(['SEQUENCE', 'UTF8STRING', 'OCTET STRING', 'UTCTIME']);
    expect(presentedIdentity(new X509Certificate(pem).raw)).to.deep.equal({ accessPoint: null, fsId: FS, iam: true });
  });

  it('asks for credentials only to make a certificate, and makes a new one 15 minutes before temporary credentials end', async () => {
    let now = new Date('2026-11-28T12:00:00Z');
    const certs = new ClientCertificates('host', () => now);
    let asked = 0;
    const expiration = new Date(now.getTime() + 60 * 60_000);
    const want = { accessPoint: null, iam: { region: 'us-east-1', credentials: () => Promise.resolve(creds({ expiration, source: `metadata:role-${++asked}` })) } };
    const first = await certs.identity(FS, want);
    expect(await certs.identity(FS, want)).to.equal(first);
    expect([asked, certs.view(FS)?.iam_credentials]).to.deep.equal([1, 'metadata:role-1']);
    now = new Date(expiration.getTime() - CREDENTIALS_RENEW_BELOW_MS - 1);
    expect(await certs.identity(FS, want), 'the credentials have more than 15 minutes left').to.equal(first);
    now = new Date(now.getTime() + 2);
    expect((await certs.identity(FS, want)).cert).to.not.equal(first.cert);
    expect([asked, certs.view(FS)?.iam_credentials]).to.deep.equal([2, 'metadata:role-2']);
  });

  it('fails as its credentials do, and makes the certificate once they are found', async () => {
    const certs = new ClientCertificates('host');
    let found = false;
    const want = { accessPoint: null, iam: { region: 'us-east-1', credentials: () => (found ? Promise.resolve(creds()) : Promise.reject(new Error('no credentials'))) } };
    let failed: Error | null = null;
    await certs.identity(FS, want).catch((e: Error) => (failed = e));
    expect(failed).to.have.property('message', 'no credentials');
    found = true;
    expect(presentedIdentity(new X509Certificate((await certs.identity(FS, want)).cert).raw).iam).to.equal(true);
  });
});

