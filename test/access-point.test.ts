// Access point mounts, as efs-utils makes them: the tunnel presents a
// client certificate, self-signed with the host's key, whose extensions name
// the access point and the file system; the mount target (a stand-in that
// asks every client for a certificate, as EFS does) reads them from it.
import { expect } from 'chai';
import { X509Certificate } from 'node:crypto';
import { hostname } from 'node:os';
import { exchange } from './helpers/client.js';
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon, tempDir, waitFor } from './helpers/daemon.js';
import { certFor, daemonConfig, REGION, testCerts } from './helpers/fixtures.js';
import { ECHO_TRAILER, MountTargetStandIn } from './helpers/mount-target.js';
import { certificateExtensions, utf8StringHex } from './helpers/pki.js';
import { ACCESS_POINT_OID, FILE_SYSTEM_OID, NOT_AFTER_MS, NOT_BEFORE_MS } from '../daemon/client-cert.js';
import type { AttachResult } from '../daemon/mounter.js';
import type { AddResult } from '../daemon/tunnels.js';

const TARGET_HOST = '127.0.0.74';
const AP = 'fsap-0123456789abcdef0';
const OTHER_AP = 'fsap-0123456789abcdef1';

describe('access point mounts', function () {
  this.timeout(60_000);
  let daemon: Daemon;
  let target: MountTargetStandIn;
  const options = (extra = ''): string => `region=${REGION},mounttargetip=${TARGET_HOST}${extra}`;

  before(async () => {
    target = await new MountTargetStandIn({ host: TARGET_HOST, port: 2049, cert: certFor(`*.efs.${REGION}.amazonaws.com`), backend: 'echo', askClientCert: true }).start();
    daemon = await new Daemon(daemonConfig(26450)).start();
    // The stand-in of mount.nfs4 talks to the tunnel port before it mounts: the mount proves the data path.
    daemon.mount.behave('mount', { reach: true });
  });
  after(async () => {
    await daemon?.stop();
    await target?.stop();
  });

  it('mounts through a tunnel that presents efs-utils\' client certificate, naming the access point and the file system, self-signed with the host\'s key for 3 hours', async () => {
    const fsId = 'fs-0000a901';
    const before = Date.now();
    const r = await daemon.efsctlJson<AttachResult>('attach', fsId, daemon.mountPoint('ap'), '-o', options(`,accesspoint=${AP}`));
    expect(r.tunnel!.options).to.deep.include({ accesspoint: AP });
    expect(r.tunnel!.client_certificate).to.include({ access_point: AP, iam_credentials: null });
    // The access point goes to the mount target in the certificate, never to mount.nfs4.
    expect(r.command[4]).to.not.contain('accesspoint');
    expect((await exchange(r.tunnel!.port, 'through the access point')).received.toString()).to.equal('through the access point' + ECHO_TRAILER);

    const pem = target.clientCertificates.at(-1);
    expect(pem, 'a client certificate').to.be.a('string');
    const cert = new X509Certificate(pem!);
    expect(certificateExtensions(pem!)).to.deep.include({ [ACCESS_POINT_OID]: utf8StringHex(AP), [FILE_SYSTEM_OID]: utf8StringHex(fsId) });
    expect([cert.subject, cert.issuer]).to.deep.equal([`CN=${hostname().slice(0, 64)}`, `CN=${hostname().slice(0, 64)}`]);
    expect(cert.verify(cert.publicKey), 'self-signed').to.equal(true);
    const [from, to] = [new Date(cert.validFrom).getTime(), new Date(cert.validTo).getTime()];
    expect(to - from).to.equal(NOT_BEFORE_MS + NOT_AFTER_MS);
    expect(from + NOT_BEFORE_MS).to.be.within(before - 1_000, Date.now());
  });

  it('presents no client certificate on a tunnel without an access point', async () => {
    const add = await daemon.efsctlJson<AddResult>('add', 'fs-0000a902', '-o', options());
    expect((await exchange(add.tunnel.port, 'no access point')).received.toString()).to.equal('no access point' + ECHO_TRAILER);
    expect(target.clientCertificates.at(-1)).to.equal(null);
    expect(add.tunnel.client_certificate).to.equal(null);
  });

  it('still presents its access point after its CA bundle changes on disk, verifying new connections against the bundle as it is now', async () => {
    const bundle = join(tempDir('ap-ca-reload'), 'cas.pem');
    writeFileSync(bundle, testCerts().ca.cert);
    const fsId = 'fs-0000a903';
    const add = await daemon.efsctlJson<AddResult>('add', fsId, '-o', options(`,accesspoint=${AP},cafile=${bundle}`));
    expect((await exchange(add.tunnel.port, 'before')).received.toString()).to.equal('before' + ECHO_TRAILER);
    const reloads = (): number => daemon.logs.split(' tls.ca_reloaded ').length - 1;
    const replace = async (pem: string): Promise<void> => {
      const before = reloads();
      writeFileSync(`${bundle}.new`, pem);
      renameSync(`${bundle}.new`, bundle);
      await waitFor('the bundle to be read again', () => reloads() > before, 5_000);
    };
    // Only another CA: this tunnel's new connections are refused, so it took the new trust.
    await replace(testCerts().otherCa.cert);
    expect((await exchange(add.tunnel.port, 'refused')).received.toString()).to.equal('');
    // Trusted again: the trust it takes keeps its client certificate.
    await replace(testCerts().ca.cert + testCerts().otherCa.cert);
    expect((await exchange(add.tunnel.port, 'after')).received.toString()).to.equal('after' + ECHO_TRAILER);
    expect(certificateExtensions(target.clientCertificates.at(-1)!)).to.deep.include({ [ACCESS_POINT_OID]: utf8StringHex(AP), [FILE_SYSTEM_OID]: utf8StringHex(fsId) });
  });

  it('refuses a mount of the file system with another access point than its tunnel presents, naming both, and leaves the tunnel as it was', async () => {
    const calls = daemon.mount.calls().length;
    const r = await daemon.efsctl('attach', 'fs-0000a901', daemon.mountPoint('other-ap'), '-o', options(`,accesspoint=${OTHER_AP}`));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain(`fs-0000a901 already has a tunnel for access point ${AP}, not access point ${OTHER_AP}`);
    expect(daemon.mount.calls().length).to.equal(calls);
    const plain = await daemon.efsctl('add', 'fs-0000a901', '-o', options());
    expect(plain.code).to.equal(1);
    expect(plain.stderr).to.contain(`fs-0000a901 already has a tunnel for access point ${AP}, not no access point`);
  });
});
