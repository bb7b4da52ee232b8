// The ocsp option, end to end: a daemon whose tunnels ask a real OCSP
// responder (`openssl ocsp` behind a loopback HTTP server) about the mount
// target's certificate and its intermediate CA, as efs-utils has stunnel do
// with OCSPaia = yes. A revoked certificate, or no answer, refuses the
// connection before a byte of NFS reaches the mount target.
import { expect } from 'chai';
import { exchange } from './helpers/client.js';
import { Daemon, tempDir, waitFor } from './helpers/daemon.js';
import { daemonConfig, REGION } from './helpers/fixtures.js';
import { ECHO_TRAILER, MountTargetStandIn } from './helpers/mount-target.js';
import { OcspAuthority } from './helpers/ocsp-authority.js';
import type { AddResult, TunnelView } from '../daemon/tunnels.js';
import type { AttachResult } from '../daemon/mounter.js';
import { OcspChecker, REFRESH_MS } from '../daemon/ocsp.js';
import { Relay } from '../daemon/relay.js';
import { policyContext } from '../daemon/tls-policy.js';

const RESPONDER = { host: '127.0.0.77', port: 18090 };
const GOOD_TARGET = '127.0.0.77';
const REVOKED_TARGET = '127.0.0.78';
const SILENT_TARGET = '127.0.0.79';
const METRICS = '127.0.0.1:19818';

