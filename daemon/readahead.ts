// efs-utils' optimize_readahead. Since Linux 5.4 an NFS mount reads ahead a
// fixed 128 KiB (kernel bug 204939; before, 15 × rsize), which slows
// sequential reads from EFS. efs-utils sets the mount's read_ahead_kb back to
// 15 × rsize after each mount, and so does the daemon.
import { constants } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { release } from 'node:os';
import { join } from 'node:path';
import { runCommand } from './mount-command.js';

/** The kernel's multiple of rsize before 5.4 (NFS_MAX_READAHEAD), as efs-utils uses it. */
const MULTIPLIER = 15;
/** efs-utils' rsize, which mount.nfs4 gets unless the user names another. */
const DEFAULT_RSIZE = 1048576;

/** Whether a kernel of this release reads ahead too little on NFS: 5.4 or later, as efs-utils reads `uname -r`. */
export function kernelNeedsReadahead(rel: string = release()): boolean {
  const m = /^(\d+)\.(\d+)/.exec(rel);
  if (!m) return false;
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major > 5 || (major === 5 && minor >= 4);
}

/** 15 × rsize in KiB, from mount.nfs4's -o. */
export function readaheadKb(nfsOptions: string): number {
  const rsize = Number(/(?:^|,)rsize=(\d+)/.exec(nfsOptions)?.[1] ?? DEFAULT_RSIZE);
  return Math.floor((MULTIPLIER * rsize) / 1024);
}

/** MAJOR:MINOR of a Linux device number (glibc's encoding), as /sys/class/bdi names a mount's backing device. */
export function bdiName(dev: bigint): string {
  const major = ((dev >> 8n) & 0xfffn) | ((dev >> 32n) & ~0xfffn);
  const minor = (dev & 0xffn) | ((dev >> 12n) & ~0xffn);
  return `${major}:${minor}`;
}

/**
 * Set the read_ahead_kb of the mount at `dir`; resolves to the file written. The device number comes from
 * `statCommand -c %d DIR` in a child process, as the health checks stat, so that a mount that hangs at once
 * cannot block the daemon. The file is never created: only a backing device the kernel lists is written.
 */
export async function setReadahead(dir: string, kb: number, bdiDir: string, statCommand: string, timeoutMs: number): Promise<string> {
  const r = await runCommand([statCommand, '-c', '%d', dir], timeoutMs);
  if (r.timedOut) throw new Error(`stat ${dir} did not return within ${timeoutMs / 1000} s`);
  const dev = r.stdout.trim();
  if (r.code !== 0 || !/^\d+$/.test(dev)) throw new Error(`${statCommand} -c %d ${dir} exited with ${r.code}: ${(r.stderr || r.stdout).trim()}`);
  const file = join(bdiDir, bdiName(BigInt(dev)), 'read_ahead_kb');
  await writeFile(file, `${kb}\n`, { flag: constants.O_WRONLY | constants.O_TRUNC }); // no O_CREAT
  return file;
}
