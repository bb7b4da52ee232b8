// Mount specs that are DNS aliases of a file system's name
// (files.corp.test:/ whose CNAME leads to fs-….efs.REGION.amazonaws.com), as
// efs-utils follows them: the daemon runs with a resolver of its own (a mount
// namespace whose /etc/resolv.conf names the test's DNS server), which holds
// the CNAME records, and the file system's name points at a TLS stand-in.
import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exchange } from './helpers/client.js';
import { BIN, Daemon, inOwnResolver, ownResolverUnavailable, run, skipIf, waitFor } from './helpers/daemon.js';
import { DnsServer } from './helpers/dns-server.js';
import { certFor, daemonConfig, REGION } from './helpers/fixtures.js';
import { ECHO_TRAILER, MountTargetStandIn } from './helpers/mount-target.js';
import type { AttachResult } from '../daemon/mounter.js';
import type { TunnelView } from '../daemon/tunnels.js';
import type { DoctorReport } from '../cli/doctor.js';

const DNS_HOST = '127.0.0.66';
const TARGET_HOST = '127.0.0.67';
const nameOf = (fsId: string): string => `${fsId}.efs.${REGION}.amazonaws.com`;
const EFS_UTILS_CNAME = (alias: string): string =>
  `The specified CNAME "${alias}" did not resolve to a valid DNS name for an EFS mount target. Please refer to the EFS documentation for mounting with DNS names for examples: https://docs.aws.amazon.com/efs/latest/ug/mounting-fs-mount-cmd-dns-name.html`;

