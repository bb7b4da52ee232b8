// crossaccount mounts, as efs-utils makes them: the mount target is the one
// of this instance's availability zone ID (the same zone in every account,
// unlike its name), AZ_ID.FS_ID.efs.REGION.SUFFIX. The daemon runs with a
// resolver of its own that names those targets, and a stand-in of instance
// metadata that gives the region and, once told, the zone ID.
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exchange } from './helpers/client.js';
import { BIN, Daemon, inOwnResolver, ownResolverUnavailable, run, skipIf, waitFor } from './helpers/daemon.js';
import { DnsServer } from './helpers/dns-server.js';
import { certFor, daemonConfig, REGION } from './helpers/fixtures.js';
import { InstanceMetadataStandIn } from './helpers/instance-metadata.js';
import { ECHO_TRAILER, MountTargetStandIn } from './helpers/mount-target.js';
import type { AttachResult } from '../daemon/mounter.js';
import type { TunnelView } from '../daemon/tunnels.js';
import type { DoctorReport } from '../cli/doctor.js';

const DNS_HOST = '127.0.0.68';
const TARGET_HOST = '127.0.0.69';
const AZ_ID = 'use1-az2';
const nameOf = (fsId: string): string => `${fsId}.efs.${REGION}.amazonaws.com`;
const zoneIdNameOf = (fsId: string): string => `${AZ_ID}.${nameOf(fsId)}`;
/** What efsctl and mount.efs would pass on: nothing of AWS_REGION or AWS_DEFAULT_REGION, so the region comes from metadata. */
const NO_REGION_ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'AWS_REGION' && k !== 'AWS_DEFAULT_REGION'));

