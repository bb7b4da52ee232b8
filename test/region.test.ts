// The region from EC2 instance metadata, as efs-utils takes it last: a
// stand-in metadata service on loopback plays IMDS.
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { BIN, Daemon, escapeRegExp, run, waitFor } from './helpers/daemon.js';
import { daemonConfig } from './helpers/fixtures.js';
import { InstanceMetadataStandIn } from './helpers/instance-metadata.js';
import type { DoctorReport } from '../cli/doctor.js';
import { azIdFromMetadata, regionFromMetadata, type MetadataRegion } from '../daemon/instance-region.js';
import type { AddResult, TunnelDetail, TunnelView } from '../daemon/tunnels.js';

const HOST = '127.0.0.50';
/** What efsctl and mount.efs would pass on: nothing of AWS_REGION or AWS_DEFAULT_REGION. */
const NO_REGION_ENV = Object.fromEntries(Object.entries(process.env).filter(([k]) => k !== 'AWS_REGION' && k !== 'AWS_DEFAULT_REGION'));

async function withMetadata(
  mode: 'v2' | 'v1' | 'silent', efs: (url: string) => Record<string, unknown>,
  fn: (d: { daemon: Daemon; imds: InstanceMetadataStandIn; efsctl: (...args: string[]) => ReturnType<typeof run> }) => Promise<void>,
): Promise<void> {
  const imds = await new InstanceMetadataStandIn({ host: HOST, mode, region: 'sa-east-1' }).start();
  const daemon = new Daemon(daemonConfig(21050, { efs: efs(imds.url) }));
  try {
    await daemon.start();
    const efsctl = (...args: string[]) => run(join(BIN, 'efsctl'), ['--socket', daemon.socket, ...args], { env: NO_REGION_ENV });
    await fn({ daemon, imds, efsctl });
  } finally {
    await daemon.stop();
    await imds.stop();
  }
}

