import { expect } from 'chai';
import { RelayError } from '../../daemon/errors.js';
import { attachOptions, checkOptionsValidity, formatOptions, ocspChecking, onlyTunnelOptions, parseOptions, tunnelOptions } from '../../daemon/options.js';
import { parseFstab } from '../../daemon/fstab.js';
import { METADATA_NOT_ASKED, checkSpecName, parseSpec, parseSpecOrAlias, resolveTarget } from '../../daemon/target.js';
import { defaultConfig } from '../../daemon/config.js';

function rejects(fn: () => unknown): RelayError {
  try {
    fn();
  } catch (err) {
    expect(err).to.be.instanceOf(RelayError);
    return err as RelayError;
  }
  throw new Error('expected a rejection');
}
const valid = (o: string): void => checkOptionsValidity(parseOptions(o));

describe('efs-utils mount options', () => {
  it('parses flags and key=value pairs, keeping a value that contains "=" whole', () => {
    expect(parseOptions('tls,tlsport=20100,awscredsuri=/v2/creds?id=a=b')).to.deep.equal({
      tls: null, tlsport: '20100', awscredsuri: '/v2/creds?id=a=b',
    });
    expect(formatOptions(parseOptions('tls,region=us-east-1'))).to.equal('tls,region=us-east-1');
    expect(parseOptions('')).to.deep.equal({});
  });

  const rules: Array<[string, string]> = [
    ['tls,port=2049', 'The "port" and "tls" options are mutually exclusive'],
    ['tls,ocsp,noocsp', 'The "ocsp" and "noocsp" options are mutually exclusive'],
    ['tls,notls', 'The "tls" and "notls" options are mutually exclusive'],
    ['tls,tlsport=abc', 'tlsport option [abc] is not an integer'],
    ['tlsport=20.5', 'tlsport option [20.5] is not an integer'],
    ['accesspoint=fsap-0123456789abcdef0', 'The "tls" option is required when mounting via "accesspoint"'],
    ['tls,accesspoint=fsap-123', 'Access Point ID fsap-123 is malformed'],
    ['iam', 'The "tls" option is required when mounting via "iam"'],
    ['tls,awsprofile=dev', 'The "iam" option is required when mounting with named profile option, "awsprofile"'],
    ['tls,awscredsuri=/x', 'The "iam" option is required when mounting with "awscredsuri"'],
    ['tls,iam,awscredsuri=/x,awsprofile=p', 'The "awscredsuri" and "awsprofile" options are mutually exclusive'],
    ['tls,iam,awscredsuri=x', 'awscredsuri x is malformed'],
    ['capath=/etc/ssl', 'Unsupported mount options detected: "capath"'],
    ['region=Mars', 'region option [Mars] is not an AWS region'],
    ['mounttargetip=10.0.0', 'mounttargetip option [10.0.0] is not an IP address'],
  ];
  for (const [opts, message] of rules) {
    it(`rejects "${opts}" with efs-utils' message`, () => {
      const e = rejects(() => valid(opts));
      expect(e.code).to.equal('BAD_OPTION');
      expect(e.message).to.equal(message);
    });
  }

  it('accepts a valid efs-utils option set', () => {
    valid('tls,tlsport=20100,region=us-east-1,az=us-east-1a,mounttargetip=10.0.0.5,noocsp,verify=2,cafile=/etc/ca.pem');
    valid('tls,iam,accesspoint=fsap-0123456789abcdef0,awsprofile=dev');
  });

  it('accepts the regions and zones of every partition, the European Sovereign Cloud\'s four-letter prefix and the ISO ones included', () => {
    valid('tls,region=eusc-de-east-1,az=eusc-de-east-1a');
    valid('tls,region=us-isof-south-1,az=us-isof-south-1b');
    valid('tls,region=eu-isoe-west-1');
    valid('tls,region=cn-northwest-1');
  });

  it('refuses notls and weak verify levels for a tunnel', () => {
    expect(rejects(() => tunnelOptions(parseOptions('notls'))).message).to.contain('efs-relay only carries EFS traffic over TLS');
    expect(rejects(() => tunnelOptions(parseOptions('tls,verify=0'))).message).to.contain('verify=0 is refused');
  });

  it('refuses options this release cannot honour as "not supported yet", never ignoring them', () => {
    const e = rejects(() => tunnelOptions(parseOptions('tls,fsap')));
    expect(e.code).to.equal('BAD_OPTION');
    expect(e.message).to.match(/is not supported yet/);
  });

  it('takes netns= as the absolute path of a network namespace, and refuses anything else before nsenter sees it', () => {
    expect(tunnelOptions(parseOptions('tls,netns=/proc/1/ns/net'))).to.deep.equal({ tls: null, netns: '/proc/1/ns/net' });
    for (const v of ['blue', '', '-n/x', 'x/../y']) {
      const e = rejects(() => tunnelOptions(parseOptions(`tls,netns=${v}`)));
      expect([e.code, e.message]).to.deep.equal(['BAD_OPTION', `netns option [${v}] must be the absolute path of a network namespace, like /var/run/netns/NAME or /proc/PID/ns/net`]);
    }
    expect(rejects(() => tunnelOptions(parseOptions('tls,netns'))).message).to.match(/^netns option \[\] must be/);
  });

  it('takes ocsp and noocsp as tunnel options, which never reach mount.nfs4; without either, tls.ocsp decides (false, as efs-utils\' stunnel_check_cert_validity)', () => {
    expect(tunnelOptions(parseOptions('tls,ocsp,rsize=4096'))).to.deep.equal({ tls: null, ocsp: null });
    expect(ocspChecking(parseOptions('tls,ocsp'), false)).to.equal('ocsp');
    expect(ocspChecking(parseOptions('tls,noocsp'), false)).to.equal('noocsp');
    expect(ocspChecking(parseOptions('tls'), false)).to.equal('noocsp');
    // tls.ocsp: true (efs-utils' stunnel_check_cert_validity) turns it on where no option says otherwise.
    expect(ocspChecking(parseOptions('tls'), true)).to.equal('ocsp');
    expect(ocspChecking(parseOptions('tls,noocsp'), true)).to.equal('noocsp');
  });

  it('takes iam, awsprofile and awscredsuri as tunnel options, which never reach mount.nfs4', () => {
    expect(tunnelOptions(parseOptions('tls,iam,awsprofile=dev,accesspoint=fsap-0123456789abcdef0,rsize=4096'))).to.deep.equal({ tls: null, iam: null, awsprofile: 'dev', accesspoint: 'fsap-0123456789abcdef0' });
    expect(tunnelOptions(parseOptions('tls,iam,awscredsuri=/v2/credentials/abc'))).to.deep.equal({ tls: null, iam: null, awscredsuri: '/v2/credentials/abc' });
  });

  it('takes a web identity (rolearn= and jwtpath=, with iam) and refuses malformed ones as efs-utils does, and half of one, or one without iam', () => {
    expect(tunnelOptions(parseOptions('tls,iam,rolearn=arn:aws:iam::123456789012:role/path/to/role_name,jwtpath=/var/run/secrets/eks.amazonaws.com/serviceaccount/token')))
      .to.deep.equal({ tls: null, iam: null, rolearn: 'arn:aws:iam::123456789012:role/path/to/role_name', jwtpath: '/var/run/secrets/eks.amazonaws.com/serviceaccount/token' });
    for (const arn of ['arn:aws-cn:iam::123456789012:role/role', 'arn:aws-us-gov:iam::123456789012:role/Admin+Role=1,x.y@z_-']) {
      // A comma or = in a role's name cannot ride in -o; the check is the option's own.
      expect(() => checkOptionsValidity({ tls: null, iam: null, rolearn: arn, jwtpath: '/a' })).to.not.throw();
    }
    for (const arn of ['arn:aws:iam::123456789012:role/legit-role\nsecond-line', 'arn:aws:iam::123456789012:role/legit-role\n', 'arn:aws:iam::123:role/short-account', 'arn:aws:iam::123456789012:role/', 'not-an-arn', '']) {
      expect(rejects(() => checkOptionsValidity({ tls: null, iam: null, rolearn: arn, jwtpath: '/a' })).message).to.equal(`rolearn ${arn} is malformed`);
    }
    for (const path of ['/var/run/token\nsecond-line', '/var/run/token\n', 'relative/path', '/etc/x y', '/etc/x,y', '/tok=1', '']) {
      expect(rejects(() => checkOptionsValidity({ tls: null, iam: null, rolearn: 'arn:aws:iam::123456789012:role/r', jwtpath: path })).message).to.equal(`jwtpath ${path} is malformed`);
    }
    expect(rejects(() => tunnelOptions(parseOptions('tls,rolearn=arn:aws:iam::123456789012:role/r,jwtpath=/t'))).message).to.equal('The "iam" option is required when mounting with a web identity, "rolearn" and "jwtpath"');
    expect(rejects(() => tunnelOptions(parseOptions('tls,iam,jwtpath=/t'))).message).to.equal('The "rolearn" and "jwtpath" options name a web identity together: give both');
    expect(rejects(() => tunnelOptions(parseOptions('tls,iam,rolearn=arn:aws:iam::123456789012:role/r,jwtpath=/t,awsprofile=p'))).message).to.contain('mutually exclusive');
  });

  it('takes crossaccount as a tunnel option, but not with mounttargetip (efs-utils\' error) or with az= (which it would not use)', () => {
    expect(tunnelOptions(parseOptions('tls,crossaccount,region=us-east-1'))).to.deep.equal({ tls: null, crossaccount: null, region: 'us-east-1' });
    const ip = rejects(() => tunnelOptions(parseOptions('tls,crossaccount,mounttargetip=10.0.0.5')));
    expect([ip.code, ip.message]).to.deep.equal(['BAD_OPTION', 'mounttargetip option is incompatible with crossaccount option.']);
    const az = rejects(() => tunnelOptions(parseOptions('tls,crossaccount,az=us-east-1a')));
    expect([az.code, az.message]).to.deep.equal(['BAD_OPTION', 'The "az" and "crossaccount" options are mutually exclusive: crossaccount reaches the mount target of this instance\'s availability zone ID']);
  });

  it('keeps only tunnel options in a tunnel record', () => {
    expect(tunnelOptions(parseOptions('tls,region=us-east-1,mounttargetip=127.0.0.2'))).to.deep.equal({
      tls: null, region: 'us-east-1', mounttargetip: '127.0.0.2',
    });
  });

  it('rejects NFS mount options given to "add" as unknown tunnel options', () => {
    const e = rejects(() => onlyTunnelOptions(parseOptions('tls,rsize=4096,bogus')));
    expect(e.code).to.equal('UNKNOWN_OPTION');
    expect(e.message).to.equal('Unknown tunnel options: "rsize", "bogus"');
  });

  it('gives the efs-utils message for port with tls before calling port unknown', () => {
    const e = rejects(() => onlyTunnelOptions(parseOptions('tls,port=2049')));
    expect(e.code).to.equal('BAD_OPTION');
    expect(e.message).to.equal('The "port" and "tls" options are mutually exclusive');
  });

  it('takes the region and the availability zone from a zone\'s DNS name as the spec, as efs-utils does, in attach and in fstab', () => {
    const zoneName = 'us-east-1a.fs-12345678.efs.us-east-1.amazonaws.com';
    const spec = parseSpec(`${zoneName}:/data`)!;
    expect(spec).to.deep.equal({ fsId: 'fs-12345678', path: '/data', name: zoneName, region: 'us-east-1', az: 'us-east-1a' });
    expect(parseSpec('fs-12345678.efs.us-east-1.amazonaws.com:/')).to.deep.equal({ fsId: 'fs-12345678', path: '/', name: 'fs-12345678.efs.us-east-1.amazonaws.com', region: 'us-east-1' });
    expect(attachOptions('', spec).tunnel).to.deep.equal({ tls: null, region: 'us-east-1', az: 'us-east-1a' });
    expect(attachOptions('az=us-east-1a,region=us-east-1', spec).tunnel).to.deep.include({ az: 'us-east-1a' });
    const fstab = parseFstab(`${zoneName}:/ /mnt/a efs _netdev,tls 0 0\n${zoneName}:/ /mnt/b efs tls,az=us-east-1b 0 0\n`);
    expect(fstab.entries.map((e) => e.options)).to.deep.equal([{ _netdev: null, tls: null, region: 'us-east-1', az: 'us-east-1a' }]);
    const conflict = `The DNS name "${zoneName}" does not match the az provided in the mount options, expected = us-east-1b, given = us-east-1a`;
    expect(fstab.problems).to.deep.equal([{ line: 2, message: conflict }]);
    const e = rejects(() => attachOptions('az=us-east-1b', spec));
    expect(e.code).to.equal('BAD_OPTION');
    expect(e.message).to.equal(conflict);
  });

  it('takes a crossaccount spec\'s zone ID label as part of the name the tunnel must dial, not as az=', () => {
    const spec = parseSpec('use1-az2.fs-12345678.efs.us-east-1.amazonaws.com:/')!;
    expect(attachOptions('crossaccount', spec).tunnel).to.deep.equal({ tls: null, crossaccount: null, region: 'us-east-1' });
    const target = resolveTarget('fs-12345678', attachOptions('crossaccount', spec).all, {}, defaultConfig(), METADATA_NOT_ASKED, { az_id: 'use1-az2', why: null });
    expect(() => checkSpecName(spec, target)).to.not.throw();
    const elsewhere = resolveTarget('fs-12345678', attachOptions('crossaccount', spec).all, {}, defaultConfig(), METADATA_NOT_ASKED, { az_id: 'use1-az6', why: null });
    expect(rejects(() => checkSpecName(spec, elsewhere)).message).to.match(/^The DNS name "use1-az2\.fs-12345678\.efs\.us-east-1\.amazonaws\.com" is not the file system's DNS name for these mount options and efs-relay's config, use1-az6\.fs-12345678/);
  });

  it('takes a fully qualified DNS name of another form as an alias to follow, and no address, single label or malformed EFS name', () => {
    expect(parseSpecOrAlias('Files.Example.COM.:/data')).to.deep.equal({ alias: 'files.example.com', path: '/data' });
    expect(parseSpecOrAlias('nfs-1.corp.example')).to.deep.equal({ alias: 'nfs-1.corp.example', path: '/' });
    expect(parseSpecOrAlias('fs-12345678:/x')).to.deep.equal({ fsId: 'fs-12345678', path: '/x' });
    for (const spec of ['10.0.0.5:/', 'fileserver:/', 'fs-1234.efs:/', '-bad.example.com:/', 'a..b.com:/', 'files.example.com:data', `${'a'.repeat(64)}.example.com:/`]) {
      expect(parseSpecOrAlias(spec), spec).to.equal(null);
    }
    // In fstab an alias line waits for DNS to say which file system it is (fstab-watch.ts).
    const fstab = parseFstab('files.example.com:/ /mnt/a efs _netdev,tls 0 0\n');
    expect(fstab.entries).to.deep.equal([]);
    expect(fstab.aliases).to.deep.equal([{ line: 1, spec: { alias: 'files.example.com', path: '/' }, dir: '/mnt/a', options: { _netdev: null, tls: null }, noauto: false }]);
    expect(fstab.problems).to.deep.equal([]);
  });
});
