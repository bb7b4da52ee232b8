// efs-relayd: wiring only. Config, state, relays, control each live in
// their own module; this file connects them and handles signals.
import { inspectorClosedAtStart, onIgnoredSigusr1 } from './inspector-guard.js'; // first: see the module
import { onSignal } from './early-signals.js'; // second: see the module
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { DEFAULT_CONFIG_PATH, loadConfig, type Config } from './config.js';
import { asRelayError } from './errors.js';
import { createLogger } from './log.js';
import { StateStore } from './state.js';
import { TunnelManager } from './tunnels.js';
import { ControlServer } from './control.js';
import { controlHandlers } from './handlers.js';
import { Mounter } from './mounter.js';
import { MountWatcher } from './mount-watch.js';
import { FstabWatcher } from './fstab-watch.js';
import { StateWatcher } from './state-watch.js';
import { Prober } from './prober.js';
import { CaBundleWatcher } from './ca-watch.js';
import { createMetrics } from './metrics.js';
import { MetricsServer } from './metrics-server.js';
import { RateLimitedLog } from './report-once.js';
import { ConfigReloader, startRefusal } from './config-reload.js';
import { VERSION } from './version.js';
import { InstanceRegion } from './instance-region.js';
import { FdWatcher } from './fd-watch.js';
import { dropVerifyOverride } from './tls-policy.js';
import { TrustWatcher } from './trust-watch.js';
import { runNetnsHelper } from './netns-helper.js';

const USAGE = `Usage: efs-relayd [--config PATH] [--check]

Runs in the foreground and logs to stderr. Keeps one TLS relay per EFS file system.
  --config PATH   configuration file (default ${DEFAULT_CONFIG_PATH}; missing = all defaults)
  --check         only check the configuration file: exit 0 if the daemon would start with it,
                  else 1 with the file, line and key (touches no tunnel, socket or state)
  --version       print the version
  --help          this text

Signals: SIGHUP reads the configuration file again, as \`efsctl reload\` does, without
touching a tunnel; SIGTERM stops, letting open connections drain (relay.close_timeout).`;

