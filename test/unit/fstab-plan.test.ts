// planFstab: which efs lines of fstab get a tunnel, and what is said of the others.
import { expect } from 'chai';
import { defaultConfig } from '../../daemon/config.js';
import { followFstabAliases, parseFstab } from '../../daemon/fstab.js';
import { planFstab } from '../../daemon/fstab-plan.js';
import { METADATA_NOT_ASKED } from '../../daemon/target.js';

const plan = (lines: string[]) => planFstab(parseFstab(lines.join('\n') + '\n'), defaultConfig(), METADATA_NOT_ASKED);

describe('fstab plan', () => {
  it('wants one tunnel per file system, from its first line, and says nothing of a later line with the same tunnel options', () => {
    const p = plan([
      'fs-0a000001 /mnt/a efs _netdev,tls,region=us-east-1 0 0',
      'fs-0a000001:/sub /mnt/a-sub efs _netdev,tls,region=us-east-1,rsize=65536 0 0',
      'fs-0a000002 /mnt/b efs tls,region=eu-west-1,tlsport=20100 0 0',
    ]);
    expect([...p.wanted.keys()]).to.deep.equal(['fs-0a000001', 'fs-0a000002']);
    expect(p.wanted.get('fs-0a000002')).to.deep.equal({ tls: null, region: 'eu-west-1', tlsport: '20100' });
    expect(Object.fromEntries(p.lineOf)).to.deep.equal({ 'fs-0a000001': 1, 'fs-0a000002': 3 });
    expect(p.problems).to.deep.equal([]);
  });

  it('names a later line that wants another tunnel, with its first line, what differs and how to make them agree', () => {
    const p = plan([
      'fs-0a000001 /mnt/a efs tls,region=us-east-1 0 0',
      'fs-0a000001:/x /mnt/x efs tls,region=us-east-1,mounttargetip=127.0.0.60,tlsport=20100 0 0',
    ]);
    expect(p.problems).to.deep.equal([{
      line: 2, fsId: 'fs-0a000001', code: 'BAD_OPTION',
      message: 'fs-0a000001 is also on line 1 with another tlsport (20100 here, any there), target (127.0.0.60 (fs-0a000001.efs.us-east-1.amazonaws.com) here, '
        + 'fs-0a000001.efs.us-east-1.amazonaws.com there); a file system has one tunnel, made from line 1, so this line\'s mount would be refused',
      hint: 'Give every line of fs-0a000001 the same tlsport, target (mounttargetip, az, region), cafile, verify, accesspoint and iam (awsprofile, awscredsuri), or leave them out of the later lines.',
    }]);
    expect([...p.wanted.keys()]).to.deep.equal(['fs-0a000001']);
  });

  it('names a later line of the file system with another access point: its tunnel presents one access point', () => {
    const p = plan([
      'fs-0a000001:/ /mnt/a efs tls,region=us-east-1,accesspoint=fsap-0123456789abcdef0 0 0',
      'fs-0a000001:/ /mnt/b efs tls,region=us-east-1,accesspoint=fsap-0123456789abcdef1 0 0',
    ]);
    expect(p.problems.map((x) => [x.line, x.code, x.message])).to.deep.equal([[2, 'BAD_OPTION',
      'fs-0a000001 is also on line 1 with another accesspoint (fsap-0123456789abcdef1 here, fsap-0123456789abcdef0 there); a file system has one tunnel, made from line 1, so this line\'s mount would be refused']]);
    expect(p.wanted.get('fs-0a000001')).to.deep.include({ accesspoint: 'fsap-0123456789abcdef0' });
  });

  it('skips a line whose DNS name is not the one its tunnel would dial, for a region= of another region or another DNS suffix, as efs-utils refuses it', () => {
    const p = plan([
      'fs-0a000001.efs.us-east-1.amazonaws.com:/ /mnt/a efs tls,region=eu-west-1 0 0',
      'fs-0a000002.efs.us-east-1.example.com:/ /mnt/b efs tls 0 0',
      'FS-0A000003.EFS.US-EAST-1.AMAZONAWS.COM:/ /mnt/c efs tls,region=us-east-1 0 0',
    ]);
    expect(p.problems.map((x) => [x.line, x.code, x.message])).to.deep.equal([
      [1, 'BAD_OPTION', 'The DNS name "fs-0a000001.efs.us-east-1.amazonaws.com" is not the file system\'s DNS name for these mount options and efs-relay\'s config, fs-0a000001.efs.eu-west-1.amazonaws.com: their region=, efs.dns_name_suffix or efs.dns_name_format disagree with the name; line skipped'],
      [2, 'BAD_OPTION', 'The DNS name "fs-0a000002.efs.us-east-1.example.com" is not the file system\'s DNS name for these mount options and efs-relay\'s config, fs-0a000002.efs.us-east-1.amazonaws.com: their region=, efs.dns_name_suffix or efs.dns_name_format disagree with the name; line skipped'],
    ]);
    expect(p.problems[0]!.hint).to.equal('Leave region= out (the name gives it), set efs.dns_name_suffix to the name\'s suffix, or mount by the file system id.');
    // DNS names are case-insensitive: the name in capitals is the file system's.
    expect([...p.wanted.keys()]).to.deep.equal(['fs-0a000003']);
  });

  it('judges the options of an alias line before DNS is asked, noauto lines too, with the error table\'s code and hint', async () => {
    const parsed = parseFstab('files.example.com:/ /mnt/a efs tls,port=2049 0 0\nfiles.example.com:/ /mnt/b efs tls,noauto,fsap 0 0\n');
    const asked: string[] = [];
    const lines = await followFstabAliases(parsed, (spec) => {
      asked.push(spec.alias);
      return Promise.reject(new Error('DNS is not asked for a line whose options are refused'));
    });
    const p = planFstab(lines, defaultConfig(), METADATA_NOT_ASKED);
    expect(asked).to.deep.equal([]);
    expect(lines.unfollowed).to.deep.equal([]);
    expect(p.problems.map((x) => [x.line, x.code, x.message])).to.deep.equal([
      [1, 'BAD_OPTION', 'The "port" and "tls" options are mutually exclusive; line skipped'],
      [2, 'BAD_OPTION', 'The "fsap" option is not supported yet: this release does not implement efs-utils\' "fsap" option; line skipped'],
    ]);
    expect(p.problems[1]!.hint).to.match(/^Leave the option out if the mount does not need it/);
  });

  it('names a later line that asks OCSP responders (ocsp) where the first does not', () => {
    const p = plan(['fs-0a000001 /mnt/a efs tls,region=us-east-1 0 0', 'fs-0a000001:/x /mnt/x efs tls,region=us-east-1,ocsp 0 0']);
    expect(p.problems.map((x) => x.message)).to.deep.equal([
      'fs-0a000001 is also on line 1 with another ocsp (ocsp here, noocsp there); a file system has one tunnel, made from line 1, so this line\'s mount would be refused',
    ]);
  });

  it('names a later line in another network namespace (netns=) than the first', () => {
    const p = plan(['fs-0a000001 /mnt/a efs tls,region=us-east-1,netns=/var/run/netns/blue 0 0', 'fs-0a000001:/x /mnt/x efs tls,region=us-east-1 0 0']);
    expect(p.problems.map((x) => x.message)).to.deep.equal([
      'fs-0a000001 is also on line 1 with another netns (none here, /var/run/netns/blue there); a file system has one tunnel, made from line 1, so this line\'s mount would be refused',
    ]);
    expect(p.wanted.get('fs-0a000001')).to.deep.include({ netns: '/var/run/netns/blue' });
  });

  it('names a later line that asks for another verify level (verify=3) than the first', () => {
    const p = plan(['fs-0a000001 /mnt/a efs tls,region=us-east-1 0 0', 'fs-0a000001:/x /mnt/x efs tls,region=us-east-1,verify=3 0 0']);
    expect(p.problems.map((x) => x.message)).to.deep.equal([
      'fs-0a000001 is also on line 1 with another verify (3 here, 2 there); a file system has one tunnel, made from line 1, so this line\'s mount would be refused',
    ]);
  });

  it('checks a noauto line\'s options but wants no tunnel for it, and leaves its region to the shell that mounts it', () => {
    const p = plan([
      'fs-0a000001 /mnt/a efs tls,noauto,region=us-east-1 0 0',
      'fs-0a000002 /mnt/b efs tls,noauto 0 0',
      'fs-0a000003 /mnt/c efs tls,noauto,fsap,region=us-east-1 0 0',
    ]);
    expect(p.wanted.size).to.equal(0);
    expect(p.problems.map((x) => [x.line, x.code])).to.deep.equal([[3, 'BAD_OPTION']]);
    expect(p.problems[0]?.message).to.equal('The "fsap" option is not supported yet: this release does not implement efs-utils\' "fsap" option; line skipped');
    expect(p.problems[0]?.hint).to.match(/^Leave the option out if the mount does not need it/);
  });

  it('reports lines that do not parse, options refused and a region nobody names, in line order, each with the error table\'s code', () => {
    const p = plan([
      'fs-0a000001 /mnt/a efs tls 0 0',
      'fs-NOTHEX /mnt/b efs tls 0 0',
      'fs-0a000003 /mnt/c efs tls,port=2049,region=us-east-1 0 0',
      'fs-0a000004 /mnt/d efs tls,region=us-east-1 0 0',
    ]);
    expect(p.problems.map((x) => [x.line, x.fsId, x.code])).to.deep.equal([
      [1, 'fs-0a000001', 'NO_REGION'], [2, null, 'BAD_OPTION'], [3, 'fs-0a000003', 'BAD_OPTION'],
    ]);
    expect(p.problems.map((x) => x.message)).to.satisfy((m: string[]) => m.every((s) => s.endsWith('; line skipped')));
    expect(p.problems[1]?.message).to.equal('"fs-NOTHEX" is not a file system id like fs-12345678 or fs-12345678:/path, the file system\'s DNS name, or a DNS alias of it; line skipped');
    expect(p.problems[2]?.message).to.equal('The "port" and "tls" options are mutually exclusive; line skipped');
    expect([...p.wanted.keys()]).to.deep.equal(['fs-0a000004']);
  });

  it('refuses a tlsport outside port_range, and a tlsport another file system\'s line asked for first, as the daemon would', () => {
    const p = plan([
      'fs-0a000001 /mnt/a efs tls,region=us-east-1,tlsport=30000 0 0',
      'fs-0a000002 /mnt/b efs tls,region=us-east-1,tlsport=20100 0 0',
      'fs-0a000003 /mnt/c efs tls,region=us-east-1,tlsport=20100 0 0',
      'fs-0a000002:/sub /mnt/b2 efs tls,region=us-east-1,tlsport=20100 0 0',
    ]);
    expect(p.problems).to.deep.equal([
      {
        line: 1, fsId: 'fs-0a000001', code: 'PORT_OUT_OF_RANGE', message: 'tlsport 30000 is outside the configured port range 20049-21048; line skipped',
        hint: 'Pick a tlsport= inside port_range, or widen port_range in the config file.',
      },
      {
        line: 3, fsId: 'fs-0a000003', code: 'PORT_TAKEN',
        message: 'tlsport 20100 is also asked for fs-0a000002 on line 2; a port serves one file system, so this line gets no tunnel and its mount would be refused',
        hint: 'Give each file system its own tlsport=, or leave tlsport= out so that the daemon picks a free port.',
      },
    ]);
    expect([...p.wanted.keys()], 'a later line of the same file system shares its port').to.deep.equal(['fs-0a000002']);
  });

  it('takes the region from the config file, or else from instance metadata, for a line that names none', () => {
    const cfg = defaultConfig();
    cfg.efs.region = 'ap-south-1';
    const p = planFstab(parseFstab('fs-0a000001 /mnt/a efs tls 0 0\n'), cfg, METADATA_NOT_ASKED);
    expect(p.problems).to.deep.equal([]);
    expect([...p.wanted.keys()]).to.deep.equal(['fs-0a000001']);
    const m = planFstab(parseFstab('fs-0a000001 /mnt/a efs tls 0 0\n'), defaultConfig(), { region: 'sa-east-1', why: null });
    expect(m.problems).to.deep.equal([]);
    expect([...m.wanted.keys()]).to.deep.equal(['fs-0a000001']);
  });
});
