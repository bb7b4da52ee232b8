// The deb and the rpm from `make package`: one version everywhere, a binary
// that needs no Node.js, lint-clean packages, and the installed layout.
import { expect } from 'chai';
import { existsSync, lstatSync, readFileSync, readlinkSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gunzipSync } from 'node:zlib';
import { commandMissing, Daemon, escapeRegExp, ROOT, run, skipIf, tempDir } from './helpers/daemon.js';
import { exchange } from './helpers/client.js';
import { FS_ID, FS_NAME, daemonConfig, testCerts } from './helpers/fixtures.js';
import { MountTargetStandIn } from './helpers/mount-target.js';
import type { AddResult, TunnelDetail } from '../daemon/tunnels.js';

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const PKG = join(ROOT, 'build/pkg');
const DEB = join(PKG, `efs-relay_${VERSION}_amd64.deb`);
const RPM = join(PKG, `efs-relay-${VERSION}-1.x86_64.rpm`);
const NO_NODE = { PATH: '/nonexistent' };

const RPM_FILES = [
  '/etc/efs-relay', '/etc/efs-relay/amazon-root-cas.pem', '/etc/efs-relay/config.yaml', '/usr/bin/efsctl',
  '/usr/lib/systemd/system/efs-relayd.service', '/usr/sbin/efs-relayd', '/usr/sbin/mount.efs',
  '/usr/share/bash-completion/completions/efsctl', '/usr/share/doc/efs-relay/changelog', '/usr/share/efs-relay',
  '/usr/share/efs-relay/efs-relay-alerts.yml', '/usr/share/efs-relay/efs-relay-scrape.yml', '/usr/share/licenses/efs-relay/LICENSE',
  '/usr/share/man/man8/efs-relayd.8.gz', '/usr/share/man/man8/efsctl.8.gz', '/usr/share/man/man8/mount.efs.8.gz',
];

