// The netns= option, end to end: tunnels whose port and mount target live in
// another network namespace (a test namespace made with `ip netns`, standing
// in for a container's), as efs-utils runs stunnel and mount.nfs4 under
// `nsenter --net=PATH`. The mount target stand-in and the NFS-client-like
// peer run inside that namespace; the daemon's own namespace has neither.
import { expect } from 'chai';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { exchange, expectPortFree } from './helpers/client.js';
import { Daemon, ROOT, run, skipIf, tempDir, waitFor } from './helpers/daemon.js';
import { certFor, daemonConfig, REGION, testCerts } from './helpers/fixtures.js';
import { ECHO_TRAILER } from './helpers/mount-target.js';
import { namespacesUnavailable, TestNamespace } from './helpers/netns.js';
import type { AddResult, TunnelDetail, TunnelView } from '../daemon/tunnels.js';
import type { AttachResult } from '../daemon/mounter.js';
import type { DoctorReport } from '../cli/doctor.js';
import { efsUtilsStateFile } from '../daemon/efs-utils-configs.js';
import { listening } from '../cli/listeners.js';
import { processes } from '../cli/processes.js';

/** Only inside the namespace: in the daemon's own, nothing listens there. */
const TARGET = '127.0.0.81';

/** The daemon's helper processes (efs-relayd --netns-helper), by pid. */
function helpersOf(daemonPid: number): number[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map(Number).filter((pid) => {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      return ppid === daemonPid && readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').includes('--netns-helper');
    } catch {
      return false; // gone meanwhile
    }
  });
}