describe('the region from instance metadata', function () {
  it('gives an fstab line and an efsctl add that name no region the instance\'s region, asked with an IMDSv2 token', async () => {
    await withMetadata('v2', (url) => ({ metadata_url: url }), async ({ daemon, imds, efsctl }) => {
      expect(daemon.logs).to.contain(`info region.from_metadata fs=- code=- msg="file systems that name no region are in sa-east-1, the region of this instance" region=sa-east-1 url=${imds.url} asked="at start"\n`);
      expect(imds.requests.map((r) => [r.method, r.path, r.ttl])).to.deep.equal([['PUT', '/latest/api/token', '60'], ['GET', '/latest/meta-data/placement/region', null]]);
      // The stand-in answers the region only to its own token, as an instance that requires IMDSv2.
      expect(imds.requests.map((r) => r.token)).to.deep.equal([null, imds.token]);

      writeFileSync(daemon.fstab, `fs-0e000001 /mnt/a efs _netdev,tls,mounttargetip=${HOST} 0 0\n`);
      await waitFor('the fstab line\'s tunnel', async () =>
        JSON.parse((await efsctl('list', '--json')).stdout).tunnels.some((t: TunnelView) => t.fs_id === 'fs-0e000001'), 3_000);
      const add = await efsctl('add', 'fs-0e000002', '-o', `mounttargetip=${HOST}`, '--json');
      expect(add.code, add.stderr).to.equal(0);
      const tunnels = (JSON.parse((await efsctl('list', '--json')).stdout) as { tunnels: TunnelView[] }).tunnels;
      expect(tunnels.map((t) => [t.fs_id, t.target.dns_name, t.target.region])).to.deep.equal([
        ['fs-0e000001', 'fs-0e000001.efs.sa-east-1.amazonaws.com', 'sa-east-1'],
        ['fs-0e000002', 'fs-0e000002.efs.sa-east-1.amazonaws.com', 'sa-east-1'],
      ]);
      // An explicit region still wins over the instance's.
      const other = JSON.parse((await efsctl('add', 'fs-0e000003', '-o', `mounttargetip=${HOST},region=eu-west-1`, '--json')).stdout) as AddResult;
      expect(other.tunnel.target.region).to.equal('eu-west-1');
      expect(imds.requests, 'asked once, at start').to.have.length(2);

      // doctor judges fstab lines with what the daemon learnt.
      const version = JSON.parse((await efsctl('version', '--json')).stdout) as { daemon: { instance_region: MetadataRegion } };
      expect(version.daemon.instance_region).to.deep.equal({ region: 'sa-east-1', why: null });
      const report = JSON.parse((await run(join(BIN, 'efsctl'), ['--config', daemon.configFile, 'doctor', '--json'], { env: NO_REGION_ENV })).stdout) as DoctorReport;
      expect(report.checks.find((c) => c.name === 'fstab')).to.deep.include({ status: 'ok', message: `1 efs line in ${daemon.fstab}, each valid` });
      expect(report.checks.find((c) => c.name === 'region')).to.deep.include({ status: 'ok', message: 'file systems that name no region are in sa-east-1 (instance metadata, as efs-relayd last heard it)' });
    });
  });

  it('asks without a token when the metadata service has no token endpoint (IMDSv1), as efs-utils does', async () => {
    await withMetadata('v1', (url) => ({ metadata_url: url }), async ({ daemon, imds, efsctl }) => {
      expect(imds.requests.map((r) => [r.method, r.path, r.token])).to.deep.equal([
        ['PUT', '/latest/api/token', null], ['GET', '/latest/meta-data/placement/region', null],
      ]);
      expect(daemon.logs).to.contain('info region.from_metadata fs=- code=- msg="file systems that name no region are in sa-east-1');
      const add = JSON.parse((await efsctl('add', 'fs-0e000004', '-o', `mounttargetip=${HOST}`, '--json')).stdout) as AddResult;
      expect(add.tunnel.target.region).to.equal('sa-east-1');
    });
  });

  it('starts all the same when the metadata service never answers, and NO_REGION then says what metadata did', async () => {
    await withMetadata('silent', (url) => ({ metadata_url: url }), async ({ daemon, imds, efsctl }) => {
      const why = `instance metadata at ${imds.url} did not answer (no answer within 1 s)`;
      expect(daemon.logs).to.match(new RegExp(`info region\\.metadata_unavailable fs=- code=- msg="${escapeRegExp(why)}; a file system that names no region needs region=, AWS_REGION or efs\\.region \\(set efs\\.metadata_url: \\\\"\\\\" off EC2 to skip asking\\); asked again in 5 s, then less often, and whenever a request needs the region" url=`));
      const r = await efsctl('add', 'fs-0e000005', '-o', `mounttargetip=${HOST}`);
      expect(r.code).to.equal(1);
      const report = JSON.parse((await run(join(BIN, 'efsctl'), ['--config', daemon.configFile, 'doctor', '--json'], { env: NO_REGION_ENV })).stdout) as DoctorReport;
      expect(report.checks.find((c) => c.name === 'region')).to.deep.include({
        status: 'ok', message: `no default region: ${why}; each mount names its region (region= or AWS_REGION), or set efs.region`,
      });
      expect(r.stderr).to.contain(`efsctl: Cannot determine the AWS region of fs-0e000005: no region= option, AWS_REGION and AWS_DEFAULT_REGION are unset, efs.region is not set in the config, and ${why} [NO_REGION]\n`);
    });
  });

  it('asks again when metadata did not answer at start: a waiting fstab line gets its tunnel once the service answers, without a restart or an edit', async () => {
    await withMetadata('silent', (url) => ({ metadata_url: url }), async ({ daemon, imds, efsctl }) => {
      writeFileSync(daemon.fstab, `fs-0e000008 /mnt/a efs _netdev,tls,mounttargetip=${HOST} 0 0\n`);
      await waitFor('the line refused for want of a region', () => /warn fstab\.line_invalid fs=fs-0e000008 code=NO_REGION /.test(daemon.logs), 3_000);
      imds.mode = 'v2'; // the service comes up late, as it may at boot
      await waitFor('the fstab line\'s tunnel', async () =>
        JSON.parse((await efsctl('list', '--json')).stdout).tunnels.some((t: TunnelView) => t.fs_id === 'fs-0e000008'), 15_000);
      expect(daemon.logs).to.contain('info region.from_metadata fs=- code=- msg="file systems that name no region are in sa-east-1, the region of this instance" region=sa-east-1 ' +
        `url=${imds.url} asked="in the background"\n`);
      expect((JSON.parse((await efsctl('status', 'fs-0e000008', '--json')).stdout) as TunnelDetail).target.region).to.equal('sa-east-1');
      expect(daemon.logs.match(/region\.metadata_unavailable/g), 'the silence logged once').to.have.length(1);
      const answered = imds.requests.length;
      await new Promise((r) => setTimeout(r, 200));
      expect(imds.requests, 'not asked once the region is known').to.have.length(answered);
    });
  });

  it('asks again at once for a request that needs the region when metadata did not answer before', async () => {
    await withMetadata('silent', (url) => ({ metadata_url: url }), async ({ daemon, imds, efsctl }) => {
      // A request that names its region never waits for metadata.
      const before = imds.requests.length;
      expect((await efsctl('add', 'fs-0e00000a', '-o', `mounttargetip=${HOST},region=eu-west-1`)).code).to.equal(0);
      expect(imds.requests).to.have.length(before);

      imds.mode = 'v2';
      const add = await efsctl('add', 'fs-0e000009', '-o', `mounttargetip=${HOST}`, '--json');
      expect(add.code, add.stderr).to.equal(0);
      expect((JSON.parse(add.stdout) as AddResult).tunnel.target.region).to.equal('sa-east-1');
      expect(daemon.logs).to.contain(`region=sa-east-1 url=${imds.url} asked="for a request"\n`);
    });
  });

  it('asks nothing when efs.region names the region, or when efs.metadata_url is empty', async () => {
    await withMetadata('v2', (url) => ({ metadata_url: url, region: 'us-east-1' }), async ({ daemon, imds, efsctl }) => {
      expect(imds.requests).to.deep.equal([]);
      expect(daemon.logs).to.not.contain('region.');
      const version = JSON.parse((await efsctl('version', '--json')).stdout) as { daemon: { instance_region: MetadataRegion } };
      expect(version.daemon.instance_region).to.deep.equal({ region: null, why: 'instance metadata is not asked (efs.region is set)' });
      const add = JSON.parse((await efsctl('add', 'fs-0e000006', '-o', `mounttargetip=${HOST}`, '--json')).stdout) as AddResult;
      expect(add.tunnel.target.region).to.equal('us-east-1');
    });
    await withMetadata('v2', () => ({ metadata_url: '' }), async ({ imds, efsctl }) => {
      expect(imds.requests).to.deep.equal([]);
      const r = await efsctl('add', 'fs-0e000007', '-o', `mounttargetip=${HOST}`);
      expect(r.stderr).to.contain('efs.region is not set in the config, and instance metadata is not asked (efs.metadata_url is "") [NO_REGION]');
    });
  });
});

