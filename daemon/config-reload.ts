// What a reload of config.yaml (SIGHUP, systemctl reload) may change in a
// running daemon. The keys of log, health, mount, policy and relay are read
// where they are used (relay's timeouts are handed to each relay), so a new
// value takes effect without touching a tunnel or an open connection. Every other key shapes tunnels, listeners or watched
// paths that exist already (ports, targets, TLS contexts, the state dir), and
// changing it under them could drop a mount's tunnel: those wait for a
// restart, and the daemon says so.
import { loadConfig, type Config } from './config.js';
import type { TrustJudge } from './file-trust.js';
import { asRelayError, RelayError } from './errors.js';
import type { Logger } from './log.js';
import { metricsListenRefusal } from './metrics-server.js';

/**
 * Why the daemon would not start with `cfg`, beyond what loading it checks
 * (a non-loopback metrics.listen without allow_remote); null when it would.
 * `efs-relayd --check` and a reload ask this, so that neither calls good a
 * file the next start refuses.
 */
export function startRefusal(cfg: Config): RelayError | null {
  return metricsListenRefusal(cfg.metrics);
}

/** Sections whose keys a reload applies at once. */
const LIVE_SECTIONS: ReadonlySet<string> = new Set(['log', 'health', 'mount', 'policy', 'relay', 'iam']);

export interface ReloadPlan {
  /** Changed keys applied now, dotted ("health.probe_interval"). */
  applied: string[];
  /** Changed keys that keep their running value until the daemon restarts. */
  needRestart: string[];
}

type Tree = { [key: string]: unknown };

/** Dotted names of the leaves whose values differ. */
function changedLeaves(a: Tree, b: Tree, prefix = ''): string[] {
  const out: string[] = [];
  for (const key of Object.keys(a)) {
    const [x, y] = [a[key], b[key]];
    if (x !== null && typeof x === 'object' && y !== null && typeof y === 'object') out.push(...changedLeaves(x as Tree, y as Tree, `${prefix}${key}.`));
    else if (x !== y) out.push(`${prefix}${key}`);
  }
  return out;
}

export function planReload(running: Config, next: Config): ReloadPlan {
  const plan: ReloadPlan = { applied: [], needRestart: [] };
  for (const key of changedLeaves(running as unknown as Tree, next as unknown as Tree)) {
    (LIVE_SECTIONS.has(key.split('.')[0] as string) ? plan.applied : plan.needRestart).push(key);
  }
  return plan;
}

/**
 * Copy the plan's applied keys from `next` into `running`, in place: every
 * module holds the same Config object and reads these keys at use.
 */
export function applyReload(running: Config, next: Config, plan: ReloadPlan): void {
  for (const key of plan.applied) {
    const [section, leaf] = key.split('.') as [string, string];
    ((running as unknown as Record<string, Tree>)[section] as Tree)[leaf] = ((next as unknown as Record<string, Tree>)[section] as Tree)[leaf];
  }
}

/** A part of the daemon that follows a changed key by itself once told. */
export interface Reconfigurable {
  reconfigure(): void;
}

/** What a reload did, as `efsctl reload --json` prints it. */
export interface ReloadResult {
  file: string;
  applied: string[];
  restart_needed: string[];
}

/** A reload's result, or why it changed nothing. */
export type ReloadOutcome = ({ ok: true } & ReloadResult) | { ok: false; error: RelayError };

/**
 * Read `file` again and apply what may change now. A file that does not
 * load changes nothing: the daemon carries on as it was, and the log says
 * why. Either way the log has a line, and the outcome says the same.
 */
