// efs-utils' fall_back_to_mount_target_ip_address: when DNS has no address
// for a file system's name (a VPC without DNS hostnames, a host that does
// not use the VPC's resolver), the mount target comes from the EFS API's
// DescribeMountTargets, signed with the daemon's AWS credentials, in this
// instance's zone. The daemon runs with a resolver of its own (the test's DNS
// server, which knows none of these names), an instance metadata stand-in
// that gives the zone ID, and an EFS API stand-in over TLS.
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { exchange } from './helpers/client.js';
import { BIN, Daemon, escapeRegExp, ownResolverUnavailable, run, skipIf, tempDir, waitFor } from './helpers/daemon.js';
import { DnsServer } from './helpers/dns-server.js';
import { certFor, daemonConfig, REGION, testCerts } from './helpers/fixtures.js';
import { InstanceMetadataStandIn } from './helpers/instance-metadata.js';
import { ECHO_TRAILER, MountTargetStandIn } from './helpers/mount-target.js';
import { signApiRequest } from '../daemon/sigv4.js';
import type { AddResult, TunnelDetail } from '../daemon/tunnels.js';
import type { DoctorReport } from '../cli/doctor.js';

const DNS_HOST = '127.0.0.86';
/** The mount targets the API names: use1-az2's (this instance's zone) and us-east-1a's (use1-az1). */
const IN_MY_ZONE = '127.0.0.87';
const IN_ZONE_A = '127.0.0.88';
const KEYS = { id: 'AKIDFALLBACK000000001', secret: 'fallback/secret/key/0000000000000000000' };
const nameOf = (fsId: string, az = ''): string => `${az ? `${az}.` : ''}${fsId}.efs.${REGION}.amazonaws.com`;

