// The .deb installed into a minimal Debian 12 root with no Node.js
// (debootstrap --variant=minbase, cached): the daemon runs there, carries NFS
// to a stand-in outside, and a purge leaves nothing behind.
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { escapeRegExp, ROOT, run, skipIf, sleep, waitFor } from './helpers/daemon.js';
import { FS_ID, testCerts } from './helpers/fixtures.js';
import { openClient } from './helpers/client.js';
import { MountTargetStandIn } from './helpers/mount-target.js';
import { Ganesha, nfsCatSha256, nfsCp, requireNfs, sha256File } from './helpers/nfs.js';

/** Where the minimal root is kept between runs (about 270 MB; made once in about 40 s). */
export const DEBOOTSTRAP_CACHE = '/var/cache/efs-relay-test/bookworm-minbase';
const VERSION = (JSON.parse((await import('node:fs')).readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const DEB = join(ROOT, `build/pkg/efs-relay_${VERSION}_amd64.deb`);

async function ensureMinbase(): Promise<string | null> {
  if (existsSync(join(DEBOOTSTRAP_CACHE, 'usr/bin/dpkg'))) return null;
  if ((await run('sh', ['-c', 'command -v debootstrap'])).code !== 0) return 'debootstrap is not installed (as root: apt-get install debootstrap)';
  const tmp = `${DEBOOTSTRAP_CACHE}.tmp`;
  await run('rm', ['-rf', tmp]);
  mkdirSync(tmp, { recursive: true });
  console.log(`      making the minimal Debian 12 root in ${DEBOOTSTRAP_CACHE} (once, about 40 s)`);
  const r = await run('debootstrap', ['--variant=minbase', '--include=nfs-common', 'bookworm', tmp, 'http://deb.debian.org/debian'], { timeoutMs: 600_000 });
  if (r.code !== 0) return `debootstrap failed: ${r.stderr.slice(-500)}`;
  await run('mv', [tmp, DEBOOTSTRAP_CACHE]);
  return null;
}

/** Every path in the root, except what dpkg and the system change on their own. */
async function tree(root: string): Promise<string[]> {
  const r = await run('sh', ['-c', `cd ${root} && find . -xdev \\( -path ./proc -o -path ./var/lib/dpkg -o -path ./var/log -o -path ./var/cache -o -path ./tmp -o -path ./root -o -path ./run \\) -prune -o -print | sort`], { timeoutMs: 120_000 });
  return r.stdout.trim().split('\n');
}

describe('install into a minimal Debian 12 root without Node.js', function () {
  let root = '';
  let procMounted = false;
  let daemon: ChildProcess | null = null;
  let target: MountTargetStandIn | null = null;

  before(async function () {
    requireNfs(this);
    skipIf(this, existsSync(DEB) ? null : `${DEB} not built (make package)`);
    skipIf(this, await ensureMinbase());
    root = '/var/tmp/efs-relay-install-root';
    // A run that was killed may have left /proc mounted in the root; rm cannot remove a mount point, and cp would then copy into the old root.
    while ((await run('mountpoint', ['-q', join(root, 'proc')])).code === 0) await run('umount', ['-l', join(root, 'proc')]);
    await run('rm', ['-rf', root]);
    const cp = await run('cp', ['-a', DEBOOTSTRAP_CACHE, root], { timeoutMs: 120_000 });
    expect(cp.code, cp.stderr).to.equal(0);
  });

  after(async () => {
    daemon?.kill('SIGKILL');
    await target?.stop();
    if (procMounted) await run('umount', ['-l', join(root, 'proc')]);
    if (root) await run('rm', ['-rf', root]);
  });

  // The tests tell one story (install, run, upgrade, purge), but each does the earlier steps it needs
  // itself when they have not been done, so that any one of them passes run alone (TEST_GREP).
  let treeBefore: string[] | null = null;
  let tunnelPort = 0;

  /** dpkg -i of the package, once; remembers the root's tree from before. */
  async function install(): Promise<void> {
    if (treeBefore) return;
    const before = await tree(root);
    copyFileSync(DEB, join(root, 'tmp/efs-relay.deb'));
    const r = await run('chroot', [root, 'dpkg', '-i', '/tmp/efs-relay.deb'], { timeoutMs: 120_000 });
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    treeBefore = before;
  }

  /** What the running daemon wrote on stderr (its log; the journal's, under systemd). */
  let log = '';

  async function startDaemon(what: string, argv = ['/usr/sbin/efs-relayd', '--config', '/root/test.yaml']): Promise<void> {
    log = '';
    // The environment systemd gives a service (its default PATH and nothing of this shell's, such as NODE_EXTRA_CA_CERTS).
    daemon = spawn('chroot', [root, ...argv], { stdio: ['ignore', 'ignore', 'pipe'], env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' } });
    daemon.stderr?.on('data', (d: Buffer) => (log += d.toString()));
    await waitFor(what, () => log.includes('daemon.started'), 15_000).catch((err: Error) => {
      throw new Error(`${err.message}\n${log}`);
    });
  }

  async function stopDaemon(): Promise<void> {
    const d = daemon;
    if (!d || d.exitCode !== null) return;
    d.kill('SIGTERM');
    await new Promise((r) => d.once('exit', r));
  }

  /** The installed daemon running in the root with a tunnel to a mount target in front of ganesha; its port. */
  async function tunnel(): Promise<number> {
    if (tunnelPort) return tunnelPort;
    await install();
    const mount = await run('mount', ['-t', 'proc', 'proc', join(root, 'proc')]);
    procMounted = mount.code === 0;
    const ganesha = await Ganesha.get();
    target = await new MountTargetStandIn({
      host: '127.0.0.26', port: 2049, cert: testCerts().good, backend: { host: '127.0.0.1', port: ganesha.nfsPort },
    }).start();
    copyFileSync(testCerts().ca.certFile, join(root, 'root/test-ca.pem'));
    writeFileSync(join(root, 'root/test.yaml'), stringify({
      tls: { ca_file: '/root/test-ca.pem' }, metrics: { listen: '' }, port_range: { first: 21400, last: 21449 }, efs: { metadata_url: '' },
      mount: { proc_mounts: procMounted ? '/proc/mounts' : '/root/no-mounts' }, health: { probe_interval: 0 },
    }));
    if (!procMounted) writeFileSync(join(root, 'root/no-mounts'), '');
    await startDaemon('the daemon in the root');
    const add = await run('chroot', [root, 'efsctl', 'add', FS_ID, '-o', 'mounttargetip=127.0.0.26,region=us-east-1', '--json']);
    expect(add.code, add.stderr).to.equal(0);
    tunnelPort = (JSON.parse(add.stdout) as { tunnel: { port: number } }).tunnel.port;
    return tunnelPort;
  }

  it('has no Node.js in the root', () => {
    expect(existsSync(join(root, 'usr/bin/node'))).to.equal(false);
    expect(existsSync(join(root, 'usr/bin/nodejs'))).to.equal(false);
  });

  it('installs the .deb with dpkg, without systemd running there', async () => {
    await install();
    expect((await run('chroot', [root, 'efsctl', '--help'])).stdout).to.contain('Usage: efsctl');
    expect((await run('chroot', [root, '/sbin/mount.efs', '--version'])).stdout).to.equal(`mount.efs ${VERSION}\n`);
  });

  it('runs the daemon in the root and moves an NFS file through its tunnel to a server outside, checksum equal', async function () {
    const port = await tunnel();
    const ganesha = await Ganesha.get();
    const src = join(root, 'root/payload.bin');
    writeFileSync(src, Buffer.alloc(8 << 20, 'installed-in-minbase'));
    await nfsCp(src, ganesha.v3Url('installed.bin', port));
    expect((await nfsCatSha256(ganesha.v4Url('installed.bin', port))).sha256).to.equal(await sha256File(src));
    expect(target!.sessions.at(-1)).to.include({ protocol: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES256-GCM-SHA384' });
    // Nothing but its own log lines: no warning of the Node.js it carries (a deprecation, an experimental feature) in the journal.
    expect(log.split('\n').filter((l) => l !== '' && !/^\d{4}-\d\d-\d\dT[\d:.]+Z (debug|info|warn|error) [a-z_]+\.[a-z_]+ /.test(l))).to.deep.equal([]);
  });

  it('brings the tunnel back on its port after an upgrade (stop, reinstall, start)', async () => {
    const port = await tunnel();
    const ganesha = await Ganesha.get();
    const src = join(root, 'root/before-upgrade.bin');
    writeFileSync(src, Buffer.alloc(4 << 20, 'written-before-the-upgrade'));
    await nfsCp(src, ganesha.v3Url('before-upgrade.bin', port));
    // Without systemd in the root, do by hand what the unit and postinst do: stop, upgrade, start.
    await stopDaemon();
    const r = await run('chroot', [root, 'dpkg', '-i', '/tmp/efs-relay.deb'], { timeoutMs: 120_000 });
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    await startDaemon('the daemon after the upgrade');
    const list = JSON.parse((await run('chroot', [root, 'efsctl', 'list', '--json'])).stdout) as { tunnels: Array<{ fs_id: string; port: number; state: string }> };
    expect(list.tunnels.map((t) => [t.fs_id, t.port, t.state])).to.deep.equal([[FS_ID, port, 'listening']]);
    expect((await nfsCatSha256(ganesha.v4Url('before-upgrade.bin', port))).sha256).to.equal(await sha256File(src));
  });

  it('starts as the unit does: ExecStartPost returns only once the daemon answers with every tunnel listening', async () => {
    const port = await tunnel();
    await stopDaemon();
    const unit = readFileSync(join(root, 'lib/systemd/system/efs-relayd.service'), 'utf8');
    // The unit's own command lines, with the test's config in place of the installed one (Amazon's CAs, default ports).
    const command = (key: string): string[] => {
      const line = unit.split('\n').find((l) => l.startsWith(`${key}=`));
      expect(line, key).to.be.a('string');
      expect(line, `${key} names the installed config`).to.contain('--config /etc/efs-relay/config.yaml');
      return line!.slice(key.length + 1).replace('/etc/efs-relay/config.yaml', '/root/test.yaml').split(' ');
    };
    const post = spawn('chroot', [root, ...command('ExecStartPost')], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    post.stdout.on('data', (d: Buffer) => (out += d.toString()));
    post.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const done = new Promise<number | null>((r) => post.on('exit', r));
    await waitFor('ExecStartPost waiting for the daemon', () => err.includes('waiting up to'));
    expect(post.exitCode, 'no daemon yet: still waiting').to.equal(null);
    await startDaemon('the daemon started by the unit\'s ExecStart', command('ExecStart'));
    expect(await done, err).to.equal(0);
    expect(out).to.match(new RegExp(`^efsctl ${escapeRegExp(VERSION)}\nefs-relayd ${escapeRegExp(VERSION)} \\(pid \\d+`));
    // What a mount ordered after the unit finds: its tunnel, listening on its port.
    const list = JSON.parse((await run('chroot', [root, 'efsctl', '--config', '/root/test.yaml', 'list', '--json'])).stdout) as { tunnels: Array<{ fs_id: string; port: number; state: string }> };
    expect(list.tunnels.map((t) => [t.fs_id, t.port, t.state])).to.deep.equal([[FS_ID, port, 'listening']]);
    await openClient(port).then((s) => s.destroy());
  });

  it('purges to nothing but what was there before', async () => {
    await install();
    await stopDaemon();
    if (procMounted) {
      await run('umount', ['-l', join(root, 'proc')]);
      procMounted = false;
    }
    const r = await run('chroot', [root, 'dpkg', '--purge', 'efs-relay'], { timeoutMs: 120_000 });
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    await sleep(100);
    for (const p of ['etc/efs-relay', 'usr/sbin/efs-relayd', 'usr/bin/efsctl', 'sbin/mount.efs', 'run/efs-relay']) {
      expect(existsSync(join(root, p)), p).to.equal(false);
    }
    expect(await tree(root)).to.deep.equal(treeBefore);
  });
});
