// Which file system an efs-utils mount belongs to, from the names of the
// configs efs-utils writes (stunnel-config.FS.MOUNT.PORT).
import { expect } from 'chai';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { efsUtilsConfigs, efsUtilsMounts } from '../../daemon/efs-utils-configs.js';

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
});
