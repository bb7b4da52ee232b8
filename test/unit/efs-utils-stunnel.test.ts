// Reading an efs-utils stunnel config, and the tunnel that replaces it (efsctl takeover).
import { expect } from 'chai';
import { defaultConfig } from '../../daemon/config.js';
import { RelayError } from '../../daemon/errors.js';
import { iamOptionsFor, parseStunnelConfig, tunnelFromStunnel } from '../../cli/efs-utils-stunnel.js';
import type { PresentedIdentity } from '../../daemon/client-cert.js';

/** A config as efs-utils writes it: global options, then one [efs] service. */
function efsUtilsConfig(port: number, connect: string, checkHost: string | null): string {
  return [
    'fips = no', 'foreground = quiet', 'socket = l:SO_REUSEADDR=yes', 'socket = a:SO_BINDTODEVICE=lo',
    'pid = /var/run/efs/fs-12345678.mnt.efs.20050+/stunnel.pid', '[efs]', 'client = yes', `accept = 127.0.0.1:${port}`,
    `connect = ${connect}`, 'sslVersion = TLSv1.2', 'renegotiation = no', 'TIMEOUTbusy = 20', 'TIMEOUTclose = 0',
    'TIMEOUTidle = 70', 'delay = yes', 'verify = 2', 'CAfile = /etc/amazon/efs/efs-utils.crt',
    ...(checkHost === null ? [] : [`checkHost = ${checkHost}`]), 'libwrap = no', '',
  ].join('\n');
}

const CERT = '/var/run/efs/fs-12345678.mnt.efs.20050+/certificate.pem';
/** The config with the client certificate efs-utils adds to the service. */
const withCert = (text: string): string => text.replace('[efs]\n', `[efs]\ncert = ${CERT}\nkey = /etc/amazon/efs/privateKey.pem\n`);

