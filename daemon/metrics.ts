// Prometheus metrics, on a registry of our own. Point-in-time values are
// read from the tunnel manager at scrape time (collect), so the relay's hot
// path only bumps plain numbers, and a removed tunnel's series disappear.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { Config } from './config.js';
import { SESSION_FAILURE_CODES } from './tls-policy.js';
import type { TunnelManager, TunnelView } from './tunnels.js';
import { VERSION } from './version.js';
import type { ConfigReloader } from './config-reload.js';

const EVENT_LOOP_SAMPLE_MS = 100;

export interface Metrics {
  registry: Registry;
  /** The exposition text, from one snapshot of the tunnels. */
  scrape(): Promise<string>;
}

export function createMetrics(
  cfg: Config, manager: TunnelManager, reloads: ConfigReloader, fstab: { readonly invalidLines: number }, trust: { readonly exposedCount: number },
): Metrics {
  const registry = new Registry();
  // The event-loop delay histogram samples on a timer: prom-client's default
  // (10 ms) woke an idle daemon 100 times a second; 100 ms still catches the
  // stalls that matter to a relay.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  // prom-client names these gauges with _total, which promtool (rightly) rejects; the process_* metrics stay.
  for (const name of ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total']) {
    registry.removeSingleMetric(name);
  }
  const { first, last } = cfg.port_range;
  const rangeSize = last - first + 1;
  // One view of the tunnels per scrape (taken by scrape() below), not one per metric.
  let snapshot: TunnelView[] = [];

  new Gauge({
    name: 'efs_relay_build_info', help: 'Always 1; the version label says which efs-relay runs.', labelNames: ['version'], registers: [registry],
    collect() {
      this.set({ version: VERSION }, 1);
    },
  });

  // Each collect() starts from empty, so a tunnel that is gone leaves no series behind.
  const perTunnel = <T extends string>(name: string, help: string, labels: T[], fill: (set: (l: Record<T | 'fs_id', string>, v: number) => void) => void, kind: 'gauge' | 'counter' = 'gauge') => {
    const opts = { name, help, labelNames: ['fs_id', ...labels], registers: [registry] };
    if (kind === 'gauge') {
      new Gauge({ ...opts, collect() { this.reset(); fill((l, v) => this.set(l, v)); } });
    } else {
      new Counter({ ...opts, collect() { this.reset(); fill((l, v) => this.inc(l, v)); } });
    }
  };

  perTunnel('efs_relay_tunnel_up', '1 when the tunnel listens on its local port (and on its extra ports, if any).', [], (set) => {
    for (const t of snapshot) set({ fs_id: t.fs_id }, t.state === 'listening' ? 1 : 0);
  });
  perTunnel('efs_relay_upstream_up', '1 when the last health probe completed a verified TLS handshake with the mount target.', [], (set) => {
    for (const t of snapshot) if (t.health.probe) set({ fs_id: t.fs_id }, t.health.probe.ok ? 1 : 0);
  });
  perTunnel('efs_relay_connections_active', 'Client connections open through the tunnel.', [], (set) => {
    for (const t of snapshot) set({ fs_id: t.fs_id }, t.connections.active);
  });
  perTunnel('efs_relay_connections_total', 'Client connections, by whether their TLS session was established.', ['result'], (set) => {
    for (const t of snapshot) {
      set({ fs_id: t.fs_id, result: 'ok' }, t.connections.ok);
      set({ fs_id: t.fs_id, result: 'failed' }, t.connections.failed);
    }
  }, 'counter');
  perTunnel('efs_relay_bytes_total', 'Bytes relayed: upstream is client to mount target, downstream is back.', ['direction'], (set) => {
    for (const t of snapshot) {
      set({ fs_id: t.fs_id, direction: 'upstream' }, t.bytes.upstream);
      set({ fs_id: t.fs_id, direction: 'downstream' }, t.bytes.downstream);
    }
  }, 'counter');
  perTunnel('efs_relay_tls_handshake_failures_total', 'Refused TLS handshakes, by error code.', ['code'], (set) => {
    for (const [fsId, relay] of manager.relays()) for (const [code, n] of relay.counters.handshakeFailures) set({ fs_id: fsId, code }, n);
  }, 'counter');
  perTunnel('efs_relay_tls_session_failures_total', 'Established TLS sessions ended by a TLS error (a record that does not decrypt, a fatal alert, a refused renegotiation), by error code.', ['code'], (set) => {
    // Both codes from 0, so that increase() in an alert rule sees a tunnel's first failure.
    for (const [fsId, relay] of manager.relays()) {
      for (const code of SESSION_FAILURE_CODES) set({ fs_id: fsId, code }, relay.counters.sessionFailures.get(code) ?? 0);
    }
  }, 'counter');
  perTunnel('efs_relay_dns_fallbacks_total', 'Connections and probes that DNS gave no address for in time, sent to the address of its last answer (log: tunnel.dns_fallback).', [], (set) => {
    for (const [fsId, relay] of manager.relays()) set({ fs_id: fsId }, relay.dnsFallbacks);
  }, 'counter');
  perTunnel('efs_relay_upstream_cert_expiry_timestamp_seconds', 'When the mount target certificate seen by the last probe expires (Unix time).', [], (set) => {
    for (const t of snapshot) {
      const expiry = t.health.probe?.cert_expiry;
      if (expiry) set({ fs_id: t.fs_id }, Date.parse(expiry) / 1000);
    }
  });
  perTunnel('efs_relay_client_cert_expiry_timestamp_seconds', 'When the client certificate the tunnel presents (access point, IAM authorization) expires (Unix time); renewed 2 hours before, so a value under that means renewal fails.', [], (set) => {
    for (const t of snapshot) if (t.client_certificate) set({ fs_id: t.fs_id }, Date.parse(t.client_certificate.not_after) / 1000);
  });
  perTunnel('efs_relay_probe_duration_seconds', 'How long the last health probe took.', [], (set) => {
    for (const t of snapshot) if (t.health.probe) set({ fs_id: t.fs_id }, t.health.probe.duration_seconds);
  });
  perTunnel('efs_relay_mounts_unhealthy', 'Mounted directories of the tunnel whose stat hung or failed at the last check.', [], (set) => {
    for (const t of snapshot) set({ fs_id: t.fs_id }, t.health.mounts_failing.length);
  });
  perTunnel('efs_relay_tunnel_restarts_total', 'Times the tunnel listener came back after failing or after its record changed.', [], (set) => {
    for (const t of snapshot) set({ fs_id: t.fs_id }, t.restarts);
  }, 'counter');

  // Histograms cannot be rebuilt at scrape time: observe each handshake, and drop series of removed tunnels.
  const observed = new Set<string>();
  const handshakes = new Histogram({
    name: 'efs_relay_tls_handshake_duration_seconds', help: 'TCP connect plus TLS handshake to the mount target, for client connections.',
    labelNames: ['fs_id'], buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10], registers: [registry],
    collect() {
      const live = new Set(snapshot.map((t) => t.fs_id));
      for (const fsId of observed) {
        if (live.has(fsId)) continue;
        this.remove({ fs_id: fsId });
        observed.delete(fsId);
      }
    },
  });
  manager.onRelay((fsId, relay) => {
    relay.on('handshake', (seconds) => handshakes.observe({ fs_id: fsId }, seconds));
    observed.add(fsId);
  });

  // One unlabelled gauge, read at scrape time.
  const scalar = (name: string, help: string, read: () => number): void => {
    new Gauge({ name, help, registers: [registry], collect() { this.set(read()); } });
  };
  // A tunnel's extra ports (mounts taken over from efs-utils) are held like its own.
  const portsHeld = (): number => snapshot.reduce((n, t) => n + 1 + t.extra_ports.length, 0);
  scalar('efs_relay_ports_in_use', 'Local ports of port_range held by tunnels (their own and their extra ones).', portsHeld);
  // Read once per scrape, with the snapshot, so that in_use + held + free is the range size.
  let heldByMounts = 0;
  scalar('efs_relay_ports_held_by_mounts', 'Local ports of port_range that mounts of stopped tunnels still name; given to no other file system.', () => heldByMounts);
  scalar('efs_relay_ports_free', 'Local ports of port_range that a new tunnel can be given.', () => rangeSize - portsHeld() - heldByMounts);
  scalar('efs_relay_state_files_invalid', 'Files in the state dir that are not valid tunnel records (skipped, never deleted).', () => manager.invalidStateFiles);
  scalar('efs_relay_fstab_lines_invalid', 'efs lines of fstab that get no tunnel or whose mount would be refused (log: fstab.line_invalid).', () => fstab.invalidLines);
  scalar('efs_relay_trust_files_exposed', 'CA bundles in use and the config file that a user other than root can change (log: tls.ca_file_exposed, config.file_exposed), as of the last check.', () => trust.exposedCount);
  scalar('efs_relay_unencrypted_nfs_mounts', 'NFS mounts on this host that reach EFS without going through a TLS tunnel.', () => manager.unencrypted.length);
  scalar('efs_relay_config_last_reload_successful', '0 while the latest reload found a config file that does not load (the daemon would not start with it); else 1.', () => (reloads.successful ? 1 : 0));
  scalar('efs_relay_config_last_reload_success_timestamp_seconds', 'When the config file was last loaded, at start or at a reload (Unix time).', () => reloads.loadedAt);
  scalar('efs_relay_config_restart_needed', 'Changed config keys that keep their running value until the daemon restarts.', () => reloads.restartNeeded.length);
  return {
    registry,
    scrape: () => {
      snapshot = manager.list();
      heldByMounts = manager.portsHeldByMounts();
      return registry.metrics();
    },
  };
}
