// efsctl takeover: a mount that an efs-utils stunnel serves (a real stunnel,
// configured as efs-utils writes it) moves onto an efs-relay tunnel on the
// same port without being unmounted, and NFS traffic through that port
// carries on through efs-relay to a real ganesha.
import { expect } from 'chai';
import { execFileSync, spawn } from 'node:child_process';
import { chmodSync, copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { startStunnelClient, waitPort, type Proc } from './bench/paths.js';
import { Daemon, run, skipIf, tempDir, waitFor } from './helpers/daemon.js';
import { expectPortFree } from './helpers/client.js';
import { FS_ID, daemonConfig, testCerts } from './helpers/fixtures.js';
import { MountTargetStandIn } from './helpers/mount-target.js';
import { InstanceMetadataStandIn } from './helpers/instance-metadata.js';
import { Ganesha, nfsCatSha256, requireNfs, sha256File } from './helpers/nfs.js';
import type { TakeoverAllResult, TakeoverResult } from '../cli/takeover.js';
import type { DoctorReport } from '../cli/doctor.js';
import type { TunnelDetail, TunnelView } from '../daemon/tunnels.js';
import { processes } from '../cli/processes.js';
import { efsUtilsStateFile } from '../daemon/efs-utils-configs.js';

const TARGET = '127.0.0.62';
const FS_NAME = `${FS_ID}.efs.us-east-1.amazonaws.com`;
const PORT = 20360;

function exited(p: Proc): Promise<void> {
  return p.child.exitCode !== null || p.child.signalCode !== null ? Promise.resolve() : new Promise((r) => p.child.once('exit', () => r()));
}

/** Stunnels started again by a takeover that was undone run detached from the test: found by their config file. */
async function killStunnelsOf(config: string): Promise<void> {
  for await (const p of processes()) if (p.argv.includes(config) && p.argv[0]?.includes('stunnel')) process.kill(p.pid, 'SIGKILL');
}

describe('efsctl takeover', function () {
  let ganesha: Ganesha;
  let target: MountTargetStandIn;
  before(async function () {
    requireNfs(this);
    ganesha = await Ganesha.get();
    target = await new MountTargetStandIn({ host: TARGET, port: 2049, cert: testCerts().good, backend: { host: '127.0.0.1', port: ganesha.nfsPort } }).start();
    writeFileSync(join(ganesha.exportPath, 'takeover.bin'), Buffer.alloc(3 << 20, 7));
  });
  after(async () => {
    await target?.stop();
  });

  /**
   * A daemon, and an efs-utils stunnel on PORT carrying a mount at DIR (the mount command's stand-in lists it). The
   * stunnel connects to TARGET, or to `connect`.
   */
  async function withStunnelMount(
    config: Record<string, unknown>, fn: (d: { daemon: Daemon; stunnel: Proc; dir: string }) => Promise<void>, connect = TARGET, service: (dir: string) => string[] = () => [],
  ): Promise<void> {
    const daemon = await new Daemon(daemonConfig(20350, config)).start();
    const stunnel = await startStunnelClient(daemon.dir, { ca: testCerts().ca, server: testCerts().good }, 'efs-utils', PORT, connect, FS_ID, undefined, service(daemon.dir));
    const dir = join(daemon.dir, 'mnt', 'efs');
    daemon.mount.addMountLine(`127.0.0.1:/ ${dir} nfs4 rw,vers=4.1,rsize=1048576,wsize=1048576,hard,port=${PORT},addr=127.0.0.1 0 0`);
    try {
      await fn({ daemon, stunnel, dir });
    } finally {
      await stunnel.stop();
      await killStunnelsOf(join(daemon.dir, 'efs-utils.conf'));
      await daemon.stop();
    }
  }

  it('moves a mount from its stunnel onto a tunnel on the same port without unmounting it, and NFS reads go on through efs-relay', async () => {
    await withStunnelMount({}, async ({ daemon, stunnel, dir }) => {
      const want = await sha256File(join(ganesha.exportPath, 'takeover.bin'));
      expect((await nfsCatSha256(ganesha.v4Url('takeover.bin', PORT))).sha256, 'read through the stunnel').to.equal(want);

      const r = await daemon.efsctl('--config', daemon.configFile, 'takeover', dir, '--json');
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stderr).to.equal(`efsctl: ${dir}: stopping stunnel pid ${stunnel.pid} (${join(daemon.dir, 'efs-utils.conf')}); efs-relay takes 127.0.0.1:${PORT} over with -o region=us-east-1,tlsport=${PORT},mounttargetip=${TARGET}\n`);
      const res = JSON.parse(r.stdout) as TakeoverResult;
      expect(res).to.deep.include({ dir, fs_id: FS_ID, port: PORT, already: false, stunnel: { pid: stunnel.pid, program: 'stunnel', config: join(daemon.dir, 'efs-utils.conf') } });
      expect(res.tunnel).to.deep.include({ fs_id: FS_ID, port: PORT, target: { dns_name: FS_NAME, cert_name: FS_NAME, address: TARGET, port: 2049, region: 'us-east-1' } });
      await exited(stunnel);
      expect(daemon.mount.mounts(), 'the mount is untouched').to.deep.equal([`127.0.0.1:/ ${dir} nfs4 rw,vers=4.1,rsize=1048576,wsize=1048576,hard,port=${PORT},addr=127.0.0.1 0 0`]);

      expect((await nfsCatSha256(ganesha.v4Url('takeover.bin', PORT))).sha256, 'read through efs-relay').to.equal(want);
      expect((await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).connections.ok).to.be.at.least(1);
      // The mount watcher records the mount in the tunnel, which then lives as long as the mount.
      await waitFor('the mount in the tunnel\'s record', async () =>
        (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.find((t) => t.fs_id === FS_ID)?.mounts.includes(dir) === true, 3_000);

      const again = await daemon.efsctl('--config', daemon.configFile, 'takeover', dir);
      expect(again.code).to.equal(0);
      expect(again.stdout).to.equal(`${dir} already goes through efs-relay: the tunnel of ${FS_ID} on 127.0.0.1:${PORT} → ${TARGET}:2049 (TLS; its certificate must name ${FS_NAME})\n`);
    });
  });

  it('refuses, leaving the stunnel serving the mount, while the efs-utils watchdog runs, or when the file system has a tunnel in use to another mount target, or one that asks OCSP responders where the stunnel does not', async () => {
    await withStunnelMount({}, async ({ daemon, stunnel, dir }) => {
      const bin = tempDir('watchdog');
      // As the real one runs (python3 /usr/bin/amazon-efs-mount-watchdog): its name is an argument of an interpreter.
      writeFileSync(join(bin, 'amazon-efs-mount-watchdog'), '#!/bin/sh\nsleep 600\n');
      chmodSync(join(bin, 'amazon-efs-mount-watchdog'), 0o755);
      const watchdog = spawn(join(bin, 'amazon-efs-mount-watchdog'), [], { stdio: 'ignore' });
      try {
        await waitFor('the watchdog stand-in', async () => {
          for await (const p of processes()) if (p.argv.some((a) => a.endsWith('/amazon-efs-mount-watchdog'))) return true;
          return false;
        }, 3_000);
        const r = await daemon.efsctl('--config', daemon.configFile, 'takeover', dir);
        expect(r.code).to.equal(1);
        expect(r.stderr).to.match(new RegExp(`^efsctl: the efs-utils watchdog \\(amazon-efs-mount-watchdog, pid \\d+\\) runs, and would start the stunnel again on port ${PORT} \\[TAKEOVER_UNSAFE\\]\\nefsctl: Nothing was changed\\. Stop it first`));
      } finally {
        watchdog.kill('SIGKILL');
        await run('pkill', ['-KILL', '-f', join(bin, 'amazon-efs-mount-watchdog')]);
      }
      expect(stunnel.child.exitCode, 'the stunnel still runs').to.equal(null);

      // A tunnel of the same file system that a mount uses, to another mount target than the stunnel's, can neither
      // move to the stunnel's port nor take it as an extra port.
      expect((await daemon.efsctl('add', FS_ID, '-o', 'region=us-east-1,mounttargetip=127.0.0.61')).code).to.equal(0);
      const other = (await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).port;
      const second = join(daemon.dir, 'mnt', 'second');
      daemon.mount.addMountLine(`127.0.0.1:/ ${second} nfs4 rw,vers=4.1,port=${other},addr=127.0.0.1 0 0`);
      // At once: the mount counts from /proc/mounts, before the daemon has recorded it.
      const r = await daemon.efsctl('--config', daemon.configFile, 'takeover', dir);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.contain(`efsctl: ${FS_ID} already has an efs-relay tunnel on port ${other} (mounted at ${second}) that connects to 127.0.0.61 (certificate name ${FS_NAME}), where the stunnel connects to ${TARGET} (${FS_NAME}); a file system has one tunnel, so ${dir}, which goes through port ${PORT}, can only move to it by a remount [TAKEOVER_UNSAFE]\n`);
      expect((await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).extra_ports, 'nothing was changed').to.deep.equal([]);
      expect(stunnel.child.exitCode, 'the stunnel still runs').to.equal(null);

      // Nor can one to the same mount target that asks OCSP responders where the stunnel does not.
      expect((await daemon.efsctl('stop', FS_ID, '--force')).code).to.equal(0);
      expect((await daemon.efsctl('add', FS_ID, '-o', `region=us-east-1,mounttargetip=${TARGET},ocsp`)).code).to.equal(0);
      const ocspPort = (await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).port;
      // The mount that named the stopped tunnel's port uses the new one too when it has that port again.
      if (ocspPort !== other) daemon.mount.addMountLine(`127.0.0.1:/ ${join(daemon.dir, 'mnt', 'third')} nfs4 rw,vers=4.1,port=${ocspPort},addr=127.0.0.1 0 0`);
      const o = await daemon.efsctl('--config', daemon.configFile, 'takeover', dir);
      expect(o.code).to.equal(1);
      expect(o.stderr).to.contain(`efsctl: ${FS_ID} already has an efs-relay tunnel on port ${ocspPort} (mounted at `);
      expect(o.stderr).to.contain(`) that asks OCSP responders (ocsp), where the stunnel does not; a file system has one tunnel, so ${dir}, which goes through port ${PORT}, can only move to it by a remount [TAKEOVER_UNSAFE]\n`);
      expect(stunnel.child.exitCode, 'the stunnel still runs').to.equal(null);
      expect((await nfsCatSha256(ganesha.v4Url('takeover.bin', PORT))).bytes, 'the mount\'s port still carries NFS').to.be.greaterThan(0);
    });
  });

  it('moves the tunnel the daemon made for the file system\'s fstab line, which nothing uses yet, to the mount\'s port', async () => {
    await withStunnelMount({}, async ({ daemon, stunnel, dir }) => {
      writeFileSync(daemon.fstab, `${FS_ID} ${dir} efs _netdev,tls,region=us-east-1,mounttargetip=${TARGET} 0 0\n`);
      await waitFor('the fstab line\'s tunnel', async () => (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels.length === 1, 3_000);
      const before = (await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).port;
      expect(before).to.not.equal(PORT);
      const r = await daemon.efsctl('--config', daemon.configFile, 'takeover', dir);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stderr).to.equal(`efsctl: ${dir}: ${FS_ID}'s tunnel on port ${before}, which nothing uses, moves to port ${PORT}\n` +
        `efsctl: ${dir}: stopping stunnel pid ${stunnel.pid} (${join(daemon.dir, 'efs-utils.conf')}); efs-relay takes 127.0.0.1:${PORT} over with -o region=us-east-1,tlsport=${PORT},mounttargetip=${TARGET}\n`);
      await exited(stunnel);
      const tunnels = (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels;
      expect(tunnels.map((t) => [t.fs_id, t.port])).to.deep.equal([[FS_ID, PORT]]);
      expect((await nfsCatSha256(ganesha.v4Url('takeover.bin', PORT))).bytes, 'read through efs-relay').to.equal(3 << 20);
    });
  });

  it('--all takes over every mount through a local port, printing each as it goes, and exits 1 naming those it could not move', async () => {
    await withStunnelMount({}, async ({ daemon, stunnel, dir }) => {
      // A second efs-utils mount of the same file system (its own stunnel), and a mount whose port nothing serves.
      const second = await startStunnelClient(daemon.dir, { ca: testCerts().ca, server: testCerts().good }, 'efs-utils-b', PORT + 1, TARGET, FS_ID);
      const b = join(daemon.dir, 'mnt', 'b');
      const c = join(daemon.dir, 'mnt', 'c');
      daemon.mount.addMountLine(`127.0.0.1:/ ${b} nfs4 rw,vers=4.1,port=${PORT + 1},addr=127.0.0.1 0 0`);
      daemon.mount.addMountLine(`127.0.0.1:/ ${c} nfs4 rw,vers=4.1,port=${PORT + 2},addr=127.0.0.1 0 0`);
      daemon.mount.addMountLine('10.0.0.9:/ /mnt/plain nfs4 rw,vers=4.1,addr=10.0.0.9 0 0');
      try {
        const r = await daemon.efsctl('--config', daemon.configFile, 'takeover', '--all');
        expect(r.code, r.stderr).to.equal(1);
        const tunnel = (on: string): string => `the tunnel of ${FS_ID} on ${on} → ${TARGET}:2049 (TLS; its certificate must name ${FS_NAME})`;
        expect(r.stdout.split('\n')).to.deep.equal([
          `${dir} moved from stunnel pid ${stunnel.pid} onto ${tunnel(`127.0.0.1:${PORT}`)}; the mount was not touched, and its NFS client reconnects through efs-relay`,
          `${b} moved from stunnel pid ${second.pid} onto ${tunnel(`127.0.0.1:${PORT + 1} (an extra port, beside its own ${PORT})`)}; the mount was not touched, and its NFS client reconnects through efs-relay`,
          `${c} not moved: ${c} goes through 127.0.0.1:${PORT + 2}, where nothing listens, and ${join(daemon.dir, 'efs-utils')} has no efs-utils config for it (stunnel-config.FS.${c.slice(1).replaceAll('/', '.')}.${PORT + 2}) [TAKEOVER_NOT_STUNNEL]`,
          '2 moved, 0 already through efs-relay, 1 not moved', '',
        ]);
        await exited(second);
        expect((await nfsCatSha256(ganesha.v4Url('takeover.bin', PORT))).bytes).to.equal(3 << 20);
        expect((await nfsCatSha256(ganesha.v4Url('takeover.bin', PORT + 1))).bytes).to.equal(3 << 20);

        const again = await daemon.efsctl('--config', daemon.configFile, 'takeover', '--all', '--json');
        expect(again.code).to.equal(1);
        const res = JSON.parse(again.stdout) as TakeoverAllResult;
        expect(res.moved.map((m) => [m.dir, m.already])).to.deep.equal([[dir, true], [b, true]]);
        expect(res.failed.map((f) => [f.dir, f.error.code])).to.deep.equal([[c, 'TAKEOVER_NOT_STUNNEL']]);
      } finally {
        await second.stop();
      }
      expect((await daemon.efsctl('takeover', '--all', dir)).code, 'DIR and --all').to.equal(2);
      expect((await daemon.efsctl('add', FS_ID, '--all')).stderr).to.contain('"add" does not take --all');
    });
  });

  it('moves a second efs-utils mount of a file system onto its tunnel as an extra port, which NFS goes through, a restart keeps, and which goes once no mount names it', async () => {
    await withStunnelMount({ mount: { unmount_reads: 2, unmount_grace: 1 } }, async ({ daemon, dir }) => {
      expect((await daemon.efsctl('--config', daemon.configFile, 'takeover', dir)).code).to.equal(0);
      await waitFor('the first mount in the tunnel\'s record', async () => (await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).mounts.includes(dir), 3_000);
      // efs-utils gave the second mount of the same file system its own stunnel and port.
      const second = await startStunnelClient(daemon.dir, { ca: testCerts().ca, server: testCerts().good }, 'efs-utils-b', PORT + 1, TARGET, FS_ID);
      const b = join(daemon.dir, 'mnt', 'b');
      daemon.mount.addMountLine(`127.0.0.1:/ ${b} nfs4 rw,vers=4.1,port=${PORT + 1},addr=127.0.0.1 0 0`);
      try {
        const r = await daemon.efsctl('--config', daemon.configFile, 'takeover', b);
        expect(r.code, r.stderr).to.equal(0);
        expect(r.stderr).to.equal(`efsctl: ${b}: ${FS_ID}'s tunnel on port ${PORT} takes port ${PORT + 1} too, as an extra port that goes once no mount names it\n` +
          `efsctl: ${b}: stopping stunnel pid ${second.pid} (${join(daemon.dir, 'efs-utils-b.conf')}); efs-relay takes 127.0.0.1:${PORT + 1} over with -o region=us-east-1,tlsport=${PORT + 1},mounttargetip=${TARGET}\n`);
        await exited(second);
      } finally {
        await second.stop();
      }
      const status = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
      expect(status).to.deep.include({ port: PORT, extra_ports: [PORT + 1] });
      expect(daemon.logs).to.contain(`info tunnel.port_added fs=${FS_ID} code=- msg="also listens on port ${PORT + 1}, for the mounts that name it; the port goes once no mount does" port=${PORT + 1}`);
      expect((await daemon.efsctl('list')).stdout).to.match(new RegExp(`${FS_ID}\\s+${PORT},${PORT + 1}\\s+${TARGET}:2049\\s+listening`));
      expect((await daemon.efsctl('status', FS_ID)).stdout).to.contain(`Extra ports:   ${PORT + 1} (for mounts made before that name them; each goes once no mount does)`);
      const want = await sha256File(join(ganesha.exportPath, 'takeover.bin'));
      const okBefore = status.connections.ok;
      expect((await nfsCatSha256(ganesha.v4Url('takeover.bin', PORT + 1))).sha256, 'read through the extra port').to.equal(want);
      expect((await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).connections.ok, 'through efs-relay').to.be.above(okBefore);
      await waitFor('both mounts in the record', async () => (await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).mounts.length === 2, 3_000);

      // The record keeps the extra port: a restarted daemon listens on it again.
      expect(daemon.record(FS_ID)).to.deep.include({ port: PORT, extra_ports: [PORT + 1] });
      await daemon.stop('SIGTERM');
      // Another process holds the extra port as the daemon starts: the tunnel says so, and takes the port once it is free.
      const squatter = createServer();
      await new Promise<void>((r) => squatter.listen(PORT + 1, '127.0.0.1', () => r()));
      try {
        await daemon.start();
        const waiting = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
        expect(waiting.state).to.equal('error');
        expect(waiting.last_error).to.include({ code: 'PORT_TAKEN', message: `Port ${PORT + 1} on 127.0.0.1 is already in use by another process` });
        expect((await daemon.efsctl('list')).stdout).to.match(new RegExp(`${FS_ID}\\s+${PORT},${PORT + 1}\\s+\\S+\\s+error\\s+PORT_TAKEN`));
        expect(daemon.logs).to.contain(`error tunnel.listen_failed fs=${FS_ID} code=PORT_TAKEN msg="Port ${PORT + 1} on 127.0.0.1 is already in use by another process; mounts that name port ${PORT + 1} wait, and it is tried again every 5 s" port=${PORT + 1}`);
      } finally {
        await new Promise<void>((r) => squatter.close(() => r()));
      }
      await waitFor('the extra port listening', async () => (await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).state === 'listening', 8_000);
      expect(daemon.logs).to.contain(`info tunnel.restored fs=${FS_ID} code=- port=${PORT} target=${TARGET}:2049 extra_ports=${PORT + 1}`);
      expect(daemon.logs).to.contain(`info tunnel.port_added fs=${FS_ID} code=- msg="listens on its extra port ${PORT + 1} again" port=${PORT + 1}`);
      expect((await nfsCatSha256(ganesha.v4Url('takeover.bin', PORT + 1))).sha256, 'read through the extra port after a restart').to.equal(want);

      // The second mount goes (a plain umount): once the mount watcher believes it, the port goes, and the tunnel stays for the first.
      daemon.mount.removeMount(b);
      await waitFor('the extra port released', async () => (await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).extra_ports.length === 0, 5_000);
      expect(daemon.logs).to.match(new RegExp(`info tunnel\\.port_released fs=${FS_ID} code=- msg="no mount names port ${PORT + 1}: gone from [^"]+ for \\d+ reads over \\d+ s" port=${PORT + 1}`));
      await expectPortFree(PORT + 1);
      const after = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
      expect(after).to.deep.include({ port: PORT, mounts: [dir], state: 'listening' });
      expect(daemon.record(FS_ID)).to.not.have.property('extra_ports');
      expect((await nfsCatSha256(ganesha.v4Url('takeover.bin', PORT))).sha256, 'the first mount still reads').to.equal(want);
    });
  });

  it('refuses a stunnel that runs as another user than root, or whose config another user can change: it could name any file system', async () => {
    await withStunnelMount({}, async ({ daemon, stunnel, dir }) => {
      const config = join(daemon.dir, 'efs-utils.conf');
      chmodSync(config, 0o666);
      try {
        const r = await daemon.efsctl('--config', daemon.configFile, 'takeover', dir);
        expect(r.code).to.equal(1);
        expect(r.stderr).to.contain(`efsctl: ${config} is writable by every user (mode 0666): a user other than root could have changed ${config}, so it cannot be trusted to name the file system and mount target of ${dir} [TAKEOVER_UNSAFE]\n`);
      } finally {
        chmodSync(config, 0o644);
      }
      expect(stunnel.child.exitCode, 'the stunnel still runs').to.equal(null);

      // A stunnel of user nobody, with its own copy of the config and the CA (which nobody can read there).
      const open = tempDir('nobody-stunnel');
      chmodSync(open, 0o755);
      copyFileSync(testCerts().ca.certFile, join(open, 'ca.pem'));
      const mine = join(open, 'stunnel.conf');
      writeFileSync(mine, readFileSync(config, 'utf8').replace(`accept = 127.0.0.1:${PORT}`, `accept = 127.0.0.1:${PORT + 3}`).replace(/^CAfile = .*$/m, `CAfile = ${join(open, 'ca.pem')}`));
      chmodSync(mine, 0o644);
      const nobody = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'stunnel', mine], { stdio: 'ignore' });
      try {
        await waitPort(PORT + 3);
        const other = join(daemon.dir, 'mnt', 'nobody');
        daemon.mount.addMountLine(`127.0.0.1:/ ${other} nfs4 rw,vers=4.1,port=${PORT + 3},addr=127.0.0.1 0 0`);
        const r = await daemon.efsctl('--config', daemon.configFile, 'takeover', other);
        expect(r.code).to.equal(1);
        expect(r.stderr).to.contain(`efsctl: stunnel pid ${nobody.pid} on port ${PORT + 3} runs as uid 65534, not as root as efs-utils runs it, so its config cannot be trusted to name the file system of ${other} [TAKEOVER_UNSAFE]\n`);
        expect(nobody.exitCode, 'that stunnel still runs').to.equal(null);
      } finally {
        nobody.kill('SIGKILL');
      }
    });
  });

  it('moves a crossaccount mount\'s stunnel only onto a crossaccount tunnel to the same zone ID: refused, leaving the stunnel serving, while instance metadata gives another', async () => {
    const imds = await new InstanceMetadataStandIn({ host: '127.0.0.50', mode: 'v2', region: 'us-east-1', azId: 'use1-az9' }).start();
    const zoneIdName = `use1-az2.${FS_NAME}`;
    try {
      await withStunnelMount({ efs: { metadata_url: imds.url } }, async ({ daemon, stunnel, dir }) => {
        const config = join(daemon.dir, 'efs-utils.conf');
        const r = await daemon.efsctl('--config', daemon.configFile, 'takeover', dir);
        expect(r.code).to.equal(1);
        expect(r.stderr).to.contain(`efsctl: ${config}: the stunnel connects to ${zoneIdName}, the crossaccount mount target of availability zone ID use1-az2, but instance metadata gives this instance's zone ID as use1-az9, so a tunnel would not reach the same mount target [TAKEOVER_UNSAFE]\nefsctl: Nothing was changed.`);
        expect(stunnel.child.exitCode, 'the stunnel still runs').to.equal(null);

        imds.azId = 'use1-az2';
        const moved = await daemon.efsctl('--config', daemon.configFile, 'takeover', dir, '--json');
        expect(moved.code, moved.stderr).to.equal(0);
        expect(moved.stderr).to.contain(`efs-relay takes 127.0.0.1:${PORT} over with -o region=us-east-1,tlsport=${PORT},crossaccount\n`);
        const res = JSON.parse(moved.stdout) as TakeoverResult;
        expect(res.tunnel).to.deep.include({ fs_id: FS_ID, port: PORT, target: { dns_name: zoneIdName, cert_name: FS_NAME, address: zoneIdName, port: 2049, region: 'us-east-1' } });
        await exited(stunnel);
      }, zoneIdName);
    } finally {
      await imds.stop();
    }
  });

  it('moves an access point mount\'s stunnel onto a tunnel for the access point its client certificate names, and NFS reads go on through efs-relay', async () => {
    const ap = 'fsap-0123456789abcdef0';
    // efs-utils' client certificate: self-signed, with the access point and the file system in EFS's extensions.
    const clientCert = (dir: string): string[] => {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'privateKey.pem'), '-out', join(dir, 'certificate.pem'),
        '-subj', '/CN=host', '-days', '1', '-addext', `1.3.6.1.4.1.4843.7.1=ASN1:UTF8String:${ap}`, '-addext', `1.3.6.1.4.1.4843.7.3=ASN1:UTF8String:${FS_ID}`], { stdio: 'ignore' });
      return [`cert = ${join(dir, 'certificate.pem')}`, `key = ${join(dir, 'privateKey.pem')}`];
    };
    await withStunnelMount({}, async ({ daemon, stunnel, dir }) => {
      const r = await daemon.efsctl('--config', daemon.configFile, 'takeover', dir, '--json');
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stderr).to.contain(`efs-relay takes 127.0.0.1:${PORT} over with -o region=us-east-1,tlsport=${PORT},mounttargetip=${TARGET},accesspoint=${ap}\n`);
      expect((JSON.parse(r.stdout) as TakeoverResult).tunnel.options).to.deep.include({ accesspoint: ap });
      await exited(stunnel);
      expect((await nfsCatSha256(ganesha.v4Url('takeover.bin', PORT))).bytes, 'read through efs-relay').to.equal(3 << 20);
    }, TARGET, clientCert);
  });

  it('moves an iam mount\'s stunnel onto a tunnel that signs with the credentials efs-utils recorded for it, and refuses one whose credentials efs-relay would take from another identity', async () => {
    const keys = join(tempDir('efs-relay-takeover-iam-'), 'credentials');
    writeFileSync(keys, '[default]\naws_access_key_id = AKIATAKEOVERDEFAULT1\naws_secret_access_key = secret\n', { mode: 0o600 });
    // efs-utils' client certificate of an iam mount: IAM authorization (its signature is the mount target's business) and the file system.
    const clientCert = (dir: string): string[] => {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', join(dir, 'privateKey.pem'), '-out', join(dir, 'certificate.pem'),
        '-subj', '/CN=host', '-days', '1', '-addext', '1.3.6.1.4.1.4843.7.2=ASN1:SEQUENCE:auth', '-addext', `1.3.6.1.4.1.4843.7.3=ASN1:UTF8String:${FS_ID}`,
        '-config', writeConfig(dir)], { stdio: 'ignore' });
      return [`cert = ${join(dir, 'certificate.pem')}`, `key = ${join(dir, 'privateKey.pem')}`];
    };
    const writeConfig = (dir: string): string => {
      const f = join(dir, 'iam-cert.cnf');
      writeFileSync(f, '[req]\ndistinguished_name = dn\n[dn]\n[auth]\naccessKeyId = UTF8String:AKIATAKEOVERDEFAULT1\nsignature = OCTETSTRING:00\nsigv4DateTime = UTCTIME:261128120000Z\n');
      return f;
    };
    await withStunnelMount({ iam: { credentials_file: keys, config_file: join(tempDir('efs-relay-takeover-iam-'), 'config') } }, async ({ daemon, stunnel, dir }) => {
      // efs-utils' state file of the mount, beside its stunnel config: FS.MOUNT.PORT.
      const stateFile = join(daemon.dir, 'efs-utils', `${FS_ID}.${dir.slice(1).replaceAll('/', '.')}.${PORT}`);
      mkdirSync(join(daemon.dir, 'efs-utils'), { recursive: true });
      writeFileSync(stateFile, JSON.stringify({ pid: stunnel.pid, fsId: FS_ID, region: 'us-east-1', awsCredentialsMethod: 'metadata:' }), { mode: 0o600 });
      const refused = await daemon.efsctl('--config', daemon.configFile, 'takeover', dir);
      expect(refused.code).to.equal(1);
      expect(refused.stderr).to.contain(`efsctl: ${dir} is an iam mount (its stunnel's client certificate carries IAM authorization), and efs-utils signed with credentials from metadata:, but efs-relay would sign with those from credentials:default, another identity [TAKEOVER_UNSAFE]\n`);
      expect(stunnel.child.exitCode, 'the stunnel still serves the mount').to.equal(null);

      writeFileSync(stateFile, JSON.stringify({ pid: stunnel.pid, fsId: FS_ID, region: 'us-east-1', awsCredentialsMethod: 'credentials:default' }), { mode: 0o600 });
      const r = await daemon.efsctl('--config', daemon.configFile, 'takeover', dir, '--json');
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stderr).to.contain(`efs-relay takes 127.0.0.1:${PORT} over with -o region=us-east-1,tlsport=${PORT},mounttargetip=${TARGET},iam,awsprofile=default\n`);
      const tunnel = (JSON.parse(r.stdout) as TakeoverResult).tunnel;
      expect(tunnel.options).to.deep.include({ iam: null, awsprofile: 'default' });
      expect(tunnel.client_certificate?.iam_credentials).to.equal('credentials:default');
      await exited(stunnel);
      expect((await nfsCatSha256(ganesha.v4Url('takeover.bin', PORT))).bytes, 'read through efs-relay').to.equal(3 << 20);
    }, TARGET, clientCert);
  });

  it('revives a mount whose stunnel has died, from the config efs-utils left for it, and NFS reads go on through efs-relay', async () => {
    await withStunnelMount({}, async ({ daemon, stunnel, dir }) => {
      const config = daemon.efsUtilsConfig(FS_ID, dir, PORT, readFileSync(join(daemon.dir, 'efs-utils.conf'), 'utf8'));
      await stunnel.stop();
      // doctor sees the hung mount and says how to revive it.
      const report = JSON.parse((await daemon.efsctl('--config', daemon.configFile, 'doctor', '--json')).stdout) as DoctorReport;
      expect(report.checks.find((c) => c.name === 'mounts')).to.deep.include({
        status: 'fail', message: `${dir} (port ${PORT}): mounted through a local port, but no tunnel listens there; NFS I/O there waits`,
        fix: `\`efsctl takeover ${dir}\` revives it from efs-utils' config ${config}; or unmount.`,
      });
      const r = await daemon.efsctl('--config', daemon.configFile, 'takeover', dir);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stderr).to.equal(`efsctl: ${dir}: nothing listens on 127.0.0.1:${PORT} (its stunnel is gone); efs-relay takes the port with -o region=us-east-1,tlsport=${PORT},mounttargetip=${TARGET} from ${config}\n`);
      expect(r.stdout).to.equal(`${dir}, whose stunnel had died, now goes through the tunnel of ${FS_ID} on 127.0.0.1:${PORT} → ${TARGET}:2049 (TLS; its certificate must name ${FS_NAME}), made from ${config}; its NFS client reconnects through efs-relay\n`);
      expect((await nfsCatSha256(ganesha.v4Url('takeover.bin', PORT))).bytes, 'read through efs-relay').to.equal(3 << 20);

      // A config another user could have written is not trusted to name the file system.
      const other = join(daemon.dir, 'mnt', 'other');
      daemon.mount.addMountLine(`127.0.0.1:/ ${other} nfs4 rw,vers=4.1,port=${PORT + 4},addr=127.0.0.1 0 0`);
      const open = daemon.efsUtilsConfig('fs-0e0e0e0e', other, PORT + 4, readFileSync(config, 'utf8').replace(`127.0.0.1:${PORT}`, `127.0.0.1:${PORT + 4}`));
      chmodSync(open, 0o666);
      const refused = await daemon.efsctl('--config', daemon.configFile, 'takeover', other);
      expect(refused.code).to.equal(1);
      expect(refused.stderr).to.contain(`efsctl: ${open} is writable by every user (mode 0666): a user other than root could have changed ${open}, so it cannot be trusted to name the file system and mount target of ${other} [TAKEOVER_UNSAFE]\n`);
    });
  });

  it('never stops a process at the pid efs-utils recorded for a netns= mount unless it is that mount\'s stunnel, and fails with NETNS_FAILED, changing nothing, when the namespace is gone', async () => {
    await withStunnelMount({}, async ({ daemon, stunnel, dir }) => {
      const config = daemon.efsUtilsConfig(FS_ID, dir, PORT, readFileSync(join(daemon.dir, 'efs-utils.conf'), 'utf8'));
      // efs-utils' state file of a netns= mount: the command it started the tunnel with, and a pid that now belongs
      // to another process (this stunnel runs another config, in efsctl's own namespace).
      const stateFile = efsUtilsStateFile(FS_ID, dir, PORT, join(daemon.dir, 'efs-utils'));
      writeFileSync(stateFile, JSON.stringify({ pid: stunnel.child.pid, cmd: ['nsenter', '--net=/var/run/netns/efsr-test-gone', '/usr/bin/stunnel', config] }));
      const r = await daemon.efsctl('--config', daemon.configFile, 'takeover', dir);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.contain(`efsctl: ${dir}: its stunnel in network namespace /var/run/netns/efsr-test-gone is gone (pid ${stunnel.child.pid} in ${stateFile}); efs-relay takes 127.0.0.1:${PORT} there with -o region=us-east-1,tlsport=${PORT},mounttargetip=${TARGET},netns=/var/run/netns/efsr-test-gone\n`);
      expect(r.stderr).to.contain(`efsctl: efs-relay could not take port ${PORT}: Cannot enter network namespace /var/run/netns/efsr-test-gone: cannot open /var/run/netns/efsr-test-gone: No such file or directory; ${dir} still has no tunnel [NETNS_FAILED]\n`);
      expect(stunnel.child.exitCode, 'the process at the recorded pid was not stopped').to.equal(null);
      expect((await daemon.efsctlJson<{ tunnels: unknown[] }>('list', '--json')).tunnels, 'no tunnel was made').to.deep.equal([]);
    });
  });

  it('refuses a directory that is not a stunnel\'s mount: not mounted, or served by another process', async () => {
    await withStunnelMount({}, async ({ daemon, dir }) => {
      const none = await daemon.efsctl('--config', daemon.configFile, 'takeover', join(daemon.dir, 'mnt', 'nothing'));
      expect(none.code).to.equal(1);
      expect(none.stderr).to.equal(`efsctl: ${join(daemon.dir, 'mnt', 'nothing')} is not an NFS mount (${daemon.mount.procMounts}) [TAKEOVER_NOT_STUNNEL]\n` +
        'efsctl: `efsctl takeover` moves mounts made by amazon-efs-utils (mount -t efs -o tls with stunnel); `efsctl doctor` (the mounts check) names what serves each mount\'s local port.\n');

      const other: Server = createServer();
      await new Promise<void>((r) => other.listen(PORT + 1, '127.0.0.1', r));
      try {
        const odd = `${dir}-odd`;
        daemon.mount.addMountLine(`127.0.0.1:/ ${odd} nfs4 rw,vers=4.1,port=${PORT + 1},addr=127.0.0.1 0 0`);
        const r = await daemon.efsctl('--config', daemon.configFile, 'takeover', odd);
        expect(r.code).to.equal(1);
        expect(r.stderr).to.match(new RegExp(`^efsctl: ${odd} goes through 127\\.0\\.0\\.1:${PORT + 1}, which node pid ${process.pid} serves, not an efs-utils stunnel or efs-proxy \\[TAKEOVER_NOT_STUNNEL\\]\\n`));
      } finally {
        other.close();
      }
    });
  });

  it('starts the second mount\'s stunnel again when the tunnel cannot take its port as an extra one (a read-only state dir), and the tunnel keeps serving its own', async function () {
    const small = tempDir('takeover-state');
    const m = await run('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', small]);
    skipIf(this, m.code === 0 ? null : `cannot mount a tmpfs to make read-only (${m.stderr.trim() || `mount exited ${m.code}`}); needs root with CAP_SYS_ADMIN`);
    try {
      await withStunnelMount({ state_dir: join(small, 'state') }, async ({ daemon, dir }) => {
        expect((await daemon.efsctl('--config', daemon.configFile, 'takeover', dir)).code).to.equal(0);
        const config = join(daemon.dir, 'efs-utils-b.conf');
        const second = await startStunnelClient(daemon.dir, { ca: testCerts().ca, server: testCerts().good }, 'efs-utils-b', PORT + 1, TARGET, FS_ID);
        const b = join(daemon.dir, 'mnt', 'b');
        daemon.mount.addMountLine(`127.0.0.1:/ ${b} nfs4 rw,vers=4.1,port=${PORT + 1},addr=127.0.0.1 0 0`);
        const ro = await run('mount', ['-o', 'remount,ro', small]);
        expect(ro.code, ro.stderr).to.equal(0);
        try {
          const r = await daemon.efsctl('--config', daemon.configFile, 'takeover', b);
          expect(r.code).to.equal(1);
          expect(r.stderr).to.match(new RegExp(`^efsctl: efs-relay could not take port ${PORT + 1} over: .*; stunnel was started again \\(stunnel ${config.replaceAll('.', '\\.')}\\), so ${b.replaceAll('.', '\\.')} keeps its tunnel \\[STATE_WRITE_FAILED\\]\\n`, 'm'));
          await exited(second);
          expect(await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).to.deep.include({ port: PORT, extra_ports: [], state: 'listening' });
          expect((await nfsCatSha256(ganesha.v4Url('takeover.bin', PORT + 1))).bytes, 'NFS through the restarted stunnel').to.equal(3 << 20);
          expect((await nfsCatSha256(ganesha.v4Url('takeover.bin', PORT))).bytes, 'NFS through the tunnel\'s own port').to.equal(3 << 20);
        } finally {
          await run('mount', ['-o', 'remount,rw', small]);
          await second.stop();
          await killStunnelsOf(config);
        }
      });
    } finally {
      await run('umount', [small]);
    }
  });

  it('starts the stunnel again when the tunnel cannot start (a read-only state dir), so the mount keeps a tunnel', async function () {
    const small = tempDir('takeover-state');
    const m = await run('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', small]);
    skipIf(this, m.code === 0 ? null : `cannot mount a tmpfs to make read-only (${m.stderr.trim() || `mount exited ${m.code}`}); needs root with CAP_SYS_ADMIN`);
    try {
      await withStunnelMount({ state_dir: join(small, 'state') }, async ({ daemon, stunnel, dir }) => {
        const ro = await run('mount', ['-o', 'remount,ro', small]);
        expect(ro.code, ro.stderr).to.equal(0);
        try {
          const r = await daemon.efsctl('--config', daemon.configFile, 'takeover', dir);
          expect(r.code).to.equal(1);
          const config = join(daemon.dir, 'efs-utils.conf');
          expect(r.stderr).to.match(new RegExp(`^efsctl: efs-relay could not take port ${PORT} over: .*; stunnel was started again \\(stunnel ${config.replaceAll('.', '\\.')}\\), so ${dir.replaceAll('.', '\\.')} keeps its tunnel \\[STATE_WRITE_FAILED\\]\\n`, 'm'));
          await exited(stunnel);
          expect((await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels).to.deep.equal([]);
          expect((await nfsCatSha256(ganesha.v4Url('takeover.bin', PORT))).bytes, 'NFS through the restarted stunnel').to.be.greaterThan(0);
        } finally {
          await run('mount', ['-o', 'remount,rw', small]);
        }
      });
    } finally {
      await run('umount', [small]);
    }
  });
});
