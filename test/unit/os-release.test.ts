import { expect } from 'chai';
import { writeFileSync } from 'node:fs';
import { arch, release } from 'node:os';
import { join } from 'node:path';
import { describeOs, parseOsRelease } from '../../cli/os-release.js';
import { tempDir } from '../helpers/daemon.js';

describe('what efsctl doctor says this host runs (os-release)', () => {
  it('reads os-release fields bare, double- or single-quoted, with backslash escapes, and skips comments and blank lines', () => {
    const fields = parseOsRelease([
      '# a comment',
      'NAME="Amazon Linux"',
      "VERSION_ID='2023'",
      'VERSION_CODENAME=bookworm',
      '',
      'PRETTY_NAME="A \\"quoted\\" name"',
      'not a field',
    ].join('\n'));
    expect(fields).to.deep.equal({ NAME: 'Amazon Linux', VERSION_ID: '2023', VERSION_CODENAME: 'bookworm', PRETTY_NAME: 'A "quoted" name' });
  });

  it('takes /usr/lib/os-release when /etc/os-release is missing, as os-release(5) says, and the running kernel and architecture', async () => {
    const dir = tempDir('efs-relay-os-release-');
    writeFileSync(join(dir, 'usr-lib-os-release'), 'NAME="Red Hat Enterprise Linux"\nVERSION_ID="9.4"\n');
    const os = await describeOs([join(dir, 'missing'), join(dir, 'usr-lib-os-release')]);
    expect(os).to.deep.equal({ distro: 'Red Hat Enterprise Linux', version: '9.4', codename: '', kernel: release(), arch: arch(), platform: process.platform });
  });

  it('names the host "Linux" with its kernel when no os-release file exists', async () => {
    const dir = tempDir('efs-relay-os-release-');
    const os = await describeOs([join(dir, 'missing')]);
    expect([os.distro, os.version, os.codename, os.kernel]).to.deep.equal(['Linux', '', '', release()]);
  });
});
