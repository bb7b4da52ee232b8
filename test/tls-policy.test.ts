// The TLS policy against real TLS servers with certificates made at test
// time: what is accepted, and each way a server is refused, with its code,
// and without one byte of plaintext reaching the server.
import { expect } from 'chai';
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, createServer, type Socket } from 'node:net';
import type { SecureVersion } from 'node:tls';
import { ERRORS, type ErrorCode } from '../daemon/errors.js';
import { commandMissing, Daemon, escapeRegExp, skipIf, sleep, tempDir, waitFor } from './helpers/daemon.js';
import { exchange, openClient } from './helpers/client.js';
import { FS_ID, FS_NAME, REGION, certFor, daemonConfig, testCerts, type Certs } from './helpers/fixtures.js';
import { ECHO_TRAILER, MountTargetStandIn } from './helpers/mount-target.js';
import type { AddResult, TunnelDetail } from '../daemon/tunnels.js';

const SECRET = 'PLAINTEXT-NFS-PAYLOAD-MUST-NOT-LEAK';

interface ServerCase {
  cert: (c: Certs) => Certs['good'];
  minVersion?: SecureVersion;
  maxVersion?: SecureVersion;
  ciphers?: string;
}

async function throughTunnel(daemon: Daemon, addr: string, server: ServerCase, moreOptions = '') {
  const target = await new MountTargetStandIn({
    host: addr, port: 2049, cert: server.cert(testCerts()), backend: 'echo', record: true,
    ...(server.minVersion ? { minVersion: server.minVersion } : {}),
    ...(server.maxVersion ? { maxVersion: server.maxVersion } : {}),
    ...(server.ciphers ? { ciphers: server.ciphers } : {}),
  }).start();
  try {
    const add = await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', `mounttargetip=${addr},region=us-east-1${moreOptions}`);
    const result = await exchange(add.tunnel.port, SECRET);
    const status = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
    const human = await daemon.efsctl('status', FS_ID);
    return { target, result, status, human: human.stdout };
  } finally {
    await daemon.efsctl('stop', FS_ID);
    await target.stop();
  }
}

/** Why IPv6 loopback cannot be used here, or null when it can. */
function ipv6Unavailable(): Promise<string | null> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', (err: NodeJS.ErrnoException) => resolve(`no IPv6 loopback (::1: ${err.code})`));
    srv.listen(0, '::1', () => srv.close(() => resolve(null)));
  });
}