describe('efs-utils stunnel configs', () => {
  const cfg = defaultConfig();
  const FILE = '/var/run/efs/stunnel-config.fs-12345678.mnt.efs.20050';
  const from = (text: string, port = 20050) => tunnelFromStunnel(parseStunnelConfig(text), port, FILE, cfg);

  it('reads each service\'s accept, connect and checkHost, whatever the case of the keys, skipping comments', () => {
    expect(parseStunnelConfig('; comment\n# another\nfoo = 1\n[a]\nACCEPT = 1\nConnect = h:2\nCHECKHOST = n\n[b]\naccept = 127.0.0.1:3\n')).to.deep.equal([
      { section: 'a', accept: '1', connect: 'h:2', checkHost: 'n', cert: null, verify: null, ocspAia: null },
      { section: 'b', accept: '127.0.0.1:3', connect: null, checkHost: null, cert: null, verify: null, ocspAia: null },
    ]);
  });

  it('carries over the file system, region and port, and the address or availability zone the stunnel connects to', () => {
    expect(from(efsUtilsConfig(20050, 'fs-12345678.efs.us-east-1.amazonaws.com:2049', 'fs-12345678.efs.us-east-1.amazonaws.com'))).to.deep.equal({
      fsId: 'fs-12345678', options: 'region=us-east-1,tlsport=20050',
      dnsName: 'fs-12345678.efs.us-east-1.amazonaws.com', certName: 'fs-12345678.efs.us-east-1.amazonaws.com',
      connectHost: 'fs-12345678.efs.us-east-1.amazonaws.com',
    });
    expect(from(efsUtilsConfig(20050, '10.0.1.25:2049', 'fs-12345678.efs.us-east-1.amazonaws.com'))).to.deep.include({
      options: 'region=us-east-1,tlsport=20050,mounttargetip=10.0.1.25', dnsName: 'fs-12345678.efs.us-east-1.amazonaws.com',
    });
    // A China region's names end in its own suffix, as in efs-utils' [mount.cn-north-1].
    expect(from(efsUtilsConfig(20050, 'fs-12345678.efs.cn-north-1.amazonaws.com.cn:2049', 'fs-12345678.efs.cn-north-1.amazonaws.com.cn'))).to.deep.include({
      options: 'region=cn-north-1,tlsport=20050', certName: 'fs-12345678.efs.cn-north-1.amazonaws.com.cn',
    });
    expect(from(efsUtilsConfig(20050, 'us-east-1a.fs-12345678.efs.us-east-1.amazonaws.com:2049', 'fs-12345678.efs.us-east-1.amazonaws.com'))).to.deep.include({
      options: 'region=us-east-1,tlsport=20050,az=us-east-1a', connectHost: 'us-east-1a.fs-12345678.efs.us-east-1.amazonaws.com',
      // The tunnel checks what the stunnel checked, not the zone's name it connects to.
      dnsName: 'us-east-1a.fs-12345678.efs.us-east-1.amazonaws.com', certName: 'fs-12345678.efs.us-east-1.amazonaws.com',
    });
    // A crossaccount mount's stunnel connects to the zone ID's name: the tunnel is a crossaccount one, and the takeover
    // checks the zone ID against instance metadata.
    expect(from(efsUtilsConfig(20050, 'use1-az2.fs-12345678.efs.us-east-1.amazonaws.com:2049', 'fs-12345678.efs.us-east-1.amazonaws.com'))).to.deep.equal({
      fsId: 'fs-12345678', options: 'region=us-east-1,tlsport=20050,crossaccount', connectHost: 'use1-az2.fs-12345678.efs.us-east-1.amazonaws.com',
      dnsName: 'use1-az2.fs-12345678.efs.us-east-1.amazonaws.com', certName: 'fs-12345678.efs.us-east-1.amazonaws.com', crossAccountAzId: 'use1-az2',
    });
  });

  it('carries over OCSP checking (OCSPaia = yes, in the service or the global part) as the ocsp option, so the tunnel never checks less', () => {
    const base = efsUtilsConfig(20050, 'fs-12345678.efs.us-east-1.amazonaws.com:2049', 'fs-12345678.efs.us-east-1.amazonaws.com');
    expect(from(base.replace('verify = 2\n', 'verify = 2\nOCSPaia = yes\n')).options).to.equal('region=us-east-1,tlsport=20050,ocsp');
    expect(from(`OCSPaia = yes\n${base}`).options).to.equal('region=us-east-1,tlsport=20050,ocsp');
    expect(from(base.replace('verify = 2\n', 'verify = 2\nOCSPaia = no\n')).options).to.equal('region=us-east-1,tlsport=20050');
  });

  it('carries over the access point that the stunnel\'s client certificate names, and takes over one that names only the file system (efs-utils 2 writes one for every TLS mount)', () => {
    const name = 'fs-12345678.efs.us-east-1.amazonaws.com';
    const text = withCert(efsUtilsConfig(20050, `${name}:2049`, name));
    const plan = (presented: PresentedIdentity) => tunnelFromStunnel(parseStunnelConfig(text), 20050, FILE, cfg, presented);
    expect(plan({ accessPoint: 'fsap-0123456789abcdef0', fsId: 'fs-12345678', iam: false }).options).to.equal('region=us-east-1,tlsport=20050,accesspoint=fsap-0123456789abcdef0');
    expect(plan({ accessPoint: null, fsId: 'fs-12345678', iam: false }).options).to.equal('region=us-east-1,tlsport=20050');
    expect(() => plan({ accessPoint: null, fsId: 'fs-87654321', iam: false }))
      .to.throw(RelayError, `${FILE}: the client certificate ${CERT} names fs-87654321, where checkHost ${name} names fs-12345678`);
    // IAM: the takeover adds the options for efs-utils' credentials (iamOptionsFor) once it has read its state file.
    expect(plan({ accessPoint: 'fsap-0123456789abcdef0', fsId: 'fs-12345678', iam: true })).to.deep.include({ options: 'region=us-east-1,tlsport=20050,accesspoint=fsap-0123456789abcdef0', iam: true });
    expect(plan({ accessPoint: null, fsId: 'fs-12345678', iam: false })).to.not.have.property('iam');
  });

  it('signs a taken-over iam mount with the credentials efs-utils recorded: the same profile, ECS URI, web identity or instance role, and nothing it cannot get', () => {
    // The options, and which sources efs-relay may find for them (the same profile from either file, the same URI, any role).
    const mapped = (method: string, sources: string[]): [string[], boolean[]] => {
      const m = iamOptionsFor(method);
      if (!('options' in m)) throw new Error(m.why);
      return [m.options, sources.map(m.same)];
    };
    expect(mapped('credentials:default', ['credentials:default', 'config:default', 'credentials:other', 'metadata:r'])).to.deep.equal([['iam', 'awsprofile=default'], [true, true, false, false]]);
    expect(mapped('config:build', ['config:build', 'credentials:build'])).to.deep.equal([['iam', 'awsprofile=build'], [true, true]]);
    expect(mapped('ecs:/v2/credentials/abc', ['ecs:/v2/credentials/abc', 'ecs:/v2/credentials/other'])).to.deep.equal([['iam', 'awscredsuri=/v2/credentials/abc'], [true, false]]);
    expect(mapped('metadata:', ['metadata:any-role', 'credentials:default'])).to.deep.equal([['iam'], [true, false]]);
    expect(mapped('webidentity:arn:aws:iam::123456789012:role/efs,/var/run/token', ['webidentity:arn:aws:iam::123456789012:role/efs,/var/run/token', 'metadata:r']))
      .to.deep.equal([['iam', 'rolearn=arn:aws:iam::123456789012:role/efs', 'jwtpath=/var/run/token'], [true, false]]);
    const pod = 'podidentity:http://169.254.170.23/v1/credentials,/var/run/secrets/pods.eks.amazonaws.com/serviceaccount/eks-pod-identity-token';
    expect(mapped(pod, [pod, 'podidentity:http://169.254.170.23/v1/credentials,/other', 'metadata:r'])).to.deep.equal([['iam'], [true, false, false]]);
    expect(mapped('named_profile:cross', ['named_profile:cross', 'credentials:cross', 'named_profile:other'])).to.deep.equal([['iam', 'awsprofile=cross'], [true, false, false]]);
    expect(iamOptionsFor('sso:whatever')).to.deep.equal({ why: 'its AWS credentials came from sso:whatever, which efs-relay cannot get (it reads profiles\' keys and roles, the ECS agent, EKS Pod Identity, web identities and the instance\'s role)' });
    expect(iamOptionsFor(null)).to.have.property('why').that.contains('does not say where its AWS credentials came from');
  });

  it('refuses what the tunnel could not do exactly as the stunnel did, saying why', () => {
    const refused = (text: string, port = 20050): string => {
      try {
        from(text, port);
      } catch (err) {
        expect(err).to.be.instanceOf(RelayError).with.property('code', 'TAKEOVER_UNSAFE');
        return (err as Error).message;
      }
      throw new Error('not refused');
    };
    const name = 'fs-12345678.efs.us-east-1.amazonaws.com';
    expect(refused(efsUtilsConfig(20050, `${name}:2049`, null))).to.equal(`${FILE}: the service has no checkHost, so the name its mount target's certificate must carry is unknown (efs-utils leaves it out when stunnel cannot check host names)`);
    expect(refused(efsUtilsConfig(20050, `${name}:2049`, name), 20051)).to.equal(`${FILE}: no service accepts on port 20051`);
    expect(refused(efsUtilsConfig(20050, 'fs-12345678.efs.us-east-1.amazonaws.com.cn:2049', 'fs-12345678.efs.us-east-1.amazonaws.com.cn')))
      .to.equal(`${FILE}: checkHost fs-12345678.efs.us-east-1.amazonaws.com.cn ends in amazonaws.com.cn, but the tunnel's names in us-east-1 end in amazonaws.com (efs.dns_name_suffix), so it would check another name`);
    const global = defaultConfig();
    global.efs.dns_name_suffix = 'amazonaws.com';
    expect(() => tunnelFromStunnel(parseStunnelConfig(efsUtilsConfig(20050, 'fs-12345678.efs.cn-north-1.amazonaws.com.cn:2049', 'fs-12345678.efs.cn-north-1.amazonaws.com.cn')), 20050, FILE, global))
      .to.throw(RelayError, 'checkHost fs-12345678.efs.cn-north-1.amazonaws.com.cn ends in amazonaws.com.cn, but the tunnel\'s names in cn-north-1 end in amazonaws.com (efs.dns_name_suffix), so it would check another name');
    expect(refused(efsUtilsConfig(20050, `${name}:3049`, name))).to.equal(`${FILE}: connect = ${name}:3049 is not a host and port 2049 (efs.port)`);
    expect(refused(efsUtilsConfig(20050, 'nfs.example.internal:2049', name))).to.equal(`${FILE}: connect = nfs.example.internal:2049 names neither ${name}, an availability zone's name or ID of it, nor an address`);
    expect(refused(efsUtilsConfig(20050, `${name}:2049`, 'files.example.com'))).to.match(/checkHost files\.example\.com is not an EFS file system name/);
    // A client certificate that takeover could not read (or none was given to tunnelFromStunnel): what it names is unknown.
    expect(refused(withCert(efsUtilsConfig(20050, `${name}:2049`, name))))
      .to.equal(`${FILE}: the service presents a client certificate (cert = ${CERT}) that could not be read, so what it names to the mount target (an access point, IAM authorization) is unknown`);
    // verify = 3 pins the mount target's certificate in the stunnel's CAfile, which the tunnel does not use.
    expect(refused(efsUtilsConfig(20050, `${name}:2049`, name).replace('verify = 2', 'verify = 3')))
      .to.equal(`${FILE}: the service verifies with verify = 3: the mount target's own certificate must be in its CAfile. The tunnel verifies against tls.ca_file, not that CAfile, so it would check less than the stunnel did`);
    const custom = defaultConfig();
    custom.efs.dns_name_format = '{fs_id}.{region}.{dns_name_suffix}';
    expect(() => tunnelFromStunnel(parseStunnelConfig(efsUtilsConfig(20050, `${name}:2049`, name)), 20050, FILE, custom))
      .to.throw(RelayError, `with efs.dns_name_format {fs_id}.{region}.{dns_name_suffix} the tunnel would connect to fs-12345678.us-east-1.amazonaws.com, not to ${name} as the stunnel does`);
    // Through an address, where is the same; what is checked is not.
    expect(() => tunnelFromStunnel(parseStunnelConfig(efsUtilsConfig(20050, '10.0.1.25:2049', name)), 20050, FILE, custom))
      .to.throw(RelayError, `with efs.dns_name_format {fs_id}.{region}.{dns_name_suffix} the tunnel would check fs-12345678.us-east-1.amazonaws.com in the certificate, not checkHost ${name} as the stunnel does`);
  });
});
