import { expect } from 'chai';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defaultConfig } from '../../daemon/config.js';
import { MountsFileReader, parseProcMounts, readProcMounts, unencryptedEfsMounts } from '../../daemon/proc-mounts.js';
import { dnsNameSuffix } from '../../daemon/target.js';
import { run, skipIf, tempDir } from '../helpers/daemon.js';

const MODULE = fileURLToPath(new URL('../../daemon/proc-mounts.js', import.meta.url));

/**
 * In a private mount namespace (so the host's table is never touched): one
 * reader reads /proc/mounts, then COUNT tmpfs mounts are made, then removed,
 * reading after each step. Prints what it saw at each step (how many of those
 * mounts, and whether it listed the whole table as a fresh read does) and how
 * many mounts files the process held open.
 */
const SCRIPT = `
import { execFileSync } from 'node:child_process';
import { mkdirSync, readdirSync, readlinkSync } from 'node:fs';
import { readFileSync } from 'node:fs';
import { MountsFileReader, parseProcMounts } from ${JSON.stringify(MODULE)};
const [base, count] = [process.argv[2], Number(process.argv[3])];
const dirs = Array.from({ length: count }, (_, i) => base + '/' + 'm'.repeat(60) + i);
const reader = new MountsFileReader('/proc/mounts');
// How many of our mounts it lists, and whether it lists the whole table as a fresh read does.
const ours = async () => {
  const listed = await reader.read();
  const whole = JSON.stringify(listed) === JSON.stringify(parseProcMounts(readFileSync('/proc/mounts', 'utf8')));
  return [listed.filter((m) => m.device === 'efsrelaytest' && dirs.includes(m.dir)).length, whole];
};
const seen = [await ours()];
for (const d of dirs) { mkdirSync(d); execFileSync('mount', ['-t', 'tmpfs', 'efsrelaytest', d]); }
seen.push(await ours());
for (const d of dirs) execFileSync('umount', [d]);
seen.push(await ours());
const open = readdirSync('/proc/self/fd').filter((fd) => { try { return /\\/mounts$/.test(readlinkSync('/proc/self/fd/' + fd)); } catch { return false; } }).length;
await reader.close();
console.log(JSON.stringify({ seen, open }));
`;

describe('the /proc/mounts reader of the mount watcher', () => {
  it('lists what a fresh read of /proc/mounts lists', async () => {
    const reader = new MountsFileReader('/proc/mounts');
    try {
      // Twice, so that the second read comes from the file kept open.
      await reader.read();
      expect(await reader.read()).to.deep.equal(await readProcMounts('/proc/mounts'));
    } finally {
      await reader.close();
    }
  });

  it('kept open on procfs, sees mounts made and removed after it opened, however long the table grows', async function () {
    const probe = await run('unshare', ['-m', '--propagation', 'private', 'true']);
    skipIf(this, probe.code === 0 ? null : `unshare -m is not permitted here (a private mount namespace needs CAP_SYS_ADMIN): ${probe.stderr.trim()}`);
    const dir = tempDir('mounts-reader');
    writeFileSync(join(dir, 'read.mjs'), SCRIPT);
    mkdirSync(join(dir, 'm'));
    // 300 mounts of about 110 bytes each: a table of over 32 KiB, twice the reader's first buffer.
    const r = await run('unshare', ['-m', '--propagation', 'private', process.execPath, join(dir, 'read.mjs'), join(dir, 'm'), '300']);
    expect(r.code, r.stderr).to.equal(0);
    expect(JSON.parse(r.stdout)).to.deep.equal({ seen: [[0, true], [300, true], [0, true]], open: 1 });
  });

  it('reads any other file afresh, so a stand-in replaced by rename is read as it is now', async () => {
    const dir = tempDir('mounts-reader');
    const file = join(dir, 'mounts');
    const line = (port: number): string => `127.0.0.1:/ /mnt/efs nfs4 rw,port=${port} 0 0\n`;
    writeFileSync(file, line(20049));
    const reader = new MountsFileReader(file);
    try {
      expect((await reader.read())[0]?.options.port).to.equal('20049');
      writeFileSync(`${file}.new`, line(20050));
      renameSync(`${file}.new`, file);
      expect((await reader.read())[0]?.options.port).to.equal('20050');
    } finally {
      await reader.close();
    }
  });
});

describe('NFS mounts of EFS without a tunnel', () => {
  it('knows a file system\'s name by its region\'s own DNS suffix (amazonaws.com.cn in China), and no other', () => {
    const mounts = parseProcMounts([
      'fs-0a000001.efs.us-east-1.amazonaws.com:/ /mnt/a nfs4 rw,vers=4.1,addr=10.0.0.5 0 0',
      'fs-0a000002.efs.cn-north-1.amazonaws.com.cn:/ /mnt/b nfs4 rw,vers=4.1,addr=10.1.0.5 0 0',
      'fs-0a000003.efs.us-east-1.amazonaws.com.cn:/ /mnt/c nfs4 rw,vers=4.1,addr=10.2.0.5 0 0',
      '127.0.0.1:/ /mnt/d nfs4 rw,vers=4.1,port=20100,addr=127.0.0.1 0 0',
    ].join('\n') + '\n');
    const cfg = defaultConfig();
    expect(unencryptedEfsMounts(mounts, (region) => dnsNameSuffix(region, cfg), new Set()).map((m) => m.fs_id)).to.deep.equal(['fs-0a000001', 'fs-0a000002']);
  });
});
