// Metrics, health and alerts: the /metrics and /healthz endpoint, health
// probes, hung mounts, unencrypted-mount detection, a real Prometheus
// scraping the daemon, and promtool on the metrics and the alert rules.
import { expect } from 'chai';
import { mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import { parse } from 'yaml';
import { call } from '../cli/client.js';
import { Daemon, ROOT, run, skipIf, sleep, waitFor } from './helpers/daemon.js';
import { FS_ID, daemonConfig, testCerts } from './helpers/fixtures.js';
import { ECHO_TRAILER, MountTargetStandIn } from './helpers/mount-target.js';
import { exchange } from './helpers/client.js';
import { Ganesha, nfsCatSha256, nfsCp, requireNfs } from './helpers/nfs.js';
import { Prometheus, prometheusUnavailable } from './helpers/prometheus.js';
import type { TunnelDetail, TunnelView } from '../daemon/tunnels.js';

const METRIC_NAMES = [
  'efs_relay_build_info', 'efs_relay_tunnel_up', 'efs_relay_upstream_up', 'efs_relay_connections_active', 'efs_relay_connections_total',
  'efs_relay_bytes_total', 'efs_relay_tls_handshake_duration_seconds', 'efs_relay_tls_handshake_failures_total',
  'efs_relay_upstream_cert_expiry_timestamp_seconds', 'efs_relay_client_cert_expiry_timestamp_seconds', 'efs_relay_probe_duration_seconds', 'efs_relay_tunnel_restarts_total',
  'efs_relay_ports_in_use', 'efs_relay_ports_held_by_mounts', 'efs_relay_ports_free', 'efs_relay_state_files_invalid', 'efs_relay_fstab_lines_invalid', 'efs_relay_unencrypted_nfs_mounts',
  'efs_relay_config_last_reload_successful', 'efs_relay_config_last_reload_success_timestamp_seconds', 'efs_relay_config_restart_needed',
];

async function get(url: string, method = 'GET'): Promise<{ status: number; body: string; type: string | null }> {
  const res = await fetch(url, { method });
  return { status: res.status, body: await res.text(), type: res.headers.get('content-type') };
}

describe('metrics endpoint and health probes', function () {
  let target: MountTargetStandIn;
  let daemon: Daemon;
  const base = 'http://127.0.0.1:19801';
  before(async () => {
    target = await new MountTargetStandIn({ host: '127.0.0.20', port: 2049, cert: testCerts().good, backend: 'echo' }).start();
    daemon = await new Daemon(daemonConfig(21100, {
      metrics: { listen: '127.0.0.1:19801' },
      health: { probe_interval: 0.3, probe_timeout: 2, stat_timeout: 1 },
    })).start();
    // The tunnel every test of this block reads, probed once, so that any one test passes run alone.
    await daemon.efsctlJson('add', FS_ID, '-o', 'mounttargetip=127.0.0.20,region=us-east-1');
    await waitFor('first probe', async () => (await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).health.probe !== null);
  });
  after(async () => {
    await daemon?.stop();
    await target?.stop();
  });

  it('serves every documented metric with the efs_relay_ prefix, process metrics and the event-loop delay, on its own registry', async () => {
    const port = (await daemon.efsctlJson<{ tunnels: TunnelView[] }>('list')).tunnels[0]!.port;
    await exchange(port, 'hello');
    const r = await get(`${base}/metrics`);
    expect(r.status).to.equal(200);
    expect(r.type).to.contain('text/plain');
    for (const name of METRIC_NAMES) expect(r.body, name).to.match(new RegExp(`^# TYPE ${name} (gauge|counter|histogram)$`, 'm'));
    expect(r.body).to.match(/^process_cpu_seconds_total [0-9.e+-]+$/m);
    expect(r.body).to.match(/^nodejs_eventloop_lag_p99_seconds [0-9.e+-]+$/m);
    expect(r.body).to.contain('efs_relay_build_info{version="0.1.0"} 1');
    expect(r.body).to.contain(`efs_relay_tunnel_up{fs_id="${FS_ID}"} 1`);
    expect(r.body).to.contain(`efs_relay_upstream_up{fs_id="${FS_ID}"} 1`);
    expect(r.body).to.contain(`efs_relay_bytes_total{fs_id="${FS_ID}",direction="upstream"} 5`);
    expect(r.body).to.contain(`efs_relay_connections_total{fs_id="${FS_ID}",result="ok"} 1`);
    expect(r.body).to.contain(`efs_relay_tls_handshake_duration_seconds_count{fs_id="${FS_ID}"} 1`);
    expect(r.body).to.contain('efs_relay_ports_in_use 1').and.contain('efs_relay_ports_held_by_mounts 0').and.contain('efs_relay_ports_free 49');
    expect(r.body).to.not.match(/client_port|remote_port/);
  });

  it('shows whether the latest config reload loaded, when the file last loaded, and how many changed keys wait for a restart', async () => {
    const original = readFileSync(daemon.configFile, 'utf8');
    const gauge = async (name: string): Promise<number> => Number(await daemon.scrapedValue(name));
    try {
      expect(await gauge('efs_relay_config_last_reload_successful')).to.equal(1);
      const loaded = await gauge('efs_relay_config_last_reload_success_timestamp_seconds');
      expect(loaded).to.be.within(Date.now() / 1000 - 600, Date.now() / 1000);
      expect(await gauge('efs_relay_config_restart_needed')).to.equal(0);

      daemon.editConfig((c) => ({ ...c, health: { probe_intervall: 1 } }));
      expect((await daemon.efsctl('reload')).code).to.equal(1);
      expect(await gauge('efs_relay_config_last_reload_successful')).to.equal(0);
      expect(await gauge('efs_relay_config_last_reload_success_timestamp_seconds')).to.equal(loaded);

      writeFileSync(daemon.configFile, original);
      daemon.editConfig((c) => ({ ...c, port_range: { first: 21150, last: 21199 } }));
      expect((await daemon.efsctl('reload')).code).to.equal(0);
      expect(await gauge('efs_relay_config_last_reload_successful')).to.equal(1);
      expect(await gauge('efs_relay_config_last_reload_success_timestamp_seconds')).to.be.above(loaded);
      expect(await gauge('efs_relay_config_restart_needed')).to.equal(2);
    } finally {
      writeFileSync(daemon.configFile, original);
      expect((await daemon.efsctl('reload')).code).to.equal(0);
    }
    expect(await gauge('efs_relay_config_restart_needed')).to.equal(0);
  });

  it('counts refused handshakes by error code', async () => {
    // The stand-in's certificate names fs-12345678, so a tunnel for another file system is refused.
    const other = 'fs-87654321';
    const { tunnel } = await daemon.efsctlJson<{ tunnel: TunnelView }>('add', other, '-o', 'mounttargetip=127.0.0.20,region=us-east-1');
    await exchange(tunnel.port, 'x');
    const body = (await get(`${base}/metrics`)).body;
    expect(body).to.contain(`efs_relay_tls_handshake_failures_total{fs_id="${other}",code="TLS_HOSTNAME_MISMATCH"} 1`);
    expect(body).to.contain(`efs_relay_connections_total{fs_id="${other}",result="failed"} 1`);
    expect((await daemon.efsctl('stop', other)).code).to.equal(0);
  });

  it('passes promtool check metrics on a scrape', async function () {
    skipIf(this, await prometheusUnavailable());
    const scrape = (await get(`${base}/metrics`)).body;
    const r = await run('sh', ['-c', 'promtool check metrics'], { input: scrape });
    expect(r.code, r.stdout + r.stderr).to.equal(0);
  });

  it('records the probe result, its duration in whole microseconds and the certificate expiry, shown by list and status', async () => {
    const s = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
    expect(s.health.probe).to.include({ ok: true, code: null });
    expect(s.health.probe!.duration_seconds).to.be.above(0);
    expect(String(s.health.probe!.duration_seconds), 'no float noise such as 0.0055426499999994125').to.match(/^\d+(\.\d{1,6})?$/);
    const expiry = Date.parse(s.health.probe!.cert_expiry!);
    expect(expiry - Date.now()).to.be.within(25 * 86400e3, 31 * 86400e3); // the test leaf is valid for 30 days
    const human = (await daemon.efsctl('status', FS_ID)).stdout;
    expect(human).to.match(/Health: +ok\nLast probe: +ok at \S+ \(\d+ ms\)\nCertificate: +expires \S+/);
    expect((await daemon.efsctl('list')).stdout).to.match(new RegExp(`${FS_ID}\\s+\\d+\\s+127\\.0\\.0\\.20:2049\\s+listening\\s+ok\\s`));
  });

  it('exports every metric that an alert rule reads', async () => {
    const rules = (parse(readFileSync(join(ROOT, 'etc/prometheus/efs-relay-alerts.yml'), 'utf8')) as { groups: Array<{ rules: Array<{ expr: string }> }> }).groups.flatMap((g) => g.rules);
    // up is Prometheus' own; time() and label values are not metric names.
    const read = new Set(rules.flatMap((r) => [...r.expr.replace(/"[^"]*"/g, '').matchAll(/\b([a-z_]+)\s*(?=[{[)<>=!/*+-]|$)/gm)].map((m) => m[1] as string)).filter((n) => n !== 'up' && n.includes('_')));
    expect([...read], 'the new alert reads the process metrics').to.include.members(['process_open_fds', 'process_max_fds']);
    const body = (await get(`${base}/metrics`)).body;
    expect([...read].filter((n) => !new RegExp(`^# TYPE ${n} `, 'm').test(body))).to.deep.equal([]);
  });

  it('answers /healthz 200 with a JSON body while every tunnel is up', async () => {
    const r = await get(`${base}/healthz`);
    expect(r.status).to.equal(200);
    expect(JSON.parse(r.body)).to.deep.equal({ status: 'ok', tunnels: 1, failing: [] });
  });

  it('answers 404 for other paths and 405 for methods other than GET and HEAD', async () => {
    expect((await get(`${base}/`)).status).to.equal(404);
    expect((await get(`${base}/metrics/extra`)).status).to.equal(404);
    const post = await fetch(`${base}/metrics`, { method: 'POST', body: 'x' });
    expect(post.status).to.equal(405);
    expect(post.headers.get('allow')).to.equal('GET, HEAD');
    expect((await get(`${base}/healthz`, 'DELETE')).status).to.equal(405);
    const head = await get(`${base}/metrics`, 'HEAD');
    expect(head.status).to.equal(200);
    expect(head.body).to.equal('');
  });

  it('answers /healthz 503 naming the tunnel and its code once the mount target is gone', async () => {
    await target.stop();
    // A probe cut off while the target stops fails as UPSTREAM_RESET; every probe after it is refused.
    let body: { status: string; failing: Array<{ fs_id: string; code: string }> } | null = null;
    await waitFor('a refused probe', async () => {
      const r = await get(`${base}/healthz`);
      body = r.status === 503 ? JSON.parse(r.body) as NonNullable<typeof body> : null;
      return body?.failing.some((f) => f.code === 'CONNECT_REFUSED') === true;
    }, 5_000);
    expect(body!.status).to.equal('failing');
    expect(body!.failing.map((f) => [f.fs_id, f.code])).to.deep.equal([[FS_ID, 'CONNECT_REFUSED']]);
    expect((await get(`${base}/metrics`)).body).to.contain(`efs_relay_upstream_up{fs_id="${FS_ID}"} 0`);
    expect(daemon.logs).to.match(new RegExp(`warn tunnel\\.probe_failed fs=${FS_ID} code=CONNECT_REFUSED`));
    target = await new MountTargetStandIn({ host: '127.0.0.20', port: 2049, cert: testCerts().good, backend: 'echo' }).start();
    await waitFor('healthy again', async () => (await get(`${base}/healthz`)).status === 200, 5_000);
  });

  it('drops every series of a removed tunnel', async () => {
    expect((await daemon.efsctl('stop', FS_ID)).code).to.equal(0);
    const body = (await get(`${base}/metrics`)).body;
    expect(body).to.not.contain(FS_ID);
    expect(body).to.contain('efs_relay_ports_in_use 0');
  });
});

describe('health from client connections', function () {
  const base = 'http://127.0.0.1:19813';
  const OPTS = 'mounttargetip=127.0.0.46,region=us-east-1';
  const startTarget = (): Promise<MountTargetStandIn> =>
    new MountTargetStandIn({ host: '127.0.0.46', port: 2049, cert: testCerts().good, backend: 'echo' }).start();
  let target: MountTargetStandIn;
  let daemon: Daemon | undefined;
  beforeEach(async () => {
    target = await startTarget();
  });
  afterEach(async () => {
    await daemon?.stop();
    daemon = undefined;
    await target?.stop();
  });

  const healthz = async (): Promise<{ status: number; body: { status: string; failing: Array<{ fs_id: string; code: string; message: string }> } }> => {
    const r = await get(`${base}/healthz`);
    return { status: r.status, body: JSON.parse(r.body) };
  };
  const healthColumn = async (): Promise<string | undefined> =>
    (await daemon!.efsctl('list')).stdout.split('\n').find((l) => l.startsWith(FS_ID))?.split(/\s+/)[4];

  it('with probes off, a refused client connection fails /healthz and HEALTH with its code until a later connection is verified', async () => {
    daemon = await new Daemon(daemonConfig(21800, { metrics: { listen: '127.0.0.1:19813' } })).start();
    const { tunnel } = await daemon.efsctlJson<{ tunnel: TunnelView }>('add', FS_ID, '-o', OPTS);
    // Nothing is known yet: no probe will come, and no client has connected.
    expect((await healthz()).status).to.equal(200);
    expect(await healthColumn()).to.equal('off');

    expect((await exchange(tunnel.port, 'one')).received.toString()).to.equal('one' + ECHO_TRAILER);
    expect(await healthColumn()).to.equal('ok');
    expect((await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).health.connection).to.include({ ok: true, code: null, message: null });

    await target.stop();
    expect((await exchange(tunnel.port, 'two')).received.toString()).to.equal('');
    const refused = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
    expect(refused.health.connection).to.include({ ok: false, code: 'CONNECT_REFUSED', message: refused.last_error!.message });
    expect(refused.last_error!.message).to.contain('127.0.0.46:2049');
    const down = await healthz();
    expect(down.status).to.equal(503);
    expect(down.body.failing).to.deep.equal([{ fs_id: FS_ID, code: 'CONNECT_REFUSED', message: refused.last_error!.message }]);
    expect(await healthColumn()).to.equal('CONNECT_REFUSED');
    expect((await daemon.efsctl('status', FS_ID)).stdout).to.contain('Health:        CONNECT_REFUSED\n');

    // The target is back, but until a connection proves it the last word is the refusal.
    target = await startTarget();
    expect((await healthz()).status).to.equal(503);
    expect((await exchange(tunnel.port, 'three')).received.toString()).to.equal('three' + ECHO_TRAILER);
    expect(await healthz()).to.deep.equal({ status: 200, body: { status: 'ok', tunnels: 1, failing: [] } });
    expect(await healthColumn()).to.equal('ok');
  });

  it('probes turned off at a reload take a failed probe\'s verdict with them: /healthz ok, no efs_relay_upstream_up, HEALTH off', async () => {
    await target.stop(); // the first probe fails
    daemon = await new Daemon(daemonConfig(21800, { metrics: { listen: '127.0.0.1:19813' }, health: { probe_interval: 30, probe_timeout: 2 } })).start();
    await daemon.efsctlJson('add', FS_ID, '-o', OPTS);
    await waitFor('a failed probe', async () => (await daemon!.efsctlJson<TunnelDetail>('status', FS_ID)).health.probe?.ok === false);
    expect((await healthz()).status).to.equal(503);
    expect((await get(`${base}/metrics`)).body).to.contain(`efs_relay_upstream_up{fs_id="${FS_ID}"} 0`);

    daemon.editConfig((c) => ({ ...c, health: { probe_interval: 0 } }));
    expect((await daemon.efsctl('reload')).code).to.equal(0);
    expect(await healthz()).to.deep.equal({ status: 200, body: { status: 'ok', tunnels: 1, failing: [] } });
    expect((await get(`${base}/metrics`)).body).not.to.contain('efs_relay_upstream_up{');
    expect(await healthColumn()).to.equal('off');
    target = await startTarget(); // for afterEach
  });

  it('with probes on, a client connection refused after a passed probe fails /healthz at once, before the next probe', async () => {
    // The first probe comes within a second, the next one 27–33 s later: long after this test.
    daemon = await new Daemon(daemonConfig(21800, { metrics: { listen: '127.0.0.1:19813' }, health: { probe_interval: 30, probe_timeout: 2 } })).start();
    const { tunnel } = await daemon.efsctlJson<{ tunnel: TunnelView }>('add', FS_ID, '-o', OPTS);
    await waitFor('first probe', async () => (await daemon!.efsctlJson<TunnelDetail>('status', FS_ID)).health.probe !== null);
    expect((await daemon.efsctlJson<TunnelDetail>('status', FS_ID)).health.probe).to.include({ ok: true });
    expect((await healthz()).status).to.equal(200);

    await target.stop();
    await exchange(tunnel.port, 'x');
    const down = await healthz();
    expect(down.status).to.equal(503);
    expect(down.body.failing.map((f) => [f.fs_id, f.code])).to.deep.equal([[FS_ID, 'CONNECT_REFUSED']]);
    const s = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
    expect(s.health.probe).to.include({ ok: true }); // no probe has run since: the refusal is the news
    expect(await healthColumn()).to.equal('CONNECT_REFUSED');
  });
});

describe('metrics endpoint configuration', function () {
  it('serves nothing when metrics.listen is empty', async () => {
    const d = await new Daemon(daemonConfig(21150, { metrics: { listen: '' } })).start();
    try {
      expect(d.logs).to.contain('metrics=off');
    } finally {
      await d.stop();
    }
  });

  it('refuses a non-loopback metrics address without metrics.allow_remote, saying how to allow it', async () => {
    const d = new Daemon(daemonConfig(21160, { metrics: { listen: '0.0.0.0:19802' } }));
    const err = await d.start().then(() => null, (e: Error) => e);
    expect(err?.message).to.contain('metrics.listen 0.0.0.0:19802 is not a loopback address [CONFIG_INVALID]');
    expect(err?.message).to.contain('Set metrics.allow_remote: true');
  });

  it('serves a non-loopback address with metrics.allow_remote: true, and logs that it does', async () => {
    const d = await new Daemon(daemonConfig(21170, { metrics: { listen: '0.0.0.0:19803', allow_remote: true } })).start();
    try {
      expect(d.logs).to.match(/warn metrics\.remote .*reachable from other hosts/);
      expect((await get('http://127.0.0.1:19803/healthz')).status).to.equal(200);
    } finally {
      await d.stop();
    }
  });
});

describe('hung mounts', function () {
  it('keeps answering within 1 s while a mount hangs, and reports the mount unhealthy', async () => {
    const target = await new MountTargetStandIn({ host: '127.0.0.21', port: 2049, cert: testCerts().good, backend: 'echo' }).start();
    const d = new Daemon(daemonConfig(21200, {
      metrics: { listen: '127.0.0.1:19804' },
      health: { probe_interval: 0.3, probe_timeout: 2, stat_timeout: 0.5 },
    }));
    // A stat that never returns, like stat() on a hung NFS mount.
    const hangingStat = join(d.dir, 'hanging-stat');
    writeFileSync(hangingStat, '#!/bin/sh\nexec sleep 600\n');
    chmodSync(hangingStat, 0o755);
    writeFileSync(d.configFile, (await import('yaml')).stringify({
      ...(await import('yaml')).parse((await import('node:fs')).readFileSync(d.configFile, 'utf8')),
      health: { probe_interval: 0.3, probe_timeout: 2, stat_timeout: 0.5, stat_command: hangingStat },
    }));
    await d.start();
    try {
      const dir = join(d.dir, 'mnt');
      mkdirSync(dir);
      expect((await d.efsctl('attach', FS_ID, dir, '-o', 'mounttargetip=127.0.0.21,region=us-east-1')).code).to.equal(0);
      await waitFor('the hung mount reported', async () =>
        (await d.efsctlJson<TunnelDetail>('status', FS_ID)).health.mounts_failing.length > 0, 5_000);
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now();
        await call(d.socket, 'list');
        expect(performance.now() - t0, 'list answered while stat hangs').to.be.lessThan(1000);
        await sleep(200);
      }
      const s = await d.efsctlJson<TunnelDetail>('status', FS_ID);
      expect(s.health.mounts_failing).to.deep.equal([{ dir, code: 'MOUNT_HUNG', message: `stat ${dir} did not return within 0.5 s` }]);
      const health = JSON.parse((await get('http://127.0.0.1:19804/healthz')).body) as { failing: Array<{ code: string }> };
      expect(health.failing.map((f) => f.code)).to.include('MOUNT_HUNG');
      expect((await d.efsctl('list')).stdout).to.match(/listening\s+MOUNT_HUNG/);
    } finally {
      await d.stop();
      await target.stop();
    }
  });
});

describe('unencrypted mounts', function () {
  let daemon: Daemon;
  const base = 'http://127.0.0.1:19805';
  before(async () => {
    daemon = await new Daemon(daemonConfig(21250, { metrics: { listen: '127.0.0.1:19805' } })).start();
  });
  after(async () => {
    await daemon?.stop();
  });

  it('counts a plain nfs4 mount of an EFS name, logs it once, and lists it in efsctl list and status', async () => {
    const dir = join(daemon.dir, 'mnt-tunnelled');
    mkdirSync(dir);
    await daemon.efsctl('attach', FS_ID, dir, '-o', 'region=us-east-1,mounttargetip=127.0.0.22');
    await sleep(500);
    expect((await get(`${base}/metrics`)).body, 'a tunnelled mount does not count').to.contain('efs_relay_unencrypted_nfs_mounts 0');
    daemon.mount.addMountLine(`${FS_ID}.efs.us-east-1.amazonaws.com:/ /mnt/plain nfs4 rw,relatime,vers=4.1,addr=10.0.0.5 0 0`);
    await waitFor('counted', async () => (await get(`${base}/metrics`)).body.includes('efs_relay_unencrypted_nfs_mounts 1'));
    await sleep(500);
    const logged = daemon.logs.split('\n').filter((l) => l.includes('mount.unencrypted'));
    expect(logged).to.have.length(1);
    expect(logged[0]).to.match(new RegExp(`warn mount\\.unencrypted fs=${FS_ID} code=UNENCRYPTED_MOUNT msg=".* is mounted at /mnt/plain without TLS"`));
    const list = await daemon.efsctl('list');
    expect(list.stdout).to.contain(`WARNING: ${FS_ID}.efs.us-east-1.amazonaws.com:/ is mounted at /mnt/plain WITHOUT TLS`);
    const status = await daemon.efsctlJson<TunnelDetail>('status', FS_ID);
    expect(status.unencrypted_mounts).to.deep.equal([{ device: `${FS_ID}.efs.us-east-1.amazonaws.com:/`, dir: '/mnt/plain', fs_id: FS_ID }]);
  });

  it('counts a plain mount of a known mount-target address', async () => {
    // 127.0.0.22 is known as the target of a tunnel (idempotent if the test before made it).
    expect((await daemon.efsctl('add', FS_ID, '-o', 'region=us-east-1,mounttargetip=127.0.0.22')).code).to.equal(0);
    const counted = async (): Promise<number> =>
      Number(/^efs_relay_unencrypted_nfs_mounts (\d+)$/m.exec((await get(`${base}/metrics`)).body)?.[1] ?? NaN);
    const before = await counted();
    daemon.mount.addMountLine('127.0.0.22:/ /mnt/by-ip nfs4 rw,vers=4.1,addr=127.0.0.22 0 0');
    await waitFor('counted', async () => (await counted()) === before + 1);
    daemon.mount.removeMount('/mnt/by-ip');
    await waitFor('no longer counted', async () => (await counted()) === before);
  });

  it('refuses notls under the default policy.require_tls', async () => {
    const dir = join(daemon.dir, 'mnt-notls');
    mkdirSync(dir);
    const r = await daemon.efsctl('attach', FS_ID, dir, '-o', 'notls,region=us-east-1');
    expect(r.code).to.equal(1);
    expect(r.stderr).to.contain('[TLS_REQUIRED]').and.contain('policy.require_tls: false');
  });

  it('mounts notls straight to the target when policy.require_tls is false, and counts it as unencrypted', async () => {
    const d = await new Daemon(daemonConfig(21270, { policy: { require_tls: false }, metrics: { listen: '127.0.0.1:19806' } })).start();
    try {
      const dir = join(d.dir, 'mnt');
      mkdirSync(dir);
      const r = await d.efsctl('attach', FS_ID, dir, '-o', 'notls,region=us-east-1');
      expect(r.code, r.stderr).to.equal(0);
      expect(d.mount.calls().at(-1)!.argv).to.deep.equal([
        d.mount.mountCommand, `${FS_ID}.efs.us-east-1.amazonaws.com:/`, dir, '-o',
        'nfsvers=4.1,rsize=1048576,wsize=1048576,hard,timeo=600,retrans=2,noresvport,port=2049',
      ]);
      expect((await d.efsctlJson<{ tunnels: unknown[] }>('list')).tunnels).to.deep.equal([]);
      await waitFor('counted', async () => (await get('http://127.0.0.1:19806/metrics')).body.includes('efs_relay_unencrypted_nfs_mounts 1'));
      // An IPv6 mount target goes in brackets, as mount.nfs4 needs it.
      const dir6 = join(d.dir, 'mnt6');
      mkdirSync(dir6);
      expect((await d.efsctl('attach', FS_ID, dir6, '-o', 'notls,region=us-east-1,mounttargetip=::1')).code).to.equal(0);
      expect(d.mount.calls().at(-1)!.argv.slice(1, 3)).to.deep.equal(['[::1]:/', dir6]);
    } finally {
      await d.stop();
    }
  });
});

describe('alert rules', function () {
  before(async function () {
    skipIf(this, await prometheusUnavailable());
  });

  it('pass promtool check rules', async () => {
    const r = await run('promtool', ['check', 'rules', join(ROOT, 'etc/prometheus/efs-relay-alerts.yml')]);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(r.stdout).to.contain('SUCCESS: 15 rules found');
  });

  it('pass promtool unit tests: each alert fires when it should and stays silent otherwise', async () => {
    const r = await run('promtool', ['test', 'rules', join(ROOT, 'test/prometheus/efs-relay-alerts.test.yml')]);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
    expect(r.stdout + r.stderr).to.contain('SUCCESS');
  });

  it('ship a scrape config that promtool accepts', async () => {
    const r = await run('promtool', ['check', 'config', '--syntax-only', join(ROOT, 'etc/prometheus/efs-relay-scrape.yml')]);
    expect(r.code, r.stdout + r.stderr).to.equal(0);
  });
});

describe('a real Prometheus scraping the daemon', function () {
  let prom: Prometheus;
  let target: MountTargetStandIn;
  let ganesha: Ganesha;
  let daemon: Daemon;
  before(async function () {
    requireNfs(this);
    skipIf(this, await prometheusUnavailable());
    ganesha = await Ganesha.get();
    target = await new MountTargetStandIn({
      host: '127.0.0.23', port: 2049, cert: testCerts().good, backend: { host: '127.0.0.1', port: ganesha.nfsPort },
    }).start();
    daemon = await new Daemon(daemonConfig(21300, {
      metrics: { listen: '127.0.0.1:19807' },
      health: { probe_interval: 0.5, probe_timeout: 2 },
    })).start();
    prom = await new Prometheus('127.0.0.1:19807').start();
  });
  after(async () => {
    await prom?.stop();
    await daemon?.stop();
    await target?.stop();
  });

  it('sees efs_relay_bytes_total grow after NFS traffic through a tunnel', async () => {
    const add = await daemon.efsctlJson<{ tunnel: TunnelView }>('add', FS_ID, '-o', 'mounttargetip=127.0.0.23,region=us-east-1');
    const port = add.tunnel.port;
    const q = `sum(efs_relay_bytes_total{fs_id="${FS_ID}"})`;
    await waitFor('the tunnel scraped', async () => (await prom.value(q)) !== null, 15_000);
    const before = (await prom.value(q)) as number;
    const src = join(daemon.dir, 'prom.bin');
    writeFileSync(src, Buffer.alloc(4 << 20, 'prometheus'));
    await nfsCp(src, ganesha.v3Url('prom.bin', port));
    await nfsCatSha256(ganesha.v4Url('prom.bin', port));
    await waitFor('bytes to grow in Prometheus', async () => ((await prom.value(q)) ?? 0) > before + (8 << 20), 15_000);
  });

  it('sees efs_relay_upstream_up go from 1 to 0 when the mount target stops', async () => {
    // add is idempotent: the tunnel the test before made, or a new one when this test runs alone.
    await daemon.efsctlJson('add', FS_ID, '-o', 'mounttargetip=127.0.0.23,region=us-east-1');
    const q = `efs_relay_upstream_up{fs_id="${FS_ID}"}`;
    await waitFor('upstream_up 1', async () => (await prom.value(q)) === 1, 15_000);
    await target.stop();
    await waitFor('upstream_up 0', async () => (await prom.value(q)) === 0, 15_000);
  });
});