describe('tunnels inside another network namespace (netns=)', function () {
  this.timeout(60_000);
  const why = namespacesUnavailable();
  let daemon: Daemon;
  const blue = new TestNamespace('efsr-test-blue');
  const options = (extra = ''): string => `region=${REGION},mounttargetip=${TARGET},netns=${blue.path}${extra}`;

  before(async function () {
    skipIf(this, why);
    blue.create();
    await blue.startPeer(TARGET, 2049, certFor(`*.efs.${REGION}.amazonaws.com`));
    daemon = await new Daemon(daemonConfig(26750)).start();
    daemon.mount.behave('mount', { reach: true });
  });
  after(async () => {
    await daemon?.stop();
    blue.remove();
  });

  it('relays over TLS 1.2 with AES-256-GCM between the namespace\'s 127.0.0.1 port and its mount target, neither of which the daemon\'s own namespace has', async () => {
    const fsId = 'fs-0e0e0001';
    const added = await daemon.efsctlJson<AddResult>('add', fsId, '-o', options());
    expect(added.tunnel.netns).to.equal(blue.path);
    expect(added.tunnel.state).to.equal('listening');
    const { port } = added.tunnel;

    expect(await blue.exchange(port, 'hello from the container')).to.deep.equal({ received: 'hello from the container' + ECHO_TRAILER, error: null });
    const seen = await blue.target();
    expect(seen.received).to.equal('hello from the container');
    expect(seen.sessions.at(-1)).to.deep.include({ protocol: 'TLSv1.2', cipher: 'ECDHE-ECDSA-AES256-GCM-SHA384', servername: `${fsId}.efs.${REGION}.amazonaws.com` });

    // The daemon's own namespace: no listener on the port, and no mount target to reach.
    expect((await exchange(port, 'from the host')).error).to.equal('ECONNREFUSED');
    const status = await daemon.efsctl('status', fsId);
    expect(status.stdout).to.contain(`Local port:    127.0.0.1:${port} in network namespace ${blue.path} (netns=), where it also connects from\n`);
    expect((await daemon.efsctlJson<TunnelDetail>('status', fsId, '--json')).connections).to.deep.equal({ active: 0, ok: 1, failed: 0 });
  });

  it('health-probes the mount target from inside the namespace, where the daemon\'s own namespace has none', async () => {
    const fsId = 'fs-0e0e0001';
    const before = (await blue.target()).handshakes;
    daemon.editConfig((c) => ({ ...c, health: { probe_interval: 1 } }));
    expect((await daemon.efsctl('reload')).code).to.equal(0);
    try {
      const probe = await waitFor('a probe', async () => (await daemon.efsctlJson<TunnelDetail>('status', fsId, '--json')).health.probe);
      expect([probe.ok, probe.code]).to.deep.equal([true, null]);
      expect((await blue.target()).handshakes, 'the probe\'s handshake reached the target in the namespace').to.be.above(before);
    } finally {
      daemon.editConfig((c) => ({ ...c, health: { probe_interval: 0 } }));
      expect((await daemon.efsctl('reload')).code).to.equal(0);
    }
  });

  it('makes the tunnel of an fstab line with netns= inside its namespace, as at boot, and stops it with the line', async () => {
    const fsId = 'fs-0e0e0008';
    writeFileSync(daemon.fstab, `${fsId} /mnt/fstab-blue efs _netdev,tls,region=${REGION},mounttargetip=${TARGET},netns=${blue.path} 0 0\n`);
    try {
      const t = await waitFor('the fstab line\'s tunnel', async () => {
        const r = await daemon.efsctl('status', fsId, '--json');
        return r.code === 0 ? (JSON.parse(r.stdout) as TunnelDetail) : null;
      });
      expect([t.source, t.netns, t.state]).to.deep.equal(['fstab', blue.path, 'listening']);
      expect((await blue.exchange(t.port, 'from an fstab line')).received).to.equal('from an fstab line' + ECHO_TRAILER);
    } finally {
      writeFileSync(daemon.fstab, '# test fstab\n');
    }
    await waitFor('the tunnel to go with its line', async () => (await daemon.efsctl('status', fsId)).code === 1);
  });

  it('gives an fstab line whose namespace is not there yet its tunnel once the namespace appears, without an edit of fstab', async () => {
    const late = new TestNamespace('efsr-test-late');
    late.remove();
    const fsId = 'fs-0e0e000a';
    writeFileSync(daemon.fstab, `${fsId} /mnt/late efs _netdev,tls,region=${REGION},mounttargetip=${TARGET},netns=${late.path} 0 0\n`);
    try {
      await waitFor('the line to wait', () => daemon.logs.includes(`Cannot enter network namespace ${late.path}: cannot open ${late.path}: No such file or directory`));
      expect((await daemon.efsctl('status', fsId)).code, 'no tunnel yet').to.equal(1);
      late.create();
      await late.startPeer(TARGET, 2049, certFor(`*.efs.${REGION}.amazonaws.com`));
      const t = await waitFor('the tunnel once the namespace is there', async () => {
        const r = await daemon.efsctl('status', fsId, '--json');
        return r.code === 0 ? (JSON.parse(r.stdout) as TunnelDetail) : null;
      }, 15_000);
      expect([t.netns, t.state]).to.deep.equal([late.path, 'listening']);
      expect((await late.exchange(t.port, 'a late container')).received).to.equal('a late container' + ECHO_TRAILER);
    } finally {
      writeFileSync(daemon.fstab, '# test fstab\n');
    }
    await waitFor('the tunnel to go with its line', async () => (await daemon.efsctl('status', fsId)).code === 1);
    late.remove();
  });

  it('has doctor check nsenter and each namespace of netns=, and leave the mount target\'s reach to the tunnel\'s probe from inside the namespace', async () => {
    const doctor = async (): Promise<DoctorReport> => JSON.parse((await daemon.efsctl('--config', daemon.configFile, 'doctor', '--json')).stdout) as DoctorReport;
    let report = await doctor();
    expect(report.checks.find((c) => c.name === 'netns')).to.deep.equal({ name: 'netns', status: 'ok', message: `nsenter is installed; the network namespace of netns= is there: ${blue.path}`, fix: null });
    expect(report.checks.find((c) => c.name === 'reach fs-0e0e0001')).to.deep.equal({ name: 'reach fs-0e0e0001', status: 'ok',
      message: `TCP ${TARGET}:2049 not checked from here: fs-0e0e0001's tunnel connects from network namespace ${blue.path} (netns=); its health probe does (\`efsctl status fs-0e0e0001\`)`, fix: null });

    // A line for a namespace that is not there (yet): its container has not started.
    writeFileSync(daemon.fstab, `fs-0e0e0006 /mnt/later efs _netdev,tls,noauto,region=${REGION},mounttargetip=${TARGET},netns=/var/run/netns/efsr-test-later 0 0\n`);
    try {
      report = await doctor();
      const check = report.checks.find((c) => c.name === 'netns')!;
      expect([check.status, check.message]).to.deep.equal(['warn', '/var/run/netns/efsr-test-later is not there now; the tunnels in it wait (NETNS_FAILED) and mounts from there fail']);
      expect(check.fix).to.match(/^Start what makes the namespace \(its container, `ip netns add`\), or correct netns= in the mount or fstab line\. .* \[NETNS_FAILED\]$/);
    } finally {
      writeFileSync(daemon.fstab, '# test fstab\n');
    }
  });

  it('mounts with the mount command run inside the namespace (nsenter --net=PATH), as efs-utils runs it, so that the NFS client reaches the tunnel there', async () => {
    const fsId = 'fs-0e0e0002';
    const dir = daemon.mountPoint('blue');
    const r = await daemon.efsctlJson<AttachResult>('attach', fsId, dir, '-o', options());
    const port = r.tunnel!.port;
    expect(r.command).to.deep.equal(['nsenter', `--net=${blue.path}`, '--', daemon.mount.mountCommand, '127.0.0.1:/', dir, '-o',
      `nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,port=${port}`]);
    // The stand-in talked to 127.0.0.1:PORT before it "mounted": only inside the namespace does that reach the tunnel.
    const call = daemon.mount.calls('mount').at(-1)!;
    expect(call.argv.slice(1)).to.deep.equal(r.command.slice(4));
    expect((await daemon.efsctlJson<TunnelDetail>('status', fsId, '--json')).connections.ok).to.be.above(0);
  });

  it('refuses a second tunnel of the file system in another namespace or in the daemon\'s own, naming both', async () => {
    const fsId = 'fs-0e0e0001';
    const r = await daemon.efsctl('add', fsId, '-o', `region=${REGION},mounttargetip=${TARGET}`);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain(`efsctl: ${fsId} already has a tunnel in network namespace ${blue.path}, not in the daemon's own network namespace; a file system has one tunnel, and it listens and connects in one namespace: mount it from that namespace, or stop it first [BAD_OPTION]\n`);
  });

  it('keeps its tunnels when the namespace\'s helper process dies, says so in the log, and starts a new helper for the next connection', async () => {
    const fsId = 'fs-0e0e0001';
    const { port } = (await daemon.efsctlJson<TunnelDetail>('status', fsId, '--json'));
    const [helper] = helpersOf(daemon.pid);
    expect(helper, 'one helper runs for the namespace').to.be.a('number');
    process.kill(helper!, 'SIGKILL');
    await waitFor('the log line', () => daemon.logs.includes('netns.helper_ended'));
    expect(daemon.logs).to.match(new RegExp(`warn netns\\.helper_ended fs=- code=NETNS_FAILED msg="The helper of network namespace ${blue.path} was killed by SIGKILL; it is started again at the next connection" netns=${blue.path}`));
    expect((await blue.exchange(port, 'after the helper')).received).to.equal('after the helper' + ECHO_TRAILER);
    expect(helpersOf(daemon.pid)).to.have.length(1).and.not.include(helper);
  });

  it('refuses a port that another program holds inside the namespace with PORT_TAKEN naming the namespace, though the daemon\'s own namespace has it free', async () => {
    // A port of the range that no tunnel listens on, here or in the namespace: tunnels take ports from a random point.
    let port = 26799;
    while ((await blue.listening(port)) || (await listening(port, process.pid))) port--;
    expect(await blue.hold(port)).to.deep.equal({ held: port });
    await expectPortFree(port);
    const r = await daemon.efsctl('add', 'fs-0e0e0004', '-o', options(`,tlsport=${port}`));
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain(`efsctl: Port ${port} on 127.0.0.1 in network namespace ${blue.path} is already in use by another process [PORT_TAKEN]\n`);
  });

  it('refuses netns= naming no namespace with NETNS_FAILED, with what nsenter said and what to do', async () => {
    const r = await daemon.efsctl('add', 'fs-0e0e0003', '-o', `region=${REGION},mounttargetip=${TARGET},netns=/var/run/netns/efsr-test-none`);
    expect(r.code).to.equal(1);
    expect(r.stderr).to.match(/^efsctl: Cannot enter network namespace \/var\/run\/netns\/efsr-test-none: cannot open \/var\/run\/netns\/efsr-test-none: No such file or directory \[NETNS_FAILED\]\nefsctl: Check that the path names a network namespace/);
    expect((await daemon.efsctl('status', 'fs-0e0e0003')).code, 'no tunnel was made').to.equal(1);
  });

  it('starts the namespace\'s helper from the packaged single binary too, which runs itself under nsenter', async function () {
    const bin = join(ROOT, 'build/pkg/deb-root/usr/sbin/efs-relayd');
    skipIf(this, existsSync(bin) ? null : `${bin} is not built (make package)`);
    const packaged = await new Daemon(daemonConfig(26850)).start(bin);
    try {
      const added = await packaged.efsctlJson<AddResult>('add', 'fs-0e0e0005', '-o', options());
      expect((await blue.exchange(added.tunnel.port, 'through the package')).received).to.equal('through the package' + ECHO_TRAILER);
      expect(helpersOf(packaged.pid)).to.have.length(1);
    } finally {
      await packaged.stop();
    }
  });

  /**
   * An efs-utils mount made with `mount -t efs -o tls,netns=…`, as efs-utils leaves it: its stunnel config in the
   * daemon's efs-utils state dir, the stunnel under nsenter (listening in the namespace), the state file with its pid
   * and command, and the mount listed.
   */
  async function efsUtilsMountInBlue(d: Daemon, fsId: string, port: number, name: string): Promise<{ dir: string; config: string; cmd: string[]; stunnel: ChildProcess }> {
    const dir = join(d.dir, 'mnt', name);
    const config = d.efsUtilsConfig(fsId, dir, port, [
      'foreground = yes', 'pid =', '[efs]', 'client = yes', `accept = 127.0.0.1:${port}`, `connect = ${TARGET}:2049`,
      'sslVersion = TLSv1.2', 'renegotiation = no', 'TIMEOUTbusy = 20', 'TIMEOUTclose = 0', 'TIMEOUTidle = 70', 'delay = yes',
      'verify = 2', `CAfile = ${testCerts().ca.certFile}`, `checkHost = ${fsId}.efs.${REGION}.amazonaws.com`, '',
    ].join('\n'));
    const cmd = ['nsenter', `--net=${blue.path}`, 'stunnel', config];
    const stunnel = spawn(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    let said = '';
    stunnel.stderr!.on('data', (d: Buffer) => (said += d.toString()));
    writeFileSync(efsUtilsStateFile(fsId, dir, port, join(d.dir, 'efs-utils')), JSON.stringify({ pid: stunnel.pid, cmd, files: [config], mountpoint: dir }));
    // Listening in its namespace, as /proc/PID/net/tcp shows it (its TIMEOUTclose = 0 cuts a half-closed exchange short).
    await waitFor('the stunnel in the namespace', () => listening(port, stunnel.pid), 10_000)
      .catch((err: Error) => Promise.reject(new Error(`${err.message}; the stunnel said:\n${said}`)));
    d.mount.addMountLine(`127.0.0.1:/ ${dir} nfs4 rw,vers=4.1,rsize=1048576,wsize=1048576,hard,port=${port},addr=127.0.0.1 0 0`);
    return { dir, config, cmd, stunnel };
  }

  /** Stunnels that a takeover started again run detached from the test: found by their config. */
  async function killStunnelsOf(config: string): Promise<void> {
    for await (const p of processes()) if (p.argv.includes(config)) process.kill(p.pid, 'SIGKILL');
  }

  it('takes over an efs-utils mount whose stunnel runs inside the namespace: stops that stunnel, found by efs-utils\' state file, and listens on its port there', async () => {
    const fsId = 'fs-0e0e0007';
    const port = 26901;
    const other = await new Daemon(daemonConfig(26900)).start();
    let mounted: Awaited<ReturnType<typeof efsUtilsMountInBlue>> | null = null;
    try {
      mounted = await efsUtilsMountInBlue(other, fsId, port, 'in-blue');
      const { dir, config, stunnel } = mounted;
      // doctor sees the stunnel there, though nothing listens on the port in its own namespace.
      const report = JSON.parse((await other.efsctl('--config', other.configFile, 'doctor', '--json')).stdout) as DoctorReport;
      expect(report.checks.find((c) => c.name === 'mounts')).to.deep.include({
        status: 'warn', message: `${dir} (port ${port}, served by pid ${stunnel.pid} in network namespace ${blue.path}): mounted through a local port that an efs-utils stunnel serves inside another network namespace, not efs-relayd`,
      });

      const r = await other.efsctl('--config', other.configFile, 'takeover', dir);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stderr).to.equal(`efsctl: ${dir}: stopping stunnel pid ${stunnel.pid} in network namespace ${blue.path} (${config}); efs-relay takes 127.0.0.1:${port} there over with -o region=${REGION},tlsport=${port},mounttargetip=${TARGET},netns=${blue.path}\n`);
      await waitFor('the stunnel to exit', () => stunnel.exitCode !== null || stunnel.signalCode !== null);
      const status = await other.efsctlJson<TunnelDetail>('status', fsId, '--json');
      expect([status.port, status.netns, status.state]).to.deep.equal([port, blue.path, 'listening']);
      expect((await blue.exchange(port, 'through efs-relay now')).received).to.equal('through efs-relay now' + ECHO_TRAILER);
      expect((await other.efsctlJson<TunnelDetail>('status', fsId, '--json')).connections.ok).to.equal(1);
    } finally {
      mounted?.stunnel.kill('SIGKILL');
      await other.stop();
    }
  });

  it('starts the namespace\'s stunnel again, under nsenter as efs-utils did, when the tunnel cannot take its port (a read-only state dir)', async function () {
    const small = tempDir('netns-takeover-state');
    const m = await run('mount', ['-t', 'tmpfs', '-o', 'size=256k,mode=0700', 'tmpfs', small]);
    skipIf(this, m.code === 0 ? null : `cannot mount a tmpfs to make read-only (${m.stderr.trim() || `mount exited ${m.code}`}); needs root with CAP_SYS_ADMIN`);
    const port = 26902;
    const other = await new Daemon(daemonConfig(26900, { state_dir: join(small, 'state') })).start();
    let mounted: Awaited<ReturnType<typeof efsUtilsMountInBlue>> | null = null;
    try {
      mounted = await efsUtilsMountInBlue(other, 'fs-0e0e0009', port, 'ro-blue');
      const { dir, cmd, stunnel } = mounted;
      const ro = await run('mount', ['-o', 'remount,ro', small]);
      expect(ro.code, ro.stderr).to.equal(0);
      const r = await other.efsctl('--config', other.configFile, 'takeover', dir);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.contain(`; stunnel was started again (${cmd.join(' ')}), so ${dir} keeps its tunnel [STATE_WRITE_FAILED]\n`);
      await waitFor('the first stunnel to exit', () => stunnel.exitCode !== null || stunnel.signalCode !== null);
      expect(await blue.listening(port), 'the stunnel started again listens in the namespace').to.equal(true);
      expect(await listening(port), 'and not in efsctl\'s').to.equal(false);
      expect((await other.efsctlJson<{ tunnels: TunnelView[] }>('list', '--json')).tunnels).to.deep.equal([]);
    } finally {
      await run('mount', ['-o', 'remount,rw', small]);
      mounted?.stunnel.kill('SIGKILL');
      if (mounted) await killStunnelsOf(mounted.config);
      await other.stop();
      await run('umount', [small]);
    }
  });

  it('stops the namespace\'s helper with its last tunnel, and restores a netns= tunnel inside its namespace when the daemon starts again', async () => {
    const { port } = (await daemon.efsctlJson<TunnelDetail>('status', 'fs-0e0e0001', '--json'));
    await daemon.stop();
    daemon = await new Daemon(daemonConfig(26750), daemon.dir).start();
    await waitFor('the restored tunnel', async () => (await daemon.efsctlJson<TunnelDetail>('status', 'fs-0e0e0001', '--json')).state === 'listening');
    expect((await blue.exchange(port, 'after a restart')).received).to.equal('after a restart' + ECHO_TRAILER);
    expect((await exchange(port, 'from the host')).error).to.equal('ECONNREFUSED');

    for (const fsId of ['fs-0e0e0001', 'fs-0e0e0002']) expect((await daemon.efsctl('stop', fsId, '--force')).code).to.equal(0);
    await waitFor('no helper left', () => helpersOf(daemon.pid).length === 0);
  });
});
