// The daemon following the world: /etc/fstab edits, mounts vanishing from
// /proc/mounts, and records added or removed in the state dir by hand.
import { expect } from 'chai';
import { mkdirSync, readFileSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Daemon, sleep, waitFor } from './helpers/daemon.js';
import { expectPortFree, expectPortTaken } from './helpers/client.js';
import { createServer } from 'node:net';
import { daemonConfig } from './helpers/fixtures.js';
import type { TunnelDetail, TunnelView } from '../daemon/tunnels.js';
import type { DoctorReport } from '../cli/doctor.js';
import { ERRORS } from '../daemon/errors.js';

async function tunnels(d: Daemon): Promise<TunnelView[]> {
  return (await d.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels;
}
const has = async (d: Daemon, fsId: string): Promise<boolean> => (await tunnels(d)).some((t) => t.fs_id === fsId);

describe('fstab watching', function () {
  let daemon: Daemon;
  const write = (text: string): void => writeFileSync(daemon.fstab, text);
  before(async () => {
    daemon = await new Daemon(daemonConfig(20850)).start();
  });
  after(async () => {
    await daemon?.stop();
  });

  it('starts a tunnel within 2 s for an efs line added while running', async () => {
    write('# test fstab\nfs-0f000001 /mnt/a efs _netdev,tls,region=us-east-1 0 0\n');
    await waitFor('tunnel for the new line', () => has(daemon, 'fs-0f000001'), 2_000);
    const t = (await tunnels(daemon)).find((x) => x.fs_id === 'fs-0f000001')!;
    expect(t.source).to.equal('fstab');
    expect(t.state).to.equal('listening');
  });

  it('ignores comments, blank lines and non-efs lines, reads \\040 escapes, and gives noauto lines no tunnel', async () => {
    write([
      '# comment', '', 'UUID=abcd / ext4 defaults 0 1', 'server:/x /mnt/nfs nfs4 defaults 0 0',
      'fs-0f000001 /mnt/a efs _netdev,tls,region=us-east-1 0 0',
      'fs-0f000002:/some\\040dir /mnt/with\\040space efs _netdev,tls,region=us-east-1 0 0   # trailing comment',
      'fs-0f000003 /mnt/c efs _netdev,tls,noauto,region=us-east-1 0 0',
      '',
    ].join('\n'));
    await waitFor('tunnel for the escaped line', () => has(daemon, 'fs-0f000002'), 2_000);
    await sleep(300);
    expect((await tunnels(daemon)).map((t) => t.fs_id).sort()).to.deep.equal(['fs-0f000001', 'fs-0f000002']);
  });

  it('logs a malformed efs line with its line number, skips it, and applies the rest', async () => {
    write([
      'fs-0f000001 /mnt/a efs _netdev,tls,region=us-east-1 0 0',
      'fs-0f000002 /mnt/b efs _netdev,tls,region=us-east-1 0 0',
      'fs-NOTHEX /mnt/bad efs tls 0 0',
      'fs-0f000004 relative/dir efs tls,region=us-east-1 0 0',
      'fs-0f000005 /mnt/e efs tls,port=2049,region=us-east-1 0 0',
      'fs-0f000006 /mnt/f efs tls,region=us-east-1 0 0 extra',
      'fs-0f000007 /mnt/g efs tls,region=us-east-1 0 0',
    ].join('\n') + '\n');
    await waitFor('tunnel for line 7', () => has(daemon, 'fs-0f000007'), 2_000);
    await waitFor('line 6 logged', () => daemon.logs.includes(':6: expected 3 to 6 fields'), 2_000);
    expect(daemon.logs).to.match(/warn fstab\.line_invalid fs=- code=BAD_OPTION msg=".*fstab:3: \\"fs-NOTHEX\\" is not a file system id/);
    expect(daemon.logs).to.match(/fstab:4: mount point \\"relative\/dir\\" is not an absolute path; line skipped/);
    expect(daemon.logs).to.match(/fstab:5: The \\"port\\" and \\"tls\\" options are mutually exclusive; line skipped/);
    expect((await tunnels(daemon)).map((t) => t.fs_id).sort()).to.deep.equal(['fs-0f000001', 'fs-0f000002', 'fs-0f000007']);
  });

  it('warns about a second line for a file system that wants another tunnel than its first line', async () => {
    write([
      'fs-0f000001 /mnt/a efs _netdev,tls,region=us-east-1 0 0',
      'fs-0f000001:/sub /mnt/a-sub efs _netdev,tls,region=us-east-1 0 0',
      'fs-0f000001:/other /mnt/a-other efs _netdev,tls,region=us-east-1,mounttargetip=127.0.0.60 0 0',
      'fs-0f000007 /mnt/g efs tls,region=us-east-1 0 0',
    ].join('\n') + '\n');
    await waitFor('line 3 logged', () => daemon.logs.includes('fstab:3: fs-0f000001 is also on line 1'), 2_000);
    expect(daemon.logs).to.match(/warn fstab\.line_invalid fs=fs-0f000001 code=BAD_OPTION msg=".*fstab:3: fs-0f000001 is also on line 1 with another target \(127\.0\.0\.60 \(fs-0f000001\.efs\.us-east-1\.amazonaws\.com\) here, fs-0f000001\.efs\.us-east-1\.amazonaws\.com there\); a file system has one tunnel, made from line 1, so this line's mount would be refused"/);
    expect(daemon.logs, 'a second line with the same tunnel options is fine').to.not.contain('fstab:2: fs-0f000001');
    expect((await tunnels(daemon)).find((t) => t.fs_id === 'fs-0f000001')?.target.address).to.equal('fs-0f000001.efs.us-east-1.amazonaws.com');
  });

  it('stops the tunnel of a removed line that nothing mounts', async () => {
    write('fs-0f000001 /mnt/a efs _netdev,tls,region=us-east-1 0 0\nfs-0f000007 /mnt/g efs tls,region=us-east-1 0 0\n');
    await waitFor('fs-0f000002 stopped', async () => !(await has(daemon, 'fs-0f000002')), 2_000);
  });

  it('keeps the tunnel of a removed line while it is mounted', async () => {
    const dir = join(daemon.dir, 'mnt-g');
    mkdirSync(dir);
    expect((await daemon.efsctl('attach', 'fs-0f000007', dir, '-o', 'region=us-east-1')).code).to.equal(0);
    write('fs-0f000001 /mnt/a efs _netdev,tls,region=us-east-1 0 0\n');
    await sleep(600);
    expect(await has(daemon, 'fs-0f000007')).to.equal(true);
    expect((await daemon.efsctl('detach', dir)).code).to.equal(0);
    expect(await has(daemon, 'fs-0f000007')).to.equal(false);
  });

  it('makes the tunnel of an edited line again as the line now asks (another target) when nothing uses it, and says why', async () => {
    write('fs-0f0e0001 /mnt/e1 efs _netdev,tls,region=us-east-1,mounttargetip=127.0.0.60 0 0\n');
    await waitFor('the tunnel to .60', async () => (await tunnels(daemon)).find((t) => t.fs_id === 'fs-0f0e0001')?.target.address === '127.0.0.60' || null, 2_000);
    write('fs-0f0e0001 /mnt/e1 efs _netdev,tls,region=us-east-1,mounttargetip=127.0.0.61 0 0\n');
    await waitFor('the tunnel to .61', async () => (await tunnels(daemon)).find((t) => t.fs_id === 'fs-0f0e0001')?.target.address === '127.0.0.61' || null, 2_000);
    expect(daemon.logs).to.contain('info tunnel.stopped fs=fs-0f0e0001 code=- msg="its fstab line now asks for another tunnel (fs-0f0e0001 already has a tunnel to 127.0.0.60 (fs-0f0e0001.efs.us-east-1.amazonaws.com)), and nothing uses this one"');
    expect(daemon.logs).not.to.match(/fstab\.line_invalid fs=fs-0f0e0001 /);
  });

  it('keeps a mounted tunnel whose line was edited to ask for another one, reports the line, and makes the tunnel as the line asks once it is unmounted', async () => {
    write('fs-0f0e0002 /mnt/e2 efs _netdev,tls,region=us-east-1,mounttargetip=127.0.0.60 0 0\n');
    await waitFor('the tunnel', () => has(daemon, 'fs-0f0e0002'), 2_000);
    const dir = join(daemon.dir, 'mnt-e2');
    mkdirSync(dir);
    expect((await daemon.efsctl('attach', 'fs-0f0e0002', dir, '-o', 'region=us-east-1,mounttargetip=127.0.0.60')).code).to.equal(0);
    const port = (await tunnels(daemon)).find((t) => t.fs_id === 'fs-0f0e0002')!.port;
    write('fs-0f0e0002 /mnt/e2 efs _netdev,tls,region=us-east-1,mounttargetip=127.0.0.61,verify=3 0 0\n');
    await waitFor('the line reported', () => daemon.logs.includes('fstab.line_invalid fs=fs-0f0e0002'), 2_000);
    expect(daemon.logs).to.match(new RegExp(`warn fstab\\.line_invalid fs=fs-0f0e0002 code=BAD_OPTION msg=".*fstab:1: fs-0f0e0002's running tunnel is not the one this line asks for \\(fs-0f0e0002 already has a tunnel to 127\\.0\\.0\\.60 \\(fs-0f0e0002\\.efs\\.us-east-1\\.amazonaws\\.com\\)\\); it is kept, since mounted at ${dir.replaceAll('.', '\\.')}; no tunnel for this line yet: tried again in 5 s`));
    expect((await tunnels(daemon)).find((t) => t.fs_id === 'fs-0f0e0002')).to.deep.include({ port });
    expect((await tunnels(daemon)).find((t) => t.fs_id === 'fs-0f0e0002')!.target.address).to.equal('127.0.0.60');
    expect((await daemon.efsctl('detach', dir)).code).to.equal(0);
    const remade = await waitFor('the tunnel as the line asks', async () => {
      const t = (await tunnels(daemon)).find((x) => x.fs_id === 'fs-0f0e0002');
      return t?.target.address === '127.0.0.61' ? t : null;
    }, 10_000);
    expect(remade.options).to.deep.include({ verify: '3', mounttargetip: '127.0.0.61' });
  });

  it('keeps the tunnel of a line edited to a tlsport another file system\'s tunnel holds, rather than stop it for one that could not start', async () => {
    write('fs-0f0e0003 /mnt/e3 efs _netdev,tls,region=us-east-1 0 0\n');
    await waitFor('the tunnel', () => has(daemon, 'fs-0f0e0003'), 2_000);
    const port = (await tunnels(daemon)).find((t) => t.fs_id === 'fs-0f0e0003')!.port;
    const other = await daemon.efsctlJson<{ tunnel: TunnelView }>('add', 'fs-0f0e0004', '-o', 'region=us-east-1');
    const taken = other.tunnel.port;
    write(`fs-0f0e0003 /mnt/e3 efs _netdev,tls,region=us-east-1,tlsport=${taken} 0 0\n`);
    await waitFor('the line reported', () => daemon.logs.includes('fstab.line_invalid fs=fs-0f0e0003'), 2_000);
    expect(daemon.logs).to.contain(`fstab:1: fs-0f0e0003's running tunnel is not the one this line asks for (fs-0f0e0003 already has a tunnel on port ${port}); it is kept, since port ${taken} is the tunnel of fs-0f0e0004; no tunnel for this line yet`);
    expect((await tunnels(daemon)).find((t) => t.fs_id === 'fs-0f0e0003')).to.deep.include({ port });
    expect((await daemon.efsctl('stop', 'fs-0f0e0004')).code).to.equal(0);
  });

  it('follows an editor\'s atomic save (write a temp file, then rename over fstab)', async () => {
    const tmp = join(daemon.dir, '.fstab.swp');
    writeFileSync(tmp, 'fs-0f000001 /mnt/a efs _netdev,tls,region=us-east-1 0 0\nfs-0f000008 /mnt/h efs _netdev,tls,region=us-east-1 0 0\n');
    renameSync(tmp, daemon.fstab);
    await waitFor('tunnel after the rename', () => has(daemon, 'fs-0f000008'), 2_000);
    // And a second save the same way, to prove the watch survived the first.
    writeFileSync(tmp, 'fs-0f000001 /mnt/a efs _netdev,tls,region=us-east-1 0 0\nfs-0f000009 /mnt/i efs _netdev,tls,region=us-east-1 0 0\n');
    renameSync(tmp, daemon.fstab);
    await waitFor('tunnel after the second rename', () => has(daemon, 'fs-0f000009'), 2_000);
    await waitFor('fs-0f000008 stopped', async () => !(await has(daemon, 'fs-0f000008')), 2_000);
  });

  it('keeps working when fstab is deleted and created again', async () => {
    rmSync(daemon.fstab);
    await waitFor('every fstab tunnel stopped', async () => (await tunnels(daemon)).length === 0, 2_000);
    write('fs-0f00000a /mnt/j efs _netdev,tls,region=us-east-1 0 0\n');
    await waitFor('tunnel after re-creation', () => has(daemon, 'fs-0f00000a'), 2_000);
  });
});

describe('an fstab that cannot be read', function () {
  it('keeps every tunnel of its lines, says why (FSTAB_UNREADABLE, in the log and doctor), and applies the file once a link leads to a readable one again', async () => {
    const daemon = await new Daemon(daemonConfig(26950)).start();
    try {
      writeFileSync(daemon.fstab, 'fs-0f0d0001 /mnt/a efs _netdev,tls,region=us-east-1 0 0\n');
      await waitFor('the line\'s tunnel', () => has(daemon, 'fs-0f0d0001'), 2_000);
      const port = (await tunnels(daemon)).find((t) => t.fs_id === 'fs-0f0d0001')!.port;
      // fstab becomes a link into another directory, to a link that leads to itself (ELOOP), moved over fstab in
      // one rename so that no read finds it missing.
      const elsewhere = join(daemon.dir, 'elsewhere');
      mkdirSync(elsewhere);
      const real = join(elsewhere, 'real');
      symlinkSync(real, real);
      symlinkSync(real, join(daemon.dir, '.fstab.link'));
      renameSync(join(daemon.dir, '.fstab.link'), daemon.fstab);
      const failed = `warn fstab.read_failed fs=- code=FSTAB_UNREADABLE msg="Cannot read ${daemon.fstab}: ELOOP: too many symbolic links encountered, open '${daemon.fstab}'; ` +
        'the tunnels of its lines keep running as they were; tried again in 5 s, then less often, and at each change of fstab"';
      await waitFor('the failed read logged', () => daemon.logs.includes(failed), 3_000);
      const doctor = JSON.parse((await daemon.efsctl('--config', daemon.configFile, 'doctor', '--json')).stdout) as DoctorReport;
      expect(doctor.checks.find((c) => c.name === 'fstab')).to.deep.equal({
        name: 'fstab', status: 'fail',
        message: `efs-relayd: Cannot read ${daemon.fstab}: ELOOP: too many symbolic links encountered, open '${daemon.fstab}'; it applies no change of the file until it can`,
        fix: `${ERRORS.FSTAB_UNREADABLE.hint} [FSTAB_UNREADABLE]`,
      });
      expect((await tunnels(daemon)).find((t) => t.fs_id === 'fs-0f0d0001'), 'the line\'s tunnel is kept').to.include({ state: 'listening', port });
      await expectPortTaken(port);
      // Where the link ends becomes a real file with one more line: seen there, in the other directory.
      writeFileSync(join(elsewhere, '.real.tmp'), 'fs-0f0d0001 /mnt/a efs _netdev,tls,region=us-east-1 0 0\nfs-0f0d0002 /mnt/b efs _netdev,tls,region=us-east-1 0 0\n');
      renameSync(join(elsewhere, '.real.tmp'), real);
      await waitFor('the new line\'s tunnel', () => has(daemon, 'fs-0f0d0002'), 2_000);
      expect(daemon.logs).to.contain(`info fstab.readable fs=- code=- msg="${daemon.fstab} can be read again; its lines are applied"`);
      expect((await tunnels(daemon)).find((t) => t.fs_id === 'fs-0f0d0001')?.port, 'the first line\'s tunnel, on its port').to.equal(port);
      const after = JSON.parse((await daemon.efsctl('--config', daemon.configFile, 'doctor', '--json')).stdout) as DoctorReport;
      expect(after.checks.find((c) => c.name === 'fstab')?.status).to.equal('ok');
    } finally {
      await daemon.stop();
    }
  });

  it('is read again on its own after a read that found no file descriptor (FD_LIMIT, logged once while it lasts), so that an edit made meanwhile is applied without another', async function () {
    const daemon = await new Daemon(daemonConfig(26950, { log: { level: 'debug' } })).start();
    const count = (s: string): number => daemon.logs.split(s).length - 1;
    try {
      writeFileSync(daemon.fstab, 'fs-0f0d0003 /mnt/c efs _netdev,tls,region=us-east-1 0 0\n');
      await waitFor('the line\'s tunnel', () => has(daemon, 'fs-0f0d0003'), 2_000);
      // No descriptor left: the daemon's limit lowered to what it holds now (its soft limit only, as systemd's
      // LimitNOFILE would), then the edit.
      const restore = await daemon.withholdDescriptors();
      try {
        writeFileSync(daemon.fstab, 'fs-0f0d0003 /mnt/c efs _netdev,tls,region=us-east-1 0 0\nfs-0f0d0004 /mnt/d efs _netdev,tls,region=us-east-1 0 0\n');
        const failed = `warn fstab.read_failed fs=- code=FD_LIMIT msg="Cannot read ${daemon.fstab}: no file descriptor left (EMFILE); ` +
          'the tunnels of its lines keep running as they were; tried again in 5 s, then less often, and at each change of fstab"';
        await waitFor('the failed read logged', () => daemon.logs.includes(failed), 3_000);
        await waitFor('the second try', () => daemon.logs.includes(`debug fstab.retried fs=- code=FD_LIMIT msg="read ${daemon.fstab} again: it still cannot be read"`), 8_000);
        expect(count('fstab.read_failed'), 'logged once while it lasts').to.equal(1);
      } finally {
        restore();
      }
      // Descriptors again, and no change of fstab since the edit: the next try (10 s after the last) applies it.
      await waitFor('the edit applied at the next try', () => has(daemon, 'fs-0f0d0004'), 15_000);
      expect(daemon.logs).to.contain('info fstab.readable');
      expect(await has(daemon, 'fs-0f0d0003'), 'the first line\'s tunnel, kept').to.equal(true);
    } finally {
      await daemon.stop();
    }
  });
});

describe('fstab lines whose tunnel cannot be made', function () {
  it('count in efs_relay_fstab_lines_invalid with the cause logged once, and get their tunnel once the cause is gone, without an edit of fstab', async () => {
    // One port only, taken by an efsctl tunnel: the fstab line's tunnel fails with PORTS_EXHAUSTED.
    const daemon = await new Daemon(daemonConfig(20660, { port_range: { first: 20660, last: 20660 }, metrics: { listen: '127.0.0.1:19814' }, log: { level: 'debug' } })).start();
    const invalid = (): Promise<string | undefined> => daemon.scrapedValue('efs_relay_fstab_lines_invalid');
    const warned = (): number => daemon.logs.split('warn fstab.line_invalid fs=fs-0f0c0002 code=PORTS_EXHAUSTED').length - 1;
    try {
      expect((await daemon.efsctl('add', 'fs-0f0c0001', '-o', 'region=us-east-1')).code).to.equal(0);
      writeFileSync(daemon.fstab, 'fs-0f0c0002 /mnt/b efs _netdev,tls,region=us-east-1 0 0\n');
      await waitFor('the line counted', async () => (await invalid()) === '1', 3_000);
      expect(daemon.logs).to.match(/warn fstab\.line_invalid fs=fs-0f0c0002 code=PORTS_EXHAUSTED msg=".*fstab:1: [^"]*; no tunnel for this line yet: tried again in 5 s, then less often, and at each change of fstab" line=1/);
      // doctor shows it too, though by its own rules the line is valid: only the daemon knows the port is gone.
      const doctor = JSON.parse((await daemon.efsctl('--config', daemon.configFile, 'doctor', '--json')).stdout) as DoctorReport;
      expect(doctor.checks.find((c) => c.name.startsWith('fstab'))).to.deep.equal({
        name: 'fstab line 1', status: 'fail',
        message: `${daemon.fstab}:1: Every port in 20660-20660 is in use; efs-relayd has no tunnel for this line yet`,
        fix: 'Stop unused tunnels (`efsctl list`), unmount what `efsctl stop --force` left mounted, or widen port_range in the config file. ' +
          'efs-relayd tries the line again on its own; until it succeeds, a mount of this line fails. [PORTS_EXHAUSTED]',
      });
      // Tried again (after 5 s), the cause unchanged: logged once while it lasts.
      await waitFor('a try again', () => daemon.logs.includes('debug fstab.retried fs=- code=- msg="tried again the lines whose tunnel failed: 1 still without a tunnel" failed=1'), 15_000);
      expect(warned(), 'logged once while it lasts').to.equal(1);
      expect(await invalid()).to.equal('1');
      // The port freed, the line gets its tunnel on the next try, with fstab untouched.
      expect((await daemon.efsctl('stop', 'fs-0f0c0001')).code).to.equal(0);
      await waitFor('the line\'s tunnel', () => has(daemon, 'fs-0f0c0002'), 30_000);
      expect(await invalid()).to.equal('0');
    } finally {
      await daemon.stop();
    }
  });

  it('log every problem again when fstab is edited', async () => {
    const daemon = await new Daemon(daemonConfig(20660, { port_range: { first: 20660, last: 20660 } })).start();
    const count = (s: string): number => daemon.logs.split(s).length - 1;
    try {
      expect((await daemon.efsctl('add', 'fs-0f0c0003', '-o', 'region=us-east-1')).code).to.equal(0);
      writeFileSync(daemon.fstab, 'fs-0f0c0004 /mnt/b efs _netdev,tls,region=us-east-1 0 0\nfs-0f0c0005 /mnt/c efs _netdev,tls,accesspoint=fsap-1,region=us-east-1 0 0\n');
      await waitFor('both lines logged', () => count('code=PORTS_EXHAUSTED') === 1 && count('fs=fs-0f0c0005 code=BAD_OPTION') === 1, 3_000);
      writeFileSync(daemon.fstab, '# edited\nfs-0f0c0004 /mnt/b efs _netdev,tls,region=us-east-1 0 0\nfs-0f0c0005 /mnt/c efs _netdev,tls,accesspoint=fsap-1,region=us-east-1 0 0\n');
      await waitFor('both logged again after the edit', () => count('code=PORTS_EXHAUSTED') === 2 && count('fs=fs-0f0c0005 code=BAD_OPTION') === 2, 3_000);
      expect(daemon.logs).to.contain('fstab:2: ');
    } finally {
      await daemon.stop();
    }
  });
});

describe('/proc/mounts watching', function () {
  let daemon: Daemon;
  before(async () => {
    daemon = await new Daemon(daemonConfig(20900, { mount: { poll_interval: 0.1, unmount_reads: 3, unmount_grace: 1.5 } })).start();
  });
  after(async () => {
    await daemon?.stop();
  });

  const attach = async (fsId: string, name: string): Promise<{ dir: string; line: string; port: number }> => {
    const dir = join(daemon.dir, name);
    mkdirSync(dir, { recursive: true });
    const r = await daemon.efsctl('attach', fsId, dir, '-o', 'region=us-east-1');
    expect(r.code, r.stderr).to.equal(0);
    const line = daemon.mount.mounts().find((l) => l.split(' ')[1] === dir)!;
    const port = (await tunnels(daemon)).find((t) => t.fs_id === fsId)!.port;
    return { dir, line, port };
  };

  it('keeps the tunnel and its port through a quick remount inside the grace period', async () => {
    const { dir, line, port } = await attach('fs-0e000001', 'remount');
    daemon.mount.removeMount(dir); // a plain umount, outside the daemon
    await sleep(700); // several reads, still inside the grace period
    daemon.mount.addMountLine(line); // mounted again on the same port
    await sleep(1500);
    const t = (await tunnels(daemon)).find((x) => x.fs_id === 'fs-0e000001');
    expect(t?.port).to.equal(port);
    expect(t?.mounts).to.deep.equal([dir]);
  });

  it('stops the tunnel and frees its port after a real unmount: consistent reads plus the grace period', async () => {
    const other = await attach('fs-0e000004', 'stays');
    const { dir } = await attach('fs-0e000002', 'gone');
    daemon.mount.removeMount(dir);
    await sleep(800);
    expect(await has(daemon, 'fs-0e000002'), 'still inside the grace period').to.equal(true);
    await waitFor('tunnel stopped', async () => !(await has(daemon, 'fs-0e000002')), 3_000);
    expect(daemon.logs).to.match(/info tunnel\.unmounted fs=fs-0e000002 .*msg="gone from \S+ for \d+ reads over \d+ s"/);
    // The other tunnel, still mounted, keeps its record and its mount.
    expect(readFileSync(join(daemon.stateDir, 'fs-0e000004.json'), 'utf8')).to.contain(other.dir);
    expect((await tunnels(daemon)).find((t) => t.fs_id === 'fs-0e000004')?.mounts).to.deep.equal([other.dir]);
  });

  it('never stops a tunnel whose mount is still listed, and adopts a listed mount its record lacks', async () => {
    const { port } = await attach('fs-0e000003', 'listed');
    const extra = join(daemon.dir, 'mounted-by-hand');
    daemon.mount.addMountLine(`127.0.0.1:/ ${extra} nfs4 rw,vers=4.1,port=${port},addr=127.0.0.1 0 0`);
    await waitFor('adopted', async () => (await tunnels(daemon)).find((t) => t.fs_id === 'fs-0e000003')!.mounts.includes(extra));
    daemon.mount.removeMount(join(daemon.dir, 'listed'));
    await sleep(2500);
    const t = (await tunnels(daemon)).find((x) => x.fs_id === 'fs-0e000003');
    expect(t?.mounts).to.deep.equal([extra]);
    expect(t?.port).to.equal(port);
  });
});

describe('ports that mounts name, at start-up', function () {
  it('gives the tunnel of an fstab line, made as the daemon starts, no port that a mount names (its tunnel is down, and its reconnects would reach this file system)', async () => {
    const d = new Daemon(daemonConfig(21950, { port_range: { first: 21950, last: 21954 } }));
    // Mounts of other file systems through four of the five ports, whose tunnels are not running.
    for (let p = 21950; p <= 21953; p++) d.mount.addMountLine(`127.0.0.1:/ /mnt/other-${p} nfs4 rw,vers=4.1,port=${p},addr=127.0.0.1 0 0`);
    writeFileSync(d.fstab, 'fs-0e000010 /mnt/new efs _netdev,tls,region=us-east-1 0 0\n');
    await d.start();
    try {
      const t = (await tunnels(d)).find((x) => x.fs_id === 'fs-0e000010');
      expect(t?.port, 'the one port no mount names').to.equal(21954);
    } finally {
      await d.stop();
    }
  });
});

describe('a port that another file system\'s efs-utils mount names', function () {
  it('is not taken by a restored tunnel while that mount is listed, even once free, the mount is not recorded as the tunnel\'s, doctor says why its I/O waits; the tunnel listens once it is gone', async () => {
    const port = 21960;
    const d = new Daemon(daemonConfig(21960, { port_range: { first: 21960, last: 21969 } }));
    const mine = 'fs-0e000020';
    const theirs = 'fs-0e000021';
    await d.start();
    const squatter = createServer();
    try {
      // A mount target by address, so that doctor (below) looks no name up.
      expect((await d.efsctl('add', mine, '-o', `region=us-east-1,mounttargetip=127.0.0.65,tlsport=${port}`)).code).to.equal(0);
      await d.stop();
      // While the daemon was down, efs-utils mounted another file system through the port: its stunnel holds the
      // port, and its config (written before the mount) names the file system.
      await new Promise<void>((r) => squatter.listen(port, '127.0.0.1', () => r()));
      const config = d.efsUtilsConfig(theirs, '/mnt/theirs', port, `[efs]\naccept = 127.0.0.1:${port}\n`);
      d.mount.addMountLine(`127.0.0.1:/ /mnt/theirs nfs4 rw,vers=4.1,port=${port},addr=127.0.0.1 0 0`);
      await d.start();
      const claimed = async (): Promise<void> => {
        const status = await d.efsctlJson<TunnelDetail>('status', mine);
        expect(status.state).to.equal('error');
        expect(status.last_error?.code).to.equal('PORT_CLAIMED');
        expect(status.last_error?.message).to.contain(`${theirs}'s efs-utils mount at /mnt/theirs (${config})`);
        expect(status.mounts, 'the other file system\'s mount is not recorded as this tunnel\'s').to.deep.equal([]);
      };
      await claimed();
      expect(d.logs).to.match(new RegExp(`error tunnel\\.listen_failed fs=${mine} code=PORT_CLAIMED .*retrying every 5 s`));
      await waitFor('the mount not adopted, said once', () => d.logs.includes(`warn mount.not_adopted fs=${mine} code=PORT_CLAIMED`));
      // The stunnel lets go (it died; efs-utils' watchdog would start it again): the tunnel still does not take the
      // port, which the mount's reconnects would cross to this file system's mount target.
      await new Promise<void>((r) => squatter.close(() => r()));
      const freed = new Date().toISOString();
      await waitFor('a retry of the port since it was freed', async () => ((await d.efsctlJson<TunnelDetail>('status', mine)).last_error?.at ?? '') > freed, 8_000);
      await expectPortFree(port);
      await claimed();
      expect(d.record(mine).mounts).to.deep.equal([]);
      expect(d.logs.match(/mount\.not_adopted/g)).to.have.length(1);
      // doctor says why the mount's I/O waits, and what to do: not the takeover of a dead stunnel's mount, which
      // would be refused, since the port is the tunnel's.
      const report = JSON.parse((await d.efsctl('--config', d.configFile, 'doctor', '--json')).stdout) as DoctorReport;
      const mounts = report.checks.find((c) => c.name === 'mounts');
      expect(mounts?.status).to.equal('fail');
      expect(mounts?.message).to.equal(`/mnt/theirs (port ${port}): the port of ${mine}'s tunnel, which does not listen there; PORT_CLAIMED: Port ${port} is the port of ${theirs}'s efs-utils mount at /mnt/theirs (${config}); ${mine}'s tunnel does not listen there while that mount is listed, or its NFS client's reconnects would reach ${mine}'s mount target`);
      expect(mounts?.fix).to.equal(`${ERRORS.PORT_CLAIMED.hint} [PORT_CLAIMED]`);
      // The other file system is unmounted (efs-utils removes its config): the tunnel takes its port.
      d.mount.removeMount('/mnt/theirs');
      rmSync(config);
      await waitFor('the tunnel listening on its port', async () => (await d.efsctlJson<TunnelDetail>('status', mine)).state === 'listening', 8_000);
      await expectPortTaken(port);
    } finally {
      squatter.close();
      await d.stop();
    }
  });

  it('refuses efsctl add of another file system with tlsport= of that port (PORT_CLAIMED, naming the mount), picks around it, and lets the mount\'s own file system take it', async () => {
    const port = 21970;
    const d = new Daemon(daemonConfig(21970, { port_range: { first: 21970, last: 21971 } }));
    d.efsUtilsConfig('fs-0e000031', '/mnt/theirs', port);
    d.mount.addMountLine(`127.0.0.1:/ /mnt/theirs nfs4 rw,vers=4.1,port=${port},addr=127.0.0.1 0 0`);
    await d.start();
    try {
      const r = await d.efsctl('add', 'fs-0e000030', '-o', `region=us-east-1,tlsport=${port}`);
      expect(r.code).to.equal(1);
      expect(r.stderr).to.contain('PORT_CLAIMED').and.to.contain("fs-0e000031's efs-utils mount at /mnt/theirs");
      const picked = await d.efsctl('add', 'fs-0e000030', '-o', 'region=us-east-1');
      expect(picked.code, picked.stderr).to.equal(0);
      expect((await tunnels(d)).find((t) => t.fs_id === 'fs-0e000030')?.port).to.equal(21971);
      // The same file system's own efs-utils mount is no obstacle: its tunnel may take the port (a takeover).
      const own = await d.efsctl('add', 'fs-0e000031', '-o', `region=us-east-1,tlsport=${port}`);
      expect(own.code, own.stderr).to.equal(0);
      expect((await tunnels(d)).find((t) => t.fs_id === 'fs-0e000031')?.port).to.equal(port);
    } finally {
      await d.stop();
    }
  });
  it('is said loudly when the tunnel serves it already (left by an older efs-relay): an error log line, and doctor\'s fix to mount that file system again', async () => {
    const port = 21980;
    const d = new Daemon(daemonConfig(21980, { port_range: { first: 21980, last: 21981 } }));
    await d.start();
    try {
      expect((await d.efsctl('add', 'fs-0e000040', '-o', `region=us-east-1,mounttargetip=127.0.0.65,tlsport=${port}`)).code).to.equal(0);
      const config = d.efsUtilsConfig('fs-0e000041', '/mnt/wrong', port);
      d.mount.addMountLine(`127.0.0.1:/ /mnt/wrong nfs4 rw,vers=4.1,port=${port},addr=127.0.0.1 0 0`);
      await waitFor('the wrong file system said', () => d.logs.includes('error mount.wrong_file_system fs=fs-0e000040 code=PORT_CLAIMED'));
      expect(d.logs).to.contain(`msg="/mnt/wrong is mounted through port ${port}, which the tunnel of fs-0e000040 holds, but efs-utils' config ${config} gives the mount to fs-0e000041, and that tunnel serves the port: the mount's NFS traffic reaches the mount target of fs-0e000040, not of fs-0e000041. Unmount /mnt/wrong and mount fs-0e000041 again"`);
      await sleep(500); // several reads: said once, and the mount is not the tunnel's
      expect(d.logs.match(/mount\.wrong_file_system/g)).to.have.length(1);
      expect(d.record('fs-0e000040').mounts).to.deep.equal([]);
      const report = JSON.parse((await d.efsctl('--config', d.configFile, 'doctor', '--json')).stdout) as DoctorReport;
      expect(report.checks.find((c) => c.name === 'mounts')).to.deep.equal({
        name: 'mounts',
        status: 'fail',
        message: `/mnt/wrong (port ${port}): efs-utils' config ${config} mounts fs-0e000041 there, but the port is fs-0e000040's tunnel, so its NFS traffic goes to the wrong file system's mount target`,
        fix: 'Unmount /mnt/wrong and mount fs-0e000041 again (`mount -t efs -o tls fs-0e000041 /mnt/wrong`): it gets a port of its own.',
      });
    } finally {
      await d.stop();
    }
  });
});

describe('state dir watching', function () {
  let daemon: Daemon;
  before(async () => {
    daemon = await new Daemon(daemonConfig(20950, { log: { level: 'debug' } })).start();
  });
  after(async () => {
    await daemon?.stop();
  });

  const record = (fsId: string, port: number) => ({
    version: 1, fs_id: fsId, port,
    target: { dns_name: `${fsId}.efs.us-east-1.amazonaws.com`, address: '127.0.0.18', port: 2049, region: 'us-east-1' },
    options: { region: 'us-east-1' }, created: new Date().toISOString(), source: 'manual', mounts: [],
  });

  it('starts a tunnel within 2 s for a record added by hand, on the record\'s port', async () => {
    writeFileSync(join(daemon.stateDir, 'fs-0d000001.json'), JSON.stringify(record('fs-0d000001', 20960)));
    await waitFor('tunnel from the new record', async () => (await tunnels(daemon)).find((t) => t.fs_id === 'fs-0d000001')?.state === 'listening', 2_000);
    expect((await tunnels(daemon)).find((t) => t.fs_id === 'fs-0d000001')!.port).to.equal(20960);
  });

  it('stops the tunnel within 2 s when its record is removed by hand', async () => {
    expect((await daemon.efsctl('add', 'fs-0d000004', '-o', 'region=us-east-1')).code).to.equal(0);
    const { port } = (await tunnels(daemon)).find((t) => t.fs_id === 'fs-0d000004')!;
    rmSync(join(daemon.stateDir, 'fs-0d000004.json'));
    await waitFor('tunnel stopped', async () => !(await has(daemon, 'fs-0d000004')), 2_000);
    await expectPortFree(port);
  });

  it('moves a tunnel when its record is edited to another port', async () => {
    const r = await daemon.efsctlJson<{ tunnel: TunnelView }>('add', 'fs-0d000002', '-o', 'region=us-east-1');
    const file = join(daemon.stateDir, 'fs-0d000002.json');
    const rec = JSON.parse(readFileSync(file, 'utf8')) as { port: number };
    const newPort = r.tunnel.port === 20970 ? 20971 : 20970;
    writeFileSync(file, JSON.stringify({ ...rec, port: newPort }));
    await waitFor('tunnel on the new port', async () => (await tunnels(daemon)).find((t) => t.fs_id === 'fs-0d000002')?.port === newPort, 2_000);
  });

  it('logs a corrupt record once, skips it and keeps serving', async () => {
    writeFileSync(join(daemon.stateDir, 'fs-0d000003.json'), '{ not json');
    await waitFor('logged', () => daemon.logs.includes('fs-0d000003.json: not valid JSON'), 2_000);
    writeFileSync(join(daemon.stateDir, 'unrelated.txt'), 'x'); // another change triggers another scan
    await waitFor('second file logged', () => daemon.logs.includes('unrelated.txt: not a tunnel record'), 2_000);
    expect(daemon.logs.split('fs-0d000003.json: not valid JSON').length - 1, 'logged once').to.equal(1);
    expect((await daemon.efsctl('list')).code).to.equal(0);
  });

  it('reads the state dir again on its own after a reading that found no file descriptor (FD_LIMIT, logged once while it lasts), so that records added meanwhile get their tunnels; the mount table\'s poll says FD_LIMIT too and keeps every tunnel', async () => {
    const count = (s: string): number => daemon.logs.split(s).length - 1;
    const noFd = `Cannot read ${daemon.stateDir}: no file descriptor left (EMFILE)`;
    // No descriptor left: the daemon's limit lowered to what it holds now. No efsctl meanwhile: its connection would need one.
    const restore = await daemon.withholdDescriptors();
    try {
      writeFileSync(join(daemon.stateDir, 'fs-0d000005.json'), JSON.stringify(record('fs-0d000005', 20980)));
      // The watch cannot list the directory to tell what changed, and says so; the state dir is read all the same.
      await waitFor('the failed reading logged', () => daemon.logs.includes(`warn state.rescan_failed fs=- code=FD_LIMIT msg="${noFd}; `
        + 'no tunnel was changed, and the state dir is read again in 5 s, then less often, and at each change in it"'), 3_000);
      expect(daemon.logs).to.contain(`warn state.watch_error fs=- code=FD_LIMIT msg="watching ${daemon.stateDir}: Error: EMFILE: too many open files, scandir '${daemon.stateDir}'; `
        + 'a change in it may have gone unseen: it is read again"');
      // One more record while it lasts, once the watch's listing may run again: it fails alike, the next readings will see it.
      await sleep(1_500);
      writeFileSync(join(daemon.stateDir, 'fs-0d000006.json'), JSON.stringify(record('fs-0d000006', 20981)));
      await waitFor('the try 5 s later', () => daemon.logs.includes(`debug state.rescan_retried fs=- code=FD_LIMIT msg="read the state dir again: ${noFd}"`), 8_000);
      expect(count('state.rescan_failed'), 'logged once while it lasts').to.equal(1);
      expect(count('warn state.watch_error'), 'the watch\'s error too: a warning once while it lasts').to.equal(1);
      expect(count('debug state.watch_error'), 'the second record\'s, at debug level').to.be.greaterThan(0);
      // The mount table's poll (every 0.1 s here) fails the same way, and keeps every tunnel.
      expect(daemon.logs).to.contain(`warn mounts.read_failed fs=- code=FD_LIMIT msg="cannot read ${daemon.dir}/proc-mounts: EMFILE: too many open files, open '${daemon.dir}/proc-mounts'; `
        + 'every tunnel is kept, and it is read again at the next poll"');
      expect(count('mounts.read_failed'), 'logged once while it lasts').to.equal(1);
    } finally {
      restore();
    }
    // Descriptors again, and no change since: the next try (10 s after the last) applies both records.
    await waitFor('both records\' tunnels at the next try', async () => (await has(daemon, 'fs-0d000005')) && (await has(daemon, 'fs-0d000006')), 15_000);
    expect(daemon.logs).to.contain('info state.readable fs=- code=- msg="the state dir can be read again; its records are applied"\n');
    const ports = Object.fromEntries((await tunnels(daemon)).map((t) => [t.fs_id, t.port]));
    expect(ports).to.include({ 'fs-0d000005': 20980, 'fs-0d000006': 20981 });
  });
});