export async function reloadConfig(
  file: string,
  running: Config,
  log: Logger,
  followers: { prober: Reconfigurable; mountWatcher: Reconfigurable; tunnels: Reconfigurable; trust: Reconfigurable & TrustJudge },
): Promise<ReloadOutcome> {
  let next: Config;
  try {
    next = await loadConfig(file);
    const refused = startRefusal(next);
    if (refused) throw refused;
  } catch (err) {
    const e = asRelayError(err);
    const error = new RelayError(e.code, `${e.message}; nothing was changed, and the daemon carries on with the configuration it had`, { cause: e });
    log.error('config.reload_failed', { code: error.code, msg: error.message, file });
    return { ok: false, error };
  }
  const plan = planReload(running, next);
  const probeInterval = running.health.probe_interval;
  applyReload(running, next, plan);
  if (running.health.probe_interval !== probeInterval) followers.prober.reconfigure();
  if (plan.applied.some((key) => key.startsWith('mount.'))) followers.mountWatcher.reconfigure();
  if (plan.applied.some((key) => key.startsWith('relay.'))) followers.tunnels.reconfigure();
  if (plan.applied.includes('health.trust_check_interval')) followers.trust.reconfigure();
  // Said at the level the daemon had, so that a reload to log.level warn still confirms itself.
  log.info('config.reloaded', {
    msg: plan.applied.length > 0 ? `applied ${plan.applied.join(', ')}` : 'no change that a reload applies',
    file,
    applied: plan.applied.join(',') || undefined,
  });
  log.setLevel(running.log.level);
  await followers.trust.atRead(file, 'config file');
  if (plan.needRestart.length > 0) {
    log.warn('config.restart_needed', {
      msg: `${plan.needRestart.join(', ')} changed, but take${plan.needRestart.length === 1 ? 's' : ''} effect only when the daemon restarts (systemctl restart efs-relayd: tunnels come back on their ports, open NFS connections reconnect); until then the daemon keeps the value${plan.needRestart.length === 1 ? '' : 's'} it started with`,
      file,
      keys: plan.needRestart.join(','),
    });
  }
  return { ok: true, file, applied: plan.applied, restart_needed: plan.needRestart };
}

/** The file the daemon runs and how its reloads went, as `efsctl version --json` shows it (doctor reads it). */
export interface ConfigStatus {
  file: string;
  /** When the file was last loaded, at start or at a reload. */
  loaded_at: string;
  /** When the latest reload ran, whatever came of it; null before the first. */
  last_reload_at: string | null;
  last_reload_successful: boolean;
  restart_needed: string[];
}

/**
 * The daemon's config file over its life: reloads run one at a time, for
 * `efsctl reload` and SIGHUP alike, and what the latest one left is kept for
 * the metrics (Prometheus's own prometheus_config_last_reload_* are the
 * model) and for doctor. A file that did not load would stop the daemon at
 * its next start, a reboot or an upgrade.
 */
export class ConfigReloader {
  /** false while the latest reload found a file that does not load. */
  successful = true;
  /** When the file was last loaded, at start or at a reload (Unix seconds). */
  loadedAt = Date.now() / 1000;
  /** Changed keys that keep their running value until a restart, as of the latest reload that loaded. */
  restartNeeded: string[] = [];
  /** When the latest reload ran (Unix seconds); null before the first. */
  private reloadedAt: number | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  constructor(
    readonly file: string,
    private readonly running: Config,
    private readonly log: Logger,
    private readonly followers: Parameters<typeof reloadConfig>[3],
  ) {}

  reload(): Promise<ReloadOutcome> {
    const outcome = this.queue.then(async () => {
      const o = await reloadConfig(this.file, this.running, this.log, this.followers);
      this.record(o);
      return o;
    });
    this.queue = outcome.catch(() => undefined);
    return outcome;
  }

  status(): ConfigStatus {
    const iso = (s: number): string => new Date(s * 1000).toISOString();
    return {
      file: this.file, loaded_at: iso(this.loadedAt), last_reload_at: this.reloadedAt === null ? null : iso(this.reloadedAt),
      last_reload_successful: this.successful, restart_needed: this.restartNeeded,
    };
  }

  private record(outcome: ReloadOutcome): void {
    this.reloadedAt = Date.now() / 1000;
    this.successful = outcome.ok;
    if (!outcome.ok) return;
    this.loadedAt = this.reloadedAt;
    this.restartNeeded = outcome.restart_needed;
  }
}
