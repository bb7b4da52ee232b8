import { expect } from 'chai';
import { applyReload, planReload } from '../../daemon/config-reload.js';
import { defaultConfig } from '../../daemon/config.js';

describe('what a config reload changes', () => {
  it('applies keys of log, health, mount, policy and relay, and leaves every other changed key for a restart', () => {
    const running = defaultConfig();
    const next = defaultConfig();
    next.log.level = 'debug';
    next.health.stat_timeout = 9;
    next.mount.unmount_grace = 0;
    next.policy.require_tls = false;
    next.state_dir = '/run/other';
    next.port_range.last = 20100;
    next.metrics.listen = '';
    next.tls.ca_file = '/etc/other.pem';
    next.efs.region = 'eu-west-1';
    next.relay.close_timeout = 3;
    expect(planReload(running, next)).to.deep.equal({
      applied: ['mount.unmount_grace', 'relay.close_timeout', 'log.level', 'health.stat_timeout', 'policy.require_tls'],
      needRestart: ['state_dir', 'port_range.last', 'metrics.listen', 'tls.ca_file', 'efs.region'],
    });
  });

  it('copies only the applied keys into the running config, in place', () => {
    const running = defaultConfig();
    const health = running.health;
    const next = defaultConfig();
    next.health.probe_interval = 5;
    next.port_range.first = 30000;
    applyReload(running, next, planReload(running, next));
    expect(running.health).to.equal(health);
    expect(running.health.probe_interval).to.equal(5);
    expect(running.port_range.first).to.equal(20049);
  });

  it('finds nothing to do in an unchanged file', () => {
    expect(planReload(defaultConfig(), defaultConfig())).to.deep.equal({ applied: [], needRestart: [] });
  });
});