describe('TLS policy', function () {
  let daemon: Daemon;
  before(async () => {
    daemon = await new Daemon(daemonConfig(20200)).start();
  });
  after(async () => {
    await daemon?.stop();
  });

  it('accepts a server with a valid chain for the file system name, over TLS 1.2 with AES-256-GCM and SNI', async () => {
    const { target, result, status } = await throughTunnel(daemon, '127.0.0.3', { cert: (c) => c.good });
    expect(result.received.toString()).to.equal(SECRET + ECHO_TRAILER);
    expect(target.sessions).to.deep.equal([{ protocol: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES256-GCM-SHA384', servername: FS_NAME }]);
    expect(status.last_error).to.equal(null);
    expect(status.connections.ok).to.equal(1);
  });

  it('resumes the TLS session on the next connection of a tunnel, still verified', async () => {
    const target = await new MountTargetStandIn({ host: '127.0.0.3', port: 2049, cert: testCerts().good, backend: 'echo' }).start();
    try {
      const add = await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', 'mounttargetip=127.0.0.3,region=us-east-1');
      for (const msg of ['first', 'second']) expect((await exchange(add.tunnel.port, msg)).received.toString()).to.equal(msg + ECHO_TRAILER);
      expect(target.sessions.map((s) => s.resumed ?? false)).to.deep.equal([false, true]);
      // (Node's server reports SNI only for full handshakes; the first session proves it is sent.)
      expect(target.sessions[1]).to.include({ protocol: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES256-GCM-SHA384' });
    } finally {
      await daemon.efsctl('stop', FS_ID);
      await target.stop();
    }
  });

  it('accepts a certificate from an intermediate CA that the server sends with it, trusting only the root, as for Amazon\'s mount targets', async () => {
    const { target, result, status } = await throughTunnel(daemon, '127.0.0.3', { cert: (c) => c.viaIntermediate });
    expect(result.received.toString()).to.equal(SECRET + ECHO_TRAILER);
    expect(target.sessions[0]).to.include({ protocol: 'TLSv1.2', servername: FS_NAME });
    expect(status.last_error).to.equal(null);
  });

  it('accepts a chain that goes on past the trusted root to a root the bundle does not hold (a cross-signed root, as Amazon\'s mount targets send)', async () => {
    const { result, status } = await throughTunnel(daemon, '127.0.0.3', { cert: (c) => c.viaCrossSignedRoot });
    expect(result.received.toString()).to.equal(SECRET + ECHO_TRAILER);
    expect(status.last_error).to.equal(null);
  });

  it('uses ECDHE-RSA-AES256-GCM-SHA384 with an RSA server certificate', async () => {
    const { target, result } = await throughTunnel(daemon, '127.0.0.3', { cert: (c) => c.goodRsa });
    expect(result.received.toString()).to.equal(SECRET + ECHO_TRAILER);
    expect(target.sessions[0]).to.include({ protocol: 'TLSv1.2', cipher: 'ECDHE-RSA-AES256-GCM-SHA384' });
  });

  it('offers TLS 1.2 only by default, even to a server that prefers TLS 1.3', async () => {
    const { target } = await throughTunnel(daemon, '127.0.0.3', { cert: (c) => c.good, maxVersion: 'TLSv1.3' });
    expect(target.sessions[0]?.protocol).to.equal('TLSv1.2');
  });

  // What efsctl status and the log say after "refused: ": OpenSSL's reason, never its whole error line.
  const refusals: Array<[string, ErrorCode, ServerCase, string]> = [
    ['a chain from another CA', 'TLS_UNTRUSTED_CHAIN', { cert: (c) => c.untrusted }, 'unable to verify the first certificate'],
    ['a certificate whose intermediate CA the server leaves out', 'TLS_UNTRUSTED_CHAIN', { cert: (c) => c.intermediateMissing }, 'unable to verify the first certificate'],
    ['a certificate for another file system', 'TLS_HOSTNAME_MISMATCH', { cert: (c) => c.otherFs },
      `Hostname/IP does not match certificate's altnames: Host: ${FS_NAME}. is not in the cert's altnames: DNS:fs-87654321.efs.us-east-1.amazonaws.com`],
    ['an expired certificate', 'TLS_CERT_EXPIRED', { cert: (c) => c.expired }, 'certificate has expired'],
    ['a self-signed leaf', 'TLS_SELF_SIGNED', { cert: (c) => c.selfSigned }, 'self-signed certificate'],
    ['a server that only offers TLS 1.3', 'TLS_PROTOCOL_REFUSED', { cert: (c) => c.good, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' },
      'tlsv1 alert protocol version (alert 70) (the server negotiates TLSv1.3 with TLS_AES_256_GCM_SHA384)'],
    ['a server that only offers TLS 1.0/1.1', 'TLS_PROTOCOL_DOWNGRADE',
      { cert: (c) => c.good, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' },
      'sslv3 alert handshake failure (alert 40) (the server negotiates TLSv1.1 with ECDHE-ECDSA-AES256-SHA)'],
    ['a server that only offers AES-128 suites', 'TLS_CIPHER_REFUSED',
      { cert: (c) => c.good, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA256' },
      'sslv3 alert handshake failure (alert 40) (the server negotiates TLSv1.2 with ECDHE-ECDSA-AES128-GCM-SHA256)'],
  ];
  for (const [what, code, server, reason] of refusals) {
    it(`refuses ${what} with ${code}, sends no plaintext, and shows the code and the reason in efsctl status`, async () => {
      const { target, result, status, human } = await throughTunnel(daemon, '127.0.0.4', server);
      expect(result.received.length, 'the client got no data').to.equal(0);
      // Node checks the chain and name once the handshake is done, so the server may see a session
      // open and close; what matters is that no application byte was sent in it.
      expect(target.received, 'the server received no application data').to.have.length(0);
      expect(target.wireBytes().includes(Buffer.from(SECRET)), 'plaintext on the wire').to.equal(false);
      expect(status.last_error?.code).to.equal(code);
      expect(status.last_error?.message).to.equal(`TLS connection to 127.0.0.4:2049 (${FS_NAME}) refused: ${reason}`);
      expect(status.connections).to.deep.include({ ok: 0, failed: 1 });
      expect(status.handshake_failures).to.deep.equal({ [code]: 1 });
      expect(human).to.contain(`Last error:    ${code}`);
      expect(human).to.contain(`\nWhat to do:    ${ERRORS[code].hint}\n`);
      expect(daemon.logs).to.match(new RegExp(`warn tunnel.handshake_failed fs=${FS_ID} code=${code} `));
    });
  }

  // efs-utils checks the name from the file system id on (checkHost), never the zone's name that an az= mount
  // connects to; a certificate for a whole region (a wildcard) must match one label only, as for stunnel.
  describe('with certificates as EFS mount targets present them', function () {
    const regionWide = `*.efs.${REGION}.amazonaws.com`;
    const zoneName = `us-east-1a.${FS_NAME}`;

    it(`accepts a certificate for every file system of the region (${regionWide})`, async () => {
      const { target, result, status } = await throughTunnel(daemon, '127.0.0.3', { cert: () => certFor(regionWide) });
      expect(result.received.toString()).to.equal(SECRET + ECHO_TRAILER);
      expect(target.sessions[0]).to.include({ protocol: 'TLSv1.2', servername: FS_NAME });
      expect(status.last_error).to.equal(null);
    });

    for (const [what, cert] of [['the file system', FS_NAME], ['every file system of the region', regionWide]] as const) {
      it(`verifies an az= tunnel against the file system's name, which a certificate for ${what} carries, and sends that name as SNI`, async () => {
        const { target, result, status, human } = await throughTunnel(daemon, '127.0.0.3', { cert: () => certFor(cert) }, ',az=us-east-1a');
        expect(result.received.toString()).to.equal(SECRET + ECHO_TRAILER);
        expect(target.sessions).to.deep.equal([{ protocol: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES256-GCM-SHA384', servername: FS_NAME }]);
        expect(status.target).to.deep.equal({ dns_name: zoneName, cert_name: FS_NAME, address: '127.0.0.3', port: 2049, region: REGION });
        expect(status.last_error).to.equal(null);
        expect(human).to.contain(`Target:        127.0.0.3:2049 (certificate must name ${FS_NAME})`);
      });
    }

    const mismatches: Array<[string, string, string]> = [
      ['a certificate for the file systems of another region', '*.efs.us-west-2.amazonaws.com', ''],
      ['a wildcard that would cover two labels', '*.us-east-1.amazonaws.com', ''],
      ['a certificate for the zone\'s name only, on an az= tunnel', zoneName, ',az=us-east-1a'],
    ];
    for (const [what, cert, options] of mismatches) {
      it(`refuses ${what} (${cert}) with TLS_HOSTNAME_MISMATCH and sends no plaintext`, async () => {
        const { target, result, status } = await throughTunnel(daemon, '127.0.0.4', { cert: () => certFor(cert) }, options);
        expect(result.received.length, 'the client got no data').to.equal(0);
        expect(target.received, 'the server received no application data').to.have.length(0);
        expect(status.last_error?.code).to.equal('TLS_HOSTNAME_MISMATCH');
        expect(status.last_error?.message).to.equal(
          `TLS connection to 127.0.0.4:2049 (${FS_NAME}) refused: Hostname/IP does not match certificate's altnames: Host: ${FS_NAME}. is not in the cert's altnames: DNS:${cert}`,
        );
      });
    }
  });

  // stunnel's level 3, which efs-utils writes for verify=3: the chain and the name, and the server's own
  // certificate in the CA bundle.
  describe('with verify=3', function () {
    const bundle = (name: string, ...pems: string[]): string => {
      const file = join(tempDir('verify3'), name);
      writeFileSync(file, pems.join(''));
      return file;
    };

    it('accepts a server whose own certificate the CA bundle holds, with the CA that issued it', async () => {
      const c = testCerts();
      const file = bundle('ca-and-leaf.pem', c.ca.cert, c.good.cert);
      const { result, status } = await throughTunnel(daemon, '127.0.0.3', { cert: (x) => x.good }, `,verify=3,cafile=${file}`);
      expect(result.received.toString()).to.equal(SECRET + ECHO_TRAILER);
      expect(status.last_error).to.equal(null);
    });

    it('refuses with TLS_CERT_NOT_IN_BUNDLE a certificate whose chain and name verify but that the bundle does not hold, and sends no plaintext', async () => {
      const c = testCerts();
      const file = bundle('ca-only.pem', c.ca.cert);
      const { target, result, status, human } = await throughTunnel(daemon, '127.0.0.4', { cert: (x) => x.good }, `,verify=3,cafile=${file}`);
      expect(result.received.length, 'the client got no data').to.equal(0);
      expect(target.received, 'the server received no application data').to.have.length(0);
      expect(status.last_error?.code).to.equal('TLS_CERT_NOT_IN_BUNDLE');
      const fingerprint = new X509Certificate(c.good.cert).fingerprint256;
      expect(status.last_error?.message).to.equal(
        `TLS connection to 127.0.0.4:2049 (${FS_NAME}) refused: its certificate (SHA-256 ${fingerprint}) is not one of the CA bundle's, which verify=3 requires`,
      );
      expect(human).to.contain(`\nWhat to do:    ${ERRORS.TLS_CERT_NOT_IN_BUNDLE.hint}\n`);
      expect(daemon.logs).to.match(new RegExp(`warn tunnel.handshake_failed fs=${FS_ID} code=TLS_CERT_NOT_IN_BUNDLE `));
    });

    it('still refuses a held certificate whose chain does not verify (the bundle holds the certificate but not its CA)', async () => {
      const c = testCerts();
      const file = bundle('leaf-only.pem', c.untrusted.cert);
      const { result, status } = await throughTunnel(daemon, '127.0.0.4', { cert: (x) => x.untrusted }, `,verify=3,cafile=${file}`);
      expect(result.received.length).to.equal(0);
      expect(status.last_error?.code).to.equal('TLS_UNTRUSTED_CHAIN');
    });

    it('refuses to take a verify=3 request onto a running tunnel that verifies with verify=2, and the other way round', async () => {
      const c = testCerts();
      const file = bundle('ca-and-leaf.pem', c.ca.cert, c.good.cert);
      const plain = await daemon.efsctl('add', FS_ID, '-o', `mounttargetip=127.0.0.3,region=us-east-1,cafile=${file}`);
      expect(plain.code).to.equal(0);
      try {
        const pinned = await daemon.efsctl('add', FS_ID, '-o', `mounttargetip=127.0.0.3,region=us-east-1,cafile=${file},verify=3`);
        expect(pinned.code).to.equal(1);
        expect(pinned.stderr).to.contain(`${FS_ID} already has a tunnel that verifies with verify=2, not verify=3; stop it first to change how it verifies [BAD_OPTION]`);
      } finally {
        await daemon.efsctl('stop', FS_ID);
      }
      expect((await daemon.efsctl('add', FS_ID, '-o', `mounttargetip=127.0.0.3,region=us-east-1,cafile=${file},verify=3`)).code).to.equal(0);
      try {
        const plainAgain = await daemon.efsctl('add', FS_ID, '-o', `mounttargetip=127.0.0.3,region=us-east-1,cafile=${file}`);
        expect(plainAgain.stderr).to.contain('already has a tunnel that verifies with verify=3, not verify=2');
      } finally {
        await daemon.efsctl('stop', FS_ID);
      }
    });
  });

  describe('with an IPv6 mount target', function () {
    before(async function () {
      skipIf(this, await ipv6Unavailable());
    });

    it('relays to mounttargetip=::1 verified against the file system name, and shows it as [::1]:2049', async () => {
      const { target, result, human } = await throughTunnel(daemon, '::1', { cert: (c) => c.good });
      expect(result.received.toString()).to.equal(SECRET + ECHO_TRAILER);
      expect(target.sessions).to.deep.equal([{ protocol: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES256-GCM-SHA384', servername: FS_NAME }]);
      expect(human).to.contain(`Target:        [::1]:2049 (certificate must name ${FS_NAME})`);
    });

    it('refuses an IPv6 mount target whose certificate names another file system, naming it [::1]:2049', async () => {
      const { target, status } = await throughTunnel(daemon, '::1', { cert: (c) => c.otherFs });
      expect(target.received).to.have.length(0);
      expect(status.last_error?.code).to.equal('TLS_HOSTNAME_MISMATCH');
      expect(status.last_error?.message).to.match(new RegExp(`^TLS connection to \\[::1\\]:2049 \\(${escapeRegExp(FS_NAME)}\\) refused: Hostname/IP does not match`));
    });
  });
});

describe('a CA bundle that changes while the daemon runs', function () {
  const ADDR = '127.0.0.47';
  let dir: string;
  let bundle: string;
  let daemon: Daemon;
  let target: MountTargetStandIn;
  /** Replace the bundle as a package upgrade or an editor does: a new file renamed over the old one. */
  const replaceBundle = (pem: string): void => {
    writeFileSync(`${bundle}.new`, pem);
    renameSync(`${bundle}.new`, bundle);
  };
  const logged = (event: string): number => daemon.logs.split('\n').filter((l) => l.includes(` ${event} `)).length;
  before(async () => {
    dir = tempDir('ca-reload');
    bundle = join(dir, 'cas.pem');
    writeFileSync(bundle, testCerts().ca.cert);
    target = await new MountTargetStandIn({ host: ADDR, port: 2049, cert: testCerts().good, backend: 'echo' }).start();
    daemon = await new Daemon(daemonConfig(21850, { tls: { ca_file: bundle } })).start();
  });
  after(async () => {
    await daemon?.stop();
    await target?.stop();
  });

  it('verifies new connections against the bundle as it is now, resumes no session of the old trust, and keeps open connections', async () => {
    const { ca, otherCa } = testCerts();
    const add = await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', `mounttargetip=${ADDR},region=us-east-1`);
    const port = add.tunnel.port;
    expect((await exchange(port, 'first')).received.toString()).to.equal('first' + ECHO_TRAILER);
    // A connection that stays open across every change below, as an NFS mount's does.
    const held = await openClient(port);
    const echoed = (text: string): Promise<string> => new Promise((resolve) => {
      let got = '';
      const onData = (d: Buffer): void => {
        got += d.toString();
        if (got.length >= text.length) {
          held.off('data', onData);
          resolve(got);
        }
      };
      held.on('data', onData);
      held.write(text);
    });
    expect(await echoed('held-1')).to.equal('held-1');

    // Only another CA: the target's chain is no longer trusted. The first connection after the
    // change could resume the session verified under the old bundle; it must not.
    replaceBundle(otherCa.cert);
    await waitFor('the bundle to be read again', async () => logged('tls.ca_reloaded') === 1, 5_000);
    expect(daemon.logs).to.match(new RegExp(`info tls\\.ca_reloaded fs=- code=- msg="new connections and probes verify against the bundle as it is now; open connections keep their verified sessions" file=${escapeRegExp(bundle)} certificates=1 tunnels=1$`, 'm'));
    expect((await exchange(port, 'second')).received.toString()).to.equal('');
    const refused = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
    expect(refused.last_error?.code).to.equal('TLS_UNTRUSTED_CHAIN');
    expect(refused.history.map((h) => h.event)).to.include('ca_reloaded');
    expect(await echoed('held-2')).to.equal('held-2');

    // A bundle cut short while being written is not taken: the trust stays as it was, and the log says why.
    replaceBundle(ca.cert + ca.cert.slice(0, 100));
    await waitFor('the damaged bundle to be refused', async () => logged('tls.ca_reload_failed') === 1, 5_000);
    expect(daemon.logs).to.match(new RegExp(`error tls\\.ca_reload_failed fs=- code=CA_BUNDLE_UNREADABLE msg="Cannot use CA bundle ${escapeRegExp(bundle)}: a certificate has no END line \\(a file still being written, or damaged\\); its tunnels keep verifying against the bundle as it was before; read again in 5 s, then less often, and at each change of the file"`));
    expect((await exchange(port, 'third')).received.toString()).to.equal('');

    // Both CAs: trusted again, with a full handshake.
    const sessionsBefore = target.sessions.length;
    replaceBundle(otherCa.cert + ca.cert);
    await waitFor('the bundle to be read again', async () => logged('tls.ca_reloaded') === 2, 5_000);
    expect(daemon.logs).to.match(/info tls\.ca_reloaded fs=- code=- msg="[^"]+" file=\S+ certificates=2 tunnels=1$/m);
    expect((await exchange(port, 'fourth')).received.toString()).to.equal('fourth' + ECHO_TRAILER);
    expect(target.sessions.slice(sessionsBefore).map((s) => s.resumed ?? false)).to.deep.equal([false]);
    expect(await echoed('held-3')).to.equal('held-3');
    held.destroy();
  });

  it('under verify=3, takes the server certificates the bundle holds as it is now', async () => {
    const { ca, good } = testCerts();
    // A tunnel of its own with verify=3, whatever the test above left; the bundle holds the CA only.
    if ((await daemon.efsctl('status', FS_ID)).code === 0) expect((await daemon.efsctl('stop', FS_ID)).code).to.equal(0);
    const port = (await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', `mounttargetip=${ADDR},region=us-east-1,verify=3`)).tunnel.port;
    // A bundle whose text does not change is not read again (the daemon compares it), so it is replaced only if needed.
    if (readFileSync(bundle, 'utf8') !== ca.cert) {
      const before = logged('tls.ca_reloaded');
      replaceBundle(ca.cert);
      await waitFor('the bundle to be read again', async () => logged('tls.ca_reloaded') === before + 1, 5_000);
    }
    expect((await exchange(port, 'not held')).received.toString()).to.equal('');
    expect((await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).last_error?.code).to.equal('TLS_CERT_NOT_IN_BUNDLE');
    const reloads = logged('tls.ca_reloaded');
    replaceBundle(ca.cert + good.cert);
    await waitFor('the bundle to be read again', async () => logged('tls.ca_reloaded') === reloads + 1, 5_000);
    expect((await exchange(port, 'held')).received.toString()).to.equal('held' + ECHO_TRAILER);
    expect((await daemon.efsctl('stop', FS_ID)).code).to.equal(0);
  });
});

/**
 * A daemon whose tls.ca_file is `bundle`, with one tunnel to an echo stand-in at `addr` that it trusts at first;
 * `check` gets the daemon, the tunnel's port, and a count of the log lines of an event.
 */
async function withBundleTunnel(addr: string, firstPort: number, bundle: string, check: (daemon: Daemon, port: number, logged: (event: string) => number) => Promise<void>): Promise<void> {
  const target = await new MountTargetStandIn({ host: addr, port: 2049, cert: testCerts().good, backend: 'echo' }).start();
  const daemon = await new Daemon(daemonConfig(firstPort, { tls: { ca_file: bundle } })).start();
  const logged = (event: string): number => daemon.logs.split('\n').filter((l) => l.includes(` ${event} `)).length;
  try {
    const port = (await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', `mounttargetip=${addr},region=us-east-1`)).tunnel.port;
    expect((await exchange(port, 'first')).received.toString()).to.equal('first' + ECHO_TRAILER);
    await check(daemon, port, logged);
  } finally {
    await daemon.stop();
    await target.stop();
  }
}

describe('a CA bundle that is a link to a file elsewhere, as /etc/pki/tls/certs/ca-bundle.crt is on RHEL and Amazon Linux', function () {
  it('is read again whenever the file it leads to is replaced (as update-ca-trust does), removed, or written again after its removal', async () => {
    const ADDR = '127.0.0.82';
    const { ca, otherCa } = testCerts();
    const dir = tempDir('ca-link');
    // The link's directory, and the directory of the file it leads to, as update-ca-trust lays them out.
    const extracted = join(dir, 'extracted');
    mkdirSync(extracted);
    const real = join(extracted, 'tls-ca-bundle.pem');
    writeFileSync(real, ca.cert);
    const bundle = join(dir, 'ca-bundle.crt');
    symlinkSync(real, bundle);
    /** Replace the file the link leads to, the way update-ca-trust writes it: a new file renamed over the old. */
    const rewrite = (pem: string): void => {
      writeFileSync(`${real}.tmp`, pem);
      renameSync(`${real}.tmp`, real);
    };
    await withBundleTunnel(ADDR, 27000, bundle, async (daemon, port, logged) => {
      // The CA removed from the file the link leads to: nothing changes in the link's own directory.
      rewrite(otherCa.cert);
      await waitFor('the bundle to be read again', async () => logged('tls.ca_reloaded') === 1, 5_000);
      expect((await exchange(port, 'second')).received.toString(), 'the removed CA is no longer trusted').to.equal('');
      expect((await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).last_error?.code).to.equal('TLS_UNTRUSTED_CHAIN');

      // The file removed (a package's upgrade between its old file and its new one): not taken, said why.
      rmSync(real);
      await waitFor('the failed read logged', async () => logged('tls.ca_reload_failed') === 1, 5_000);
      expect(daemon.logs).to.contain(`error tls.ca_reload_failed fs=- code=CA_BUNDLE_UNREADABLE msg="Cannot use CA bundle ${bundle}: ENOENT: no such file or directory, open '${bundle}'; ` +
        `its tunnels keep verifying against the bundle as it was before; read again in 5 s, then less often, and at each change of the file" file=${bundle}`);
      // Written again: seen there at once (not at the next try, 5 s on), and the next rewrite as well.
      writeFileSync(real, otherCa.cert + ca.cert);
      await waitFor('the file written again read', async () => logged('tls.ca_reloaded') === 2, 2_000);
      expect((await exchange(port, 'third')).received.toString()).to.equal('third' + ECHO_TRAILER);
      rewrite(otherCa.cert);
      await waitFor('the next rewrite read', async () => logged('tls.ca_reloaded') === 3, 2_000);
      expect((await exchange(port, 'fourth')).received.toString()).to.equal('');
    });
  });
});

describe('a CA bundle reached through a chain of links, as through /etc/alternatives', function () {
  it('is read again when a link in the middle of the chain is pointed at another file, though neither the first link nor either file changed', async () => {
    const ADDR = '127.0.0.91';
    const { ca, otherCa } = testCerts();
    const dir = tempDir('ca-chain');
    for (const d of ['etc', 'alternatives', 'store']) mkdirSync(join(dir, d));
    // etc/cas.pem → alternatives/efs-cas → store/a.pem; store/b.pem, without the tunnel's CA, is there from the start.
    writeFileSync(join(dir, 'store', 'a.pem'), ca.cert);
    writeFileSync(join(dir, 'store', 'b.pem'), otherCa.cert);
    const middle = join(dir, 'alternatives', 'efs-cas');
    symlinkSync(join(dir, 'store', 'a.pem'), middle);
    const bundle = join(dir, 'etc', 'cas.pem');
    symlinkSync(middle, bundle);
    await withBundleTunnel(ADDR, 27300, bundle, async (_daemon, port, logged) => {
      // The watches set up first: a change while they start is seen by the start's own look along the chain.
      await sleep(1_000);
      expect(logged('tls.ca_reloaded'), 'nothing read the bundle again yet').to.equal(0);
      // As update-alternatives does it: a new link renamed over the old.
      symlinkSync(join(dir, 'store', 'b.pem'), `${middle}.new`);
      renameSync(`${middle}.new`, middle);
      await waitFor('the bundle to be read again', async () => logged('tls.ca_reloaded') === 1, 5_000);
      expect((await exchange(port, 'second')).received.toString(), 'the CA that b.pem lacks is no longer trusted').to.equal('');
      // And the chain's new end is watched: b.pem written again with the CA is read.
      writeFileSync(`${join(dir, 'store', 'b.pem')}.tmp`, otherCa.cert + ca.cert);
      renameSync(`${join(dir, 'store', 'b.pem')}.tmp`, join(dir, 'store', 'b.pem'));
      await waitFor('the new end rewritten read', async () => logged('tls.ca_reloaded') === 2, 5_000);
      expect((await exchange(port, 'third')).received.toString()).to.equal('third' + ECHO_TRAILER);
    });
  });
});

describe('a CA bundle in a directory reached through a link, as Debian\'s /usr/lib/ssl/certs leads to /etc/ssl/certs', function () {
  it('is read again when it is replaced', async () => {
    const ADDR = '127.0.0.84';
    const { ca, otherCa } = testCerts();
    const dir = tempDir('ca-linked-dir');
    mkdirSync(join(dir, 'certs'));
    symlinkSync(join(dir, 'certs'), join(dir, 'linked'));
    const bundle = join(dir, 'linked', 'cas.pem');
    writeFileSync(bundle, ca.cert);
    await withBundleTunnel(ADDR, 27200, bundle, async (daemon, port) => {
      writeFileSync(`${bundle}.new`, otherCa.cert);
      renameSync(`${bundle}.new`, bundle);
      await waitFor('the bundle to be read again', async () => daemon.logs.includes('info tls.ca_reloaded'), 5_000);
      expect((await exchange(port, 'second')).received.toString(), 'the removed CA is no longer trusted').to.equal('');
    });
  });
});

describe('a CA bundle whose read after a change found no file descriptor', function () {
  it('is read again on its own until it can be used, so that a CA removed from it is not trusted on (CA_BUNDLE_UNREADABLE, EMFILE)', async () => {
    const ADDR = '127.0.0.83';
    const { ca, otherCa } = testCerts();
    const bundle = join(tempDir('ca-retry'), 'cas.pem');
    writeFileSync(bundle, ca.cert);
    await withBundleTunnel(ADDR, 27050, bundle, async (daemon, port, logged) => {
      const restore = await daemon.withholdDescriptors();
      try {
        writeFileSync(`${bundle}.new`, otherCa.cert);
        renameSync(`${bundle}.new`, bundle);
        await waitFor('the failed read logged', async () => logged('tls.ca_reload_failed') === 1, 5_000);
      } finally {
        restore();
      }
      expect(daemon.logs).to.contain(`error tls.ca_reload_failed fs=- code=CA_BUNDLE_UNREADABLE msg="Cannot use CA bundle ${bundle}: EMFILE: too many open files, open '${bundle}'; ` +
        'its tunnels keep verifying against the bundle as it was before; read again in 5 s, then less often, and at each change of the file"');
      // Descriptors again, and the file unchanged since: the next try takes it, and the removed CA goes.
      await waitFor('the bundle read at the next try', async () => logged('tls.ca_reloaded') === 1, 8_000);
      expect((await exchange(port, 'second')).received.toString(), 'the removed CA is no longer trusted').to.equal('');
      expect((await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).last_error?.code).to.equal('TLS_UNTRUSTED_CHAIN');
    });
  });
});

describe('files the TLS verification rests on, when a user other than root could change them', function () {
  const ADDR = '127.0.0.49';
  let target: MountTargetStandIn;
  let daemon: Daemon;
  let bundle: string;
  /** A second bundle, of a second tunnel's cafile=. */
  let second: string;
  before(async () => {
    const dir = tempDir('trust');
    bundle = join(dir, 'cas.pem');
    writeFileSync(bundle, testCerts().ca.cert);
    chmodSync(bundle, 0o666);
    target = await new MountTargetStandIn({ host: ADDR, port: 2049, cert: testCerts().good, backend: 'echo' }).start();
    // Trusted files are looked at again every second, besides at each read.
    // At debug level: each look says it was made (trust.checked).
    daemon = new Daemon(daemonConfig(21910, { health: { probe_interval: 0, trust_check_interval: 1 }, metrics: { listen: '127.0.0.1:19816' }, log: { level: 'debug' } }));
    chmodSync(daemon.configFile, 0o646);
    await daemon.start();
  });
  after(async () => {
    await daemon?.stop();
    await target?.stop();
  });

  it('warns with TRUST_FILE_WRITABLE of a config file and a CA bundle that every user could write, and still uses them, so that no tunnel is dropped', async () => {
    await waitFor('the config file warning', () => daemon.logs.includes('config.file_exposed'), 3_000);
    expect(daemon.logs).to.contain(`warn config.file_exposed fs=- code=TRUST_FILE_WRITABLE msg="${daemon.configFile} is writable by every user (mode 0646): `
      + `whoever can change config file ${daemon.configFile} can point tls.ca_file at a CA bundle of their own, applied at the next restart; it is used all the same" file=${daemon.configFile}\n`);
    const add = await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', `mounttargetip=${ADDR},region=us-east-1,cafile=${bundle}`);
    expect(daemon.logs).to.contain(`warn tls.ca_file_exposed fs=- code=TRUST_FILE_WRITABLE msg="${bundle} is writable by every user (mode 0666): `
      + `whoever can change CA bundle ${bundle} can make the tunnels that verify with it trust a CA of their own; it is used all the same" file=${bundle}\n`);
    expect((await exchange(add.tunnel.port, 'verified')).received.toString()).to.equal('verified' + ECHO_TRAILER);
  });

  it('says nothing of the files once only root can change them', async () => {
    chmodSync(daemon.configFile, 0o644);
    chmodSync(bundle, 0o644);
    const before = daemon.logs.length;
    expect((await daemon.efsctl('reload')).code).to.equal(0);
    // A changed bundle is read again: its contents change, its mode does not matter to the watcher.
    writeFileSync(bundle, testCerts().ca.cert + testCerts().otherCa.cert);
    await waitFor('the bundle read again', () => daemon.logs.slice(before).includes('tls.ca_reloaded'), 5_000);
    expect(daemon.logs.slice(before)).to.not.contain('_exposed');
  });

  it('says within health.trust_check_interval when a CA bundle it read safely becomes writable by another user, once, in the log and efs_relay_trust_files_exposed, and when it is root\'s alone again', async () => {
    await waitFor('the files judged safe', async () => (await daemon.scrapedValue('efs_relay_trust_files_exposed')) === '0', 5_000);
    const before = daemon.logs.length;
    const since = (): string => daemon.logs.slice(before);
    // A chmod changes no content: no read follows, and only the periodic look can see it.
    chmodSync(bundle, 0o646);
    await waitFor('the warning', () => since().includes('tls.ca_file_exposed'), 5_000);
    expect(since()).to.contain(`warn tls.ca_file_exposed fs=- code=TRUST_FILE_WRITABLE msg="${bundle} is writable by every user (mode 0646): `
      + `whoever can change CA bundle ${bundle} can make the tunnels that verify with it trust a CA of their own; it is used all the same" file=${bundle}\n`);
    expect(await daemon.scrapedValue('efs_relay_trust_files_exposed')).to.equal('1');
    await sleep(2_500); // two more looks
    expect(since().match(/tls\.ca_file_exposed/g), 'said once while it lasts').to.have.length(1);
    chmodSync(bundle, 0o644);
    await waitFor('the all-clear', () => since().includes('trust.restored'), 5_000);
    expect(since()).to.contain(`info trust.restored fs=- code=- msg="only root can change CA bundle ${bundle} again" file=${bundle}\n`);
    expect(await daemon.scrapedValue('efs_relay_trust_files_exposed')).to.equal('0');
  });

  it('warns at the next look of a CA bundle made writable by another user right after its read, before any look at it', async () => {
    second = join(tempDir('trust-second'), 'cas.pem');
    writeFileSync(second, testCerts().ca.cert);
    const before = daemon.logs.length;
    const since = (): string => daemon.logs.slice(before);
    // Read when the tunnel starts, and found safe; changed within milliseconds, long before the next look.
    expect((await daemon.efsctl('add', 'fs-0000ab01', '-o', `mounttargetip=${ADDR},region=us-east-1,cafile=${second}`)).code).to.equal(0);
    chmodSync(second, 0o646);
    await waitFor('the warning', () => since().includes('tls.ca_file_exposed'), 5_000);
    expect(since()).to.contain(`warn tls.ca_file_exposed fs=- code=TRUST_FILE_WRITABLE msg="${second} is writable by every user (mode 0646): `);
    expect(await daemon.scrapedValue('efs_relay_trust_files_exposed')).to.equal('1');
    chmodSync(second, 0o644);
    await waitFor('the all-clear', () => since().includes('trust.restored'), 5_000);
  });

  it('says at debug level that each look was made, at how many files, how many exposed, and how long it took (trust.checked)', async () => {
    const before = daemon.logs.length;
    chmodSync(second, 0o646);
    try {
      // The config file, the first bundle and the second one; the second exposed.
      await waitFor('a look that found it', () => /debug trust\.checked fs=- code=- msg="looked at 3 trusted file\(s\): 1 exposed" files=3 ms=\d+\n/.test(daemon.logs.slice(before)), 5_000);
    } finally {
      chmodSync(second, 0o644);
    }
  });
});

describe('TLS policy with tls.max_version: TLSv1.3', function () {
  let daemon: Daemon;
  before(async () => {
    daemon = await new Daemon(daemonConfig(20250, { tls: { ca_file: testCerts().ca.certFile, max_version: 'TLSv1.3' } })).start();
  });
  after(async () => {
    await daemon?.stop();
  });

  it('accepts a TLS 1.3-only server with TLS_AES_256_GCM_SHA384', async () => {
    const { target, result } = await throughTunnel(daemon, '127.0.0.5', { cert: (c) => c.good, minVersion: 'TLSv1.3' });
    expect(result.received.toString()).to.equal(SECRET + ECHO_TRAILER);
    expect(target.sessions[0]).to.include({ protocol: 'TLSv1.3', cipher: 'TLS_AES_256_GCM_SHA384' });
  });

  it('refuses a TLS 1.3-only server that only offers TLS_AES_128_GCM_SHA256', async () => {
    const { target, result, status } = await throughTunnel(daemon, '127.0.0.5', {
      cert: (c) => c.good, minVersion: 'TLSv1.3', ciphers: 'TLS_AES_128_GCM_SHA256',
    });
    expect(result.received.length).to.equal(0);
    expect(target.handshakes).to.equal(0);
    expect(target.received).to.have.length(0);
    expect(target.wireBytes().includes(Buffer.from(SECRET))).to.equal(false);
    expect(status.last_error?.code).to.equal('TLS_CIPHER_REFUSED');
  });
});

/**
 * A man in the middle on the path to the mount target: passes every byte on,
 * but flips one bit in the first application-data record (TLS record type 23)
 * that the server sends.
 */
async function tamperingProxy(host: string, to: { host: string; port: number }): Promise<{ tampered: () => number; close: () => Promise<void> }> {
  let tampered = 0;
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const server = connect(to);
    for (const s of [client, server]) {
      sockets.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        client.destroy();
        server.destroy();
      });
    }
    client.pipe(server);
    let pending = Buffer.alloc(0);
    let done = false;
    server.on('data', (chunk: Buffer) => {
      if (done) return void client.write(chunk);
      pending = Buffer.concat([pending, chunk]);
      // Walk whole records (5-byte header: type, version, length); pass each on, altered or not.
      while (pending.length >= 5 && pending.length >= 5 + pending.readUInt16BE(3)) {
        const record = pending.subarray(0, 5 + pending.readUInt16BE(3));
        pending = pending.subarray(record.length);
        if (!done && record[0] === 23) {
          record[record.length - 20] = (record[record.length - 20] as number) ^ 0x01;
          tampered++;
          done = true;
        }
        client.write(record);
      }
      if (done && pending.length > 0) client.write(pending);
    });
  });
  await new Promise<void>((r) => server.listen(to.port, host, r));
  return {
    tampered: () => tampered,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

describe('TLS policy after the handshake', function () {
  let daemon: Daemon;
  before(async () => {
    daemon = await new Daemon(daemonConfig(21450, { metrics: { listen: '127.0.0.1:19812' } })).start();
  });
  after(async () => {
    await daemon?.stop();
  });

  /** A client of the tunnel: what it received, and how its connection ended. */
  function client(port: number) {
    const sock = connect({ host: '127.0.0.1', port });
    const got: Buffer[] = [];
    sock.on('data', (d: Buffer) => got.push(d));
    const ended = new Promise<string | null>((resolve) => {
      let error: string | null = null;
      sock.on('error', (e: NodeJS.ErrnoException) => (error = e.code ?? e.message));
      sock.on('close', () => resolve(error));
    });
    return { sock, received: () => Buffer.concat(got), ended };
  }

  /** What status, the log and the metrics say of one session that ended with `code`, the tunnel's only failure. */
  async function expectOneSessionFailure(code: 'TLS_SESSION_FAILED' | 'TLS_RENEGOTIATION_REFUSED', message: string): Promise<TunnelDetail> {
    const status = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
    expect(status.last_error?.code).to.equal(code);
    expect(status.last_error?.message).to.equal(message);
    expect(status.session_failures).to.deep.equal({ [code]: 1 });
    expect(status.history.map((h) => h.event)).to.include('session_failed');
    expect((await daemon.efsctl('status', FS_ID)).stdout).to.contain(`Broken TLS:    ${code}=1`);
    expect(daemon.logs).to.match(new RegExp(`warn tunnel.session_failed fs=${FS_ID} code=${code} `));
    const metrics = (await (await fetch('http://127.0.0.1:19812/metrics')).text()).split('\n').filter((l) => l.startsWith('efs_relay_tls_session_failures_total{'));
    expect(metrics).to.deep.equal(['TLS_SESSION_FAILED', 'TLS_RENEGOTIATION_REFUSED'].map((c) =>
      `efs_relay_tls_session_failures_total{fs_id="${FS_ID}",code="${c}"} ${c === code ? 1 : 0}`));
    return status;
  }

  it('refuses a renegotiation that the mount target asks for (as efs-utils\' stunnel, renegotiation = no), resets the client and says why', async function () {
    skipIf(this, await commandMissing('openssl', 'apt-get install openssl'));
    const certs = testCerts();
    // openssl s_server can ask for a renegotiation mid-session ("r" on its stdin); Node's TLS server cannot.
    const server = spawn('openssl', ['s_server', '-accept', '127.0.0.40:2049', '-tls1_2', '-msg',
      '-cert', certs.good.certFile, '-key', certs.good.keyFile, '-cipher', 'ECDHE-ECDSA-AES256-GCM-SHA384'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let wire = '';
    server.stdout.on('data', (d: Buffer) => (wire += d.toString()));
    server.stderr.on('data', (d: Buffer) => (wire += d.toString()));
    try {
      await waitFor('s_server listening', () => wire.includes('ACCEPT'));
      const add = await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', 'mounttargetip=127.0.0.40,region=us-east-1');
      const c = client(add.tunnel.port);
      c.sock.write('NFS-REQUEST\n');
      await waitFor('the request through the tunnel', () => wire.includes('NFS-REQUEST'));
      const before = wire.length;
      server.stdin.write('r\n');
      expect(await c.ended, 'the client was reset').to.equal('ECONNRESET');
      const after = wire.slice(before);
      expect(after).to.contain('HelloRequest');
      expect(after, 'the relay answered the HelloRequest with a no_renegotiation alert').to.match(/<<< TLS 1\.2, Alert \[length 0002\], warning no_renegotiation/);
      expect(after, 'no new handshake was started').not.to.contain('ClientHello');
      const status = await expectOneSessionFailure('TLS_RENEGOTIATION_REFUSED', `TLS session with 127.0.0.40:2049 (${FS_NAME}) ended: sslv3 alert handshake failure (alert 40)`);
      expect(status.connections).to.deep.include({ ok: 1, failed: 0 });
    } finally {
      server.kill();
      await daemon.efsctl('stop', FS_ID);
    }
  });

  it('passes nothing of a record altered on the way, resets the client and reports TLS_SESSION_FAILED', async () => {
    const target = await new MountTargetStandIn({ host: '127.0.0.42', port: 2049, cert: testCerts().good, backend: 'echo' }).start();
    const proxy = await tamperingProxy('127.0.0.41', { host: '127.0.0.42', port: 2049 });
    try {
      const add = await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', 'mounttargetip=127.0.0.41,region=us-east-1');
      const c = client(add.tunnel.port);
      c.sock.write(SECRET);
      expect(await c.ended, 'the client was reset').to.equal('ECONNRESET');
      expect(proxy.tampered(), 'the echo was altered on the way').to.equal(1);
      expect(target.received.map(String).join(''), 'the request reached the server intact').to.equal(SECRET);
      expect(c.received().length, 'nothing of the altered record reached the client').to.equal(0);
      await expectOneSessionFailure('TLS_SESSION_FAILED', `TLS session with 127.0.0.41:2049 (${FS_NAME}) ended: cipher operation failed`);
    } finally {
      await daemon.efsctl('stop', FS_ID);
      await proxy.close();
      await target.stop();
    }
  });
});

describe('a daemon started with NODE_TLS_REJECT_UNAUTHORIZED=0 in its environment', function () {
  it('verifies every mount target all the same (another CA\'s chain, another file system\'s certificate: refused, no plaintext sent) and says that it ignores the variable', async () => {
    const daemon = await new Daemon(daemonConfig(27350)).start(undefined, undefined, { NODE_TLS_REJECT_UNAUTHORIZED: '0' });
    try {
      const refused: Array<[ServerCase, ErrorCode]> = [[{ cert: (c) => c.untrusted }, 'TLS_UNTRUSTED_CHAIN'], [{ cert: (c) => c.otherFs }, 'TLS_HOSTNAME_MISMATCH']];
      for (const [server, code] of refused) {
        const { target, result, status } = await throughTunnel(daemon, '127.0.0.92', server);
        expect(result.received.length, `${code}: the client got no data`).to.equal(0);
        expect(target.received, `${code}: the server received no application data`).to.have.length(0);
        expect(target.wireBytes().includes(Buffer.from(SECRET)), `${code}: plaintext on the wire`).to.equal(false);
        expect(status.last_error?.code).to.equal(code);
      }
      const { result } = await throughTunnel(daemon, '127.0.0.92', { cert: (c) => c.good });
      expect(result.received.toString(), 'a verified mount target still works').to.equal(SECRET + ECHO_TRAILER);
      expect(daemon.logs).to.contain('warn daemon.tls_env_ignored fs=- code=- msg="NODE_TLS_REJECT_UNAUTHORIZED=0 is in the environment efs-relayd was started with: ignored, '
        + 'every mount target and AWS endpoint is verified all the same; remove it from the unit or the shell that starts the daemon"');
      expect(daemon.logs, 'no warning of Node\'s that TLS is unverified').to.not.contain('daemon.node_warning');
    } finally {
      await daemon.stop();
    }
  });
});
