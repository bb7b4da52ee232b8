// A daemon that runs out of file descriptors (here: started under `ulimit -n 64`)
// must say so, instead of dropping NFS connections without a word.
import { expect } from 'chai';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { BIN, Daemon, run, tempDir, waitFor } from './helpers/daemon.js';
import { exchange, openClient } from './helpers/client.js';
import { FS_ID, daemonConfig, testCerts } from './helpers/fixtures.js';
import { ECHO_TRAILER, MountTargetStandIn } from './helpers/mount-target.js';
import type { DoctorReport } from '../cli/doctor.js';
import type { AddResult, TunnelDetail } from '../daemon/tunnels.js';

describe('a daemon out of file descriptors', function () {
  /**
   * `body` with a daemon that may open 64 file descriptors and the port of its tunnel to an echoing mount target;
   * the client connections it opens (`socks`) are closed after it.
   */
  async function with64Fds(body: (daemon: Daemon, port: number, socks: Socket[]) => Promise<void>): Promise<void> {
    const target = await new MountTargetStandIn({ host: '127.0.0.45', port: 2049, cert: testCerts().good, backend: 'echo' }).start();
    const daemon = new Daemon(daemonConfig(21650));
    const socks: Socket[] = [];
    try {
      const wrapper = join(daemon.dir, 'efs-relayd-64-fds');
      writeFileSync(wrapper, `#!/bin/sh\nulimit -n 64\nexec ${join(BIN, 'efs-relayd')} "$@"\n`);
      chmodSync(wrapper, 0o755);
      await daemon.start(wrapper);
      const { tunnel } = await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', 'mounttargetip=127.0.0.45,region=us-east-1');
      await body(daemon, tunnel.port, socks);
    } finally {
      for (const s of socks) s.destroy();
      await daemon.stop();
      await target.stop();
    }
  }

  it('logs FD_LIMIT and shows it in status when connections cannot be taken, even those libuv drops unseen, and relays again once they close', async () => {
    await with64Fds(async (daemon, port, socks) => {
      // Near the limit, doctor warns before anything fails.
      while (daemon.fdCount() < 56) {
        const s = await openClient(port);
        s.on('error', () => {});
        socks.push(s);
        await waitFor('the connection relayed', () => daemon.efsctlJson<TunnelDetail>('status', FS_ID).then((st) => st.connections.active === socks.length));
      }
      const doctor = JSON.parse((await daemon.efsctl('--config', daemon.configFile, 'doctor', '--json')).stdout) as DoctorReport;
      const fds = doctor.checks.find((c) => c.name === 'fds')!;
      expect(fds.status).to.equal('warn');
      expect(fds.message).to.match(/^5\d of 64 file descriptors open \(each relayed connection takes two\): near the limit, after which connections fail with FD_LIMIT$/);
      expect(fds.fix).to.contain('LimitNOFILE');
      expect(daemon.logs, 'nothing has failed yet').not.to.contain('FD_LIMIT');
      // Each relayed connection takes two descriptors: 64 connections cannot all fit.
      for (let i = 0; i < 64; i++) {
        const s = await openClient(port);
        s.on('error', () => {});
        s.write('x');
        socks.push(s);
      }
      // Which connection meets the limit is luck: when the socket to the mount target finds no descriptor, the relay
      // says so (tunnel.handshake_failed); when the accept finds none, libuv closes the waiting connections itself and
      // Node never hears of them. The daemon's own count of its descriptors says so either way.
      await waitFor('FD_LIMIT in the log', () => daemon.logs.includes('warn daemon.fd_limit'), 10_000);
      expect(daemon.logs).to.match(/warn daemon\.fd_limit fs=- code=FD_LIMIT msg="efs-relayd has 6\d of 64 file descriptors open: no room for another relayed connection \(each takes two\), so new NFS connections are refused or dropped\. Each relayed connection takes two: raise LimitNOFILE/);
      expect(daemon.logs.match(/daemon\.fd_limit/g), 'once while it lasts').to.have.length(1);
      const during = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
      expect(during.last_error?.code).to.equal('FD_LIMIT');
      expect(during.history.some((h) => h.code === 'FD_LIMIT')).to.equal(true);
      for (const s of socks) s.destroy();
      await waitFor('the connections closed', async () => (await daemon.efsctlJson<TunnelDetail>('status', FS_ID).catch(() => null))?.connections.active === 0);
      await waitFor('room again in the log', () => daemon.logs.includes('info daemon.fd_available'), 10_000);
      const status = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
      expect(status.last_error?.code).to.equal('FD_LIMIT');
      expect(daemon.exitCode).to.equal(null);
      expect((await exchange(port, 'again')).received.toString()).to.equal('again' + ECHO_TRAILER);
    });
  });

  it('logs FD_LIMIT for a burst of connections that fills the descriptor table and is gone within a second, between two of the daemon\'s 5 s counts', async () => {
    await with64Fds(async (daemon, port, socks) => {
      const burstStart = Date.now();
      for (let i = 0; i < 40; i++) {
        const s = await openClient(port);
        s.on('error', () => {});
        s.write('x');
        socks.push(s);
      }
      await new Promise((r) => setTimeout(r, 300));
      for (const s of socks) s.destroy();
      await waitFor('the connections closed', async () => (await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).connections.active === 0);
      expect(Date.now() - burstStart, 'the burst lasted under a second').to.be.below(1_000);
      // By now any count finds room again: only a count made during the burst can have logged the limit.
      expect(daemon.fdCount()).to.be.below(32);
      expect(daemon.logs).to.match(/warn daemon\.fd_limit fs=- code=FD_LIMIT msg="efs-relayd has 6\d of 64 file descriptors open/);
      expect((await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).last_error?.code).to.equal('FD_LIMIT');
    });
  });

  it('logs FD_LIMIT when the table is so full that counting it fails for want of a descriptor (EMFILE)', async () => {
    // The daemon's own watcher, in a process under `ulimit -n 32` that has opened files until none is left.
    const script = join(tempDir('fd-full'), 'full.mjs');
    const daemonJs = join(import.meta.dirname, '../daemon');
    writeFileSync(script, `
      import { openSync } from 'node:fs';
      import { FdWatcher } from ${JSON.stringify(join(daemonJs, 'fd-watch.js'))};
      import { createLogger } from ${JSON.stringify(join(daemonJs, 'log.js'))};
      const lines = [];
      const watcher = new FdWatcher(createLogger('info', (l) => lines.push(l), false), () => 32, () => {});
      await watcher.start();
      const held = [];
      try { for (;;) held.push(openSync('/dev/null', 'r')); } catch (e) { if (e.code !== 'EMFILE') throw e; }
      await watcher.check();
      watcher.stop();
      process.stdout.write(lines.join('\\n') + '\\n');
    `);
    const r = await run('sh', ['-c', `ulimit -n 32 && exec "${process.execPath}" "${script}"`]);
    expect(r.code, r.stderr).to.equal(0);
    expect(r.stdout).to.match(/warn daemon\.fd_limit fs=- code=FD_LIMIT msg="efs-relayd has 32 of 32 file descriptors open: no room for another relayed connection/);
  });
  it('changes no tunnel on a reading of the state dir that finds no descriptor to open a record with: its record is not taken as removed', async () => {
    // The daemon's own store and tunnel manager, in a process under `ulimit -n 32` that has opened files until none
    // is left: the reading a change of the state dir makes (the daemon's own record write makes one) must fail.
    const dir = tempDir('fd-full-state');
    const script = join(dir, 'state.mjs');
    const daemonJs = join(import.meta.dirname, '../daemon');
    writeFileSync(script, `
      import { openSync, closeSync } from 'node:fs';
      import { StateStore } from ${JSON.stringify(join(daemonJs, 'state.js'))};
      const store = new StateStore(${JSON.stringify(join(dir, 'state'))});
      await store.ensureDir();
      await store.write({ version: 1, fs_id: 'fs-12345678', port: 20400, target: { dns_name: 'fs-12345678.efs.us-east-1.amazonaws.com', address: '127.0.0.45', port: 2049, region: 'us-east-1' }, options: {}, created: new Date().toISOString(), source: 'efsctl', mounts: [] });
      const before = await store.loadAll();
      const held = [];
      try { for (;;) held.push(openSync('/dev/null', 'r')); } catch (e) { if (e.code !== 'EMFILE') throw e; }
      const full = await store.loadAll().then((r) => ({ records: r.records.length, invalid: r.invalid }), (e) => ({ code: e.code, message: e.message }));
      for (const fd of held) closeSync(fd);
      process.stdout.write(JSON.stringify({ before: before.records.length, full }) + '\\n');
    `);
    const r = await run('sh', ['-c', `ulimit -n 32 && exec "${process.execPath}" "${script}"`]);
    expect(r.code, r.stderr).to.equal(0);
    const out = JSON.parse(r.stdout) as { before: number; full: { code?: string; message?: string } };
    expect(out.before).to.equal(1);
    expect(out.full).to.deep.equal({ code: 'FD_LIMIT', message: `Cannot read ${join(dir, 'state')}: no file descriptor left (EMFILE)` });
  });
});
