// The TLS policy against real TLS servers with certificates made at test
// time: what is accepted, and each way a server is refused, with its code,
// and without one byte of plaintext reaching the server.
import { expect } from 'chai';
import type { SecureVersion } from 'node:tls';
import { Daemon } from './helpers/daemon.js';
import { exchange } from './helpers/client.js';
import { FS_ID, FS_NAME, daemonConfig, testCerts, type Certs } from './helpers/fixtures.js';
import { ECHO_TRAILER, MountTargetStandIn } from './helpers/mount-target.js';
import type { AddResult, TunnelDetail } from '../daemon/tunnels.js';

const SECRET = 'PLAINTEXT-NFS-PAYLOAD-MUST-NOT-LEAK';

interface ServerCase {
  cert: (c: Certs) => Certs['good'];
  minVersion?: SecureVersion;
  maxVersion?: SecureVersion;
  ciphers?: string;
}

async function throughTunnel(daemon: Daemon, addr: string, server: ServerCase) {
  const target = await new MountTargetStandIn({
    host: addr, port: 2049, cert: server.cert(testCerts()), backend: 'echo', record: true,
    ...(server.minVersion ? { minVersion: server.minVersion } : {}),
    ...(server.maxVersion ? { maxVersion: server.maxVersion } : {}),
    ...(server.ciphers ? { ciphers: server.ciphers } : {}),
  }).start();
  try {
    const add = await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', `mounttargetip=${addr},region=us-east-1`);
    const result = await exchange(add.tunnel.port, SECRET);
    const status = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
    const human = await daemon.efsctl('status', FS_ID);
    return { target, result, status, human: human.stdout };
  } finally {
    await daemon.efsctl('stop', FS_ID);
    await target.stop();
  }
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

  it('uses ECDHE-RSA-AES256-GCM-SHA384 with an RSA server certificate', async () => {
    const { target, result } = await throughTunnel(daemon, '127.0.0.3', { cert: (c) => c.goodRsa });
    expect(result.received.toString()).to.equal(SECRET + ECHO_TRAILER);
    expect(target.sessions[0]).to.include({ protocol: 'TLSv1.2', cipher: 'ECDHE-RSA-AES256-GCM-SHA384' });
  });

  it('offers TLS 1.2 only by default, even to a server that prefers TLS 1.3', async () => {
    const { target } = await throughTunnel(daemon, '127.0.0.3', { cert: (c) => c.good, maxVersion: 'TLSv1.3' });
    expect(target.sessions[0]?.protocol).to.equal('TLSv1.2');
  });

  const refusals: Array<[string, string, ServerCase]> = [
    ['a chain from another CA', 'TLS_UNTRUSTED_CHAIN', { cert: (c) => c.untrusted }],
    ['a certificate for another file system', 'TLS_HOSTNAME_MISMATCH', { cert: (c) => c.otherFs }],
    ['an expired certificate', 'TLS_CERT_EXPIRED', { cert: (c) => c.expired }],
    ['a self-signed leaf', 'TLS_SELF_SIGNED', { cert: (c) => c.selfSigned }],
    ['a server that only offers TLS 1.3', 'TLS_PROTOCOL_REFUSED', { cert: (c) => c.good, minVersion: 'TLSv1.3', maxVersion: 'TLSv1.3' }],
    ['a server that only offers TLS 1.0/1.1', 'TLS_PROTOCOL_DOWNGRADE',
      { cert: (c) => c.good, minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }],
    ['a server that only offers AES-128 suites', 'TLS_CIPHER_REFUSED',
      { cert: (c) => c.good, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-SHA256' }],
  ];
  for (const [what, code, server] of refusals) {
    it(`refuses ${what} with ${code}, sends no plaintext, and shows the code in efsctl status`, async () => {
      const { target, result, status, human } = await throughTunnel(daemon, '127.0.0.4', server);
      expect(result.received.length, 'the client got no data').to.equal(0);
      // Node checks the chain and name once the handshake is done, so the server may see a session
      // open and close; what matters is that no application byte was sent in it.
      expect(target.received, 'the server received no application data').to.have.length(0);
      expect(target.wireBytes().includes(Buffer.from(SECRET)), 'plaintext on the wire').to.equal(false);
      expect(status.last_error?.code).to.equal(code);
      expect(status.connections).to.deep.include({ ok: 0, failed: 1 });
      expect(status.handshake_failures).to.deep.equal({ [code]: 1 });
      expect(human).to.contain(`Last error:    ${code}`);
      expect(daemon.logs).to.match(new RegExp(`warn tunnel.handshake_failed fs=${FS_ID} code=${code} `));
    });
  }
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
