// Restarts: tunnel records survive SIGTERM and SIGKILL, every tunnel comes
// back on its old port (NFS mounts keep pointing at it), and NFS works after.
import { expect } from 'chai';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { connect, createServer, type Socket } from 'node:net';
import { constants } from 'node:os';
import { join } from 'node:path';
import { BIN, Daemon, escapeRegExp, run, tempDir, waitFor, writeRecords } from './helpers/daemon.js';
import { exchange, openClient } from './helpers/client.js';
import { FS_ID, certFor, daemonConfig, testCerts } from './helpers/fixtures.js';
import { ECHO_TRAILER, MountTargetStandIn } from './helpers/mount-target.js';
import { Ganesha, nfsCatSha256, requireNfs, sha256File } from './helpers/nfs.js';
import type { AddResult, TunnelDetail, TunnelView } from '../daemon/tunnels.js';

const FILESYSTEMS = [
  { fsId: 'fs-12345678', addr: '127.0.0.7' },
  { fsId: 'fs-0abc1234', addr: '127.0.0.8' },
  { fsId: 'fs-deadbeef', addr: '127.0.0.9' },
];

describe('daemon restart', function () {
  let ganesha: Ganesha;
  let daemon: Daemon;
  const targets: MountTargetStandIn[] = [];
  const ports = new Map<string, number>();
  let fileSum = '';

  before(async function () {
    requireNfs(this);
    ganesha = await Ganesha.get();
    const payload = Buffer.alloc(3 << 20, 'restart-test-');
    writeFileSync(join(ganesha.exportPath, 'restart.bin'), payload);
    fileSum = await sha256File(join(ganesha.exportPath, 'restart.bin'));
    for (const { fsId, addr } of FILESYSTEMS) {
      targets.push(await new MountTargetStandIn({
        host: addr, port: 2049, cert: certFor(`${fsId}.efs.us-east-1.amazonaws.com`), backend: { host: '127.0.0.1', port: ganesha.nfsPort },
      }).start());
    }
    daemon = await new Daemon(daemonConfig(20400)).start();
    for (const { fsId, addr } of FILESYSTEMS) {
      const add = await daemon.efsctlJson<AddResult>('add', fsId, '-o', `mounttargetip=${addr},region=us-east-1`);
      ports.set(fsId, add.tunnel.port);
    }
  });

  after(async () => {
    await daemon?.stop();
    for (const t of targets) await t.stop();
  });

  async function expectAllBackOnTheirPorts(): Promise<void> {
    const list = await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list');
    expect(list.tunnels.map((t) => [t.fs_id, t.port, t.state])).to.have.deep.members(
      FILESYSTEMS.map(({ fsId }) => [fsId, ports.get(fsId), 'listening']),
    );
    for (const { fsId } of FILESYSTEMS) {
      const read = await nfsCatSha256(ganesha.v4Url('restart.bin', ports.get(fsId)!));
      expect(read.sha256, `NFS read through ${fsId}`).to.equal(fileSum);
    }
  }

  it('reads NFS through each of three tunnels before any restart', async () => {
    await expectAllBackOnTheirPorts();
  });

  it('exits 0 on SIGTERM and keeps every tunnel record', async () => {
    expect(await daemon.stop('SIGTERM')).to.equal(0);
    expect(daemon.logs).to.match(/info daemon\.stopped /);
    expect(readdirSync(daemon.stateDir).filter((f) => f.endsWith('.json')).sort()).to.deep.equal(
      FILESYSTEMS.map((f) => `${f.fsId}.json`).sort(),
    );
  });

  it('brings all three tunnels back on their old ports after SIGTERM, and NFS reads work', async () => {
    await daemon.stop('SIGTERM'); // already stopped by the test before, unless this one runs alone
    await daemon.start();
    await expectAllBackOnTheirPorts();
    expect(daemon.logs).to.contain('invalid_state_files=0');
  });

  it('brings all three tunnels back on their old ports after SIGKILL, and NFS reads work', async () => {
    await daemon.stop('SIGKILL');
    await daemon.start();
    await expectAllBackOnTheirPorts();
  });

  it('keeps a restored tunnel on its port while another process holds it, and listens once it is free', async () => {
    await daemon.stop('SIGTERM');
    const fsId = FILESYSTEMS[0]!.fsId;
    const squatter = createServer();
    await new Promise<void>((r) => squatter.listen(ports.get(fsId), '127.0.0.1', () => r()));
    await daemon.start();
    const status = await daemon.efsctlJson<TunnelDetail>('status', fsId);
    expect(status.state).to.equal('error');
    expect(status.port).to.equal(ports.get(fsId));
    expect(status.last_error?.code).to.equal('PORT_TAKEN');
    const human = await daemon.efsctl('list');
    expect(human.stdout).to.match(new RegExp(`${fsId}\\s+${ports.get(fsId)}\\s+\\S+\\s+error .*PORT_TAKEN`));
    await new Promise<void>((r) => squatter.close(() => r()));
    await waitFor('the tunnel to take its port back', async () => (await daemon.efsctlJson<TunnelDetail>('status', fsId)).state === 'listening', 10_000);
    await expectAllBackOnTheirPorts();
  });
});

