// Which file system an efs-utils mount belongs to, from the names of the
// configs efs-utils writes (stunnel-config.FS.MOUNT.PORT).
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { efsUtilsConfigs, efsUtilsMounts, efsUtilsNamespacedMount, efsUtilsTunnelState } from '../../daemon/efs-utils-configs.js';

describe('efs-utils configs', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'efs-utils-configs-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const touch = (...names: string[]): void => names.forEach((n) => writeFileSync(join(dir, n), ''));

  it('names the file system of each efs-utils mount by the exact mount point and port, not by a name that merely ends the same', async () => {
    touch('stunnel-config.fs-0a1.mnt.a.20100', 'stunnel-config.fs-0b2.srv.mnt.a.20101', 'fs-0a1.mnt.a.20100', 'stunnel-config.fs-0c3.data.20102');
    const found = await efsUtilsMounts([{ dir: '/mnt/a', port: 20100 }, { dir: '/mnt/a', port: 20101 }, { dir: '/data', port: 20102 }, { dir: '/other', port: 20103 }], dir);
    expect(found).to.deep.equal([
      { dir: '/mnt/a', port: 20100, fs_id: 'fs-0a1', file: join(dir, 'stunnel-config.fs-0a1.mnt.a.20100') },
      { dir: '/data', port: 20102, fs_id: 'fs-0c3', file: join(dir, 'stunnel-config.fs-0c3.data.20102') },
    ]);
    expect((await efsUtilsConfigs('/srv/mnt/a', 20101, dir)).files).to.deep.equal([join(dir, 'stunnel-config.fs-0b2.srv.mnt.a.20101')]);
    expect((await efsUtilsConfigs('/mnt/a', 20101, dir)).files).to.deep.equal([]);
  });

  it('leaves out a mount whose name two file systems\' configs share (/mnt/a.b and /mnt/a/b), since whose it is cannot be told', async () => {
    touch('stunnel-config.fs-0a1.mnt.a.b.20100', 'stunnel-config.fs-0b2.mnt.a.b.20100');
    expect(await efsUtilsMounts([{ dir: '/mnt/a.b', port: 20100 }], dir)).to.deep.equal([]);
  });

  it('finds none when the state dir does not exist (efs-utils never ran)', async () => {
    expect(await efsUtilsMounts([{ dir: '/mnt/a', port: 20100 }], join(dir, 'missing'))).to.deep.equal([]);
  });
  it('reads a state file\'s tunnel pid, command and the namespace that nsenter --net= enters, and nothing from a file efs-utils would not write', async () => {
    const state = (v: unknown): string => {
      const f = join(dir, `state-${Math.random()}`);
      writeFileSync(f, typeof v === 'string' ? v : JSON.stringify(v));
      return f;
    };
    expect(await efsUtilsTunnelState(state({ pid: 4242, cmd: ['nsenter', '--net=/var/run/netns/blue', '/usr/bin/stunnel', '/var/run/efs/c'] })))
      .to.deep.equal({ pid: 4242, cmd: ['nsenter', '--net=/var/run/netns/blue', '/usr/bin/stunnel', '/var/run/efs/c'], netns: '/var/run/netns/blue' });
    expect(await efsUtilsTunnelState(state({ pid: 4242, cmd: ['/usr/bin/stunnel', '/var/run/efs/c'] }))).to.deep.include({ netns: null });
    // A temporary state file's pid of -1 (efs-utils' port lock) or a pid that is not a number is no pid.
    expect(await efsUtilsTunnelState(state({ pid: -1, cmd: ['/usr/bin/efs-proxy', 'c'] }))).to.deep.include({ pid: null });
    expect(await efsUtilsTunnelState(state({ pid: '4242', cmd: ['x'] }))).to.deep.include({ pid: null });
    // An nsenter that enters no network namespace names none.
    expect(await efsUtilsTunnelState(state({ pid: 1, cmd: ['nsenter', '--mount=/x', 'stunnel'] }))).to.deep.include({ netns: null });
    for (const bad of ['not json', '[]', '{"pid": 1}', '{"cmd": "stunnel c"}', 'null']) expect(await efsUtilsTunnelState(state(bad)), bad).to.equal(null);
    expect(await efsUtilsTunnelState(join(dir, 'missing'))).to.equal(null);
  });

  it('finds a mount\'s namespace through its config\'s name and its state file, and none for a mount that is not efs-utils\' or not in one', async () => {
    touch('stunnel-config.fs-0a1.mnt.a.20100', 'stunnel-config.fs-0a1.mnt.b.20101');
    writeFileSync(join(dir, 'fs-0a1.mnt.a.20100'), JSON.stringify({ pid: 7, cmd: ['nsenter', '--net=/proc/99/ns/net', 'stunnel', 'c'] }));
    writeFileSync(join(dir, 'fs-0a1.mnt.b.20101'), JSON.stringify({ pid: 8, cmd: ['stunnel', 'c'] }));
    expect(await efsUtilsNamespacedMount('/mnt/a', 20100, dir)).to.deep.equal({
      pid: 7, cmd: ['nsenter', '--net=/proc/99/ns/net', 'stunnel', 'c'], netns: '/proc/99/ns/net',
      config: join(dir, 'stunnel-config.fs-0a1.mnt.a.20100'), stateFile: join(dir, 'fs-0a1.mnt.a.20100'),
    });
    expect(await efsUtilsNamespacedMount('/mnt/b', 20101, dir)).to.equal(null);
    expect(await efsUtilsNamespacedMount('/mnt/c', 20102, dir)).to.equal(null);
  });
});
