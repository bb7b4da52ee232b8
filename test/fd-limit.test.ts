// A daemon that runs out of file descriptors (here: started under `ulimit -n 64`)
// must say so, instead of dropping NFS connections without a word.
import { expect } from 'chai';
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Socket } from 'node:net';
import { BIN, Daemon, waitFor } from './helpers/daemon.js';
import { exchange, openClient } from './helpers/client.js';
import { FS_ID, daemonConfig, testCerts } from './helpers/fixtures.js';
import { ECHO_TRAILER, MountTargetStandIn } from './helpers/mount-target.js';
import type { DoctorReport } from '../cli/doctor.js';
import type { AddResult, TunnelDetail } from '../daemon/tunnels.js';

describe('a daemon out of file descriptors', function () {
  it('logs FD_LIMIT and shows it in status when connections cannot be taken, and relays again once they close', async () => {
    const target = await new MountTargetStandIn({ host: '127.0.0.45', port: 2049, cert: testCerts().good, backend: 'echo' }).start();
    const daemon = new Daemon(daemonConfig(21650));
    const wrapper = join(daemon.dir, 'efs-relayd-64-fds');
    writeFileSync(wrapper, `#!/bin/sh\nulimit -n 64\nexec ${join(BIN, 'efs-relayd')} "$@"\n`);
    chmodSync(wrapper, 0o755);
    const socks: Socket[] = [];
    try {
      await daemon.start(wrapper);
      const { tunnel } = await daemon.efsctlJson<AddResult>('add', FS_ID, '-o', 'mounttargetip=127.0.0.45,region=us-east-1');
      // Near the limit, doctor warns before anything fails.
      while (daemon.fdCount() < 56) {
        const s = await openClient(tunnel.port);
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
        const s = await openClient(tunnel.port);
        s.on('error', () => {});
        s.write('x');
        socks.push(s);
      }
      await waitFor('FD_LIMIT in the log', () => daemon.logs.includes('code=FD_LIMIT'));
      // Whichever runs out first: the accept of the NFS client's connection, or the socket to the mount target.
      expect(daemon.logs).to.match(new RegExp(`warn tunnel\\.(accept_failed fs=${FS_ID} code=FD_LIMIT msg="Cannot accept a connection on 127\\.0\\.0\\.1:${tunnel.port}: accept EMFILE|handshake_failed fs=${FS_ID} code=FD_LIMIT msg="Cannot open a connection to 127\\.0\\.0\\.45:2049: no file descriptor left \\(EMFILE\\))`));
      for (const s of socks) s.destroy();
      await waitFor('the connections closed', async () => (await daemon.efsctlJson<TunnelDetail>('status', FS_ID).catch(() => null))?.connections.active === 0);
      const status = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
      expect(status.last_error?.code).to.equal('FD_LIMIT');
      expect(daemon.exitCode).to.equal(null);
      expect((await exchange(tunnel.port, 'again')).received.toString()).to.equal('again' + ECHO_TRAILER);
    } finally {
      for (const s of socks) s.destroy();
      await daemon.stop();
      await target.stop();
    }
  });
});
