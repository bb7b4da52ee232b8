// Follows /proc/mounts. A mount that vanishes outside the daemon (a plain
// umount) is believed only after `unmount_reads` consistent reads and
// `unmount_grace` seconds, like efs-utils' watchdog, so a quick remount never
// loses its tunnel or port. Mounts through a tunnel port that the record
// lacks are adopted, so cleanup never stops a tunnel that is still mounted.
// A tunnel's extra port (a mount taken over from efs-utils) goes by the same
// rules once no mount names it.
import type { Config } from './config.js';
import { efsUtilsMounts, type EfsUtilsMount } from './efs-utils-configs.js';
import { asRelayError, noDescriptorLeft } from './errors.js';
import type { Logger } from './log.js';
import { MountsFileReader, tunnelPortOf, unencryptedEfsMounts, type MountEntry } from './proc-mounts.js';
import type { Mounter } from './mounter.js';
import { ReportOnce } from './report-once.js';
import { portsOf, type TunnelRecord } from './state.js';
import { dnsNameSuffix } from './target.js';
import type { TunnelManager } from './tunnels.js';

export class MountWatcher {
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** A read and what follows from it is under way. */
  private ticking = false;
  /** A reload came during a read, which may have used the old settings: read again at once after it. */
  private readAgain = false;
  /** fs + dir (or fs + extra port) → since when and how many reads it has been missing. */
  private readonly missing = new Map<string, { since: number; reads: number }>();
  private lastReadError = '';
  private reader: MountsFileReader;
  /** Unencrypted mounts already logged (device + dir). */
  private readonly reported = new ReportOnce();
  /** Changes that failed (a full state dir), logged once while they keep failing. */
  private readonly failing = new ReportOnce();
  /** efs-utils' mounts among those through local ports, listed again only when those mounts change. */
  private efsUtils: { key: string; mounts: EfsUtilsMount[] } = { key: '', mounts: [] };
  /** Mounts not adopted, since efs-utils' config gives them to another file system: logged once. */
  private readonly notAdopted = new ReportOnce();

  constructor(
    private readonly cfg: Config,
    private readonly manager: TunnelManager,
    private readonly mounter: Mounter,
    private readonly log: Logger,
  ) {
    this.reader = new MountsFileReader(cfg.mount.proc_mounts);
  }

  /**
   * Read once now, then every poll_interval. The first read is done when this resolves, so that the tunnels
   * restored and made for fstab's lines next know the ports that mounts name: a mount's tunnel may be down, and its
   * reconnects would reach whichever file system got its port.
   */
  async start(): Promise<void> {
    this.stopped = false;
    await this.readThenSchedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    void this.reader.close();
  }

  /**
   * mount.* changed (a config reload): read now, then every poll_interval as
   * it is now, rather than once the old interval is up. A read under way
   * finishes first, and the next follows it at once.
   */
  reconfigure(): void {
    if (this.stopped) return;
    if (this.ticking) {
      this.readAgain = true;
      return;
    }
    if (!this.timer) return; // not started
    clearTimeout(this.timer);
    this.schedule(0);
  }