describe('Mount targets from the EFS API when DNS has no address for the name', function () {
  this.timeout(60_000);
  let dns: DnsServer;
  let imds: InstanceMetadataStandIn;
  let api: Server;
  let targets: MountTargetStandIn[] = [];
  let daemon: Daemon;
  /** The EFS API's DescribeMountTargets requests: the file system asked for, and whether the signature was right. */
  const asked: Array<{ fsId: string | null; signed: boolean }> = [];
  /** An API out of reach: each request is counted, then its connection dropped. */
  let apiDown = false;
  const apiUrl = (): string => `https://localhost:${(api.address() as AddressInfo).port}/`;
  const dir = tempDir('efs-relay-fallback-');
  const credentialsFile = join(dir, 'credentials');
  const config = (extra: Record<string, unknown> = {}): Record<string, unknown> => daemonConfig(27250, {
    relay: { connect_timeout: 3, close_timeout: 5 },
    iam: { credentials_file: credentialsFile, config_file: join(dir, 'no-config') },
    efs: { metadata_url: imds.url, mount_target_fallback: true, api_url: apiUrl() },
    ...extra,
  });
  const launch = (d: Daemon): Promise<Daemon> => d.start(undefined, DNS_HOST, { NODE_EXTRA_CA_CERTS: testCerts().ca.certFile });
  const start = (extra: Record<string, unknown> = {}): Promise<Daemon> => launch(new Daemon(config(extra)));

  before(async function () {
    skipIf(this, await ownResolverUnavailable());
    dns = await new DnsServer(DNS_HOST).start();
    imds = await new InstanceMetadataStandIn({ host: DNS_HOST, mode: 'v2', region: REGION, azId: 'use1-az2' }).start();
    const apiCert = certFor('localhost');
    api = createHttpsServer({ key: apiCert.key, cert: apiCert.cert }, (req, res) => {
      const url = new URL(req.url ?? '/', `https://${req.headers.host}`);
      const amz = String(req.headers['x-amz-date']);
      const date = new Date(`${amz.slice(0, 4)}-${amz.slice(4, 6)}-${amz.slice(6, 11)}:${amz.slice(11, 13)}:${amz.slice(13, 15)}Z`);
      // Checked as the EFS API checks it, with the secret of the keys in root's credentials file.
      const expected = Number.isNaN(date.getTime()) ? null : signApiRequest({ method: 'GET', url, body: '', region: REGION, service: 'elasticfilesystem', date },
        { accessKeyId: KEYS.id, secretAccessKey: KEYS.secret, sessionToken: null }).authorization;
      const fsId = url.searchParams.get('FileSystemId');
      const signed = req.headers.authorization === expected;
      asked.push({ fsId, signed });
      if (apiDown) return void req.socket.destroy();
      const json = (status: number, body: unknown): void => void res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
      if (!signed) return json(403, { ErrorCode: 'AccessDeniedException', Message: 'The request signature we calculated does not match the signature you provided.' });
      if (req.method !== 'GET' || url.pathname !== '/2015-02-01/mount-targets') return json(404, { ErrorCode: 'NotFound', Message: 'no such operation' });
      if (fsId !== 'fs-0000fb01' && fsId !== 'fs-0000fb03' && fsId !== 'fs-0000fb05') return json(404, { ErrorCode: 'FileSystemNotFound', Message: `File system '${fsId}' does not exist.` });
      json(200, {
        MountTargets: [
          { MountTargetId: 'fsmt-00000000000000001', FileSystemId: fsId, LifeCycleState: 'available', IpAddress: IN_ZONE_A, AvailabilityZoneId: 'use1-az1', AvailabilityZoneName: 'us-east-1a' },
          { MountTargetId: 'fsmt-00000000000000002', FileSystemId: fsId, LifeCycleState: 'available', IpAddress: IN_MY_ZONE, AvailabilityZoneId: 'use1-az2', AvailabilityZoneName: 'us-east-1b' },
          { MountTargetId: 'fsmt-00000000000000003', FileSystemId: fsId, LifeCycleState: 'creating', IpAddress: '127.0.0.89', AvailabilityZoneId: 'use1-az4', AvailabilityZoneName: 'us-east-1c' },
        ],
      });
    });
    await new Promise<void>((resolve) => api.listen(0, '127.0.0.1', resolve));
    writeFileSync(credentialsFile, `[default]\naws_access_key_id = ${KEYS.id}\naws_secret_access_key = ${KEYS.secret}\n`, { mode: 0o600 });
    const cert = certFor(`*.efs.${REGION}.amazonaws.com`);
    targets = await Promise.all([IN_MY_ZONE, IN_ZONE_A].map((host) => new MountTargetStandIn({ host, port: 2049, cert, backend: 'echo' }).start()));
    daemon = await start();
  });
  after(async () => {
    await daemon?.stop();
    await Promise.all(targets.map((t) => t.stop()));
    await imds?.stop();
    await dns?.stop();
    await new Promise((resolve) => (api ? api.close(resolve) : resolve(undefined)));
  });

  const add = async (d: Daemon, fsId: string, extra = ''): Promise<number> => {
    const r = await d.efsctlJson<AddResult>('add', fsId, '-o', `region=${REGION}${extra}`);
    return r.tunnel.port;
  };
  const askedFor = (fsId: string): number => asked.filter((a) => a.fsId === fsId).length;

  it('connects to the mount target in this instance\'s zone that DescribeMountTargets gives, signed with root\'s credentials, verified against the file system\'s name; status and doctor say where it goes', async () => {
    const fsId = 'fs-0000fb01';
    const port = await add(daemon, fsId);
    expect((await exchange(port, 'by the API')).received.toString()).to.equal('by the API' + ECHO_TRAILER);
    expect(targets[0]!.sessions.map((s) => s.servername), 'the handshake, at use1-az2\'s mount target, names the file system').to.deep.equal([nameOf(fsId)]);
    expect(dns.asked(nameOf(fsId)), 'DNS was asked first').to.be.greaterThan(0);
    expect(asked.filter((a) => a.fsId === fsId)).to.deep.equal([{ fsId, signed: true }]);
    // The next connection asks DNS again, and goes to the same mount target without asking the API.
    expect((await exchange(port, 'again')).received.toString()).to.equal('again' + ECHO_TRAILER);
    expect(askedFor(fsId), 'the API, once').to.equal(1);

    const status = await daemon.efsctlJson<TunnelDetail>('status', fsId);
    expect(status.dns).to.deep.include({ addresses: [IN_MY_ZONE], mount_target: 'fsmt-00000000000000002 in use1-az2 (us-east-1b)' });
    expect((await daemon.efsctl('status', fsId)).stdout).to.match(new RegExp(
      `^Mount target: +${escapeRegExp(IN_MY_ZONE)}, fsmt-00000000000000002 in use1-az2 \\(us-east-1b\\), from the EFS API at \\S+ \\(DNS has no address for ${escapeRegExp(nameOf(fsId))}\\)$`, 'm'));
    // Said once, at info: a VPC without DNS hostnames is always so, and nothing failed.
    const said = daemon.logs.split('\n').filter((l) => l.includes(` tunnel.mount_target_from_api fs=${fsId} `));
    expect(said).to.have.length(1);
    expect(said[0]).to.contain(`info tunnel.mount_target_from_api fs=${fsId} code=- msg="DNS has no address for ${nameOf(fsId)} (ENOTFOUND): no file system or mount target of that name is known to DNS; ` +
      `connecting to ${IN_MY_ZONE}, fsmt-00000000000000002 in use1-az2 (us-east-1b) as the EFS API gave it (efs.mount_target_fallback). The certificate is still verified against ${nameOf(fsId)}"`);
    expect(daemon.logs).to.not.contain(`tunnel.dns_fallback fs=${fsId}`);
    expect(status.last_error, 'no error: the connections went through').to.equal(null);
    expect(status.history.map((h) => h.event)).to.include('mount_target_from_api');

    const doctor = JSON.parse((await daemon.efsctl('--config', daemon.configFile, 'doctor', '--json')).stdout) as DoctorReport;
    const check = doctor.checks.find((c) => c.name === `dns ${fsId}`);
    expect(check?.status).to.equal('warn');
    expect(check?.message).to.match(new RegExp(`^DNS has no address for ${escapeRegExp(nameOf(fsId))} \\(ENOTFOUND\\): .*; efs-relayd sends ${fsId}'s connections to ${escapeRegExp(IN_MY_ZONE)}, ` +
      `fsmt-00000000000000002 in use1-az2 \\(us-east-1b\\) as the EFS API gave it \\(\\S+\\), still verified against ${escapeRegExp(nameOf(fsId))}$`));
    expect(doctor.checks.find((c) => c.name === `reach ${fsId}`)).to.deep.include({ status: 'ok', message: `TCP ${IN_MY_ZONE}:2049 (the EFS API's mount target) answers` });
  });

  it('keeps that mount target in the tunnel\'s record, so that a daemon restarted while the EFS API is out of reach still connects', async () => {
    const fsId = 'fs-0000fb01';
    const port = (await daemon.efsctlJson<TunnelDetail>('status', fsId)).port;
    await daemon.stop();
    const before = askedFor(fsId);
    apiDown = true;
    try {
      await launch(daemon);
      expect((await exchange(port, 'after a restart')).received.toString()).to.equal('after a restart' + ECHO_TRAILER);
      expect(askedFor(fsId), 'the API not asked').to.equal(before);
    } finally {
      apiDown = false;
    }
  });

  it('takes the mount target of the zone az= names, by the zone\'s name', async () => {
    const fsId = 'fs-0000fb03';
    const port = await add(daemon, fsId, ',az=us-east-1a');
    expect((await exchange(port, 'zone a')).received.toString()).to.equal('zone a' + ECHO_TRAILER);
    expect(targets[1]!.sessions.map((s) => s.servername)).to.deep.equal([nameOf(fsId)]);
    expect(dns.asked(nameOf(fsId, 'us-east-1a')), 'DNS was asked for the zone\'s name').to.be.greaterThan(0);
    expect((await daemon.efsctlJson<TunnelDetail>('status', fsId)).dns?.mount_target).to.equal('fsmt-00000000000000001 in use1-az1 (us-east-1a)');
  });

  it('refuses the connection with DNS_FAILED and the EFS API\'s reason when it gives no mount target, and does not ask it again for every reconnect', async () => {
    const fsId = 'fs-0000fb02';
    const port = await add(daemon, fsId);
    expect((await exchange(port, 'nowhere')).received.toString()).to.equal('');
    const status = await daemon.efsctlJson<TunnelDetail>('status', fsId);
    expect(status.last_error).to.deep.include({
      code: 'DNS_FAILED',
      message: `DNS has no address for ${nameOf(fsId)} (ENOTFOUND): no file system or mount target of that name is known to DNS; ` +
        `the EFS API gave no mount target to connect to instead: the EFS API says the file system ${fsId} is not found (File system '${fsId}' does not exist.)`,
    });
    expect(status.dns).to.equal(null);
    expect((await exchange(port, 'nowhere again')).received.toString()).to.equal('');
    expect(askedFor(fsId), 'asked once within 30 s').to.equal(1);
  });

  it('goes back to DNS as soon as DNS has an address for the name, and forgets the EFS API\'s mount target', async () => {
    const fsId = 'fs-0000fb01';
    const port = (await daemon.efsctlJson<TunnelDetail>('status', fsId)).port;
    dns.names.set(nameOf(fsId), IN_ZONE_A);
    try {
      const before = targets[1]!.sessions.length;
      expect((await exchange(port, 'by DNS')).received.toString()).to.equal('by DNS' + ECHO_TRAILER);
      expect(targets[1]!.sessions.length, 'at the address DNS gives').to.equal(before + 1);
      const status = await daemon.efsctlJson<TunnelDetail>('status', fsId);
      expect(status.dns?.addresses).to.deep.equal([IN_ZONE_A]);
      expect(status.dns).to.not.have.property('mount_target');
      expect(daemon.logs).to.contain(`info tunnel.dns_answered fs=${fsId} code=- msg="DNS answers for ${nameOf(fsId)} again"`);
    } finally {
      dns.names.delete(nameOf(fsId));
    }
  });

  it('has doctor ask the EFS API itself for an fstab line that no connection has used yet, as the daemon will, and say what it gives or why it gives none', async () => {
    writeFileSync(daemon.fstab, `fs-0000fb05 /mnt/b5 efs _netdev,tls,region=${REGION} 0 0\nfs-0000fb06 /mnt/b6 efs _netdev,tls,region=${REGION} 0 0\n`);
    await waitFor('the lines\' tunnels', async () => (await daemon.efsctl('status', 'fs-0000fb06')).code === 0, 3_000);
    const r = await run(join(BIN, 'efsctl'), ['--socket', daemon.socket, '--config', daemon.configFile, 'doctor', '--json'],
      { env: { ...process.env, NODE_EXTRA_CA_CERTS: testCerts().ca.certFile } });
    const checks = (JSON.parse(r.stdout) as DoctorReport).checks;
    expect(checks.find((c) => c.name === 'dns fs-0000fb05')).to.deep.include({
      status: 'warn',
      message: `DNS has no address for ${nameOf('fs-0000fb05')} (ENOTFOUND): no file system or mount target of that name is known to DNS; the EFS API gives ${IN_MY_ZONE}, ` +
        `fsmt-00000000000000002 in use1-az2 (us-east-1b), where efs-relayd will send fs-0000fb05's connections, still verified against ${nameOf('fs-0000fb05')}`,
    });
    expect(checks.find((c) => c.name === 'reach fs-0000fb05')).to.deep.include({ status: 'ok', message: `TCP ${IN_MY_ZONE}:2049 (the EFS API's mount target) answers` });
    expect(checks.find((c) => c.name === 'dns fs-0000fb06')).to.deep.include({
      status: 'fail',
      message: `DNS has no address for ${nameOf('fs-0000fb06')} (ENOTFOUND): no file system or mount target of that name is known to DNS; ` +
        'the EFS API gave no mount target to connect to instead: the EFS API says the file system fs-0000fb06 is not found (File system \'fs-0000fb06\' does not exist.)',
    });
    writeFileSync(daemon.fstab, '');
  });

  it('asks no EFS API with efs.mount_target_fallback: false, and says only what DNS said', async () => {
    await daemon.stop();
    daemon = await start({ efs: { metadata_url: imds.url, mount_target_fallback: false, api_url: apiUrl() } });
    const fsId = 'fs-0000fb04';
    const port = await add(daemon, fsId);
    expect((await exchange(port, 'no fallback')).received.toString()).to.equal('');
    expect((await daemon.efsctlJson<TunnelDetail>('status', fsId)).last_error).to.deep.include({
      code: 'DNS_FAILED', message: `DNS has no address for ${nameOf(fsId)} (ENOTFOUND): no file system or mount target of that name is known to DNS`,
    });
    expect(askedFor(fsId)).to.equal(0);
  });
});