describe('Mount specs that are DNS aliases (CNAME) of a file system\'s name', function () {
  this.timeout(60_000);
  let daemon: Daemon;
  let dns: DnsServer;
  let target: MountTargetStandIn;
  const tunnels = async (): Promise<TunnelView[]> => (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels;
  const tunnelOf = async (fsId: string): Promise<TunnelView | undefined> => (await tunnels()).find((t) => t.fs_id === fsId);

  before(async function () {
    skipIf(this, await ownResolverUnavailable());
    dns = await new DnsServer(DNS_HOST).start();
    // A region-wide wildcard, which real mount targets' certificates may carry too.
    target = await new MountTargetStandIn({ host: TARGET_HOST, port: 2049, cert: certFor(`*.efs.${REGION}.amazonaws.com`), backend: 'echo' }).start();
    for (let i = 1; i <= 7; i++) dns.names.set(nameOf(`fs-0000a00${i}`), TARGET_HOST);
    daemon = await new Daemon(daemonConfig(26300, { relay: { connect_timeout: 3, close_timeout: 5 } })).start(undefined, DNS_HOST);
    // The stand-in of mount.nfs4 talks to the tunnel port before it mounts: the mount proves the data path.
    daemon.mount.behave('mount', { reach: true });
  });
  after(async () => {
    await daemon?.stop();
    await target?.stop();
    await dns?.stop();
  });

  it('mounts an alias whose CNAME leads to the file system\'s name, as efs-utils does: the tunnel dials that name and verifies it in the certificate', async () => {
    const fsId = 'fs-0000a001';
    dns.cnames.set('files.corp.test', nameOf(fsId));
    const dir = daemon.mountPoint('alias');
    const r = await daemon.efsctlJson<AttachResult>('attach', 'files.corp.test:/', dir);
    expect(r).to.deep.include({ fs_id: fsId, path: '/', already_mounted: false });
    expect(r.tunnel!.target).to.deep.include({ dns_name: nameOf(fsId), cert_name: nameOf(fsId), address: nameOf(fsId) });
    expect(r.tunnel!.options).to.deep.include({ region: REGION });
    expect(r.command).to.deep.equal(daemon.mount.calls().at(-1)!.argv);
    expect(r.command.slice(1, 3)).to.deep.equal(['127.0.0.1:/', dir]);
    expect(target.sessions.at(-1)!.servername).to.equal(nameOf(fsId));
    expect((await exchange(r.tunnel!.port, 'through the alias')).received.toString()).to.equal('through the alias' + ECHO_TRAILER);
    expect(daemon.logs).to.match(new RegExp(` mount\\.alias fs=${fsId} .*files\\.corp\\.test is an alias of ${nameOf(fsId).replaceAll('.', '\\.')}`));
  });

  it('says which file system an alias mounted, in efsctl attach\'s own words', async () => {
    const fsId = 'fs-0000a002';
    dns.cnames.set('data.corp.test', nameOf(fsId)); // DNS names are case-insensitive: the spec below has capitals
    const dir = daemon.mountPoint('alias-text');
    const r = await daemon.efsctl('attach', 'DATA.corp.test:/', dir);
    expect(r.code, r.stderr).to.equal(0);
    const port = (await tunnelOf(fsId))!.port;
    expect(r.stdout).to.equal(`${fsId}:/ mounted at ${dir} through 127.0.0.1:${port} (TLS to ${nameOf(fsId)}:2049)\n`);
  });

  it('follows a chain of CNAME records, and takes the zone from a zone\'s name at its end as az=, still verifying the file system\'s name', async () => {
    const fsId = 'fs-0000a003';
    const zoneName = `${REGION}a.${nameOf(fsId)}`;
    dns.names.set(zoneName, TARGET_HOST);
    dns.cnames.set('home.corp.test', 'nfs.corp.test');
    dns.cnames.set('nfs.corp.test', zoneName);
    const r = await daemon.efsctlJson<AttachResult>('attach', 'home.corp.test:/', daemon.mountPoint('chain'));
    expect(r.fs_id).to.equal(fsId);
    expect(r.tunnel!.target).to.deep.include({ dns_name: zoneName, cert_name: nameOf(fsId) });
    expect(r.tunnel!.options).to.deep.include({ region: REGION, az: `${REGION}a` });
    expect(target.sessions.at(-1)!.servername).to.equal(nameOf(fsId)); // the mount's own connection
    expect((await exchange(r.tunnel!.port, 'zone')).received.toString()).to.equal('zone' + ECHO_TRAILER);

    // An az= of another zone is efs-utils' error, naming both.
    dns.cnames.set('other-zone.corp.test', zoneName);
    const calls = daemon.mount.calls().length;
    const other = await daemon.efsctl('attach', 'other-zone.corp.test:/', daemon.mountPoint('chain-az'), '-o', `az=${REGION}b`);
    expect(other.code).to.equal(1);
    expect(other.stderr).to.contain(`The hostname "${zoneName}" resolved by the specified domain name "other-zone.corp.test" does not match the az provided in the mount options, expected = ${REGION}b, given = ${REGION}a [BAD_OPTION]`);
    // And a region= of another region than the name's: efs-utils wants the name it would dial.
    const region = await daemon.efsctl('attach', 'other-zone.corp.test:/', daemon.mountPoint('chain-region'), '-o', 'region=eu-west-1');
    expect(region.stderr).to.contain(`The hostname "${zoneName}" resolved by the specified domain name "other-zone.corp.test" is not the file system's DNS name for these mount options and efs-relay's config, ${REGION}a.${fsId}.efs.eu-west-1.amazonaws.com`);
    expect(daemon.mount.calls()).to.have.length(calls);
  });

  it('refuses an alias whose CNAME chain ends at a name that is not a file system\'s, with efs-utils\' message and the chain, and makes no tunnel and no mount', async () => {
    dns.names.set('www.corp.test', TARGET_HOST);
    dns.cnames.set('web.corp.test', 'www.corp.test');
    const before = (await tunnels()).length;
    const calls = daemon.mount.calls().length;
    const r = await daemon.efsctl('attach', 'web.corp.test:/', daemon.mountPoint('not-efs'));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain(`${EFS_UTILS_CNAME('web.corp.test')} (web.corp.test → www.corp.test, which has no CNAME record and is not a file system's name like fs-12345678.efs.us-east-1.amazonaws.com) [BAD_FS_ID]`);
    expect(r.stderr).to.contain('Point the name\'s CNAME record at the file system\'s DNS name');
    // A name with an address but no CNAME at all is no alias either.
    const plain = await daemon.efsctl('attach', 'www.corp.test:/', daemon.mountPoint('no-cname'));
    expect(plain.stderr).to.contain(`${EFS_UTILS_CNAME('www.corp.test')} (www.corp.test has no CNAME record) [BAD_FS_ID]`);
    expect((await tunnels()).length).to.equal(before);
    expect(daemon.mount.calls()).to.have.length(calls);
  });

  it('takes a CNAME loop for what it is, after eight records, rather than asking DNS forever', async () => {
    dns.cnames.set('ping.corp.test', 'pong.corp.test');
    dns.cnames.set('pong.corp.test', 'ping.corp.test');
    const r = await daemon.efsctl('attach', 'ping.corp.test:/', daemon.mountPoint('loop'));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain(`${EFS_UTILS_CNAME('ping.corp.test')} (ping.corp.test → pong.corp.test → ping.corp.test → pong.corp.test → ping.corp.test → pong.corp.test → ping.corp.test → pong.corp.test → ping.corp.test: more than 8 CNAME records, taken for a loop) [BAD_FS_ID]`);
  });

  it('says DNS_FAILED with efs-utils\' message for an alias DNS does not know, or a chain that ends at a name DNS does not know', async () => {
    const r = await daemon.efsctl('attach', 'nowhere.corp.test:/', daemon.mountPoint('nxdomain'));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('Failed to resolve "nowhere.corp.test" - check that the specified DNS name is a CNAME record resolving to a valid EFS DNS name (DNS has no name nowhere.corp.test) [DNS_FAILED]');
    dns.cnames.set('dangling.corp.test', 'gone.corp.test');
    const d = await daemon.efsctl('attach', 'dangling.corp.test:/', daemon.mountPoint('dangling'));
    expect(d.stderr).to.contain('Failed to resolve "dangling.corp.test" - check that the specified DNS name is a CNAME record resolving to a valid EFS DNS name (dangling.corp.test → gone.corp.test: DNS has no name gone.corp.test) [DNS_FAILED]');
  });

  it('refuses a spec that is neither a file system id, its DNS name, nor a fully qualified DNS name: an address, one label, a malformed EFS name, a relative path', async () => {
    for (const spec of ['127.0.0.67:/', 'fileserver:/', 'fs-12.efs:/', 'files.corp.test:relative']) {
      const r = await daemon.efsctl('attach', spec, daemon.mountPoint('bad-spec'));
      expect(r.code, spec).to.equal(1);
      expect(r.stderr, spec).to.contain(`Invalid file system name: ${spec} [BAD_FS_ID]`);
    }
  });

  it('mounts an alias with mount.efs, as `mount -t efs -o tls files.corp.test:/ /mnt` runs it', async () => {
    const fsId = 'fs-0000a004';
    dns.cnames.set('mount.corp.test', nameOf(fsId));
    const dir = daemon.mountPoint('mount-efs');
    const r = await run(join(BIN, 'mount.efs'), ['mount.corp.test:/', dir, '-o', 'tls'], { env: { ...process.env, EFS_RELAY_CONFIG: daemon.configFile } });
    expect(r.code, r.stderr).to.equal(0);
    const t = (await tunnelOf(fsId))!;
    expect(t.mounts).to.deep.equal([dir]);
    expect(t.target.cert_name).to.equal(nameOf(fsId));
  });

  it('makes the tunnel of an fstab line whose spec is an alias, tries a line whose alias DNS does not know yet again until it does, and efsctl doctor judges both lines as the daemon does', async () => {
    const fsId = 'fs-0000a005';
    dns.cnames.set('boot.corp.test', nameOf(fsId));
    writeFileSync(daemon.fstab, [
      'boot.corp.test:/ /mnt/boot efs _netdev,tls 0 0',
      'later.corp.test:/ /mnt/later efs _netdev,tls 0 0',
    ].join('\n') + '\n');
    const made = await waitFor('the tunnel of the alias line', async () => (await tunnelOf(fsId)) ?? null, 10_000);
    expect(made.target.cert_name).to.equal(nameOf(fsId));
    expect((await exchange(made.port, 'from fstab')).received.toString()).to.equal('from fstab' + ECHO_TRAILER);
    await waitFor('the unknown alias logged', () => / fstab\.line_invalid fs=- code=DNS_FAILED msg=".*\/fstab:2: Failed to resolve \\"later\.corp\.test\\" .*\(DNS has no name later\.corp\.test\); no tunnel for this line yet: tried again in 5 s/.test(daemon.logs) || null);

    const [cmd, args] = inOwnResolver(daemon.dir, DNS_HOST, [join(BIN, 'efsctl'), '--config', daemon.configFile, 'doctor', '--json']);
    const report = JSON.parse((await run(cmd, args, { timeoutMs: 60_000 })).stdout) as DoctorReport;
    const line2 = report.checks.find((c) => c.name === 'fstab line 2');
    expect(line2).to.deep.include({ status: 'fail', message: `${daemon.fstab}:2: Failed to resolve "later.corp.test" - check that the specified DNS name is a CNAME record resolving to a valid EFS DNS name (DNS has no name later.corp.test)` });
    expect(line2!.fix).to.match(/Until DNS leads from later\.corp\.test to a file system, a mount of this line fails\. \[DNS_FAILED\]$/);
    expect(report.checks.find((c) => c.name === 'fstab line 1')).to.equal(undefined);
    expect(report.checks.find((c) => c.name === `dns ${fsId}`)).to.deep.include({ status: 'ok' });

    // DNS learns the alias: the retry makes its tunnel without an edit of fstab.
    dns.cnames.set('later.corp.test', nameOf('fs-0000a006'));
    const later = await waitFor('the tunnel of the alias DNS learnt', async () => (await tunnelOf('fs-0000a006')) ?? null, 15_000);
    expect((await exchange(later.port, 'learnt')).received.toString()).to.equal('learnt' + ECHO_TRAILER);
  });

  it('keeps the tunnel of an fstab alias line when DNS stops answering, going by what the alias led to last', async () => {
    const fsId = 'fs-0000a007';
    dns.cnames.set('kept.corp.test', nameOf(fsId));
    writeFileSync(daemon.fstab, 'kept.corp.test:/ /mnt/kept efs _netdev,tls 0 0\n');
    const before = await waitFor('the tunnel of the alias line', async () => (await tunnelOf(fsId)) ?? null, 10_000);
    dns.mode = 'silent';
    try {
      // A change of fstab makes the daemon follow its aliases again; the new line's failure says it has.
      writeFileSync(daemon.fstab, 'kept.corp.test:/ /mnt/kept efs _netdev,tls 0 0\nsilent.corp.test:/ /mnt/silent efs _netdev,tls 0 0\n');
      await waitFor('the new line\'s failure', () => / fstab\.line_invalid .*:2: Failed to resolve \\"silent\.corp\.test\\" .*\(DNS gave no answer for silent\.corp\.test \(ETIMEOUT\)\)/.test(daemon.logs) || null, 20_000);
      expect(await tunnelOf(fsId), 'the tunnel, on the same port').to.deep.include({ fs_id: fsId, port: before.port });
      expect(daemon.logs).not.to.match(new RegExp(` tunnel\\.stopped fs=${fsId} `));
    } finally {
      dns.mode = 'answer';
    }
  });
});