describe('packages', function () {
  before(async function () {
    const missing = [DEB, RPM].filter((f) => !existsSync(f));
    const tools = (await run('sh', ['-c', 'command -v rpm && command -v dpkg-deb && command -v lintian && command -v rpmlint'])).code === 0;
    skipIf(this, missing.length ? `${missing.join(', ')} not built (make package)` : tools ? null : 'rpm, dpkg-deb, lintian or rpmlint missing (apt-get install rpm lintian rpmlint)');
  });

  it('carries one version, package.json\'s, in the binary, both packages, the man pages and the changelogs', async () => {
    const bin = join(PKG, 'deb-root/usr/sbin/efs-relayd');
    expect((await run(bin, ['--version'], { env: NO_NODE })).stdout).to.equal(`efs-relayd ${VERSION}\n`);
    expect((await run(join(PKG, 'deb-root/usr/bin/efsctl'), ['version', '--socket', '/nonexistent'], { env: NO_NODE })).stdout).to.match(new RegExp(`^efsctl ${escapeRegExp(VERSION)}\\n`));
    expect((await run(join(PKG, 'rpm-root/usr/sbin/mount.efs'), ['--version'], { env: NO_NODE })).stdout).to.equal(`mount.efs ${VERSION}\n`);
    expect((await run('dpkg-deb', ['-f', DEB, 'Version'])).stdout.trim()).to.equal(VERSION);
    expect((await run('rpm', ['-qp', '--qf', '%{VERSION}-%{RELEASE}', RPM])).stdout).to.equal(`${VERSION}-1`);
    for (const m of ['efs-relayd', 'efsctl', 'mount.efs']) {
      const page = gunzipSync(readFileSync(join(PKG, `deb-root/usr/share/man/man8/${m}.8.gz`))).toString();
      expect(page.split('\n')[0], m).to.match(new RegExp(`^\\.TH \\S+ 8 "\\d{4}-\\d\\d-\\d\\d" "efs-relay ${escapeRegExp(VERSION)}"`));
    }
    const changelog = gunzipSync(readFileSync(join(PKG, 'deb-root/usr/share/doc/efs-relay/changelog.gz'))).toString();
    expect(changelog.split('\n')[0]).to.equal(`efs-relay (${VERSION}) unstable; urgency=medium`);
    expect((await run('rpm', ['-qp', '--changelog', RPM])).stdout).to.contain(`- ${VERSION}-1`);
  });

  it('runs without Node.js on the host: one binary that is efs-relayd, efsctl or mount.efs by the name it is started under', async () => {
    expect((await run(join(PKG, 'deb-root/usr/sbin/efs-relayd'), ['--help'], { env: NO_NODE })).stdout).to.contain('Usage: efs-relayd');
    expect((await run(join(PKG, 'deb-root/usr/bin/efsctl'), ['--help'], { env: NO_NODE })).stdout).to.contain('Usage: efsctl');
    expect((await run(join(PKG, 'rpm-root/usr/sbin/mount.efs'), ['--help'], { env: NO_NODE })).stdout).to.contain('Usage: mount.efs');
  });

  it('ignores SIGUSR1 in the packaged daemon: Node\'s debugger never opens in the root process', async () => {
    const daemon = await new Daemon(daemonConfig(21550)).start(join(PKG, 'deb-root/usr/sbin/efs-relayd'));
    try {
      expect(await daemon.sigusr1()).to.deep.equal({ debugger: false, running: true, logged: true });
    } finally {
      await daemon.stop();
    }
  });

  it('ignores NODE_OPTIONS in each of its three names, so that no environment loads code into the root binary or opens Node\'s debugger', async () => {
    const dir = tempDir('node-options');
    const marker = join(dir, 'preload-ran');
    const preload = join(dir, 'preload.cjs');
    writeFileSync(preload, `require('fs').writeFileSync(${JSON.stringify(marker)}, 'ran');\n`);
    const env = { ...NO_NODE, NODE_OPTIONS: `--require ${preload} --inspect=127.0.0.1:0` };
    for (const [bin, args, out] of [
      ['deb-root/usr/sbin/efs-relayd', ['--version'], `efs-relayd ${VERSION}\n`],
      ['deb-root/usr/bin/efsctl', ['--help'], 'Usage: efsctl'],
      ['rpm-root/usr/sbin/mount.efs', ['--version'], `mount.efs ${VERSION}\n`],
    ] as const) {
      const r = await run(join(PKG, bin), [...args], { env });
      expect(r.stdout, bin).to.contain(out);
      expect(r.stderr, bin).to.not.contain('Debugger listening');
      expect(existsSync(marker), `${bin} ran the preload`).to.equal(false);
    }
    const daemon = await new Daemon(daemonConfig(21550)).start(join(PKG, 'deb-root/usr/sbin/efs-relayd'), undefined, { NODE_OPTIONS: env.NODE_OPTIONS });
    try {
      expect(daemon.logs).to.not.contain('Debugger listening').and.not.contain('daemon.inspector_closed');
      expect(existsSync(marker), 'the daemon ran the preload').to.equal(false);
    } finally {
      await daemon.stop();
    }
  });

  it('carries the Node.js LTS that packaging/node-runtime.json pins, not the build machine\'s: efsctl version shows it for the running daemon', async () => {
    const pin = JSON.parse(readFileSync(join(ROOT, 'packaging/node-runtime.json'), 'utf8')) as { version: string };
    const daemon = await new Daemon(daemonConfig(21550)).start(join(PKG, 'deb-root/usr/sbin/efs-relayd'));
    try {
      const r = await run(join(PKG, 'deb-root/usr/bin/efsctl'), ['version', '--socket', daemon.socket], { env: NO_NODE });
      expect(r.stdout).to.match(new RegExp(`^efs-relayd ${escapeRegExp(VERSION)} \\(pid ${daemon.pid}, Node v${escapeRegExp(pin.version)}, OpenSSL \\d+\\.\\d+\\.\\d+\\)$`, 'm'));
    } finally {
      await daemon.stop();
    }
  });

  it('names an unverified chain as the tests on the build machine\'s Node do, without the Node.js flag the runtime it carries would advise', async () => {
    const target = await new MountTargetStandIn({ host: '127.0.0.93', port: 2049, cert: testCerts().untrusted, backend: 'echo' }).start();
    const daemon = await new Daemon(daemonConfig(21550)).start(join(PKG, 'deb-root/usr/sbin/efs-relayd'));
    try {
      const port = (await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', 'mounttargetip=127.0.0.93,region=us-east-1')).tunnel.port;
      expect((await exchange(port, 'secret')).received.length, 'nothing relayed').to.equal(0);
      const status = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
      expect(status.last_error).to.include({ code: 'TLS_UNTRUSTED_CHAIN', message: `TLS connection to 127.0.0.93:2049 (${FS_NAME}) refused: unable to verify the first certificate` });
    } finally {
      await daemon.stop();
      await target.stop();
    }
  });

  it('passes lintian with no error or warning (the overrides say why)', async () => {
    const r = await run('lintian', ['--fail-on', 'error,warning', DEB], { timeoutMs: 120_000 });
    expect(r.stdout.split('\n').filter((l) => /^[EW]: /.test(l))).to.deep.equal([]);
    expect(r.code).to.equal(0);
  });

  it('passes rpmlint with no error or warning (packaging/rpm/rpmlint.toml says why)', async () => {
    const r = await run('rpmlint', ['-c', join(ROOT, 'packaging/rpm/rpmlint.toml'), RPM]);
    expect(r.stdout).to.contain('0 errors, 0 warnings');
  });

  it('ships a unit that systemd-analyze verify accepts without a warning, in both packages, with Restart=always, no start limit and reload by efsctl', async function () {
    skipIf(this, await commandMissing('systemd-analyze', 'as root: apt-get install systemd'));
    for (const [pkg, unitDir] of [['deb-root', 'lib/systemd/system'], ['rpm-root', 'usr/lib/systemd/system']] as const) {
      // The package's files, plus the host's targets that the unit orders itself against (a package never ships those).
      const root = tempDir('unit');
      expect((await run('cp', ['-a', `${join(PKG, pkg)}/.`, root])).code).to.equal(0);
      expect((await run('sh', ['-c', `cp -a /lib/systemd/system/*.target ${join(root, unitDir)}/`])).code).to.equal(0);
      const r = await run('systemd-analyze', ['verify', '--man=no', `--root=${root}`, 'efs-relayd.service']);
      // verify exits 0 even on an unknown or misplaced key; it only says so on stderr.
      expect(r.stderr + r.stdout, pkg).to.equal('');
      expect(r.code, pkg).to.equal(0);
      const unit = readFileSync(join(root, unitDir, 'efs-relayd.service'), 'utf8');
      const section = (name: string): string => unit.split(/^\[/m).find((s) => s.startsWith(`${name}]`)) ?? '';
      expect(section('Unit'), `${pkg}: no start limit`).to.match(/^StartLimitIntervalSec=0$/m);
      expect(section('Service'), pkg).to.match(/^Restart=always$/m);
      expect(section('Service'), `${pkg}: systemctl reload is efsctl reload`).to.match(/^ExecReload=\/usr\/bin\/efsctl --config \/etc\/efs-relay\/config\.yaml reload$/m);
    }
  });

  it('lists exactly the expected files in the rpm, with config files marked noreplace', async () => {
    expect((await run('rpm', ['-qlp', RPM])).stdout.trim().split('\n')).to.deep.equal(RPM_FILES);
    expect((await run('rpm', ['-qcp', RPM])).stdout.trim().split('\n')).to.deep.equal(['/etc/efs-relay/amazon-root-cas.pem', '/etc/efs-relay/config.yaml']);
    expect((await run('rpm', ['-qp', '--requires', RPM])).stdout).to.contain('nfs-utils').and.contain('util-linux');
    expect((await run('rpm', ['-qp', '--conflicts', RPM])).stdout.trim()).to.equal('amazon-efs-utils');
  });

  it('installs the rpm into an empty root with the right modes and links', async () => {
    const root = tempDir('rpmroot');
    const r = await run('rpm', ['--root', root, '--nodeps', '--noscripts', '--dbpath', join(root, 'var/lib/rpm'), '-i', RPM], { timeoutMs: 120_000 });
    expect(r.code, r.stderr).to.equal(0);
    const mode = (p: string): string => (statSync(join(root, p)).mode & 0o7777).toString(8);
    expect(mode('usr/sbin/efs-relayd')).to.equal('755');
    expect(mode('etc/efs-relay/config.yaml')).to.equal('644');
    expect(mode('etc/efs-relay/amazon-root-cas.pem')).to.equal('644');
    expect(mode('usr/lib/systemd/system/efs-relayd.service')).to.equal('644');
    expect(lstatSync(join(root, 'usr/bin/efsctl')).isSymbolicLink()).to.equal(true);
    expect(readlinkSync(join(root, 'usr/bin/efsctl'))).to.equal('../sbin/efs-relayd');
    expect(readlinkSync(join(root, 'usr/sbin/mount.efs'))).to.equal('efs-relayd');
    expect((await run(join(root, 'usr/bin/efsctl'), ['--help'], { env: NO_NODE })).code).to.equal(0);
  });

  it('ships the deb\'s files with their modes, conffiles, dependencies and scripts', async () => {
    const list = (await run('dpkg-deb', ['-c', DEB])).stdout.trim().split('\n').map((l) => {
      const f = l.split(/\s+/);
      return `${f[0]} ${f.slice(5).join(' ')}`;
    });
    for (const want of [
      '-rwxr-xr-x ./usr/sbin/efs-relayd', '-rw-r--r-- ./etc/efs-relay/config.yaml', '-rw-r--r-- ./etc/efs-relay/amazon-root-cas.pem',
      '-rw-r--r-- ./lib/systemd/system/efs-relayd.service', '-rw-r--r-- ./usr/share/efs-relay/efs-relay-alerts.yml',
      '-rw-r--r-- ./usr/share/man/man8/efsctl.8.gz', '-rw-r--r-- ./usr/share/bash-completion/completions/efsctl',
      '-rw-r--r-- ./usr/share/doc/efs-relay/copyright', '-rw-r--r-- ./usr/share/doc/efs-relay/changelog.gz',
      'lrwxrwxrwx ./sbin/mount.efs -> /usr/sbin/efs-relayd', 'lrwxrwxrwx ./usr/bin/efsctl -> ../sbin/efs-relayd',
    ]) expect(list).to.include(want);
    const control = (await run('dpkg-deb', ['-f', DEB])).stdout;
    expect(control).to.match(/^Depends: .*nfs-common.*util-linux/m).and.match(/^Conflicts: amazon-efs-utils$/m);
    const dir = tempDir('debctl');
    expect((await run('dpkg-deb', ['-e', DEB, dir])).code).to.equal(0);
    expect(readFileSync(join(dir, 'conffiles'), 'utf8')).to.equal('/etc/efs-relay/config.yaml\n/etc/efs-relay/amazon-root-cas.pem\n');
    expect(readFileSync(join(dir, 'postinst'), 'utf8')).to.contain('if [ -d /run/systemd/system ]');
    const postrm = readFileSync(join(dir, 'postrm'), 'utf8');
    expect(postrm).to.contain('rm -rf /etc/efs-relay /run/efs-relay');
    expect(postrm.split('\n').filter((l) => !l.trim().startsWith('#') && /fstab|\/mnt|\/home/.test(l)), 'purge never touches fstab or user data').to.deep.equal([]);
  });
});
