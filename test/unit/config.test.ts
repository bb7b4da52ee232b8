import { expect } from 'chai';
import { join } from 'node:path';
import { defaultConfig, loadConfig, parseConfig } from '../../daemon/config.js';
import { RelayError } from '../../daemon/errors.js';
import { tempDir } from '../helpers/daemon.js';

function configError(text: string): RelayError {
  try {
    parseConfig(text, '/etc/efs-relay/config.yaml');
  } catch (err) {
    expect(err).to.be.instanceOf(RelayError);
    return err as RelayError;
  }
  throw new Error('expected the config to be rejected');
}

describe('config', () => {
  it('gives every key its documented default', () => {
    const c = defaultConfig();
    expect(c).to.deep.equal({
      state_dir: '/run/efs-relay',
      control_socket: '/run/efs-relay/control.sock',
      fstab: '/etc/fstab',
      port_range: { first: 20049, last: 21048 },
      metrics: { listen: '127.0.0.1:9792', allow_remote: false },
      tls: { ca_file: '/etc/efs-relay/amazon-root-cas.pem', max_version: 'TLSv1.2', ocsp: false },
      efs: { region: '', metadata_url: 'http://169.254.169.254', dns_name_format: '{az}.{fs_id}.efs.{region}.{dns_name_suffix}', dns_name_suffix: '', port: 2049, mount_target_fallback: true, api_url: '' },
      mount: {
        command: '/sbin/mount.nfs4', umount_command: '/bin/umount', proc_mounts: '/proc/mounts',
        poll_interval: 1, unmount_reads: 5, unmount_grace: 30,
        network_check: 'test ! -d /run/systemd/system || systemctl is-active --quiet network.target',
        daemon_wait: 10,
        efs_utils_state_dir: '/var/run/efs',
        optimize_readahead: true, bdi_dir: '/sys/class/bdi',
      },
      relay: { connect_timeout: 15, close_timeout: 10 },
      iam: { credentials_file: '/root/.aws/credentials', config_file: '/root/.aws/config', ecs_url: 'http://169.254.170.2', sts_url: '' },
      log: { level: 'info' },
      health: { probe_interval: 30, probe_timeout: 10, stat_command: '/usr/bin/stat', stat_timeout: 5, trust_check_interval: 60 },
      policy: { require_tls: true },
    });
  });

  it('treats a missing file as all defaults', async () => {
    const dir = tempDir('cfg');
    expect(await loadConfig(join(dir, 'nope.yaml'))).to.deep.equal(defaultConfig());
  });

  it('treats an empty or comment-only file as all defaults', () => {
    expect(parseConfig('', 'f')).to.deep.equal(defaultConfig());
    expect(parseConfig('# nothing here\n', 'f')).to.deep.equal(defaultConfig());
  });

  it('ships an etc/config.yaml that parses to exactly the defaults', async () => {
    const shipped = await loadConfig(join(import.meta.dirname, '../../../../etc/config.yaml'));
    expect(shipped).to.deep.equal(defaultConfig());
  });

  it('puts the control socket in the state dir unless it is set', () => {
    expect(parseConfig('state_dir: /tmp/x\n', 'f').control_socket).to.equal('/tmp/x/control.sock');
    expect(parseConfig('state_dir: /tmp/x\ncontrol_socket: /tmp/y.sock\n', 'f').control_socket).to.equal('/tmp/y.sock');
  });

  it('merges set keys over defaults in nested sections', () => {
    const c = parseConfig('tls:\n  max_version: TLSv1.3\nport_range:\n  first: 30000\n  last: 30010\n', 'f');
    expect(c.tls).to.deep.equal({ ca_file: '/etc/efs-relay/amazon-root-cas.pem', max_version: 'TLSv1.3', ocsp: false });
    expect(c.port_range).to.deep.equal({ first: 30000, last: 30010 });
  });

  it('names the file, line and key of an unknown key', () => {
    const e = configError('state_dir: /run/x\ntls:\n  ca_file: /a.pem\n  max_verison: TLSv1.2\n');
    expect(e.code).to.equal('CONFIG_INVALID');
    expect(e.message).to.match(/^\/etc\/efs-relay\/config\.yaml:4: key "tls\.max_verison": unknown key/);
  });

  it('names the file, line and key of a wrong type', () => {
    const e = configError('port_range:\n  first: twenty\n');
    expect(e.message).to.equal('/etc/efs-relay/config.yaml:2: key "port_range.first": expected an integer port from 1 to 65535, got "twenty"');
  });

  it('rejects a port range whose first port is above its last', () => {
    const e = configError('# ports\nport_range:\n  first: 21000\n  last: 20000\n');
    expect(e.message).to.equal('/etc/efs-relay/config.yaml:2: key "port_range": first (21000) is greater than last (20000)');
  });

  it('rejects a port outside 1-65535', () => {
    expect(configError('port_range:\n  last: 70000\n').message).to.contain(':2: key "port_range.last": expected an integer port');
  });

  it('names the line of malformed YAML', () => {
    const e = configError('state_dir: /run/x\ntls: [unclosed\n');
    expect(e.code).to.equal('CONFIG_INVALID');
    expect(e.message).to.match(/^\/etc\/efs-relay\/config\.yaml:\d+: not valid YAML: /);
  });

  it('rejects a section given as a scalar, and a relative path', () => {
    expect(configError('tls: yes\n').message).to.contain(':1: key "tls": expected a mapping of keys');
    expect(configError('state_dir: run/x\n').message).to.contain(':1: key "state_dir": expected an absolute path, got "run/x"');
  });

  it('rejects an unknown TLS version and a top-level list', () => {
    expect(configError('tls:\n  max_version: TLSv1.1\n').message).to.contain('key "tls.max_version": expected one of TLSv1.2, TLSv1.3, got "TLSv1.1"');
    expect(configError('- a\n- b\n').message).to.contain('expected a mapping of keys at the top level');
  });

  it('rejects duplicate keys', () => {
    expect(configError('state_dir: /a\nstate_dir: /b\n').message).to.match(/:\d+: not valid YAML: .*[Mm]ap keys must be unique/);
  });

  it('accepts a zero unmount grace period and probe interval (probes off), but not a zero connect timeout', () => {
    expect(parseConfig('mount:\n  unmount_grace: 0\n', 'f').mount.unmount_grace).to.equal(0);
    expect(parseConfig('health:\n  probe_interval: 0\n', 'f').health.probe_interval, 'probes off').to.equal(0);
    expect(configError('relay:\n  connect_timeout: 0\n').message).to.contain('key "relay.connect_timeout": expected a number of seconds above 0 and at most 3600, got 0');
    expect(configError('mount:\n  unmount_reads: 0\n').message).to.contain('key "mount.unmount_reads": expected an integer from 1 to 1000, got 0');
  });

  it('accepts an empty metrics.listen (endpoint off)', () => {
    expect(parseConfig('metrics:\n  listen: ""\n', 'f').metrics.listen).to.equal('');
  });

  it('takes an http:// metadata address without a path, or "" for none, and names the key of anything else', () => {
    expect(parseConfig('efs:\n  metadata_url: "http://[fd00:ec2::254]"\n', '/c.yaml').efs.metadata_url).to.equal('http://[fd00:ec2::254]');
    expect(parseConfig('efs:\n  metadata_url: ""\n', '/c.yaml').efs.metadata_url).to.equal('');
    for (const bad of ['https://169.254.169.254', 'http://169.254.169.254/latest', '169.254.169.254']) {
      expect(configError(`efs:\n  metadata_url: "${bad}"\n`).message).to.match(/:2: key "efs\.metadata_url": .*an http:\/\/ address with no path/);
    }
  });

  it('writes its errors in one line', () => {
    const e = configError('tls:\n  bogus: 1\n');
    expect(e.message).to.not.contain('\n');
  });
});