describe('efsctl doctor with efs-relayd down', function () {
  it('asks instance metadata itself, so that an fstab line that names no region is judged as the daemon will judge it at boot', async () => {
    const imds = await new InstanceMetadataStandIn({ host: HOST, mode: 'v2', region: 'sa-east-1' }).start();
    const daemon = new Daemon(daemonConfig(21050, { efs: { metadata_url: imds.url } })); // never started
    try {
      writeFileSync(daemon.fstab, `fs-0e00000b /mnt/a efs _netdev,tls,mounttargetip=${HOST} 0 0\n`);
      const doctor = async (): Promise<DoctorReport> =>
        JSON.parse((await run(join(BIN, 'efsctl'), ['--config', daemon.configFile, 'doctor', '--json'], { env: NO_REGION_ENV })).stdout) as DoctorReport;
      const report = await doctor();
      expect(report.checks.find((c) => c.name === 'daemon')?.status).to.equal('fail');
      expect(report.checks.find((c) => c.name === 'region')).to.deep.include({
        status: 'ok', message: 'file systems that name no region are in sa-east-1 (instance metadata, asked by doctor, since efs-relayd does not answer)',
      });
      expect(report.checks.find((c) => c.name === 'fstab')).to.deep.include({ status: 'ok', message: `1 efs line in ${daemon.fstab}, each valid` });
      expect(imds.requests.map((r) => r.path)).to.deep.equal(['/latest/api/token', '/latest/meta-data/placement/region']);

      // A metadata service that refuses: the line fails as it would at boot, saying why.
      imds.mode = 'busy';
      const refused = await doctor();
      expect(refused.checks.find((c) => c.name === 'fstab line 1')).to.deep.include({ status: 'fail' });
      expect(refused.checks.find((c) => c.name === 'fstab line 1')?.message).to.contain(`instance metadata at ${imds.url} answered HTTP 503 for a token; line skipped`);
    } finally {
      await imds.stop();
    }
  });
});

