// efs-utils' optimize_readahead: which kernels, what value, which backing device.
import { expect } from 'chai';
import { statSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { bdiName, kernelNeedsReadahead, readaheadKb } from '../../daemon/readahead.js';

describe('the readahead efs-utils sets after a mount', () => {
  it('is needed from Linux 5.4 on, as efs-utils reads the kernel release', () => {
    expect(['4.14.355-276.amzn2.x86_64', '4.18.0-553.el8_10.x86_64', '5.3.18', 'x'].map((r) => kernelNeedsReadahead(r))).to.deep.equal([false, false, false, false]);
    expect(['5.4.0-216-generic', '5.10.236-227.928.amzn2.x86_64', '6.1.0-37-cloud-amd64', '6.18.44-fc'].map((r) => kernelNeedsReadahead(r))).to.deep.equal([true, true, true, true]);
  });

  it('is 15 × rsize in KiB: 15360 for efs-utils\' 1 MiB, or from the rsize= mount.nfs4 gets', () => {
    expect(readaheadKb('nfsvers=4.1,rsize=1048576,wsize=1048576,hard,port=20100')).to.equal(15360);
    expect(readaheadKb('nfsvers=4.1,rsize=65536,port=20100')).to.equal(960);
    expect(readaheadKb('vers=4.1,port=20100')).to.equal(15360);
  });

  it('names the backing device MAJOR:MINOR as the kernel does, also past 255', () => {
    expect(bdiName(0x2bn)).to.equal('0:43');
    expect(bdiName((8n << 8n) | 1n)).to.equal('8:1');
    // glibc's makedev(259, 300): the high minor bits sit above bit 12, the high major bits above bit 32.
    expect(bdiName((259n & 0xfffn) << 8n | (300n & 0xffn) | ((300n & ~0xffn) << 12n))).to.equal('259:300');
    // The device of a real directory, as stat(1) prints it.
    const dev = statSync('/tmp', { bigint: true }).dev;
    const [major, minor] = execFileSync('stat', ['-c', '%Hd:%Ld', '/tmp'], { encoding: 'utf8' }).trim().split(':');
    expect(bdiName(dev)).to.equal(`${major}:${minor}`);
  });
});
