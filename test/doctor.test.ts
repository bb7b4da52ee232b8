// efsctl doctor on this machine, which has no kernel NFS client.
import { expect } from 'chai';
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { parse, stringify } from 'yaml';
import { startStunnelClient } from './bench/paths.js';
import { BIN, ROOT, commandMissing, Daemon, escapeRegExp, run, skipIf, waitFor } from './helpers/daemon.js';
import { FS_ID, daemonConfig, testCerts } from './helpers/fixtures.js';
import { MountTargetStandIn } from './helpers/mount-target.js';
import type { Check, DoctorReport } from '../cli/doctor.js';
import type { TunnelView } from '../daemon/tunnels.js';

describe('efsctl doctor', function () {
  let target: MountTargetStandIn;
  let daemon: Daemon;
  before(async () => {
    target = await new MountTargetStandIn({ host: '127.0.0.24', port: 2049, cert: testCerts().good, backend: 'echo' }).start();
    daemon = await new Daemon(daemonConfig(21350, { metrics: { listen: '127.0.0.1:19810' }, health: { probe_interval: 30 } })).start();
    await daemon.efsctl('add', FS_ID, '-o', 'mounttargetip=127.0.0.24,region=us-east-1');
    await daemon.efsctl('add', 'fs-0badbad0', '-o', 'mounttargetip=127.0.0.25,region=us-east-1');
    // Nothing listens on 127.0.0.25: once probed, that tunnel is unhealthy, and /healthz says so.
    await waitFor('both tunnels probed', async () =>
      (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.every((t) => t.health.probe !== null), 5_000);
    // A mount whose tunnel was stopped with --force, and one through a port that no tunnel ever had here.
    left = join(daemon.dir, 'mnt', 'left');
    mkdirSync(left, { recursive: true });
    await daemon.efsctl('attach', 'fs-0d0c0001', left, '-o', 'mounttargetip=127.0.0.24,region=us-east-1');
    leftPort = (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((t) => t.fs_id === 'fs-0d0c0001')!.port;
    await daemon.efsctl('stop', 'fs-0d0c0001', '--force');
    // Outside the daemon's port_range, so that it can never be the port the attach above was given.
    daemon.mount.addMountLine('127.0.0.1:/ /mnt/stray nfs4 rw,vers=4.1,port=21347,addr=127.0.0.1 0 0');
  });
  let left: string;
  let leftPort: number;
  after(async () => {
    await daemon?.stop();
    await target?.stop();
  });

  const doctor = () => daemon.efsctl('--config', daemon.configFile, 'doctor');

  it('reports the missing kernel NFS client as a fail with the fix, and exits 1', async () => {
    const r = await doctor();
    expect(r.code).to.equal(1);
    expect(r.stdout).to.match(/^fail {2}kernel_nfs4 +the kernel cannot mount NFS 4\.1: no nfs4 in \/proc\/filesystems\n +fix: Load the NFS client with `modprobe nfs`/m);
    expect(r.stdout).to.match(/^\d+ ok, \d+ warn, [1-9]\d* fail$/m);
  });

  it('prints one line per check with ok, warn or fail', async () => {
    const lines = (await doctor()).stdout.split('\n').filter((l) => /^(ok|warn|fail)\s/.test(l));
    const names = lines.map((l) => l.split(/\s{2,}/)[1]);
    expect(names).to.deep.equal([
      'os', 'kernel_nfs4', 'mount_nfs4', 'daemon', 'fds', 'config', 'mounts', 'region', 'fstab', 'state_dir', 'ca_bundle', 'trust_files', 'clock',
      'dns fs-0badbad0', 'reach fs-0badbad0', `dns ${FS_ID}`, `reach ${FS_ID}`, 'metrics',
    ]);
  });

  it('checks the daemon, CA bundle, each file system\'s name and port 2049, and warns when /healthz reports a failing tunnel', async () => {
    const r = await daemon.efsctl('--config', daemon.configFile, 'doctor', '--json');
    const report = JSON.parse(r.stdout) as DoctorReport;
    const by = Object.fromEntries(report.checks.map((c) => [c.name, c]));
    expect(by.daemon).to.include({ status: 'ok' });
    expect(by.daemon!.message).to.match(/^efs-relayd 0\.1\.0 \(pid \d+\) answers on .*, 2 tunnels$/);
    expect(by.ca_bundle).to.include({ status: 'ok' });
    expect(by.state_dir).to.include({ status: 'ok' });
    expect(by.fds!.status).to.equal('ok');
    expect(by.fds!.message).to.match(/^\d+ of \d+ file descriptors open \(each relayed connection takes two\)$/);
    expect(by.state_dir!.message).to.match(new RegExp(`^${daemon.stateDir}: [\\d.]+ MiB free of [\\d.]+ MiB$`));
    expect(by.mount_nfs4).to.include({ status: 'ok' });
    expect(by[`dns ${FS_ID}`]).to.include({ status: 'ok' });
    expect(by[`reach ${FS_ID}`]).to.deep.equal({ name: `reach ${FS_ID}`, status: 'ok', message: 'TCP 127.0.0.24:2049 answers', fix: null });
    expect(by['reach fs-0badbad0']).to.include({ status: 'fail' });
    expect(by['reach fs-0badbad0']!.fix).to.contain('security group');
    expect(by.metrics).to.include({ status: 'warn', message: 'http://127.0.0.1:19810/healthz answers: unhealthy (fs-0badbad0 CONNECT_REFUSED)' });
    expect(by.clock!.status).to.be.oneOf(['ok', 'warn']);
  });

  it('has a stable --json shape: {checks: [{name, status, message, fix}], summary: {ok, warn, fail}}', async () => {
    const report = JSON.parse((await daemon.efsctl('--config', daemon.configFile, 'doctor', '--json')).stdout) as DoctorReport;
    expect(Object.keys(report).sort()).to.deep.equal(['checks', 'summary']);
    expect(Object.keys(report.summary).sort()).to.deep.equal(['fail', 'ok', 'warn']);
    for (const c of report.checks) {
      expect(Object.keys(c).sort()).to.deep.equal(['fix', 'message', 'name', 'status']);
      expect(c.status).to.be.oneOf(['ok', 'warn', 'fail']);
      expect(c.fix === null).to.equal(c.status === 'ok');
    }
    expect(report.summary.ok + report.summary.warn + report.summary.fail).to.equal(report.checks.length);
  });

  it('says whether the daemon runs its config file as it is: an edit no reload has read, keys waiting for a restart, a file that did not load', async () => {
    const config = async (...args: string[]): Promise<Check> =>
      (JSON.parse((await daemon.efsctl(...args, 'doctor', '--json')).stdout) as DoctorReport).checks.find((c) => c.name === 'config')!;
    const original = readFileSync(daemon.configFile, 'utf8');
    try {
      expect(await config('--config', daemon.configFile)).to.deep.include({ status: 'ok' });
      expect((await config('--config', daemon.configFile)).message).to.match(new RegExp(`^efs-relayd runs ${daemon.configFile} as it is \\(loaded \\d{4}-`));

      daemon.editConfig((c) => ({ ...c, port_range: { first: 21350, last: 21398 } }));
      const edited = await config('--config', daemon.configFile);
      expect(edited.status).to.equal('warn');
      expect(edited.message).to.match(new RegExp(`^${daemon.configFile} changed at \\S+, after efs-relayd last loaded it \\(\\S+\\): the change is not in effect$`));
      expect(edited.fix).to.contain('systemctl reload efs-relayd');

      expect((await daemon.efsctl('reload')).code).to.equal(0);
      expect(await config('--config', daemon.configFile)).to.deep.include({
        status: 'warn', message: `port_range.last changed in ${daemon.configFile} but keeps the running value until efs-relayd restarts`,
      });

      // efsctl itself could not read a broken file: doctor runs on its defaults, and asks the daemon.
      daemon.editConfig((c) => ({ ...c, port_range: 'wide' }));
      expect((await daemon.efsctl('reload')).code).to.equal(1);
      const broken = await config();
      expect(broken.status).to.equal('fail');
      expect(broken.message).to.match(new RegExp(`^${daemon.configFile} did not load at the last reload \\(\\S+\\): efs-relayd would not start with it`));
    } finally {
      writeFileSync(daemon.configFile, original);
      expect((await daemon.efsctl('reload')).code).to.equal(0);
    }
    expect((await config('--config', daemon.configFile)).status).to.equal('ok');
  });

  it('fails each efs line of fstab that the daemon skips, with the log\'s words, its code and what to do; the daemon counts them in efs_relay_fstab_lines_invalid', async () => {
    const fstabInvalid = (): Promise<string | undefined> => daemon.scrapedValue('efs_relay_fstab_lines_invalid');
    const report = async (): Promise<Check[]> =>
      (JSON.parse((await daemon.efsctl('--config', daemon.configFile, 'doctor', '--json')).stdout) as DoctorReport).checks.filter((c) => c.name.startsWith('fstab'));
    expect(await report()).to.deep.equal([{ name: 'fstab', status: 'ok', message: `no efs lines in ${daemon.fstab}`, fix: null }]);
    expect(await fstabInvalid()).to.equal('0');
    try {
      // No line here is valid, so the daemon makes no tunnel that later tests would see.
      writeFileSync(daemon.fstab, [
        '# test fstab',
        // mounttargetip keeps doctor's name and port checks of this line on loopback (no DNS query leaves the host).
        'fs-0f0a0001 /mnt/a efs _netdev,tls,fsap,region=us-east-1,mounttargetip=127.0.0.24 0 0',
        'fs-0f0a0002 /mnt/b efs _netdev,tls 0 0',
        'fs-0f0a0003 /mnt/c efs tls,noauto 0 0',
        'fs-NOTHEX /mnt/d efs tls 0 0',
      ].join('\n') + '\n');
      await waitFor('the daemon counting 3 invalid fstab lines', async () => (await fstabInvalid()) === '3', 3_000);
      const checks = await report();
      expect(checks.map((c) => [c.name, c.status])).to.deep.equal([['fstab line 2', 'fail'], ['fstab line 3', 'fail'], ['fstab line 5', 'fail']]);
      const [refused, region, parse] = checks as [Check, Check, Check];
      expect(refused.message).to.equal(`${daemon.fstab}:2: The "fsap" option is not supported yet: this release does not implement efs-utils\' "fsap" option; line skipped`);
      expect(refused.fix).to.match(/^Correct the line or remove it; until then a mount of this line at boot fails\. Leave the option out if the mount does not need it; .* \[BAD_OPTION\]$/);
      expect(region.message).to.match(new RegExp(`^${escapeRegExp(daemon.fstab)}:3: Cannot determine the AWS region of fs-0f0a0002: `));
      expect(region.fix).to.match(/set efs\.region in the config file\. \[NO_REGION\]$/);
      expect(parse.message).to.equal(`${daemon.fstab}:5: "fs-NOTHEX" is not a file system id like fs-12345678 or fs-12345678:/path, the file system's DNS name, or a DNS alias of it; line skipped`);
      expect(parse.fix).to.contain('\\040');
      // The same words as the daemon's log, so either place leads to the line.
      for (const c of checks) expect(daemon.logs).to.contain(`warn fstab.line_invalid`).and.to.contain(`msg="${c.message.replaceAll('"', '\\"')}"`);
      const text = (await daemon.efsctl('--config', daemon.configFile, 'doctor')).stdout;
      expect(text).to.match(/^fail {2}fstab line 2 +\S+:2: The "fsap" option is not supported yet: .*\n +fix: Correct the line or remove it; /m);
    } finally {
      writeFileSync(daemon.fstab, '# test fstab\n');
    }
    await waitFor('the count back at 0', async () => (await fstabInvalid()) === '0', 3_000);
    expect((await report()).map((c) => c.status)).to.deep.equal(['ok']);
  });

  it('fails trust_files when a user other than root could change the config file (which names the CA bundle) or a CA bundle an fstab line names, and says how to fix it', async () => {
    const check = async (): Promise<Check> =>
      (JSON.parse((await daemon.efsctl('--config', daemon.configFile, 'doctor', '--json')).stdout) as DoctorReport).checks.find((c) => c.name === 'trust_files')!;
    expect(await check()).to.deep.equal({ name: 'trust_files', status: 'ok', message: 'only root can change the CA bundle and the config file', fix: null });
    chmodSync(daemon.configFile, 0o664);
    chownSync(daemon.configFile, 0, 4242);
    try {
      const c = await check();
      expect(c.status).to.equal('fail');
      expect(c.message).to.equal(`a user other than root can change what the TLS verification trusts: config file ${daemon.configFile}: ${daemon.configFile} is writable by group 4242 (mode 0664)`);
      expect(c.fix).to.match(/^Make the file and each directory above it owned by root and not writable by group or others .* \[TRUST_FILE_WRITABLE\]$/);
    } finally {
      chownSync(daemon.configFile, 0, 0);
      chmodSync(daemon.configFile, 0o644);
    }
    expect((await check()).status).to.equal('ok');

    // A bundle that only an fstab line names, before any tunnel uses it: every user could write it.
    const bundle = join(daemon.dir, 'open-ca.pem');
    writeFileSync(bundle, readFileSync(testCerts().ca.certFile));
    chmodSync(bundle, 0o666);
    // noauto, so that the daemon makes no tunnel that later tests would see.
    writeFileSync(daemon.fstab, `fs-0f0b0001 /mnt/t efs tls,noauto,region=us-east-1,mounttargetip=127.0.0.24,cafile=${bundle} 0 0\n`);
    try {
      expect(await check()).to.deep.include({
        status: 'fail', message: `a user other than root can change what the TLS verification trusts: CA bundle ${bundle}: ${bundle} is writable by every user (mode 0666)`,
      });
    } finally {
      writeFileSync(daemon.fstab, '# test fstab\n');
    }
  });

  it('reports an unreachable daemon as a fail that says how to start it', async () => {
    const r = await daemon.efsctl('--config', daemon.configFile, '--socket', '/nonexistent/control.sock', 'doctor');
    expect(r.code).to.equal(1);
    expect(r.stdout).to.match(/^fail {2}daemon .*no socket there.*\n +fix: Start it with `systemctl start efs-relayd`/m);
  });

  it('fails netns when an fstab line names netns= and nsenter is on no directory of PATH, and says to install util-linux', async () => {
    // Only what the efsctl launcher itself needs on PATH: no nsenter.
    const tools = join(daemon.dir, 'no-nsenter');
    mkdirSync(tools, { recursive: true });
    for (const [name, real] of [['node', process.execPath], ['dirname', '/usr/bin/dirname'], ['readlink', '/usr/bin/readlink']] as const) {
      if (!existsSync(join(tools, name))) symlinkSync(real, join(tools, name));
    }
    const fstab = join(daemon.dir, 'fstab-netns');
    writeFileSync(fstab, 'fs-0d0c0009 /mnt/ns efs _netdev,tls,region=us-east-1,netns=/run/netns/efsr-doctor 0 0\n');
    const config = join(daemon.dir, 'config-netns.yaml');
    writeFileSync(config, stringify({ ...(parse(readFileSync(daemon.configFile, 'utf8')) as Record<string, unknown>), fstab }));
    const r = await run(join(BIN, 'efsctl'), ['--socket', '/nonexistent/control.sock', '--config', config, 'doctor', '--json'], { env: { ...process.env, PATH: tools } });
    expect((JSON.parse(r.stdout) as DoctorReport).checks.find((c) => c.name === 'netns')).to.deep.equal({
      name: 'netns', status: 'fail',
      message: 'nsenter is not installed, and netns= tunnels need it to enter /run/netns/efsr-doctor',
      fix: 'Install util-linux (`apt-get install util-linux`, `dnf install util-linux`). [NETNS_FAILED]',
    });
  });

  it('warns of a file system in a partition with roots of its own (ISO, European Sovereign Cloud) that verifies against Amazon\'s public root CAs alone, and says what efs-utils verifies with there', async () => {
    const amazonRoots = join(ROOT, 'etc', 'amazon-root-cas.pem');
    const fstab = join(daemon.dir, 'fstab-partitions');
    // An address each, so that doctor asks no DNS server; nothing answers there, which the reach checks say.
    writeFileSync(fstab, [
      `fs-0d0c000a /mnt/isof efs _netdev,tls,region=us-isof-east-1,mounttargetip=127.0.0.85,cafile=${amazonRoots} 0 0`,
      `fs-0d0c000b /mnt/eusc efs _netdev,tls,region=eusc-de-east-1,mounttargetip=127.0.0.85,cafile=${testCerts().ca.certFile} 0 0`,
      `fs-0d0c000c /mnt/east efs _netdev,tls,region=us-east-1,mounttargetip=127.0.0.85,cafile=${amazonRoots} 0 0`,
      '',
    ].join('\n'));
    const config = join(daemon.dir, 'config-partitions.yaml');
    writeFileSync(config, stringify({ ...(parse(readFileSync(daemon.configFile, 'utf8')) as Record<string, unknown>), fstab }));
    const r = await run(join(BIN, 'efsctl'), ['--socket', '/nonexistent/control.sock', '--config', config, 'doctor', '--json']);
    expect((JSON.parse(r.stdout) as DoctorReport).checks.find((c) => c.name === 'partition_ca')).to.deep.equal({
      name: 'partition_ca', status: 'warn',
      message: `a file system in a partition whose mount targets Amazon's public root CAs do not sign, verifying against those roots alone: fs-0d0c000a (us-isof-east-1) against ${amazonRoots}; ` +
        'its handshakes would be refused (TLS_UNTRUSTED_CHAIN)',
      fix: 'Set tls.ca_file, or cafile= on the mount or fstab line, to a bundle that holds the partition\'s CAs: efs-utils uses the system\'s ' +
        '(/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem on RHEL and Amazon Linux, /etc/ssl/certs/ca-certificates.crt on Debian and Ubuntu).',
    });
    // The usual file systems have no such check at all.
    const usual = await doctor();
    expect(usual.stdout).to.not.contain('partition_ca');
  });

  it('reports mounts through a local port where no tunnel listens as a fail, naming the force-stopped file system and how to recover', async () => {
    const report = JSON.parse((await daemon.efsctl('--config', daemon.configFile, 'doctor', '--json')).stdout) as DoctorReport;
    expect(report.checks.find((c) => c.name === 'mounts')).to.deep.equal({
      name: 'mounts',
      status: 'fail',
      message: `${left} (port ${leftPort}, fs-0d0c0001), /mnt/stray (port 21347): mounted through a local port, but no tunnel listens there; NFS I/O there waits`,
      fix: `\`efsctl add fs-0d0c0001\` gives ${left} its port back; \`efsctl add FS_ID -o tlsport=21347\` with the file system mounted at /mnt/stray; or unmount.`,
    });
  });

  it('fails the ca_bundle check for a bundle with a certificate that does not parse, saying which, as the daemon refuses it', async () => {
    const config = parse(readFileSync(daemon.configFile, 'utf8')) as { tls: Record<string, unknown> };
    const damaged = join(daemon.dir, 'damaged-ca.pem');
    const good = readFileSync(testCerts().ca.certFile, 'utf8');
    writeFileSync(damaged, good + good.replace(/\n[A-Za-z0-9+/=]+\n-----END/, '\n-----END'));
    config.tls.ca_file = damaged;
    writeFileSync(join(daemon.dir, 'doctor-ca-config.yaml'), stringify(config));
    const r = await daemon.efsctl('--config', join(daemon.dir, 'doctor-ca-config.yaml'), 'doctor', '--json');
    expect((JSON.parse(r.stdout) as DoctorReport).checks.find((c) => c.name === 'ca_bundle')).to.deep.equal({
      name: 'ca_bundle',
      status: 'fail',
      message: `${damaged}: certificate 2 of 2 does not parse (a file still being written, or damaged); no tunnel can verify its mount target (CA_BUNDLE_UNREADABLE)`,
      fix: 'Restore the Amazon root CA bundle (reinstall efs-relay), or fix the file tls.ca_file names.',
    });
  });

  /** doctor's mounts check over a mount list of its own (through a config of its own: the daemon keeps watching its list). */
  async function mountsCheckOver(lines: string[], ...efsctlArgs: string[]): Promise<Check> {
    const config = parse(readFileSync(daemon.configFile, 'utf8')) as { mount: Record<string, unknown> };
    config.mount.proc_mounts = join(daemon.dir, 'doctor-mounts');
    writeFileSync(config.mount.proc_mounts as string, lines.map((l) => `${l}\n`).join(''));
    writeFileSync(join(daemon.dir, 'doctor-config.yaml'), stringify(config));
    const r = await daemon.efsctl('--config', join(daemon.dir, 'doctor-config.yaml'), ...efsctlArgs, 'doctor', '--json');
    return (JSON.parse(r.stdout) as DoctorReport).checks.find((c) => c.name === 'mounts')!;
  }

  it('warns of a mount served by an efs-utils stunnel, naming the stunnel process', async function () {
    skipIf(this, await commandMissing('stunnel', 'as root: apt-get install stunnel4'));
    // A stunnel client exactly as efs-utils writes its config, on the port the mount names.
    const stunnel = await startStunnelClient(daemon.dir, { ca: testCerts().ca, server: testCerts().good }, 'efs-utils', 21346, '127.0.0.24', FS_ID);
    try {
      expect(await mountsCheckOver(['127.0.0.1:/ /mnt/old nfs4 rw,vers=4.1,port=21346,addr=127.0.0.1 0 0'])).to.deep.equal({
        name: 'mounts',
        status: 'warn',
        message: `/mnt/old (port 21346, served by stunnel pid ${stunnel.pid}): mounted through a local port that another process serves, not efs-relayd (an efs-utils stunnel)`,
        fix: 'To carry them through efs-relay without unmounting, run `efsctl takeover DIR` for each, or `efsctl takeover --all`; or unmount each and mount it again with `mount -t efs -o tls` or `efsctl attach`.',
      });
    } finally {
      await stunnel.stop();
    }
  });

  it('warns of a mount served by a second efs-relayd, naming both daemons', async () => {
    const second = await new Daemon(daemonConfig(21400)).start();
    try {
      const port = (await second.efsctlJson<{ tunnel: TunnelView }>('add', 'fs-0d0c0002', '-o', 'mounttargetip=127.0.0.24,region=us-east-1')).tunnel.port;
      expect(await mountsCheckOver([`127.0.0.1:/ /mnt/other nfs4 rw,vers=4.1,port=${port},addr=127.0.0.1 0 0`])).to.deep.equal({
        name: 'mounts',
        status: 'warn',
        message: `/mnt/other (port ${port}, served by efs-relayd pid ${second.pid}): another efs-relayd than the one answering on ${daemon.socket} (pid ${daemon.pid})`,
        fix: 'Run one efs-relayd per host (two compete for the same ports); stop the one whose tunnels are not mounted.',
      });
    } finally {
      await second.stop();
    }
  });

  it('names the efs-relayd that serves a mount when efsctl was pointed at a socket it does not answer on', async () => {
    const port = (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((t) => t.fs_id === FS_ID)!.port;
    const check = await mountsCheckOver([`127.0.0.1:/ /mnt/live nfs4 rw,vers=4.1,port=${port},addr=127.0.0.1 0 0`], '--socket', '/nonexistent/control.sock');
    expect(check).to.deep.equal({
      name: 'mounts',
      status: 'warn',
      message: `/mnt/live (port ${port}, served by efs-relayd pid ${daemon.pid}): that efs-relayd does not answer on /nonexistent/control.sock`,
      fix: 'Point efsctl at the control socket that daemon uses (--socket, or control_socket in the file given with --config).',
    });
  });

  it('prints each check as it is made, so that a mount target that does not answer shows progress, not silence, and fails with CONNECT_TIMEOUT', async () => {
    // A listener that never accepts: once its queue of 2 is full, the kernel drops every further SYN, as a security group does.
    const host = '127.0.0.61';
    const stuck = spawn(process.execPath, ['-e', `require('node:net').createServer().listen({ port: 2049, host: '${host}', backlog: 1 }, () => {
      process.stdout.write('ready\\n'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0); })`], { stdio: ['ignore', 'pipe', 'inherit'] });
    const fillers: Socket[] = [];
    try {
      await new Promise<void>((resolve, reject) => {
        stuck.stdout.once('data', () => resolve());
        stuck.once('exit', (c) => reject(new Error(`the listener on ${host}:2049 exited with ${c} before it listened`)));
      });
      for (let i = 0; i < 2; i++) fillers.push(await new Promise<Socket>((resolve) => { const c: Socket = connect(2049, host, () => resolve(c)); }));
      const config = parse(readFileSync(daemon.configFile, 'utf8')) as Record<string, unknown>;
      config.fstab = join(daemon.dir, 'doctor-stuck-fstab');
      writeFileSync(config.fstab as string, `fs-0f0d0001 /mnt/s efs _netdev,tls,region=us-east-1,mounttargetip=${host} 0 0\n`);
      writeFileSync(join(daemon.dir, 'doctor-stuck-config.yaml'), stringify(config));

      const doctor = spawn(join(BIN, 'efsctl'), ['--config', join(daemon.dir, 'doctor-stuck-config.yaml'), 'doctor'], { stdio: ['ignore', 'pipe', 'inherit'] });
      const chunks: string[] = [];
      doctor.stdout.setEncoding('utf8').on('data', (d: string) => chunks.push(d));
      const code = await new Promise<number | null>((resolve) => doctor.on('close', resolve));
      const all = chunks.join('');
      expect(code).to.equal(1);
      expect(all).to.match(new RegExp(`^fail {2}reach fs-0f0d0001 {2}TCP ${escapeRegExp(host)}:2049 did not answer within 3 s\n +fix: Allow TCP 2049 from this host in the mount target's security group\. \\[CONNECT_TIMEOUT\\]$`, 'm'));
      // The checks before it were out while it waited, not all at the end.
      const reachAt = chunks.findIndex((c) => c.includes('reach fs-0f0d0001'));
      expect(chunks.slice(0, reachAt).join('')).to.match(/^ok {4}os {12}\S/m).and.to.contain('clock');
      expect(all.trimEnd().split('\n').at(-1)).to.match(/^\d+ ok, \d+ warn, \d+ fail$/);
    } finally {
      for (const c of fillers) c.destroy();
      stuck.kill('SIGKILL');
    }
  });

  it('lists listening sockets once (one netstat or ss) for both a mount whose tunnel cannot take its port and a mount that another process serves', async () => {
    const [stalledPort, servedPort] = [21990, 21991];
    const fsId = 'fs-0d0c0005';
    const d = new Daemon(daemonConfig(21990, { port_range: { first: 21990, last: 21994 } }));
    const listen = (s: Server, port: number) => new Promise<void>((done) => s.listen(port, '127.0.0.1', () => done()));
    const [squatter, other] = [createServer(), createServer()];
    try {
      await d.start();
      expect((await d.efsctl('add', fsId, '-o', `region=us-east-1,mounttargetip=127.0.0.24,tlsport=${stalledPort}`)).code).to.equal(0);
      await d.stop();
      // While the daemon was down, another process took the tunnel's port.
      await listen(squatter, stalledPort);
      await listen(other, servedPort);
      d.mount.addMountLine(`127.0.0.1:/ /mnt/stalled nfs4 rw,vers=4.1,port=${stalledPort},addr=127.0.0.1 0 0`);
      d.mount.addMountLine(`127.0.0.1:/ /mnt/foreign nfs4 rw,vers=4.1,port=${servedPort},addr=127.0.0.1 0 0`);
      await d.start();
      const status = await d.efsctlJson<TunnelView>('status', fsId);
      expect(status.last_error?.code).to.equal('PORT_TAKEN');
      // netstat and ss as found on PATH, each run recorded.
      const wrappers = join(d.dir, 'listing-wrappers');
      const runs = join(d.dir, 'listing-runs');
      mkdirSync(wrappers, { recursive: true });
      writeFileSync(runs, '');
      for (const tool of ['netstat', 'ss']) {
        const real = (process.env.PATH ?? '').split(':').map((p) => join(p, tool)).find((f) => existsSync(f));
        if (real === undefined) continue;
        writeFileSync(join(wrappers, tool), `#!/bin/sh\necho "${tool} $*" >> '${runs}'\nexec '${real}' "$@"\n`, { mode: 0o755 });
      }
      const r = await run(join(BIN, 'efsctl'), ['--socket', d.socket, '--config', d.configFile, 'doctor', '--json'], { env: { ...process.env, PATH: `${wrappers}:${process.env.PATH}` } });
      const mounts = (JSON.parse(r.stdout) as DoctorReport).checks.find((c) => c.name === 'mounts');
      expect(mounts?.status).to.equal('fail');
      expect(mounts?.message).to.equal([
        `/mnt/stalled (port ${stalledPort}): the port of ${fsId}'s tunnel, which does not listen there (node pid ${process.pid} does); PORT_TAKEN: ${status.last_error?.message}`,
        `/mnt/foreign (port ${servedPort}, served by node pid ${process.pid}): mounted through a local port that another process serves, not efs-relayd`,
      ].join('; '));
      expect(readFileSync(runs, 'utf8').trim().split('\n'), 'netstat/ss runs').to.have.length(1);
    } finally {
      squatter.close();
      other.close();
      await d.stop();
    }
  });

  it('says that every mount through a tunnel port waits while the daemon is not answering', async () => {
    const report = JSON.parse((await daemon.efsctl('--config', daemon.configFile, '--socket', '/nonexistent/control.sock', 'doctor', '--json')).stdout) as DoctorReport;
    const mounts = report.checks.find((c) => c.name === 'mounts')!;
    expect(mounts.status).to.equal('fail');
    expect(mounts.message).to.contain('but efs-relayd is not answering; NFS I/O there waits');
    expect(mounts.fix).to.match(/^Start efs-relayd; then, for a tunnel it does not restore: /);
  });
});
