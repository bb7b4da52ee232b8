// mount.efs as util-linux runs it: `mount.efs SPEC DIR -o OPTS`.
import { expect } from 'chai';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { spawn } from 'node:child_process';
import { BIN, Daemon, run, skipIf, tempDir, waitFor } from './helpers/daemon.js';
import { FS_ID, daemonConfig } from './helpers/fixtures.js';
import type { TunnelView } from '../daemon/tunnels.js';

describe('mount.efs', function () {
  let daemon: Daemon;
  let env: NodeJS.ProcessEnv;
  const mountEfs = (...args: string[]) => run(join(BIN, 'mount.efs'), args, { env });
  const dir = (name: string): string => {
    const d = join(daemon.dir, 'mnt', name);
    mkdirSync(d, { recursive: true });
    return d;
  };

  before(async function () {
    skipIf(this, process.getuid?.() === 0 ? null : 'mount.efs refuses non-root callers; run the tests as root');
    daemon = await new Daemon(daemonConfig(20800)).start();
    env = { ...process.env, EFS_RELAY_CONFIG: daemon.configFile };
    delete env.AWS_REGION;
    delete env.AWS_DEFAULT_REGION;
  });
  after(async () => {
    await daemon?.stop();
  });

  it('mounts through a tunnel, like an fstab line "fs-id /mnt efs _netdev,tls 0 0"', async () => {
    const d = dir('fstab-style');
    const r = await mountEfs(FS_ID, d, '-o', 'rw,_netdev,tls,region=us-east-1,mounttargetip=127.0.0.16');
    expect(r.code, r.stderr).to.equal(0);
    const list = await daemon.efsctlJson<{ tunnels: Array<{ fs_id: string; port: number; mounts: string[] }> }>('list');
    const t = list.tunnels.find((x) => x.fs_id === FS_ID)!;
    expect(t.mounts).to.deep.equal([d]);
    expect(daemon.mount.calls().at(-1)!.argv).to.deep.equal([
      daemon.mount.mountCommand, '127.0.0.1:/', d, '-o',
      `nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,port=${t.port},rw,_netdev`,
    ]);
  });

  it('with -f checks everything and prints the command, but mounts nothing and makes no tunnel', async () => {
    const calls = daemon.mount.calls().length;
    const r = await mountEfs('-f', 'fs-0ffff000', dir('fake'), '-o', 'tls,region=us-east-1');
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.equal(
      `would run: ${daemon.mount.mountCommand} 127.0.0.1:/ ${join(daemon.dir, 'mnt', 'fake')} -o nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,port=<tunnel port>\n`,
    );
    expect(daemon.mount.calls().length).to.equal(calls);
    expect((await daemon.efsctl('status', 'fs-0ffff000')).code).to.equal(1);
  });

  it('with -v prints the command it ran and the tunnel', async () => {
    const r = await mountEfs('-v', 'fs-0ffff001', dir('verbose'), '-o', 'tls,region=us-east-1,mounttargetip=127.0.0.17');
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/^ran: \S+ 127\.0\.0\.1:\/ \S+ -o nfsvers=4\.1,\S+,port=\d+\ntunnel: 127\.0\.0\.1:\d+ → 127\.0\.0\.17:2049 \(certificate must name fs-0ffff001\.efs\.us-east-1\.amazonaws\.com\)\n$/);
  });

  it('refuses a non-root caller with exit 1', async () => {
    const r = await new Promise<{ code: number; stderr: string }>((resolve) => {
      import('node:child_process').then(({ execFile }) => {
        execFile(join(BIN, 'mount.efs'), [FS_ID, '/mnt'], { uid: 65534, gid: 65534, env }, (err, _out, stderr) => {
          resolve({ code: (err as { code?: number } | null)?.code ?? 0, stderr });
        });
      });
    });
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('only root can mount file systems with mount.efs [NOT_ROOT]');
  });

  it('says how to start the daemon and exits 32 when it is not running', async () => {
    const cfgDir = tempDir('mountefs');
    const cfg = join(cfgDir, 'config.yaml');
    writeFileSync(cfg, stringify({ state_dir: join(cfgDir, 'state'), mount: { network_check: '', daemon_wait: 1.5 } }));
    const r = await run(join(BIN, 'mount.efs'), [FS_ID, dir('nodaemon'), '-o', 'tls,region=us-east-1'], { env: { ...env, EFS_RELAY_CONFIG: cfg } });
    expect(r.code).to.equal(32);
    const sock = join(cfgDir, 'state', 'control.sock');
    expect(r.stderr.split('\n')[0]).to.equal(`mount.efs: Cannot reach efs-relayd at ${sock}: no socket there (is the daemon running?); waiting up to 1.5 s for it to start`);
    expect(r.stderr).to.contain('Cannot reach efs-relayd').and.contain('[DAEMON_UNREACHABLE]').and.contain('systemctl start efs-relayd');
  });

  it('waits for a daemon that is restarting, then mounts through its tunnel', async () => {
    const later = new Daemon(daemonConfig(21750, { mount: { daemon_wait: 30 } }));
    const target = dir('restarting');
    const child = spawn(join(BIN, 'mount.efs'), [FS_ID, target, '-o', 'tls,region=us-east-1,mounttargetip=127.0.0.19'], { env: { ...env, EFS_RELAY_CONFIG: later.configFile }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((r) => child.on('exit', r));
    try {
      await waitFor('mount.efs saying it waits', () => stderr.includes('waiting up to 30 s for it to start'));
      expect(child.exitCode, 'still waiting while no daemon runs').to.equal(null);
      await later.start();
      expect(await exited, stderr).to.equal(0);
      const port = (await later.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((t) => t.fs_id === FS_ID)?.port;
      expect(later.mount.mounts().find((l) => l.split(' ')[1] === target)).to.contain(`port=${port}`);
    } finally {
      child.kill();
      await later.stop();
    }
  });

  it('exits 0 with efs-utils\' message to add _netdev when the network is not up yet', async () => {
    const cfg = join(daemon.dir, 'netcheck.yaml');
    writeFileSync(cfg, stringify({ state_dir: daemon.stateDir, mount: { network_check: 'exit 3' } }));
    const calls = daemon.mount.calls().length;
    const r = await run(join(BIN, 'mount.efs'), [FS_ID, dir('early'), '-o', 'tls,region=us-east-1'], { env: { ...env, EFS_RELAY_CONFIG: cfg } });
    expect(r.code).to.equal(0);
    expect(r.stderr).to.contain(`Failed to mount ${FS_ID} because the network was not yet available, add "_netdev" to your mount options`);
    expect(daemon.mount.calls().length).to.equal(calls);
  });

  it('skips the network check for a _netdev mount', async () => {
    const cfg = join(daemon.dir, 'netcheck2.yaml');
    writeFileSync(cfg, stringify({ state_dir: daemon.stateDir, mount: { network_check: 'exit 3' } }));
    const r = await run(join(BIN, 'mount.efs'), ['fs-0ffff002', dir('netdev'), '-o', '_netdev,tls,region=us-east-1'], { env: { ...env, EFS_RELAY_CONFIG: cfg } });
    expect(r.code, r.stderr).to.equal(0);
  });

  it('rejects bad options with efs-utils\' message and exit 1', async () => {
    const r = await mountEfs(FS_ID, dir('bad'), '-o', 'tls,port=2049');
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('The "port" and "tls" options are mutually exclusive [BAD_OPTION]');
    const id = await mountEfs('fs-nothex', dir('bad'), '-o', 'tls');
    expect(id.code).to.equal(1);
    expect(id.stderr).to.contain('Invalid file system name: fs-nothex [BAD_FS_ID]');
  });

  it('exits 32 with the mount command\'s own message when the mount fails', async () => {
    daemon.mount.behave('mount', { fail: 1, code: 32, message: 'mount.nfs4: access denied by server' });
    const r = await mountEfs('fs-0ffff003', dir('denied'), '-o', 'tls,region=us-east-1');
    expect(r.code).to.equal(32);
    expect(r.stderr).to.contain('mount.nfs4: access denied by server [MOUNT_FAILED]');
  });

  it('prints usage for -h, its version for --version, and exits 1 on a missing DIR', async () => {
    expect((await mountEfs('-h')).stdout).to.contain('Usage: mount.efs SPEC DIR');
    expect((await mountEfs('--version')).stdout).to.equal('mount.efs 0.1.0\n');
    const r = await mountEfs(FS_ID);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('expected SPEC and DIR, got 1 argument [USAGE]');
  });
});