describe('OCSP checking of mount targets (the ocsp option)', function () {
  this.timeout(60_000);
  let daemon: Daemon;
  let ca: OcspAuthority;
  const targets: MountTargetStandIn[] = [];
  const options = (host: string, extra = ',ocsp'): string => `region=${REGION},mounttargetip=${host},cafile=${ca.root.certFile}${extra}`;
  const failures = (fsId: string, code: string): Promise<string | undefined> =>
    daemon.scrapedValue(`efs_relay_tls_handshake_failures_total{fs_id="${fsId}",code="${code}"}`);

  before(async () => {
    ca = await new OcspAuthority(tempDir('efs-relay-ocsp-e2e-'), `http://${RESPONDER.host}:${RESPONDER.port}`).start(RESPONDER.host, RESPONDER.port);
    const name = `*.efs.${REGION}.amazonaws.com`;
    const revoked = ca.leaf(name);
    ca.revoke('intermediate', revoked);
    for (const [host, cert] of [[GOOD_TARGET, ca.leaf(name)], [REVOKED_TARGET, revoked], [SILENT_TARGET, ca.leaf(name)]] as const) {
      targets.push(await new MountTargetStandIn({ host, port: 2049, cert, backend: 'echo' }).start());
    }
    daemon = await new Daemon(daemonConfig(26600, { metrics: { listen: METRICS } })).start();
    daemon.mount.behave('mount', { reach: true });
  });
  after(async () => {
    await daemon?.stop();
    for (const t of targets) await t.stop();
    await ca?.stop();
  });
  beforeEach(() => {
    ca.mode = 'answer';
  });

  it('relays through a tunnel whose mount target certificate and intermediate CA the responders call good, asking each once for many connections', async () => {
    const before = { ...ca.asked };
    const added = await daemon.efsctlJson<AddResult>('add', 'fs-0c5e0001', '-o', options(GOOD_TARGET));
    expect(added.tunnel.options).to.deep.include({ ocsp: null });
    expect(added.tunnel.ocsp).to.equal(true);
    expect((await daemon.efsctl('status', 'fs-0c5e0001')).stdout).to.contain('Revocation:    asked of the OCSP responders of the certificate and its CA (ocsp)\n');
    for (const text of ['first', 'second', 'third']) {
      expect((await exchange(added.tunnel.port, text)).received.toString()).to.equal(text + ECHO_TRAILER);
    }
    expect(ca.asked).to.deep.equal({ root: before.root + 1, intermediate: before.intermediate + 1 });
  });

  it('refuses to mount through a revoked mount target certificate with TLS_CERT_REVOKED at once, sending it nothing, and says so in efsctl\'s error and the log', async () => {
    const fsId = 'fs-0c5e0002';
    const r = await daemon.efsctl('attach', fsId, daemon.mountPoint('revoked'), '-o', options(REVOKED_TARGET));
    expect(r.code).to.equal(1);
    // The mount is stopped at once: no retry mends a revoked certificate.
    expect(r.stderr).to.match(/was stopped during attempt 1, and not tried again: the tunnel's connection to the mount target failed in a way no retry mends \(TLS_CERT_REVOKED\): The certificate "\*\.efs\.us-east-1\.amazonaws\.com" \(serial [0-9A-F]+\) was revoked on \S+ \(keyCompromise\), its OCSP responder says \[MOUNT_FAILED\]\n/);
    expect(r.stderr).to.contain('efsctl: Its OCSP responder (the `ocsp` option) says it was revoked');
    const revoked = targets[1]!;
    expect(revoked.handshakes, 'the handshake happened').to.be.above(0);
    expect(Buffer.concat(revoked.received).length, 'no byte reached the revoked target').to.equal(0);
    expect(daemon.logs).to.match(new RegExp(`warn tunnel\\.handshake_failed fs=${fsId} code=TLS_CERT_REVOKED msg="The certificate`));
  });

  it('refuses connections with TLS_CERT_STATUS_UNKNOWN while no responder answers, and relays again once one does', async () => {
    const fsId = 'fs-0c5e0003';
    ca.mode = 'unavailable';
    const added = await daemon.efsctlJson<AddResult>('add', fsId, '-o', options(SILENT_TARGET));
    const refused = await exchange(added.tunnel.port, 'not yet');
    expect(refused.received.length, 'the client gets nothing').to.equal(0);
    const silent = targets[2]!;
    expect(Buffer.concat(silent.received).length, 'no byte reached the target').to.equal(0);
    const status = await daemon.efsctlJson<TunnelView>('status', fsId, '--json');
    expect(status.last_error?.code).to.equal('TLS_CERT_STATUS_UNKNOWN');
    expect(status.last_error?.message).to.match(/^No OCSP responder said whether the certificate "\*\.efs\.us-east-1\.amazonaws\.com" \(serial [0-9A-F]+\) is good: http:\/\/127\.0\.0\.77:18090\/intermediate: HTTP status 503$/);
    expect(await failures(fsId, 'TLS_CERT_STATUS_UNKNOWN')).to.equal('1');
    // efsctl says what to do about it.
    const text = (await daemon.efsctl('status', fsId)).stdout;
    expect(text).to.contain('TLS_CERT_STATUS_UNKNOWN');

    ca.mode = 'answer';
    expect((await exchange(added.tunnel.port, 'now')).received.toString()).to.equal('now' + ECHO_TRAILER);
  });

  it('refuses every connection of a tunnel to a revoked certificate, and shows it in status, the metrics and the health probe', async () => {
    const fsId = 'fs-0c5e0004';
    const added = await daemon.efsctlJson<AddResult>('add', fsId, '-o', options(REVOKED_TARGET));
    expect((await exchange(added.tunnel.port, 'refused')).received.length).to.equal(0);
    const status = await daemon.efsctlJson<TunnelView>('status', fsId, '--json');
    expect(status.last_error?.code).to.equal('TLS_CERT_REVOKED');
    expect(await failures(fsId, 'TLS_CERT_REVOKED')).to.equal('1');
    daemon.editConfig((c) => ({ ...c, health: { probe_interval: 1 } }));
    expect((await daemon.efsctl('reload')).code).to.equal(0);
    try {
      await waitFor('a probe of the revoked target', async () => (await daemon.efsctlJson<TunnelView>('status', fsId, '--json')).health.probe !== null, 10_000);
      const probe = (await daemon.efsctlJson<TunnelView>('status', fsId, '--json')).health.probe!;
      expect([probe.ok, probe.code]).to.deep.equal([false, 'TLS_CERT_REVOKED']);
    } finally {
      daemon.editConfig((c) => ({ ...c, health: { probe_interval: 0 } }));
      expect((await daemon.efsctl('reload')).code).to.equal(0);
    }
  });

  it('asks no responder without ocsp, as efs-utils by default (noocsp): the same revoked certificate is only verified against the CA bundle', async () => {
    const before = { ...ca.asked };
    const r = await daemon.efsctlJson<AttachResult>('attach', 'fs-0c5e0005', daemon.mountPoint('noocsp'), '-o', options(REVOKED_TARGET, ''));
    expect(r.tunnel!.ocsp).to.equal(false);
    expect((await daemon.efsctl('status', 'fs-0c5e0005')).stdout).to.contain('Revocation:    not asked (noocsp)\n');
    expect((await exchange(r.tunnel!.port, 'plain default')).received.toString()).to.equal('plain default' + ECHO_TRAILER);
    expect(ca.asked).to.deep.equal(before);
  });

  it('asks the responders for every mount that says neither ocsp nor noocsp when tls.ocsp is true (efs-utils\' stunnel_check_cert_validity)', async () => {
    const second = await new Daemon(daemonConfig(26700, { tls: { ca_file: ca.root.certFile, ocsp: true } })).start();
    try {
      const plain = `region=${REGION},mounttargetip=${REVOKED_TARGET}`;
      const byDefault = await second.efsctlJson<AddResult>('add', 'fs-0c5e0006', '-o', plain);
      expect(byDefault.tunnel.options).to.not.have.any.keys('ocsp', 'noocsp');
      expect(byDefault.tunnel.ocsp, 'asked though its options do not say so').to.equal(true);
      expect((await exchange(byDefault.tunnel.port, 'refused')).received.length).to.equal(0);
      expect((await second.efsctlJson<TunnelView>('status', 'fs-0c5e0006', '--json')).last_error?.code).to.equal('TLS_CERT_REVOKED');
      const optedOut = await second.efsctlJson<AddResult>('add', 'fs-0c5e0007', '-o', `${plain},noocsp`);
      expect((await exchange(optedOut.tunnel.port, 'noocsp')).received.toString()).to.equal('noocsp' + ECHO_TRAILER);
    } finally {
      await second.stop();
    }
  });

  it('refuses a mount that asks for ocsp through a tunnel that does not, naming both', async () => {
    const r = await daemon.efsctl('add', 'fs-0c5e0005', '-o', options(REVOKED_TARGET));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('fs-0c5e0005 already has a tunnel that does not ask OCSP responders (noocsp, the default), not one that asks them (ocsp); give every mount of the file system the same ocsp or noocsp, or stop it first');
  });
});

describe('OCSP checking of a resumed TLS session', function () {
  this.timeout(30_000);
  const HOST = '127.0.0.80';
  const PORT = 26650;
  let ca: OcspAuthority;
  let target: MountTargetStandIn;

  before(async () => {
    ca = await new OcspAuthority(tempDir('efs-relay-ocsp-resume-'), `http://${HOST}:18102`).start(HOST, 18102);
    target = await new MountTargetStandIn({ host: HOST, port: 2049, cert: ca.leaf(`*.efs.${REGION}.amazonaws.com`), backend: 'echo' }).start();
  });
  after(async () => {
    await target?.stop();
    await ca?.stop();
  });

  it('asks about the chain of the session it resumes, which shows no certificate of its own, once the answer is due again', async () => {
    let now = Date.now();
    const relay = new Relay({
      fsId: 'fs-12345678', port: PORT, listenHost: '127.0.0.1', certName: `fs-12345678.efs.${REGION}.amazonaws.com`, address: HOST,
      targetPort: 2049, secureContext: policyContext(ca.root.cert, 'TLSv1.2'), held: null, maxVersion: 'TLSv1.2', connectTimeoutMs: 5_000,
      closeTimeoutMs: 1_000, ocsp: new OcspChecker(5_000, () => new Date(now)),
    });
    await relay.listen();
    try {
      expect((await exchange(PORT, 'full')).received.toString()).to.equal('full' + ECHO_TRAILER);
      expect(target.sessions.at(-1)?.resumed ?? false, 'a full handshake first').to.equal(false);
      const asked = ca.asked.intermediate;
      // An hour later, with the responder down and the answer out of date: the resumed session must not pass unasked.
      now += REFRESH_MS + 2 * 3_600_000;
      ca.mode = 'unavailable';
      expect((await exchange(PORT, 'resumed')).received.length).to.equal(0);
      expect(target.sessions.at(-1)?.resumed, 'the session was resumed').to.equal(true);
      expect(ca.asked.intermediate).to.equal(asked + 1);
      expect(relay.lastError?.code).to.equal('TLS_CERT_STATUS_UNKNOWN');
      // The responder back, and the clock back to the responder's (its answers are dated by the real one): the next
      // connection relays again.
      ca.mode = 'answer';
      now = Date.now();
      expect((await exchange(PORT, 'again')).received.toString()).to.equal('again' + ECHO_TRAILER);
    } finally {
      await relay.close();
    }
  });
});