  private schedule(ms: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.readThenSchedule();
    }, ms);
  }

  /** One read, then the next is scheduled: reads never overlap. */
  private async readThenSchedule(): Promise<void> {
    this.ticking = true;
    try {
      await this.tick();
    } catch (err) {
      // tick() handles what it expects; anything else is a bug, and the reads must go on all the same.
      const e = asRelayError(err);
      this.log.error('daemon.internal_error', { code: e.code, msg: `reading ${this.cfg.mount.proc_mounts}: ${e.message}; the daemon keeps running. Please report this with the log`, stack: e.cause instanceof Error ? e.cause.stack : e.stack });
    } finally {
      this.ticking = false;
    }
    const again = this.readAgain;
    this.readAgain = false;
    this.schedule(again ? 0 : this.cfg.mount.poll_interval * 1000);
  }

  /** efs-utils' mounts among the mounts through local ports; its state dir is listed again only when those change. */
  private async efsUtilsMounts(byPort: ReadonlyMap<number, ReadonlySet<string>>): Promise<EfsUtilsMount[]> {
    const through = [...byPort].flatMap(([port, dirs]) => [...dirs].map((dir) => ({ dir, port })));
    const stateDir = this.cfg.mount.efs_utils_state_dir;
    // efs-utils writes a mount's config before mounting, and removes it after unmounting.
    const key = JSON.stringify([stateDir, through]);
    if (key !== this.efsUtils.key) this.efsUtils = { key, mounts: await efsUtilsMounts(through, stateDir) };
    return this.efsUtils.mounts;
  }

  private checkUnencrypted(mounts: MountEntry[], tunnels: readonly Readonly<TunnelRecord>[]): void {
    const targets = new Set(tunnels.map((r) => r.target.address));
    const found = unencryptedEfsMounts(mounts, (region) => dnsNameSuffix(region, this.cfg), targets);
    const key = (u: { device: string; dir: string }): string => `${u.device}\0${u.dir}`;
    const fresh = this.reported.fresh(found.map(key));
    for (const u of found) {
      if (!fresh.has(key(u))) continue;
      this.log.warn('mount.unencrypted', { fs: u.fs_id ?? undefined, code: 'UNENCRYPTED_MOUNT', msg: `${u.device} is mounted at ${u.dir} without TLS`, dir: u.dir });
    }
    this.manager.unencrypted = found;
  }

  /** One read of /proc/mounts and what follows from it. */
  async tick(now = Date.now()): Promise<void> {
    let mounts: MountEntry[];
    if (this.reader.file !== this.cfg.mount.proc_mounts) {
      // mount.proc_mounts changed at a config reload.
      void this.reader.close();
      this.reader = new MountsFileReader(this.cfg.mount.proc_mounts);
    }
    try {
      mounts = await this.reader.read();
      this.lastReadError = '';
    } catch (err) {
      // Without a reading nothing is known to be gone: keep every tunnel.
      const msg = `cannot read ${this.cfg.mount.proc_mounts}: ${(err as Error).message}`;
      // No file descriptor left says nothing of the file: FD_LIMIT, as the other reads say it.
      if (msg !== this.lastReadError) this.log.warn('mounts.read_failed', { code: noDescriptorLeft(err) ? 'FD_LIMIT' : 'INTERNAL', msg: `${msg}; every tunnel is kept, and it is read again at the next poll` });
      this.lastReadError = msg;
      return;
    }
    const tunnels = this.manager.records();
    this.checkUnencrypted(mounts, tunnels);
    // Directories mounted through each tunnel port, so each tunnel looks only at its own.
    const byPort = new Map<number, Set<string>>();
    for (const m of mounts) {
      const port = tunnelPortOf(m);
      if (port === null) continue;
      const dirs = byPort.get(port) ?? new Set<string>();
      dirs.add(m.dir);
      byPort.set(port, dirs);
    }
    await this.manager.setMountedPorts(new Set(byPort.keys()));
    const efsUtils = await this.efsUtilsMounts(byPort);
    this.manager.setEfsUtilsMounts(efsUtils);
    const notMine = new Map<string, { fs: string; m: EfsUtilsMount; serves: boolean }>();
    // A change that fails (its record cannot be written) is tried again at the next read; one
    // tunnel's failure neither stops the others' changes nor the daemon.
    const failed = new Map<string, { what: string; fs: string; dir: string | undefined; err: unknown }>();
    const attempt = async (what: string, fs: string, dir: string | undefined, change: () => Promise<void>): Promise<boolean> => {
      try {
        await change();
        return true;
      } catch (err) {
        failed.set(`${what}\0${fs}`, { what, fs, dir, err });
        return false;
      }
    };
    // Gone for unmount_reads reads over unmount_grace seconds: the reason why, else null (and the count goes on).
    const goneFor = (key: string): string | null => {
      const seen = this.missing.get(key) ?? { since: now, reads: 0 };
      seen.reads++;
      this.missing.set(key, seen);
      if (seen.reads < this.cfg.mount.unmount_reads || now - seen.since < this.cfg.mount.unmount_grace * 1000) return null;
      return `gone from ${this.cfg.mount.proc_mounts} for ${seen.reads} reads over ${Math.round((now - seen.since) / 1000)} s`;
    };
    for (const t of tunnels) {
      const listed = new Set<string>();
      for (const port of portsOf(t)) {
        for (const dir of byPort.get(port) ?? []) {
          listed.add(dir);
          if (t.mounts.includes(dir)) continue;
          // efs-utils' mount of another file system, through a port this tunnel holds.
          const other = efsUtils.find((m) => m.dir === dir && m.port === port && m.fs_id !== t.fs_id);
          if (!other) {
            await attempt(`recording the mount at ${dir}`, t.fs_id, dir, () => this.mounter.adopt(t.fs_id, port, dir));
            continue;
          }
          // Keyed with whether the tunnel serves the port, so that a tunnel that starts to serve it is said again.
          const serves = this.manager.servesPort(port);
          notMine.set(`${t.fs_id}\0${dir}\0${port}\0${serves}`, { fs: t.fs_id, m: other, serves });
        }
      }
      for (const dir of t.mounts) {
        const key = `${t.fs_id}\0${dir}`;
        if (listed.has(dir)) {
          this.missing.delete(key);
          continue;
        }
        const why = goneFor(key);
        if (why !== null && (await attempt(`forgetting the mount at ${dir}`, t.fs_id, dir, () => this.mounter.forget(t.fs_id, dir, why)))) this.missing.delete(key);
      }
      for (const port of t.extra_ports ?? []) {
        const key = `${t.fs_id}\0:${port}`;
        if (byPort.has(port)) {
          this.missing.delete(key);
          continue;
        }
        const why = goneFor(key);
        if (why !== null && (await attempt(`releasing port ${port}, which no mount names any more,`, t.fs_id, undefined, () => this.manager.releasePort(t.fs_id, port, `no mount names port ${port}: ${why}`)))) this.missing.delete(key);
      }
    }
    const freshNotMine = this.notAdopted.fresh(notMine.keys());
    for (const [key, { fs, m, serves }] of notMine) {
      if (!freshNotMine.has(key)) continue;
      const what = `${m.dir} is mounted through port ${m.port}, which the tunnel of ${fs} holds, but efs-utils' config ${m.file} gives the mount to ${m.fs_id}`;
      if (serves) {
        // Left by an older efs-relay, which could give a port to a tunnel while efs-utils' mount through it was down.
        this.log.error('mount.wrong_file_system', { fs, code: 'PORT_CLAIMED', dir: m.dir, port: m.port, msg: `${what}, and that tunnel serves the port: the mount's NFS traffic reaches the mount target of ${fs}, not of ${m.fs_id}. Unmount ${m.dir} and mount ${m.fs_id} again` });
      } else {
        this.log.warn('mount.not_adopted', { fs, code: 'PORT_CLAIMED', dir: m.dir, port: m.port, msg: `${what}: it is not recorded as a mount of ${fs}` });
      }
    }
    const fresh = this.failing.fresh(failed.keys());
    for (const [key, { what, fs, dir, err }] of failed) {
      if (!fresh.has(key)) continue;
      const { code, message } = asRelayError(err);
      this.log.warn('mounts.update_failed', { fs, code, dir, msg: `${what} failed: ${message}; the tunnel keeps running, and this is tried again at every read of ${this.cfg.mount.proc_mounts}` });
    }
  }
}