function die(message: string, code: string, hint?: string): never {
  process.stderr.write(`efs-relayd: ${message} [${code}]\n${hint ? `efs-relayd: ${hint}\n` : ''}`);
  process.exit(1);
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseArgs({
      options: {
        config: { type: 'string' }, check: { type: 'boolean' }, help: { type: 'boolean' }, version: { type: 'boolean' },
        // Internal: the daemon's own helper inside a network namespace (netns.ts), not for users.
        'netns-helper': { type: 'boolean' },
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (err) {
    process.stderr.write(`efs-relayd: ${(err as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (args.values.help) {
    process.stdout.write(USAGE + '\n');
    return;
  }
  if (args.values.version) {
    process.stdout.write(`efs-relayd ${VERSION}\n`);
    return;
  }
  if (args.values['netns-helper']) return runNetnsHelper();

  // Absolute, so that efsctl doctor, in another directory, finds the same file.
  const configFile = resolve(args.values.config ?? DEFAULT_CONFIG_PATH);
  let cfg: Config;
  try {
    cfg = await loadConfig(configFile);
  } catch (err) {
    const e = asRelayError(err);
    die(e.message, e.code, e.hint);
  }
  if (args.values.check) {
    const refused = startRefusal(cfg);
    if (refused) die(`${configFile}: ${refused.message}`, refused.code, refused.hint);
    process.stdout.write(existsSync(configFile)
      ? `efs-relayd: ${configFile} is valid: the daemon would start with it\n`
      : `efs-relayd: ${configFile} does not exist: the daemon would start with the defaults\n`);
    return;
  }

  const log = createLogger(cfg.log.level);
  // As soon as there is a log: a SIGUSR1 while the daemon starts is said too (inspector-guard ignores it from the first line).
  onIgnoredSigusr1(() => {
    log.warn('daemon.sigusr1_ignored', { msg: "SIGUSR1 ignored: Node would open its debugger on 127.0.0.1:9229 to every local user; efs-relayd has no SIGUSR1 action" });
  });
  // Node's default for SIGUSR2 would reset every mount's connections on a habitual `kill -USR2`.
  onSignal('SIGUSR2', () => {
    log.warn('daemon.signal_ignored', { msg: 'SIGUSR2 ignored: efs-relayd has no SIGUSR2 action, and every tunnel keeps running. SIGHUP (systemctl reload efs-relayd) reloads the configuration', signal: 'SIGUSR2' });
  });
  const inspector = inspectorClosedAtStart();
  if (inspector !== undefined) {
    log.warn('daemon.inspector_closed', { msg: `Node's inspector was open at start (${inspector}: --inspect, or a SIGUSR1 as Node started), where every local user could run code in this root process; closed`, url: inspector });
  }
  if (dropVerifyOverride()) {
    log.warn('daemon.tls_env_ignored', { msg: 'NODE_TLS_REJECT_UNAUTHORIZED=0 is in the environment efs-relayd was started with: ignored, every mount target and AWS endpoint is verified all the same; remove it from the unit or the shell that starts the daemon' });
  }
  const store = new StateStore(cfg.state_dir);
  const region = new InstanceRegion(cfg, log);
  const trust = new TrustWatcher(cfg, log);
  const manager = new TunnelManager(cfg, store, log, region, trust);
  const startedAt = new Date();
  const mounter = new Mounter(cfg, manager, log, region);
  const mountWatcher = new MountWatcher(cfg, manager, mounter, log);
  const fstabWatcher = new FstabWatcher(cfg, manager, log, region);
  const stateWatcher = new StateWatcher(cfg.state_dir, manager, log);
  const prober = new Prober(cfg, manager);
  const fdWatcher = new FdWatcher(log, () => manager.descriptorsInUse(), (e) => manager.recordDaemonError(e));
  manager.onRelay((_fs, relay) => {
    relay.on('handshake', () => fdWatcher.nudge());
    relay.on('handshake_failed', () => fdWatcher.nudge());
  });
  const caWatcher = new CaBundleWatcher((file) => manager.reloadCaBundle(file), log);
  const reloader = new ConfigReloader(configFile, cfg, log, { prober, mountWatcher, tunnels: manager, trust });
  const control = new ControlServer(cfg.control_socket, controlHandlers(manager, mounter, startedAt, reloader, region, fstabWatcher), log);
  const metrics = new MetricsServer(cfg, () => createMetrics(cfg, manager, reloader, fstabWatcher, trust), manager, log);

  let stopping = false;

  // The socket answers last, so whoever waits for it finds the daemon fully started.
  let invalid = 0;
  try {
    await store.ensureDir();
    await control.ensureNotRunning();
    // Mounts first: a port a mount names is given to no new tunnel of fstab's lines, and a restored tunnel does not
    // take the port of another file system's efs-utils mount. The records' own mounts are checked at the next read.
    await mountWatcher.start();
    invalid = await manager.restore();
    manager.onCaBundle((file) => {
      caWatcher.add(file);
      trust.add(file, 'CA bundle');
    });
    // After the restore (records name their targets already), before fstab's lines and the first request need a region.
    await region.lookup();
    region.onRegion(() => fstabWatcher.regionKnown());
    await fstabWatcher.start();
    await stateWatcher.start();
    prober.start();
    await fdWatcher.start();
    await metrics.start();
    await control.listen();
  } catch (err) {
    const e = asRelayError(err);
    log.error('daemon.start_failed', { code: e.code, msg: e.message });
    die(e.message, e.code, e.hint);
  }
  log.info('daemon.started', {
    version: VERSION,
    pid: process.pid,
    tunnels: manager.list().length,
    invalid_state_files: invalid,
    socket: cfg.control_socket,
    metrics: cfg.metrics.listen || 'off',
  });
  await trust.atRead(configFile, 'config file');
  trust.start(); // after the reads, which said what was exposed then
  // From here SIGHUP reads the config file again, as `efsctl reload` does; one that came while the daemon started is served now.
  onSignal('SIGHUP', () => {
    if (stopping) return; // a reload would start probes and polls that stop() has just ended
    // Only a bug rejects; the log line says so, and the next reload is still served.
    reloader.reload().catch((err: unknown) => {
      const e = asRelayError(err);
      log.error('daemon.internal_error', { code: e.code, msg: `config reload: ${e.message}; the daemon keeps running. Please report this with the log` });
    });
  });

  const stop = (signal: string): void => {
    if (stopping) return;
    stopping = true;
    log.info('daemon.stopping', { signal, msg: 'closing listeners and draining connections; tunnel records are kept' });
    void (async () => {
      mountWatcher.stop();
      prober.stop();
      region.stop();
      fdWatcher.stop();
      trust.stop();
      await Promise.all([fstabWatcher.stop(), stateWatcher.stop(), caWatcher.stop(), control.close(), metrics.stop()]);
      await manager.shutdown(cfg.relay.close_timeout * 1000);
      log.info('daemon.stopped', {});
      process.exit(0);
    })();
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
  // Node's default for a rejection nobody handles is to exit, taking every
  // mount's connections with it. The background tasks handle their own
  // failures; this is the last line, loud in the log.
  const internalErrors = new RateLimitedLog(60_000);
  // Node prints its own warnings (a deprecation, an EventEmitter with many listeners) as raw lines on stderr, which
  // journald keeps at info and log readers cannot parse: from here they are log lines like every other.
  process.removeAllListeners('warning');
  process.on('warning', (w) => {
    if (!internalErrors.admit(`${w.name}: ${w.message}`)) return;
    log.warn('daemon.node_warning', { code: 'INTERNAL', msg: `Node.js warns: ${w.name}: ${w.message}. The daemon keeps running; please report this with the log`, stack: w.stack });
  });
  process.on('unhandledRejection', (reason) => {
    const e = asRelayError(reason);
    if (!internalErrors.admit(e.message)) return;
    log.error('daemon.internal_error', { code: e.code, msg: `${e.message}; the daemon keeps running. Please report this with the log`, stack: e.cause instanceof Error ? e.cause.stack : e.stack });
  });
}

main().catch((err) => {
  const e = asRelayError(err);
  die(e.message, e.code, e.hint);
});
