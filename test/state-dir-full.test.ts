// A full state directory (/run is a small tmpfs), or a read-only one: the daemon cannot write
// tunnel records, and must say so without dropping a single tunnel. The
// state dir here is a real tmpfs of 256 KiB, filled to the last block.
import { expect } from 'chai';
import { closeSync, existsSync, mkdirSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon, run, skipIf, tempDir, waitFor, sleep } from './helpers/daemon.js';
import { openClient } from './helpers/client.js';
import { FS_ID, daemonConfig, testCerts } from './helpers/fixtures.js';
import { MountTargetStandIn } from './helpers/mount-target.js';
import type { DoctorReport } from '../cli/doctor.js';
import type { TunnelView } from '../daemon/tunnels.js';

describe('a full or read-only state directory', function () {
  let small: string;
  let target: MountTargetStandIn;
  let daemon: Daemon;
  const filler = (): string => join(small, 'filler');

  before(async function () {
    small = tempDir('small-state');
    const r = await run('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', small]);
    if (r.code !== 0) small = ''; // nothing mounted: nothing for after() to unmount
    skipIf(this, r.code === 0 ? null : `cannot mount a small tmpfs to fill (${r.stderr.trim() || `mount exited ${r.code}`}); needs root with CAP_SYS_ADMIN`);
    target = await new MountTargetStandIn({ host: '127.0.0.44', port: 2049, cert: testCerts().good, backend: 'echo' }).start();
    daemon = await new Daemon(daemonConfig(21600, {
      state_dir: join(small, 'state'),
      mount: { unmount_reads: 1, unmount_grace: 0 },
    })).start();
  });
  after(async () => {
    await daemon?.stop();
    await target?.stop();
    if (small) await run('umount', [small]);
  });

  // A failed test must not leave the next one a full or read-only state dir.
  afterEach(async () => {
    if (!small) return;
    await remount('rw');
    rmSync(filler(), { force: true });
  });

  async function remount(mode: 'ro' | 'rw'): Promise<void> {
    const r = await run('mount', ['-o', `remount,${mode}`, small]);
    if (r.code !== 0) throw new Error(`mount -o remount,${mode} ${small}: ${r.stderr}`);
  }

  function fill(): void {
    const fd = openSync(filler(), 'w');
    try {
      for (;;) writeSync(fd, Buffer.alloc(4096));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
    } finally {
      closeSync(fd);
    }
  }

  it('keeps every tunnel and connection, says once what it could not record, and catches up once there is space', async () => {
    const dir = join(daemon.dir, 'mnt', 'a');
    mkdirSync(dir, { recursive: true });
    expect((await daemon.efsctl('attach', FS_ID, dir, '-o', 'mounttargetip=127.0.0.44,region=us-east-1')).code).to.equal(0);
    const port = (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels[0]!.port;
    const sock = await openClient(port);
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString()));
    sock.write('before-');
    await waitFor('an echo through the tunnel', () => got === 'before-');

    fill();
    // A plain umount: the daemon would forget the mount and stop the tunnel, but cannot write the record.
    daemon.mount.removeMount(dir);
    await waitFor('the failure in the log', () => daemon.logs.includes('mounts.update_failed'));
    await sleep(1_000); // ten more reads of the mount list, each trying again
    expect(daemon.exitCode, 'the daemon still runs').to.equal(null);
    const lines = daemon.logs.split('\n').filter((l) => l.includes('mounts.update_failed'));
    expect(lines, 'logged once while it lasts').to.have.length(1);
    expect(lines[0]).to.match(new RegExp(`warn mounts\\.update_failed fs=${FS_ID} code=STATE_WRITE_FAILED msg="forgetting the mount at ${dir} failed: Cannot write ${join(small, 'state', `${FS_ID}.json`)}: ENOSPC: no space left on device`));
    expect(lines[0]).to.contain('the tunnel keeps running, and this is tried again at every read of');
    sock.write('during');
    await waitFor('the open connection still relays', () => got === 'before-during');
    // The watcher tries again every 0.1 s, and an attempt has its temp file until the write fails: one may be in
    // flight at any read of the directory, but none stays behind.
    await waitFor('no temp file left behind', () => readdirSync(join(small, 'state')).every((f) => !f.includes('.tmp-')));
    expect((JSON.parse(readFileSync(join(small, 'state', `${FS_ID}.json`), 'utf8')) as { mounts: string[] }).mounts).to.deep.equal([dir]);

    // doctor says where the space went.
    const doctor = JSON.parse((await daemon.efsctl('--config', daemon.configFile, 'doctor', '--json')).stdout) as DoctorReport;
    expect(doctor.checks.find((c) => c.name === 'state_dir')).to.deep.equal({
      name: 'state_dir',
      status: 'warn',
      message: `${join(small, 'state')}: 0.0 MiB free of 0.3 MiB: new tunnels and mount changes cannot be recorded once it is full (STATE_WRITE_FAILED)`,
      fix: 'Free space on that file system (`df -h` of it; /run is a small tmpfs). Running tunnels are not affected.',
    });

    // A request over the control socket gets the same code, with what to do.
    const add = await daemon.efsctl('add', 'fs-0d0c0003', '-o', 'mounttargetip=127.0.0.44,region=us-east-1');
    expect(add.code, add.stderr).to.equal(1);
    expect(add.stderr).to.match(/^efsctl: Cannot write \S+\/fs-0d0c0003\.json: ENOSPC: no space left on device, write \[STATE_WRITE_FAILED\]\nefsctl: Free space in the state directory's file system \(\/run is a small tmpfs: `df -h \/run`\)/);
    expect((await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.map((t) => t.fs_id), 'no half-made tunnel').to.deep.equal([FS_ID]);

    rmSync(filler());
    sock.destroy();
    await waitFor('the unmount recorded', () => daemon.logs.includes(`tunnel.unmounted fs=${FS_ID}`));
    await waitFor('the unused tunnel stopped', async () => (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.length === 0);
    expect(existsSync(join(small, 'state', `${FS_ID}.json`))).to.equal(false);
    expect(daemon.exitCode).to.equal(null);
  });

  it('reports an attach that mounted but could not be recorded as done, keeps its tunnel, and records the mount once there is space', async () => {
    const [a, b] = ['a2', 'b2'].map((d) => join(daemon.dir, 'mnt', d)) as [string, string];
    for (const d of [a, b]) mkdirSync(d, { recursive: true });
    expect((await daemon.efsctl('attach', FS_ID, a, '-o', 'mounttargetip=127.0.0.44,region=us-east-1')).code).to.equal(0);
    fill();
    const r = await daemon.efsctl('attach', FS_ID, b, '-o', 'mounttargetip=127.0.0.44,region=us-east-1');
    expect(r.code, r.stderr).to.equal(0);
    expect(daemon.mount.mounts().map((l) => l.split(' ')[1])).to.deep.equal([a, b]);
    expect(daemon.logs).to.match(new RegExp(`warn mounts\\.update_failed fs=${FS_ID} code=STATE_WRITE_FAILED msg="mounted at ${b}, but not recorded yet: Cannot write `));
    const record = (): string[] => (JSON.parse(readFileSync(join(small, 'state', `${FS_ID}.json`), 'utf8')) as { mounts: string[] }).mounts;
    expect(record()).to.deep.equal([a]);
    await sleep(500); // several reads of the mount list: the tunnel stays, whatever the record says
    expect((await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.map((t) => t.fs_id)).to.deep.equal([FS_ID]);
    rmSync(filler());
    await waitFor('the mount recorded from /proc/mounts', () => record().length === 2);
    expect(record()).to.deep.equal([a, b]);
    expect(daemon.exitCode).to.equal(null);
  });

  it('reports a detach that unmounted but could not record it as done, and forgets the mount once there is space', async () => {
    const dir = join(daemon.dir, 'mnt', 'd3');
    mkdirSync(dir, { recursive: true });
    const fs = 'fs-0d0c0005';
    expect((await daemon.efsctl('attach', fs, dir, '-o', 'mounttargetip=127.0.0.44,region=us-east-1')).code).to.equal(0);
    fill();
    const r = await daemon.efsctl('detach', dir, '--json');
    expect(r.code, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal({ dir, fs_id: fs, tunnel_stopped: false });
    expect(daemon.mount.mounts().some((l) => l.split(' ')[1] === dir), 'unmounted').to.equal(false);
    expect(daemon.logs).to.match(new RegExp(`warn mounts\\.update_failed fs=${fs} code=STATE_WRITE_FAILED msg="unmounted ${dir}, but not recorded yet: Cannot write `));
    const record = (): string[] => (JSON.parse(readFileSync(join(small, 'state', `${fs}.json`), 'utf8')) as { mounts: string[] }).mounts;
    expect(record()).to.deep.equal([dir]);
    rmSync(filler());
    await waitFor('the tunnel stopped once the unmount is recorded', async () => !(await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.some((t) => t.fs_id === fs));
    expect(existsSync(join(small, 'state', `${fs}.json`))).to.equal(false);
  });

  it('keeps the tunnel that an attach made when the state dir filled before its mount could be recorded', async () => {
    const dir = join(daemon.dir, 'mnt', 'e');
    mkdirSync(dir, { recursive: true });
    const fs = 'fs-0d0c0006';
    // The mount command itself fills the state dir: the tunnel's record is written, the mount's cannot be.
    daemon.mount.behave('mount', { fillFile: filler() });
    const r = await daemon.efsctl('attach', fs, dir, '-o', 'mounttargetip=127.0.0.44,region=us-east-1');
    daemon.mount.behave('mount', {});
    expect(r.code, r.stderr).to.equal(0);
    expect(daemon.logs).to.match(new RegExp(`warn mounts\\.update_failed fs=${fs} code=STATE_WRITE_FAILED msg="mounted at ${dir}, but not recorded yet`));
    await sleep(500); // several reads of the mount list
    const tunnel = (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((t) => t.fs_id === fs);
    expect(tunnel, 'the new tunnel stays').to.not.equal(undefined);
    expect(daemon.mount.mounts().find((l) => l.split(' ')[1] === dir)).to.contain(`port=${tunnel!.port}`);
    rmSync(filler());
    await waitFor('the mount recorded', async () => (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((t) => t.fs_id === fs)?.mounts.includes(dir));
    expect((await daemon.efsctl('detach', dir)).code).to.equal(0);
  });

  it('refuses to stop a tunnel that a mount uses while its record cannot say so yet', async () => {
    const fs = 'fs-0d0c0004';
    const port = (await daemon.efsctlJson<{ tunnel: TunnelView }>('add', fs, '-o', 'mounttargetip=127.0.0.44,region=us-east-1')).tunnel.port;
    fill();
    // Mounted by hand through the tunnel's port: the daemon cannot record it while the state dir is full.
    daemon.mount.addMountLine(`127.0.0.1:/ /mnt/byhand nfs4 rw,vers=4.1,port=${port},addr=127.0.0.1 0 0`);
    await waitFor('the failed recording in the log', () => daemon.logs.includes('msg="recording the mount at /mnt/byhand failed'));
    const stop = await daemon.efsctl('stop', fs);
    expect(stop.code).to.equal(1);
    expect(stop.stderr).to.contain(`a mount in ${daemon.mount.procMounts} goes through ${fs}'s port ${port} (not in its record yet); refusing to stop its tunnel [TUNNEL_MOUNTED]`);
    expect((await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.map((t) => t.fs_id)).to.include(fs);
    rmSync(filler());
    await waitFor('the mount recorded', async () => (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((t) => t.fs_id === fs)?.mounts.includes('/mnt/byhand'));
    expect((await daemon.efsctl('stop', fs)).stderr).to.contain(`${fs} is mounted at /mnt/byhand; refusing to stop its tunnel [TUNNEL_MOUNTED]`);
    expect((await daemon.efsctl('stop', fs, '--force')).code).to.equal(0);
  });

  it('refuses to stop a tunnel whose record cannot be removed (read-only state dir), and the tunnel keeps relaying', async () => {
    const port = (await daemon.efsctlJson<{ tunnel: TunnelView }>('add', FS_ID, '-o', 'mounttargetip=127.0.0.44,region=us-east-1')).tunnel.port;
    const sock = await openClient(port);
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString()));
    await remount('ro');
    const doctor = JSON.parse((await daemon.efsctl('--config', daemon.configFile, 'doctor', '--json')).stdout) as DoctorReport;
    expect(doctor.checks.find((c) => c.name === 'state_dir')).to.deep.equal({
      name: 'state_dir',
      status: 'fail',
      message: `${join(small, 'state')}: read-only file system: no tunnel can be added or stopped, and no mount change recorded (STATE_WRITE_FAILED)`,
      fix: 'Remount that file system read-write (`findmnt -T` of the state dir shows which). Running tunnels are not affected.',
    });
    const stop = await daemon.efsctl('stop', FS_ID, '--force');
    expect(stop.code).to.equal(1);
    expect(stop.stderr).to.match(new RegExp(`^efsctl: Cannot remove ${join(small, 'state', `${FS_ID}.json`)}: EROFS: read-only file system.* \\[STATE_WRITE_FAILED\\]\nefsctl: .*a file system mounted read-only`));
    sock.write('still');
    await waitFor('the connection still relays', () => got === 'still');
    expect((await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((t) => t.fs_id === FS_ID)?.port).to.equal(port);
    await remount('rw');
    sock.destroy();
    expect(existsSync(join(small, 'state', `${FS_ID}.json`)), 'the record stays with its tunnel').to.equal(true);
  });

  it('keeps a tunnel whose fstab line went while its record cannot be removed, and says how to stop it', async () => {
    const fs = 'fs-0d0c0008';
    writeFileSync(daemon.fstab, `${fs} /mnt/f8 efs _netdev,tls,mounttargetip=127.0.0.44,region=us-east-1 0 0\n`);
    await waitFor('the fstab tunnel', async () => (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.some((t) => t.fs_id === fs));
    await remount('ro');
    writeFileSync(daemon.fstab, '# the line is gone\n');
    await waitFor('the failed stop in the log', () => daemon.logs.includes(`tunnel.stop_failed fs=${fs}`));
    const line = daemon.logs.split('\n').find((l) => l.includes('tunnel.stop_failed')) ?? '';
    expect(line).to.match(new RegExp(`warn tunnel\\.stop_failed fs=${fs} code=STATE_WRITE_FAILED msg="nothing uses ${fs}'s tunnel any more, but it keeps running: Cannot remove ${join(small, 'state', `${fs}.json`)}: EROFS: read-only file system`));
    expect(line).to.contain(`; \`efsctl stop ${fs}\` stops it once the state dir can be written"`);
    expect(daemon.logs).to.not.contain('fstab.apply_failed');
    const t = (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((x) => x.fs_id === fs);
    expect(t?.state, 'still listening').to.equal('listening');
    await remount('rw');
    expect((await daemon.efsctl('stop', fs)).code).to.equal(0);
  });
});
