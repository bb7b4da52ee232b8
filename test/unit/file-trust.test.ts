// whoElseCanChange: who besides root could change a CA bundle or the config file.
import { expect } from 'chai';
import { chmodSync, chownSync, mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { whoElseCanChange } from '../../daemon/file-trust.js';
import { skipIf, tempDir } from '../helpers/daemon.js';

const OTHER = 4242;

describe('trusted files', function () {
  let dir: string;
  const file = (name: string, mode = 0o644): string => {
    const path = join(dir, name);
    writeFileSync(path, 'pem');
    chmodSync(path, mode);
    return path;
  };
  const folder = (name: string, mode: number): string => {
    const path = join(dir, name);
    mkdirSync(path);
    chmodSync(path, mode);
    return path;
  };
  before(function () {
    skipIf(this, process.getuid?.() === 0 ? null : 'making files owned by another user needs root');
    dir = tempDir('file-trust');
    chmodSync(dir, 0o755);
  });

  it('finds nothing to say of a root-owned file that only root can write, or of a file that is not there', async () => {
    expect(await whoElseCanChange(file('ok.pem'), 0)).to.equal(null);
    expect(await whoElseCanChange(join(dir, 'missing.pem'), 0)).to.equal(null);
  });

  it('judges a file that is not there by the directories it would be in, since whoever can write one can put a file of their own there', async () => {
    const open = folder('gone', 0o777);
    expect(await whoElseCanChange(join(open, 'cas.pem'), 0)).to.equal(`${open} is writable by every user (mode 0777)`);
    const link = join(dir, 'dangling.pem');
    symlinkSync(join(open, 'cas.pem'), link);
    expect(await whoElseCanChange(link, 0), 'a link to it').to.equal(`${open} is writable by every user (mode 0777)`);
  });

  it('names a file every user can write, one its group can write, and one another user owns', async () => {
    const all = file('all.pem', 0o666);
    expect(await whoElseCanChange(all, 0)).to.equal(`${all} is writable by every user (mode 0666)`);
    const group = file('group.pem', 0o664);
    chownSync(group, 0, OTHER);
    expect(await whoElseCanChange(group, 0)).to.equal(`${group} is writable by group ${OTHER} (mode 0664)`);
    chownSync(group, 0, 0);
    expect(await whoElseCanChange(group, 0), 'group root only').to.equal(null);
    const owned = file('owned.pem');
    chownSync(owned, OTHER, 0);
    expect(await whoElseCanChange(owned, 0)).to.equal(`${owned} is owned by uid ${OTHER}`);
    expect(await whoElseCanChange(owned, OTHER), 'the daemon\'s own user, run unprivileged').to.equal(null);
  });

  it('names a directory above the file that another user could write, since they could replace the file, but not a sticky one like /tmp', async () => {
    const open = folder('open', 0o777);
    const inOpen = join(open, 'cas.pem');
    writeFileSync(inOpen, 'pem');
    expect(await whoElseCanChange(inOpen, 0)).to.equal(`${open} is writable by every user (mode 0777)`);
    const sticky = folder('sticky', 0o1777);
    const inSticky = join(sticky, 'cas.pem');
    writeFileSync(inSticky, 'pem');
    expect(await whoElseCanChange(inSticky, 0)).to.equal(null);
  });

  it('follows a symbolic link: the file it leads to counts, and so does the directory that holds the link', async () => {
    const target = file('target.pem', 0o666);
    const safeLink = join(dir, 'link.pem');
    symlinkSync(target, safeLink);
    expect(await whoElseCanChange(safeLink, 0)).to.equal(`${target} is writable by every user (mode 0666)`);
    const open = folder('links', 0o777);
    const openLink = join(open, 'link.pem');
    symlinkSync(file('safe.pem'), openLink);
    expect(await whoElseCanChange(openLink, 0)).to.equal(`${open} is writable by every user (mode 0777)`);
  });

  it('judges the directory of each link along a chain, since whoever can write the directory of a link in the middle can make it lead elsewhere', async () => {
    const open = folder('middle', 0o777);
    const middle = join(open, 'next.pem');
    symlinkSync(file('end.pem'), middle);
    const first = join(dir, 'first.pem');
    symlinkSync(middle, first);
    expect(await whoElseCanChange(first, 0)).to.equal(`${open} is writable by every user (mode 0777)`);
  });
});