describe('crossaccount mounts, by this instance\'s availability zone ID', function () {
  this.timeout(60_000);
  let daemon: Daemon;
  let dns: DnsServer;
  let imds: InstanceMetadataStandIn;
  let target: MountTargetStandIn;
  const efsctl = (...args: string[]) => run(join(BIN, 'efsctl'), ['--socket', daemon.socket, ...args], { env: NO_REGION_ENV });
  const tunnelOf = async (fsId: string): Promise<TunnelView | undefined> =>
    (JSON.parse((await efsctl('list', '--json')).stdout) as { tunnels: TunnelView[] }).tunnels.find((t) => t.fs_id === fsId);
  const zoneIdAsks = (): number => imds.requests.filter((r) => r.path === '/latest/meta-data/placement/availability-zone-id').length;

  before(async function () {
    skipIf(this, await ownResolverUnavailable());
    dns = await new DnsServer(DNS_HOST).start();
    // Until a test gives it the zone ID, the service answers 404 for it, as for a path it does not have.
    imds = await new InstanceMetadataStandIn({ host: DNS_HOST, mode: 'v2', region: REGION }).start();
    // The mount target's certificate names the file system, never the zone ID's name of it.
    target = await new MountTargetStandIn({ host: TARGET_HOST, port: 2049, cert: certFor(`*.efs.${REGION}.amazonaws.com`), backend: 'echo' }).start();
    for (const fsId of ['fs-0000ca01', 'fs-0000ca02', 'fs-0000ca03']) dns.names.set(zoneIdNameOf(fsId), TARGET_HOST);
    daemon = await new Daemon(daemonConfig(26400, { efs: { metadata_url: imds.url } })).start(undefined, DNS_HOST);
    // The stand-in of mount.nfs4 talks to the tunnel port before it mounts: the mount proves the data path.
    daemon.mount.behave('mount', { reach: true });
  });
  after(async () => {
    await daemon?.stop();
    await target?.stop();
    await imds?.stop();
    await dns?.stop();
  });

  it('fails a crossaccount mount with NO_AZ_ID in efs-utils\' words while instance metadata gives no zone ID, and makes no tunnel', async () => {
    const calls = daemon.mount.calls().length;
    const asked = zoneIdAsks();
    const r = await efsctl('attach', 'fs-0000ca01', daemon.mountPoint('no-zone-id'), '-o', 'crossaccount');
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain(`Cannot retrieve AZ-ID from metadata service. This is required for the crossaccount mount option: instance metadata at ${imds.url} answered HTTP 404 for the availability zone ID [NO_AZ_ID]`);
    expect(daemon.mount.calls().length).to.equal(calls);
    expect(await tunnelOf('fs-0000ca01')).to.equal(undefined);
    expect(zoneIdAsks() - asked, 'asked when the mount needed it').to.equal(1);
  });

  it('gives a crossaccount fstab line its tunnel once instance metadata gives the zone ID, without an edit, and efsctl doctor judges the line as the daemon does', async () => {
    const fsId = 'fs-0000ca02';
    writeFileSync(daemon.fstab, `${fsId} /mnt/xa efs _netdev,tls,crossaccount 0 0\n`);
    await waitFor('the line reported', () => daemon.logs.includes(`warn fstab.line_invalid fs=${fsId} code=NO_AZ_ID`), 5_000);
    expect(daemon.logs).to.contain(`${daemon.fstab}:1: Cannot retrieve AZ-ID from metadata service. This is required for the crossaccount mount option: instance metadata at ${imds.url} answered HTTP 404 for the availability zone ID; no tunnel for this line yet: tried again in 5 s`);
    expect(await tunnelOf(fsId)).to.equal(undefined);

    imds.azId = AZ_ID;
    const t = await waitFor('the line\'s tunnel', () => tunnelOf(fsId), 15_000);
    expect(t.target).to.deep.include({ dns_name: zoneIdNameOf(fsId), cert_name: nameOf(fsId), address: zoneIdNameOf(fsId), region: REGION });
    expect(t.source).to.equal('fstab');
    expect((await exchange(t.port, 'across accounts')).received.toString()).to.equal('across accounts' + ECHO_TRAILER);
    expect(target.sessions.at(-1)!.servername).to.equal(nameOf(fsId));
    expect(daemon.logs).to.contain(`info region.az_id_from_metadata fs=- code=- msg="this instance's availability zone ID is ${AZ_ID}: crossaccount mounts reach its mount target, and a mount target from the EFS API is taken in it" az_id=${AZ_ID} url=${imds.url}`);

    // doctor asks instance metadata for the zone ID itself, and looks up the name the tunnel dials.
    const [cmd, args] = inOwnResolver(daemon.dir, DNS_HOST, [join(BIN, 'efsctl'), '--config', daemon.configFile, 'doctor', '--json']);
    const checks = (JSON.parse((await run(cmd, args, { timeoutMs: 60_000, env: NO_REGION_ENV })).stdout) as DoctorReport).checks;
    expect(checks.find((c) => c.name === 'fstab')).to.deep.include({ status: 'ok' });
    expect(checks.find((c) => c.name === `dns ${fsId}`)).to.deep.include({ status: 'ok' });
    expect(checks.find((c) => c.name === `dns ${fsId}`)?.message).to.contain(zoneIdNameOf(fsId));
  });

  it('mounts through a tunnel to the mount target of this instance\'s zone ID, verified against the file system\'s name, and asks metadata for the zone ID only until it has it', async () => {
    imds.azId = AZ_ID;
    const fsId = 'fs-0000ca01';
    const dir = daemon.mountPoint('crossaccount');
    const r = JSON.parse((await efsctl('attach', fsId, dir, '-o', 'crossaccount', '--json')).stdout) as AttachResult;
    expect(r).to.deep.include({ fs_id: fsId, already_mounted: false });
    expect(r.tunnel!.target).to.deep.include({ dns_name: zoneIdNameOf(fsId), cert_name: nameOf(fsId), address: zoneIdNameOf(fsId), region: REGION });
    expect(r.tunnel!.options).to.deep.include({ crossaccount: null });
    expect(r.command).to.deep.equal(daemon.mount.calls().at(-1)!.argv);
    expect(target.sessions.at(-1)!.servername).to.equal(nameOf(fsId));
    expect((await exchange(r.tunnel!.port, 'mounted across accounts')).received.toString()).to.equal('mounted across accounts' + ECHO_TRAILER);

    // The zone ID is kept once known: another crossaccount tunnel does not ask again.
    const asked = zoneIdAsks();
    const add = await efsctl('add', 'fs-0000ca03', '-o', 'crossaccount', '--json');
    expect(add.code, add.stderr).to.equal(0);
    expect(zoneIdAsks()).to.equal(asked);
    // A mount of the same file system without crossaccount asks for another tunnel than the running one.
    const plain = await efsctl('attach', fsId, daemon.mountPoint('not-crossaccount'), '-o', `region=${REGION}`);
    expect(plain.code).to.equal(1);
    expect(plain.stderr).to.contain(zoneIdNameOf(fsId));
  });
});