describe('asking instance metadata for the region', function () {
  it('says what was wrong, and whether it may pass: an answer that is not a region, a refused token and region, a busy service, a closed port', async () => {
    const odd = await new InstanceMetadataStandIn({ host: HOST, mode: 'v2', region: '<html>captive portal</html>' }).start();
    try {
      expect(await regionFromMetadata(odd.url)).to.deep.equal({
        result: { region: null, why: `instance metadata at ${odd.url} gave "<html>captive portal</html>", which is not a region` }, again: false,
      });
    } finally {
      await odd.stop();
    }
    // A metadata service that refuses both the token and a request without one (HTTP 404 for each here).
    const none = await new InstanceMetadataStandIn({ host: HOST, mode: 'v1', region: 'sa-east-1' }).start();
    const closed = none.url;
    try {
      expect(await regionFromMetadata(`${none.url}/nothing-here`)).to.deep.equal({
        result: { region: null, why: `instance metadata at ${none.url}/nothing-here answered HTTP 404 for the region (without a token, which it refused)` }, again: false,
      });
      // A busy service (503) is asked again later; it is not taken for one that refuses tokens.
      none.mode = 'busy';
      expect(await regionFromMetadata(none.url)).to.deep.equal({ result: { region: null, why: `instance metadata at ${none.url} answered HTTP 503 for a token` }, again: true });
    } finally {
      await none.stop();
    }
    expect(await regionFromMetadata(closed)).to.deep.equal({
      result: { region: null, why: `instance metadata at ${closed} did not answer (connect ECONNREFUSED ${closed.slice('http://'.length)})` }, again: true,
    });
  });

  it('asks for the availability zone ID the same way, with an IMDSv2 token, and says why there is none', async () => {
    const imds = await new InstanceMetadataStandIn({ host: HOST, mode: 'v2', region: 'us-east-1', azId: 'use1-az6' }).start();
    try {
      expect(await azIdFromMetadata(imds.url)).to.deep.equal({ az_id: 'use1-az6', why: null });
      expect(imds.requests.map((r) => [r.method, r.path, r.token])).to.deep.equal([
        ['PUT', '/latest/api/token', null], ['GET', '/latest/meta-data/placement/availability-zone-id', imds.token],
      ]);
      // A Local Zone's ID has more parts; anything that is not one DNS label would not make a DNS name.
      imds.azId = 'usw2-lax1-az1';
      expect(await azIdFromMetadata(imds.url)).to.deep.equal({ az_id: 'usw2-lax1-az1', why: null });
      imds.azId = 'use1 az1';
      expect(await azIdFromMetadata(imds.url)).to.deep.equal({ az_id: null, why: `instance metadata at ${imds.url} gave "use1 az1", which is not an availability zone ID` });
      imds.azId = undefined;
      expect(await azIdFromMetadata(imds.url)).to.deep.equal({ az_id: null, why: `instance metadata at ${imds.url} answered HTTP 404 for the availability zone ID` });
    } finally {
      await imds.stop();
    }
    expect(await azIdFromMetadata('')).to.deep.equal({ az_id: null, why: 'instance metadata is not asked (efs.metadata_url is "")' });
  });
});