/** Whether process `pid` catches `signal` (its bit in SigCgt of /proc/PID/status). */
function catches(pid: number, signal: NodeJS.Signals): boolean {
  const mask = /^SigCgt:\s+([0-9a-f]+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? '0';
  return ((BigInt(`0x${mask}`) >> BigInt(constants.signals[signal] - 1)) & 1n) === 1n;
}

/**
 * Send `signal` to a daemon while it starts (1000 records to restore make a start-up long enough to signal into):
 * once it catches SIGHUP, and before its control socket exists. (SigCgt cannot show when SIGUSR1 becomes ours: Node
 * catches it from its first instruction.) Then, once it has started, `then` checks what followed, and the daemon must
 * still run with every tunnel.
 */
async function signalDuringStartUp(signal: NodeJS.Signals, then: (daemon: Daemon) => Promise<void>): Promise<void> {
  const daemon = new Daemon(daemonConfig(24000, { port_range: { first: 24000, last: 24999 } }));
  writeRecords(daemon.stateDir, 1000, 24000, '127.0.0.10');
  const starting = daemon.start();
  try {
    await waitFor('the SIGHUP handler', () => catches(daemon.pid, 'SIGHUP') || existsSync(daemon.socket), 10_000);
    const duringStart = !existsSync(daemon.socket);
    daemon.proc!.kill(signal);
    await starting;
    expect(duringStart, 'the signal came before the control socket existed').to.equal(true);
    await then(daemon);
    expect(daemon.exitCode).to.equal(null);
    expect((await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels).to.have.length(1000);
  } finally {
    await starting.catch(() => undefined);
    await daemon.stop();
  }
}

describe('daemon signals', function () {
  it('ignores SIGUSR1 instead of opening Node\'s debugger to every local user, and logs it', async () => {
    const daemon = await new Daemon(daemonConfig(21500)).start();
    try {
      expect(await daemon.sigusr1()).to.deep.equal({ debugger: false, running: true, logged: true });
      expect(daemon.logs).to.match(/warn daemon\.sigusr1_ignored fs=- code=- msg="SIGUSR1 ignored: Node would open its debugger on 127\.0\.0\.1:9229/);
    } finally {
      await daemon.stop();
    }
  });

  it('closes Node\'s inspector when it was open before the daemon\'s first line, and logs it', async () => {
    // What a SIGUSR1 as Node starts would leave, made sure here with --inspect: the development build runs node, which
    // takes it from NODE_OPTIONS (the packaged binary ignores NODE_OPTIONS).
    const daemon = await new Daemon(daemonConfig(21500)).start(undefined, undefined, { NODE_OPTIONS: '--inspect=127.0.0.1:19834' });
    try {
      expect(daemon.logs).to.contain('Debugger listening on ws://127.0.0.1:19834/');
      expect(daemon.logs).to.match(/warn daemon\.inspector_closed fs=- code=- msg="Node's inspector was open at start \(ws:\/\/127\.0\.0\.1:19834\/[^ ]+: --inspect, or a SIGUSR1 as Node started\), where every local user could run code in this root process; closed" url=ws:\/\/127\.0\.0\.1:19834\//);
      const refused = await new Promise<string>((resolve) => {
        const s = connect({ host: '127.0.0.1', port: 19834 });
        s.on('connect', () => (s.destroy(), resolve('open')));
        s.on('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      });
      expect(refused).to.equal('ECONNREFUSED');
      expect(daemon.exitCode).to.equal(null);
    } finally {
      await daemon.stop();
    }
  });

  it('logs a warning of Node\'s own (here a deprecation a loaded module raises) as a daemon.node_warning line, not a raw line on stderr', async () => {
    // A module preloaded the way a dependency would be: it raises a real process warning once the daemon has
    // replaced Node's printer, as any later code in the process would.
    const preload = join(tempDir('preload'), 'warns.cjs');
    writeFileSync(preload, [
      "const nodes = process.listeners('warning');",
      "const t = setInterval(() => {",
      "  if (process.listeners('warning').some((l) => nodes.includes(l))) return;",
      "  clearInterval(t);",
      "  process.emitWarning('a test module uses an API Node will remove', 'DeprecationWarning', 'DEP0999');",
      "}, 20);",
      "t.unref();",
      '',
    ].join('\n'));
    const daemon = await new Daemon(daemonConfig(21500)).start(undefined, undefined, { NODE_OPTIONS: `--require ${preload}` });
    try {
      await waitFor('the warning in the log', () => daemon.logs.includes('daemon.node_warning'));
      expect(daemon.logs).to.match(/warn daemon\.node_warning fs=- code=INTERNAL msg="Node\.js warns: DeprecationWarning: a test module uses an API Node will remove\. The daemon keeps running; please report this with the log" stack=/);
      expect(daemon.logs, 'Node\'s own printer is gone').to.not.match(/\(node:\d+\) \[DEP0999\]/);
      expect(daemon.exitCode).to.equal(null);
    } finally {
      await daemon.stop();
    }
  });

  it('ignores a SIGUSR1 that comes while the daemon is still starting, and logs it once it has started', async () => {
    await signalDuringStartUp('SIGUSR1', async (daemon) => {
      await waitFor('the warning', () => daemon.logs.includes('daemon.sigusr1_ignored'));
      expect(daemon.logs).to.not.include('Debugger listening');
    });
  });

  it('keeps running on SIGUSR2, with open connections untouched, and logs that it has no SIGUSR2 action', async () => {
    await withOpenConnection(21500, async ({ daemon, sock, got }) => {
      daemon.proc!.kill('SIGUSR2');
      await waitFor('the warning', () => daemon.logs.includes('daemon.signal_ignored'));
      expect(daemon.logs).to.match(/warn daemon\.signal_ignored fs=- code=- msg="SIGUSR2 ignored: efs-relayd has no SIGUSR2 action, and every tunnel keeps running\. SIGHUP \(systemctl reload efs-relayd\) reloads the configuration" signal=SIGUSR2/);
      await expectStillRelaying(daemon, sock, got);
      sock.destroy();
    });
  });
});

describe('config reload (SIGHUP)', function () {
  it('applies changed log, health and mount keys at once, and the open connection carries on', async () => {
    await withOpenConnection(21500, async ({ daemon, sock, got }) => {
      const before = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
      expect(before.health).to.include({ probing: false, probe: null });
      daemon.editConfig((c) => ({ ...c, log: { level: 'warn' }, health: { probe_interval: 1 }, mount: { ...(c.mount as object), poll_interval: 0.5 } }));
      daemon.proc!.kill('SIGHUP');
      await waitFor('the reload', () => daemon.logs.includes('config.reloaded'));
      expect(daemon.logs).to.contain(`info config.reloaded fs=- code=- msg="applied mount.poll_interval, log.level, health.probe_interval" file=${daemon.configFile} applied=mount.poll_interval,log.level,health.probe_interval`);
      // Probes were off; now the tunnel is probed within a second or so.
      const probed = await waitFor('a probe', async () => (await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).health.probe);
      expect(probed.ok).to.equal(true);
      // log.level warn: a new tunnel's info line is no longer written.
      const second = (await daemon.efsctlJson<AddResult>('add', 'fs-0abc1234', '-o', 'mounttargetip=127.0.0.10,region=us-east-1')).tunnel;
      expect(daemon.logs).not.to.contain('tunnel.started fs=fs-0abc1234');
      expect(second.port).to.be.within(21500, 21549);
      await expectStillRelaying(daemon, sock, got, 2);
      expect(daemon.logs).not.to.match(/config\.restart_needed|config\.reload_failed/);
      sock.destroy();
    });
  });

  it('serves a SIGHUP that comes while the daemon is still starting, once it has started, instead of dying of it', async () => {
    await signalDuringStartUp('SIGHUP', async (daemon) => {
      await waitFor('the reload', () => daemon.logs.includes('config.reloaded'));
      expect(daemon.logs.indexOf('config.reloaded')).to.be.above(daemon.logs.indexOf('daemon.started'));
    });
  });

  it('survives a SIGHUP and a SIGUSR2 sent before it has read its config file, then reloads once and says SIGUSR2 was ignored', async () => {
    // The config file is a FIFO that nobody writes yet: the daemon waits on it, at its first step after its first lines.
    const daemon = new Daemon(daemonConfig(21500));
    const text = readFileSync(daemon.configFile);
    rmSync(daemon.configFile);
    execFileSync('mkfifo', ['-m', '600', daemon.configFile]);
    const starting = daemon.start();
    try {
      await waitFor('the SIGHUP and SIGUSR2 handlers, while the config file is not read yet', () => catches(daemon.pid, 'SIGHUP') && catches(daemon.pid, 'SIGUSR2'), 10_000);
      expect(daemon.logs, 'nothing logged before the config is read').to.equal('');
      daemon.proc!.kill('SIGHUP');
      daemon.proc!.kill('SIGUSR2');
      // Opening the FIFO lets the daemon's read go on; a regular file takes its name for the reload, and the daemon
      // reads the config through the FIFO it has open.
      const fifo = await open(daemon.configFile, 'w');
      writeFileSync(`${daemon.configFile}.new`, text);
      renameSync(`${daemon.configFile}.new`, daemon.configFile);
      await fifo.writeFile(text);
      await fifo.close();
      await starting;
      await waitFor('the reload', () => daemon.logs.includes('config.reloaded'));
      expect(daemon.logs.indexOf('config.reloaded')).to.be.above(daemon.logs.indexOf('daemon.started'));
      expect(daemon.logs.match(/config\.reloaded/g), 'one reload').to.have.length(1);
      expect(daemon.logs).to.match(/warn daemon\.signal_ignored fs=- code=- msg="SIGUSR2 ignored: efs-relayd has no SIGUSR2 action/);
      expect(daemon.exitCode).to.equal(null);
    } finally {
      await starting.catch(() => undefined);
      await daemon.stop();
    }
  });

  it('gives every tunnel a changed relay.connect_timeout: a target that never answers is given up after the new time', async () => {
    // Takes TCP connections and never says a word of TLS.
    const silent = createServer((s) => s.resume());
    await new Promise<void>((r) => silent.listen(2049, '127.0.0.48', () => r()));
    await withOpenConnection(21500, async ({ daemon, sock }) => {
      const { tunnel } = await daemon.efsctlJson<AddResult>('add', 'fs-0abc1234', '-o', 'mounttargetip=127.0.0.48,region=us-east-1');
      daemon.editConfig((c) => ({ ...c, relay: { connect_timeout: 1, close_timeout: 5 } }));
      expect(await daemon.efsctlJson('reload')).to.deep.equal({ file: daemon.configFile, applied: ['relay.connect_timeout'], restart_needed: [] });
      await exchange(tunnel.port, 'x', { timeoutMs: 4000 });
      const last_error = await waitFor('the refusal', async () => (await daemon.efsctlJson<TunnelDetail>('status', 'fs-0abc1234')).last_error);
      expect(last_error).to.include({ code: 'CONNECT_TIMEOUT', message: 'No TLS session with 127.0.0.48:2049 after 1000 ms' });
      sock.destroy();
    }).finally(() => new Promise<void>((r) => silent.close(() => r())));
  });

  it('keeps the running value of a key that needs a restart, and names the key', async () => {
    await withOpenConnection(21500, async ({ daemon, sock, got }) => {
      daemon.editConfig((c) => ({ ...c, port_range: { first: 21950, last: 21999 }, tls: { ...(c.tls as object), max_version: 'TLSv1.3' } }));
      daemon.proc!.kill('SIGHUP');
      await waitFor('the warning', () => daemon.logs.includes('config.restart_needed'));
      expect(daemon.logs).to.contain(`info config.reloaded fs=- code=- msg="no change that a reload applies" file=${daemon.configFile}\n`);
      expect(daemon.logs).to.contain(`warn config.restart_needed fs=- code=- msg="port_range.first, port_range.last, tls.max_version changed, but take effect only when the daemon restarts (systemctl restart efs-relayd: tunnels come back on their ports, open NFS connections reconnect); until then the daemon keeps the values it started with" file=${daemon.configFile} keys=port_range.first,port_range.last,tls.max_version`);
      // A new tunnel still gets a port from the range the daemon started with.
      const second = (await daemon.efsctlJson<AddResult>('add', 'fs-0abc1234', '-o', 'mounttargetip=127.0.0.10,region=us-east-1')).tunnel;
      expect(second.port).to.be.within(21500, 21549);
      await expectStillRelaying(daemon, sock, got, 2);
      sock.destroy();
    });
  });

  it('changes nothing when the file does not load, says where it is wrong, and takes the next good file', async () => {
    await withOpenConnection(21500, async ({ daemon, sock, got }) => {
      daemon.editConfig((c) => ({ ...c, health: { probe_intervall: 1 } }));
      daemon.proc!.kill('SIGHUP');
      await waitFor('the error', () => daemon.logs.includes('config.reload_failed'));
      expect(daemon.logs).to.match(new RegExp(`error config\\.reload_failed fs=- code=CONFIG_INVALID msg="${escapeRegExp(daemon.configFile)}:\\d+: key \\\\"health\\.probe_intervall\\\\": unknown key \\(known keys in health: [^)]*\\); nothing was changed, and the daemon carries on with the configuration it had" file=`));
      expect(daemon.exitCode).to.equal(null);
      await expectStillRelaying(daemon, sock, got);
      expect((await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).health.probing).to.equal(false);
      daemon.editConfig((c) => ({ ...c, health: { probe_interval: 1 } }));
      daemon.proc!.kill('SIGHUP');
      await waitFor('the reload', () => daemon.logs.includes('config.reloaded'));
      expect(daemon.logs).to.contain('msg="applied health.probe_interval"');
      expect((await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).health.probing).to.equal(true);
      sock.destroy();
    });
  });
});

describe('efsctl reload', function () {
  it('reloads when asked, and prints what it applied and what waits for a restart; --json gives the same', async () => {
    await withOpenConnection(21500, async ({ daemon, sock, got }) => {
      daemon.editConfig((c) => ({ ...c, health: { probe_interval: 1 }, port_range: { first: 21950, last: 21999 } }));
      const r = await daemon.efsctl('reload');
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stdout).to.equal(
        `Reloaded ${daemon.configFile}: applied health.probe_interval\n` +
        'Not applied until efs-relayd restarts: port_range.first, port_range.last (the daemon keeps the values it started with; ' +
        'systemctl restart efs-relayd applies them, and open NFS connections then reconnect)\n');
      // Done when efsctl returns: the probes it turned on are already under way.
      expect((await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).health.probing).to.equal(true);
      expect(await daemon.efsctlJson('reload')).to.deep.equal({ file: daemon.configFile, applied: [], restart_needed: ['port_range.first', 'port_range.last'] });
      await expectStillRelaying(daemon, sock, got);
      sock.destroy();
    });
  });

  it('still reaches the daemon after control_socket was changed in the file: it reloads on the socket the daemon serves, and says so', async () => {
    await withOpenConnection(21500, async ({ daemon, sock, got }) => {
      const moved = join(daemon.dir, 'moved.sock');
      daemon.editConfig((c) => ({ ...c, control_socket: moved }));
      // As systemctl reload runs it: --config only, so the socket is the one the file names now.
      const r = await run(join(BIN, 'efsctl'), ['--config', daemon.configFile, 'reload']);
      expect(r.code, r.stderr).to.equal(0);
      expect(r.stderr).to.equal(`efsctl: efs-relayd (pid ${daemon.proc!.pid}) runs ${daemon.configFile} but listens on ${daemon.socket}, not on ${moved}, ` +
        'which the file names now (control_socket changes at a restart); reloading it there\n');
      expect(r.stdout).to.equal(`Reloaded ${daemon.configFile}: no change that a reload applies\n` +
        'Not applied until efs-relayd restarts: control_socket (the daemon keeps the value it started with; ' +
        'systemctl restart efs-relayd applies it, and open NFS connections then reconnect)\n');
      // --socket is the user's word: no other socket is tried.
      const given = await run(join(BIN, 'efsctl'), ['--config', daemon.configFile, '--socket', moved, 'reload']);
      expect(given.code).to.equal(3);
      expect(given.stderr).to.contain(`efsctl: Cannot reach efs-relayd at ${moved}: no socket there`);
      await expectStillRelaying(daemon, sock, got);
      sock.destroy();
    });
  });

  it('follows a mounts file changed by a reload: a mount listed there through the tunnel\'s port is adopted', async () => {
    await withOpenConnection(21500, async ({ daemon, tunnel, sock }) => {
      const dir = join(daemon.dir, 'mounted-elsewhere');
      const other = join(daemon.dir, 'other-mounts');
      writeFileSync(other, `127.0.0.1:/ ${dir} nfs4 rw,vers=4.1,port=${tunnel.port},addr=127.0.0.1 0 0\n`);
      // First the poll an hour apart, so that only a read the next reload makes at once can find the mount in time.
      daemon.editConfig((c) => ({ ...c, mount: { ...(c.mount as object), poll_interval: 3600 } }));
      expect(await daemon.efsctlJson('reload')).to.deep.equal({ file: daemon.configFile, applied: ['mount.poll_interval'], restart_needed: [] });
      daemon.editConfig((c) => ({ ...c, mount: { ...(c.mount as object), proc_mounts: other } }));
      expect(await daemon.efsctlJson('reload')).to.deep.equal({ file: daemon.configFile, applied: ['mount.proc_mounts'], restart_needed: [] });
      await waitFor('the mount adopted', async () => (await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).mounts.includes(dir));
      sock.destroy();
    });
  });

  it('turning probes off forgets each tunnel\'s last probe and mount checks, and status says probes are off', async () => {
    await withOpenConnection(21500, async ({ daemon, sock }) => {
      daemon.editConfig((c) => ({ ...c, health: { probe_interval: 1 } }));
      await daemon.efsctlJson('reload');
      await waitFor('a probe', async () => (await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).health.probe);
      daemon.editConfig((c) => ({ ...c, health: { probe_interval: 0 } }));
      expect(await daemon.efsctlJson('reload')).to.deep.equal({ file: daemon.configFile, applied: ['health.probe_interval'], restart_needed: [] });
      const { health } = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
      expect(health).to.include({ probing: false, probe: null });
      expect(health.mounts_failing).to.deep.equal([]);
      expect((await daemon.efsctl('status', FS_ID)).stdout).to.contain('off (health.probe_interval is 0)');
      sock.destroy();
    });
  });

  it('refuses, changing nothing, a file the next start would refuse: a non-loopback metrics address without allow_remote', async () => {
    await withOpenConnection(21500, async ({ daemon, sock, got }) => {
      daemon.editConfig((c) => ({ ...c, metrics: { listen: '0.0.0.0:19805' }, log: { level: 'warn' } }));
      const r = await daemon.efsctl('reload');
      expect(r.code).to.equal(1);
      expect(r.stderr).to.contain('efsctl: metrics.listen 0.0.0.0:19805 is not a loopback address; nothing was changed, and the daemon carries on with the configuration it had [CONFIG_INVALID]');
      // log.level stayed info: the tunnel added now is still logged.
      await daemon.efsctlJson('add', 'fs-0abc1234', '-o', 'mounttargetip=127.0.0.10,region=us-east-1');
      expect(daemon.logs).to.contain('info tunnel.started fs=fs-0abc1234');
      await expectStillRelaying(daemon, sock, got, 2);
      sock.destroy();
    });
  });

  it('exits 1 naming the file, line and key when the file does not load, and the daemon changes nothing', async () => {
    await withOpenConnection(21500, async ({ daemon, sock, got }) => {
      daemon.editConfig((c) => ({ ...c, health: { probe_interval: 'often' } }));
      const r = await daemon.efsctl('reload');
      expect(r.code).to.equal(1);
      expect(r.stdout).to.equal('');
      expect(r.stderr).to.match(new RegExp(`^efsctl: ${escapeRegExp(daemon.configFile)}:\\d+: key "health\\.probe_interval": .*; nothing was changed, and the daemon carries on with the configuration it had \\[CONFIG_INVALID\\]\\n`));
      expect(daemon.logs).to.contain('error config.reload_failed fs=- code=CONFIG_INVALID');
      expect((await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).health.probing).to.equal(false);
      await expectStillRelaying(daemon, sock, got);
      sock.destroy();
    });
  });
});

/** The connection that withOpenConnection opened still relays, and the daemon still runs its tunnels. */
async function expectStillRelaying(daemon: Daemon, sock: Socket, got: () => string, tunnels = 1): Promise<void> {
  const sent = got();
  sock.write('-after');
  await waitFor('the same connection still relays', () => got() === `${sent}-after`);
  expect(daemon.exitCode).to.equal(null);
  const list = (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels;
  expect(list.length).to.equal(tunnels);
  expect(list.find((t) => t.fs_id === FS_ID)?.connections.active).to.equal(1);
}

/**
 * A daemon with one tunnel to an echo target and a client connection through
 * it that has already had "before-" echoed; torn down after `fn`.
 */
async function withOpenConnection(firstPort: number, fn: (c: { daemon: Daemon; tunnel: AddResult['tunnel']; sock: Socket; got: () => string }) => Promise<void>): Promise<void> {
  const target = await new MountTargetStandIn({ host: '127.0.0.10', port: 2049, cert: testCerts().good, backend: 'echo' }).start();
  const daemon = await new Daemon(daemonConfig(firstPort)).start();
  try {
    const { tunnel } = await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', 'mounttargetip=127.0.0.10,region=us-east-1');
    const sock = await openClient(tunnel.port);
    let got = '';
    sock.on('data', (d: Buffer) => (got += d.toString()));
    sock.write('before-');
    await waitFor('first echo', () => got === 'before-');
    await fn({ daemon, tunnel, sock, got: () => got });
  } finally {
    await daemon.stop();
    await target.stop();
  }
}

describe('daemon shutdown', function () {
  it('on SIGTERM stops accepting, lets an open connection finish, then exits 0', async () => {
    await withOpenConnection(20450, async ({ daemon, tunnel, sock, got }) => {
      daemon.proc!.kill('SIGTERM');
      await waitFor('listener closed', async () => (await exchange(tunnel.port, 'x', { timeoutMs: 1000 })).error === 'ECONNREFUSED');
      expect(daemon.exitCode, 'still draining').to.equal(null);
      const closed = new Promise<void>((r) => sock.on('close', () => r()));
      sock.on('end', () => sock.end());
      sock.end('after');
      await closed;
      expect(got()).to.equal('before-after' + ECHO_TRAILER);
      expect(await daemon.stop()).to.equal(0);
    });
  });
});
