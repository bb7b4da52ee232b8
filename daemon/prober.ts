// Health probes. For each tunnel, every health.probe_interval (jittered): a
// TLS handshake to its target under the tunnel's own policy, then a stat of
// each mounted directory in a child process with a time limit, so a hung
// mount can never block the daemon. A tunnel's probes never overlap.
import type { Config } from './config.js';
import type { ErrorCode } from './errors.js';
import { runCommand } from './mount-command.js';
import type { MountCheck, TunnelManager } from './tunnels.js';

const SCAN_MS = 1_000;
/** At most this many first probes start per second, so a daemon restoring 1000 tunnels does not make 1000 handshakes at once. */
const FIRST_PROBES_PER_S = 100;

/** New tunnels get their first probe within this many ms: a second, longer when many arrive at once, never beyond the interval. */
export function firstProbeWindowMs(newTunnels: number, intervalMs: number): number {
  return Math.min(intervalMs, Math.max(1_000, (newTunnels / FIRST_PROBES_PER_S) * 1_000));
}

export class Prober {
  private readonly timers = new Map<string, NodeJS.Timeout>();
  private scanTimer: NodeJS.Timeout | null = null;
  /** Directories whose stat child is still stuck: no second one is started for them. */
  private readonly stuck = new Set<string>();
  /** Bumped by stop(): a probe that was running then is neither recorded nor followed by another. */
  private generation = 0;

  constructor(
    private readonly cfg: Config,
    private readonly manager: TunnelManager,
  ) {}

  start(): void {
    if (this.cfg.health.probe_interval > 0) this.scan();
  }

  stop(): void {
    this.generation++;
    if (this.scanTimer) clearTimeout(this.scanTimer);
    this.scanTimer = null;
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
  }

  /** Follow the tunnel set: schedule new tunnels soon, forget removed ones. */
  private scan(): void {
    const live = new Set(this.manager.records().map((r) => r.fs_id));
    const fresh = [...live].filter((fsId) => !this.timers.has(fsId));
    const windowMs = firstProbeWindowMs(fresh.length, this.intervalMs());
    for (const fsId of fresh) this.schedule(fsId, Math.random() * windowMs);
    for (const [fsId, timer] of this.timers) {
      if (!live.has(fsId)) {
        clearTimeout(timer);
        this.timers.delete(fsId);
      }
    }
    this.scanTimer = setTimeout(() => this.scan(), SCAN_MS);
  }

  /**
   * health.probe_interval changed (a config reload): every tunnel's next
   * probe comes within the first-probe window under the new interval,
   * instead of after the old interval. At 0 probes stop, and the tunnels
   * forget the results that nothing will renew.
   */
  reconfigure(): void {
    this.stop();
    if (this.cfg.health.probe_interval > 0) this.start();
    else this.manager.forgetProbes();
  }

  private intervalMs(): number {
    return this.cfg.health.probe_interval * 1000;
  }

  private schedule(fsId: string, delayMs: number): void {
    const generation = this.generation;
    this.timers.set(fsId, setTimeout(() => void this.run(fsId, generation), delayMs));
  }

  private async run(fsId: string, generation: number): Promise<void> {
    const relay = this.manager.relay(fsId);
    if (!relay) {
      this.timers.delete(fsId);
      return;
    }
    try {
      const result = await relay.probe(this.cfg.health.probe_timeout * 1000);
      // A probe that outlived a reconfigure() is not news any more: probes may be off now.
      if (generation !== this.generation) return;
      this.manager.recordProbe(fsId, result);
      const mounts = this.manager.record(fsId)?.mounts ?? [];
      const checks = await Promise.all(mounts.map((dir) => this.checkMount(dir)));
      if (generation !== this.generation) return;
      this.manager.recordMountChecks(fsId, checks.filter((c): c is MountCheck => c !== null));
    } finally {
      // The next probe is scheduled only now, so probes of one tunnel never overlap; ±10% jitter
      // spreads them out. Even after a failure here, or the tunnel's probes would stop for good.
      if (generation === this.generation && this.timers.has(fsId)) this.schedule(fsId, this.intervalMs() * (0.9 + Math.random() * 0.2));
    }
  }

  private async checkMount(dir: string): Promise<MountCheck | null> {
    const limit = this.cfg.health.stat_timeout;
    const hung: MountCheck = { dir, code: 'MOUNT_HUNG' as ErrorCode, message: `stat ${dir} did not return within ${limit} s` };
    // An earlier stat of DIR that is still stuck means the mount still hangs; do not pile up more.
    if (this.stuck.has(dir)) return hung;
    this.stuck.add(dir);
    const r = await runCommand([this.cfg.health.stat_command, dir], limit * 1000);
    if (!r.timedOut) this.stuck.delete(dir);
    else setTimeout(() => this.stuck.delete(dir), limit * 1000 * 4).unref();
    if (r.timedOut) return hung;
    if (r.code !== 0) return { dir, code: 'MOUNT_STAT_FAILED', message: `stat ${dir} exited with ${r.code}: ${r.stderr.trim()}` };
    return null;
  }
}
