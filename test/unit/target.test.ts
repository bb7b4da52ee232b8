import { expect } from 'chai';
import { defaultConfig } from '../../daemon/config.js';
import { RelayError } from '../../daemon/errors.js';
import { METADATA_NOT_ASKED, checkFsId, parseEfsName, resolveTarget } from '../../daemon/target.js';

describe('targets', () => {
  const cfg = defaultConfig();

  it('accepts fs ids of the form fs-[0-9a-f]+ and rejects others with efs-utils\' message', () => {
    checkFsId('fs-12345678');
    checkFsId('fs-0123456789abcdef0');
    for (const bad of ['fs-XYZ', 'fs-', 'fsap-12345678', 'fs-1234 ', '../fs-1', 'FS-12345678']) {
      expect(() => checkFsId(bad)).to.throw(RelayError, `Invalid file system name: ${bad}`);
    }
  });

  it('reads an EFS DNS name one way for specs, mounts\' devices and stunnel\'s checkHost: a file system\'s name, or a zone\'s name of it', () => {
    expect(parseEfsName('fs-12345678.efs.us-east-1.amazonaws.com')).to.deep.equal({ fsId: 'fs-12345678', region: 'us-east-1', suffix: 'amazonaws.com' });
    expect(parseEfsName('us-east-1a.fs-12345678.efs.us-east-1.amazonaws.com')).to.deep.equal({ az: 'us-east-1a', fsId: 'fs-12345678', region: 'us-east-1', suffix: 'amazonaws.com' });
    expect(parseEfsName('fs-12345678.efs.cn-north-1.amazonaws.com.cn')).to.deep.include({ region: 'cn-north-1', suffix: 'amazonaws.com.cn' });
    for (const bad of ['a.b.fs-12345678.efs.us-east-1.amazonaws.com', 'fs-12345678.efs.us-east-1', 'fs-1234567g.efs.us-east-1.amazonaws.com',
      'fs-12345678.efs.us-east-1..com', 'files.example.com', 'FS-12345678.EFS.US-EAST-1.AMAZONAWS.COM']) {
      expect(parseEfsName(bad), bad).to.equal(null);
    }
  });

  it('builds the DNS name from dns_name_format, dropping {az}. without an az', () => {
    expect(resolveTarget('fs-12345678', { region: 'us-east-1' }, {}, cfg, METADATA_NOT_ASKED)).to.deep.equal({
      dnsName: 'fs-12345678.efs.us-east-1.amazonaws.com', certName: 'fs-12345678.efs.us-east-1.amazonaws.com',
      address: 'fs-12345678.efs.us-east-1.amazonaws.com', port: 2049, region: 'us-east-1',
    });
    expect(resolveTarget('fs-12345678', { region: 'eu-west-1', az: 'eu-west-1b' }, {}, cfg, METADATA_NOT_ASKED).dnsName).to.equal(
      'eu-west-1b.fs-12345678.efs.eu-west-1.amazonaws.com',
    );
    const cn = { ...cfg, efs: { ...cfg.efs, dns_name_suffix: 'amazonaws.com.cn' } };
    expect(resolveTarget('fs-1', { region: 'cn-north-1' }, {}, cn, METADATA_NOT_ASKED).dnsName).to.equal('fs-1.efs.cn-north-1.amazonaws.com.cn');
  });

  it('takes each region\'s own DNS suffix when efs.dns_name_suffix is "", as efs-utils\' per-region config sections do, and the configured one otherwise', () => {
    const regions = ['us-east-1', 'cn-north-1', 'cn-northwest-1', 'us-iso-east-1', 'us-isob-east-1', 'us-isof-south-1', 'eu-isoe-west-1', 'eusc-de-east-1', 'us-gov-west-1'];
    const names = (c: typeof cfg) => regions.map((region) => resolveTarget('fs-1', { region }, {}, c, METADATA_NOT_ASKED).certName);
    expect(cfg.efs.dns_name_suffix).to.equal('');
    expect(names(cfg)).to.deep.equal([
      'fs-1.efs.us-east-1.amazonaws.com', 'fs-1.efs.cn-north-1.amazonaws.com.cn', 'fs-1.efs.cn-northwest-1.amazonaws.com.cn',
      'fs-1.efs.us-iso-east-1.c2s.ic.gov', 'fs-1.efs.us-isob-east-1.sc2s.sgov.gov', 'fs-1.efs.us-isof-south-1.csp.hci.ic.gov',
      'fs-1.efs.eu-isoe-west-1.cloud.adc-e.uk', 'fs-1.efs.eusc-de-east-1.amazonaws.eu', 'fs-1.efs.us-gov-west-1.amazonaws.com',
    ]);
    const fixed = { ...cfg, efs: { ...cfg.efs, dns_name_suffix: 'example.internal' } };
    expect(names(fixed)).to.deep.equal(regions.map((r) => `fs-1.efs.${r}.example.internal`));
  });

  it('dials mounttargetip but still expects the file system name', () => {
    const t = resolveTarget('fs-12345678', { region: 'us-east-1', mounttargetip: '127.0.0.2' }, {}, cfg, METADATA_NOT_ASKED);
    expect(t.address).to.equal('127.0.0.2');
    expect(t.dnsName).to.equal('fs-12345678.efs.us-east-1.amazonaws.com');
    expect(t.certName).to.equal('fs-12345678.efs.us-east-1.amazonaws.com');
  });

  it('dials the zone\'s name with az= but expects the certificate to name the file system from its id on, as efs-utils\' checkHost', () => {
    expect(resolveTarget('fs-12345678', { region: 'eu-west-1', az: 'eu-west-1b' }, {}, cfg, METADATA_NOT_ASKED)).to.deep.include({
      address: 'eu-west-1b.fs-12345678.efs.eu-west-1.amazonaws.com', certName: 'fs-12345678.efs.eu-west-1.amazonaws.com',
    });
    expect(resolveTarget('fs-12345678', { region: 'eu-west-1', az: 'eu-west-1b', mounttargetip: '10.0.0.5' }, {}, cfg, METADATA_NOT_ASKED))
      .to.deep.include({ address: '10.0.0.5', certName: 'fs-12345678.efs.eu-west-1.amazonaws.com' });
    const prefixed = { ...cfg, efs: { ...cfg.efs, dns_name_format: 'nfs-{az}.{fs_id}.efs.{region}.{dns_name_suffix}' } };
    expect(resolveTarget('fs-12345678', { region: 'eu-west-1' }, {}, prefixed, METADATA_NOT_ASKED).certName).to.equal('fs-12345678.efs.eu-west-1.amazonaws.com');
  });

  it('dials efs-utils\' crossaccount name, the instance\'s availability zone ID before the file system\'s name, whatever dns_name_format says, and expects the file system\'s name in the certificate', () => {
    const azId = { az_id: 'use1-az4', why: null };
    expect(resolveTarget('fs-12345678', { region: 'us-east-1', crossaccount: null }, {}, cfg, METADATA_NOT_ASKED, azId)).to.deep.equal({
      dnsName: 'use1-az4.fs-12345678.efs.us-east-1.amazonaws.com', certName: 'fs-12345678.efs.us-east-1.amazonaws.com',
      address: 'use1-az4.fs-12345678.efs.us-east-1.amazonaws.com', port: 2049, region: 'us-east-1',
    });
    const custom = { ...cfg, efs: { ...cfg.efs, dns_name_format: 'nfs.{fs_id}.efs.{region}.{dns_name_suffix}' } };
    expect(resolveTarget('fs-1', { region: 'cn-north-1', crossaccount: null }, {}, custom, METADATA_NOT_ASKED, { az_id: 'cnn1-az1', why: null }).dnsName)
      .to.equal('cnn1-az1.fs-1.efs.cn-north-1.amazonaws.com.cn');
  });

  it('refuses a crossaccount target with NO_AZ_ID in efs-utils\' words, saying why instance metadata gave no zone ID', () => {
    const why = 'instance metadata at http://127.0.0.50:8080 answered HTTP 404 for the availability zone ID';
    const err = (() => {
      try {
        resolveTarget('fs-12345678', { region: 'us-east-1', crossaccount: null }, {}, cfg, METADATA_NOT_ASKED, { az_id: null, why });
      } catch (e) {
        return e as RelayError;
      }
      throw new Error('expected NO_AZ_ID');
    })();
    expect([err.code, err.message]).to.deep.equal(['NO_AZ_ID', `Cannot retrieve AZ-ID from metadata service. This is required for the crossaccount mount option: ${why}`]);
    expect(err.hint).to.contain('efs.metadata_url');
    // Without crossaccount the zone ID is never needed.
    expect(resolveTarget('fs-12345678', { region: 'us-east-1' }, {}, cfg, METADATA_NOT_ASKED, { az_id: null, why }).dnsName).to.equal('fs-12345678.efs.us-east-1.amazonaws.com');
  });

  it('takes the region from the option, then AWS_REGION, then AWS_DEFAULT_REGION, then the config, then instance metadata', () => {
    const withCfg = { ...cfg, efs: { ...cfg.efs, region: 'ap-south-1' } };
    const env = { AWS_REGION: 'us-west-2', AWS_DEFAULT_REGION: 'eu-central-1' };
    const metadata = { region: 'sa-east-1', why: null };
    expect(resolveTarget('fs-1', { region: 'us-east-2' }, env, withCfg, metadata).region).to.equal('us-east-2');
    expect(resolveTarget('fs-1', {}, env, withCfg, metadata).region).to.equal('us-west-2');
    expect(resolveTarget('fs-1', {}, { AWS_DEFAULT_REGION: 'eu-central-1' }, withCfg, metadata).region).to.equal('eu-central-1');
    expect(resolveTarget('fs-1', {}, {}, withCfg, metadata).region).to.equal('ap-south-1');
    expect(resolveTarget('fs-1', {}, {}, cfg, metadata).region).to.equal('sa-east-1');
  });

  it('says clearly that no region is known, and what instance metadata said', () => {
    const why = 'instance metadata at http://127.0.0.50:8080 did not answer (connect ECONNREFUSED 127.0.0.50:8080)';
    try {
      resolveTarget('fs-12345678', {}, {}, cfg, { region: null, why });
      throw new Error('expected NO_REGION');
    } catch (err) {
      expect((err as RelayError).code).to.equal('NO_REGION');
      expect((err as RelayError).message).to.equal('Cannot determine the AWS region of fs-12345678: no region= option, AWS_REGION and AWS_DEFAULT_REGION are unset, '
        + `efs.region is not set in the config, and ${why}`);
      expect((err as RelayError).hint).to.contain('-o region=REGION');
    }
  });
});
