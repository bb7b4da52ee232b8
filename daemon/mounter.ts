// attach and detach: a tunnel plus an NFS 4.1 mount through it, and back.
// One directory is worked on by one request at a time; the tunnel set is
// changed only through the TunnelManager's queue.
import { stat } from 'node:fs/promises';
import { resolve } from 'node:path';
import { asRelayError, ERRORS, RelayError } from './errors.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { KeyedLock } from './keyed-lock.js';
import { inNamespace, mountArgv, nfsOptions, runCommand, runMount, EFS_UTILS_RETRY, type RetryPolicy } from './mount-command.js';
import { kernelNeedsReadahead, readaheadKb, setReadahead } from './readahead.js';
import { attachOptions, type MountOptions } from './options.js';
import { readProcMounts, tunnelPortOf, type MountEntry } from './proc-mounts.js';
import { portsOf, type RecordSource } from './state.js';
import type { RegionEnv } from './target.js';
import { AZ_ID_NOT_ASKED, checkSpecName, isCrossAccount, joinHost, namedRegion, resolveTarget } from './target.js';
import { resolveSpec } from './spec-alias.js';
import type { MetadataAzId, RegionSource } from './instance-region.js';
import type { TunnelManager, TunnelView } from './tunnels.js';

export interface AttachRequest {
  /** fs-id, fs-id:/path, or the file system's DNS name, or an alias of it (CNAME), with :/path */
  spec: string;
  dir: string;
  options: string;
  env: RegionEnv;
  source: RecordSource;
  /** Validate and say what would run, but create nothing and mount nothing. */
  fake?: boolean;
}

export interface AttachResult {
  /** The file system mounted: the spec's, or the one its alias leads to. */
  fs_id: string;
  /** Its directory that is mounted. */
  path: string;
  already_mounted: boolean;
  fake: boolean;
  dir: string;
  command: string[];
  attempts: number;
  tunnel: TunnelView | null;
}

export class Mounter {
  private readonly locks = new KeyedLock();
  /** Mounts under way, by file system: each ends at once when a connection of its tunnel fails in a way no retry mends. */
  private readonly underWay = new Map<string, Set<AbortController>>();

  constructor(
    private readonly cfg: Config,
    private readonly manager: TunnelManager,
    private readonly log: Logger,
    private readonly region: RegionSource,
    private readonly retry: RetryPolicy = EFS_UTILS_RETRY,
  ) {
    // One listener per relay, not one per mount: a boot with many mounts of one file system would pass
    // EventEmitter's warning threshold.
    manager.onRelay((fsId, relay) => relay.on('handshake_failed', (e) => {
      if (e.final) for (const mount of this.underWay.get(fsId) ?? []) mount.abort(e);
    }));
  }

  async attach(req: AttachRequest): Promise<AttachResult> {
    const spec = await resolveSpec(req.spec);
    if (spec.alias !== undefined) this.log.info('mount.alias', { fs: spec.fsId, dir: req.dir, msg: `${spec.alias} is an alias of ${spec.name ?? spec.fsId}` });
    const { all, tunnel: tunnelOpts } = attachOptions(req.options, spec);
    const fsId = spec.fsId;
    const path = spec.path;
    const azId = isCrossAccount(all) ? await this.region.azId() : AZ_ID_NOT_ASKED;
    // A name gives the region, so no instance metadata is needed to know the target.
    if (spec.name !== undefined) checkSpecName(spec, resolveTarget(fsId, all, req.env, this.cfg, this.region.current, azId));
    if (tunnelOpts === null) {
      if (this.cfg.policy.require_tls) {
        throw new RelayError('TLS_REQUIRED', 'The "notls" option is refused: policy.require_tls is on, so EFS is mounted only through a TLS tunnel');
      }
      return this.withDir(req.dir, (dir) => this.plaintextMount(fsId, path, dir, all, req, azId));
    }
    return this.withDir(req.dir, async (dir) => {
      // Only a directory that is not an NFS mount already is looked at on disk (a hung mount would block stat).
      const mountedAt = (await this.procMounts()).findLast((m) => m.dir === dir && m.type.startsWith('nfs')) ?? null;
      if (!mountedAt) await this.checkMountPoint(dir);
      const other = mountedAt ? this.manager.byPort(tunnelPortOf(mountedAt) ?? -1) : null;
      if (mountedAt && other?.fs_id !== fsId) {
        // Stacking a second NFS mount on DIR hides the first one; that is never what was meant.
        const from = other ? `${other.fs_id} (through port ${other.port})` : mountedAt.device;
        throw new RelayError('BAD_MOUNT_POINT', `${dir} is already an NFS mount of ${from}; detach it first`);
      }
      if (req.fake) {
        const existing = this.manager.view(fsId);
        const command = mountArgv(this.cfg.mount.command, path, dir, all, existing?.port ?? 0);
        if (!existing) command.push((command.pop() as string).replace('port=0', 'port=<tunnel port>'));
        return { fs_id: fsId, path, already_mounted: false, fake: true, dir, attempts: 0, tunnel: existing, command };
      }
      const { tunnel, created } = await this.manager.add(
        { fsId, options: tunnelOpts, env: req.env, source: req.source, azId },
        true,
      );
      let unrecorded = false; // mounted, but its record could not be written yet
      try {
        const command = mountArgv(this.cfg.mount.command, path, dir, all, tunnel.port);
        if (mountedAt && portsOf(tunnel).includes(tunnelPortOf(mountedAt) ?? -1)) {
          unrecorded = !(await this.recordMade(fsId, dir));
          return { fs_id: fsId, path, already_mounted: true, fake: false, dir, command, attempts: 0, tunnel: this.manager.view(fsId) };
        }
        let attempts: number;
        const since = new Date().toISOString();
        // A connection of the tunnel's that fails in a way no retry mends (the certificate names another host, DNS
        // has no such name) ends the mount at once: mount.nfs4 would only reconnect into it until its timeout, and
        // efs-utils' retries would repeat that twice more.
        const hopeless = new AbortController();
        const watching = this.underWay.get(fsId) ?? new Set<AbortController>();
        this.underWay.set(fsId, watching.add(hopeless));
        try {
          // A mount at boot retries unseen by anyone: the journal says each retry and why.
          ({ attempts } = await runMount(command, this.retry, hopeless.signal, (msg) => this.log.info('mount.retrying', { fs: fsId, dir, msg })));
        } catch (err) {
          const e = withTunnelCause(err, this.manager.view(fsId), since, hopeless.signal.reason as RelayError | undefined);
          this.log.warn('mount.failed', { fs: fsId, code: e.code, dir, msg: e.message });
          throw e;
        } finally {
          watching.delete(hopeless);
          if (watching.size === 0) this.underWay.delete(fsId);
        }
        unrecorded = !(await this.recordMade(fsId, dir));
        this.log.info('mount.attached', { fs: fsId, dir, port: tunnel.port, attempts });
        await this.tuneReadahead(fsId, dir, command.at(-1) as string);
        return { fs_id: fsId, path, already_mounted: false, fake: false, dir, command, attempts, tunnel: this.manager.view(fsId) };
      } finally {
        this.manager.release(fsId);
        // A failed attach leaves things as they were: a tunnel it made and nothing else uses goes away.
        // Never one that a mount now uses, recorded or not.
        if (created && !unrecorded) await this.manager.stopIfUnused(fsId);
      }
    });
  }

  /** policy.require_tls is off and the user asked for notls: mount straight to the target, as efs-utils does. */
  private async plaintextMount(fsId: string, path: string, dir: string, all: MountOptions, req: AttachRequest, azId: MetadataAzId): Promise<AttachResult> {
    await this.checkMountPoint(dir);
    if (!namedRegion(all, req.env, this.cfg)) await this.region.askAgainIfUnanswered();
    const target = resolveTarget(fsId, all, req.env, this.cfg, this.region.current, azId);
    // nfsOptions leaves the tunnel options (notls, region, …) out, as for a tunnelled mount.
    const command = inNamespace(all, [this.cfg.mount.command, joinHost(target.address, path), dir, '-o', nfsOptions(all, this.cfg.efs.port)]);
    if (req.fake) return { fs_id: fsId, path, already_mounted: false, fake: true, dir, command, attempts: 0, tunnel: null };
    this.log.warn('mount.plaintext', { fs: fsId, code: 'UNENCRYPTED_MOUNT', dir, msg: 'notls with policy.require_tls off: this mount is not encrypted' });
    const { attempts } = await runMount(command, this.retry, undefined, (msg) => this.log.info('mount.retrying', { fs: fsId, dir, msg }));
    await this.tuneReadahead(fsId, dir, command.at(-1) as string);
    return { fs_id: fsId, path, already_mounted: false, fake: false, dir, command, attempts, tunnel: null };
  }

  /** efs-utils' optimize_readahead (readahead.ts): a failure is logged, never a failed mount. */
  private async tuneReadahead(fsId: string, dir: string, nfsOptions: string): Promise<void> {
    const { mount, health } = this.cfg;
    if (!mount.optimize_readahead || !kernelNeedsReadahead()) return;
    const kb = readaheadKb(nfsOptions);
    try {
      const file = await setReadahead(dir, kb, mount.bdi_dir, health.stat_command, health.stat_timeout * 1000);
      this.log.info('mount.readahead', { fs: fsId, dir, msg: `read_ahead_kb set to ${kb} (15 × rsize), as efs-utils does on Linux 5.4 and later`, file });
    } catch (err) {
      this.log.warn('mount.readahead_failed', {
        fs: fsId, dir,
        msg: `could not set read_ahead_kb to ${kb}: ${(err as Error).message}; the mount works, but its sequential reads may be slower (Linux 5.4 and later read ahead 128 KiB on NFS)`,
      });
    }
  }

  detach(dirArg: string): Promise<{ dir: string; fs_id: string; tunnel_stopped: boolean }> {
    return this.withDir(dirArg, async (dir) => {
      // umount takes off the mount on top, the last one listed for DIR.
      const entry = (await this.procMounts()).findLast((m) => m.dir === dir && tunnelPortOf(m) !== null);
      const owner = (entry ? this.manager.byPort(tunnelPortOf(entry) as number) : null) ?? this.manager.byMount(dir);
      if (!owner) throw new RelayError('NOT_MOUNTED', `${dir} is not mounted through an efs-relay tunnel`);
      const r = await runCommand([this.cfg.mount.umount_command, dir], this.retry.timeoutMs);
      if (r.code !== 0 || r.timedOut) {
        const detail = (r.stderr.trim() || r.stdout.trim()) || (r.timedOut ? 'timed out' : '');
        throw new RelayError('UMOUNT_FAILED', `${this.cfg.mount.umount_command} ${dir} exited with ${r.code}${detail ? `: ${detail}` : ''}`);
      }
      // The mounts as they are now, not at the last poll, decide whether the tunnel is still used.
      await this.manager.setMountedPorts(new Set((await this.procMounts()).flatMap((m) => tunnelPortOf(m) ?? [])));
      // Unmounted either way: a record that cannot be written yet is caught up by the /proc/mounts watcher.
      const recorded = await this.stateWritten(owner.fs_id, dir, `unmounted ${dir}, but not recorded yet`, 'the tunnel keeps running until the state dir takes it', () =>
        this.manager.forgetMount(owner.fs_id, dir, 'efsctl detach'));
      if (recorded) await this.manager.stopIfUnused(owner.fs_id);
      const stillThere = this.manager.record(owner.fs_id) !== undefined;
      this.log.info('mount.detached', { fs: owner.fs_id, dir, tunnel_stopped: !stillThere });
      return { dir, fs_id: owner.fs_id, tunnel_stopped: !stillThere };
    });
  }

  /**
   * Record a mount just made. If the state dir cannot take it (full), the
   * mount stands: false, and the /proc/mounts watcher records it (adopt) once
   * it can.
   */
  private recordMade(fsId: string, dir: string): Promise<boolean> {
    return this.stateWritten(fsId, dir, `mounted at ${dir}, but not recorded yet`, 'the tunnel keeps running, and the mount is recorded once the state dir takes it', () =>
      this.manager.recordMount(fsId, dir));
  }

  /**
   * A record change after a mount or unmount that has happened: if the state
   * dir cannot take it (STATE_WRITE_FAILED), say so in the log and return
   * false instead of failing a request whose work is done.
   */
  private async stateWritten(fsId: string, dir: string, what: string, then: string, write: () => Promise<void>): Promise<boolean> {
    try {
      await write();
      return true;
    } catch (err) {
      if (!(err instanceof RelayError) || err.code !== 'STATE_WRITE_FAILED') throw err;
      this.log.warn('mounts.update_failed', { fs: fsId, code: err.code, dir, msg: `${what}: ${err.message}; ${then}` });
      return false;
    }
  }

  /** A mount through a tunnel port that its record lacks: record it, if /proc/mounts still lists it once DIR is ours. */
  adopt(fsId: string, port: number, dir: string): Promise<void> {
    return this.locks.run(dir, async () => {
      if ((await this.procMounts()).some((m) => m.dir === dir && tunnelPortOf(m) === port) && this.manager.byPort(port)?.fs_id === fsId) {
        await this.manager.recordMount(fsId, dir);
      }
    });
  }

  /** A recorded mount that is gone: forget it, unless an attach or detach of DIR is under way. */
  forget(fsId: string, dir: string, why: string): Promise<void> {
    return this.locks.run(dir, () => this.manager.forgetMount(fsId, dir, why));
  }

  /**
   * Hold DIR's lock while fn runs. The path is normalised, not resolved:
   * stat() on a hung NFS mount point would block, so only a directory that is
   * not mounted yet is checked on disk (see checkMountPoint).
   */
  private withDir<T>(dirArg: string, fn: (dir: string) => Promise<T>): Promise<T> {
    if (!dirArg.startsWith('/')) throw new RelayError('BAD_MOUNT_POINT', `Mount point "${dirArg}" must be an absolute path`);
    const dir = resolve(dirArg);
    return this.locks.run(dir, () => fn(dir));
  }

  private async checkMountPoint(dir: string): Promise<void> {
    let isDir: boolean;
    try {
      isDir = (await stat(dir)).isDirectory();
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      throw new RelayError('BAD_MOUNT_POINT', `Mount point ${dir} ${code === 'ENOENT' ? 'does not exist' : `cannot be checked: ${(err as Error).message}`}`);
    }
    if (!isDir) throw new RelayError('BAD_MOUNT_POINT', `Mount point ${dir} is not a directory`);
  }

  private async procMounts(): Promise<MountEntry[]> {
    try {
      return await readProcMounts(this.cfg.mount.proc_mounts);
    } catch {
      return [];
    }
  }
}

/**
 * mount.nfs4 only sees its connection to the tunnel close ("Connection reset by peer"). When the tunnel's own
 * connections to the mount target failed during the mount, that is the cause: the message says it, and the hint
 * is the one for its code. `final` is such a failure that no retry mends, which ended the mount.
 */
function withTunnelCause(err: unknown, tunnel: TunnelView | null, since: string, final?: RelayError): RelayError {
  const e = asRelayError(err);
  if (e.code !== 'MOUNT_FAILED') return e;
  if (final) {
    return new RelayError('MOUNT_FAILED', `${e.message}, and not tried again: the tunnel's connection to the mount target failed in a way no retry mends (${final.code}): ${final.message}`, {
      cause: err, hint: ERRORS[final.code].hint,
    });
  }
  const hs = tunnel?.health.connection;
  if (!hs || hs.ok || hs.at < since || !hs.code) return e;
  return new RelayError('MOUNT_FAILED', `${e.message}. The tunnel could not connect to the mount target (${hs.code}): ${hs.message ?? ''}`, {
    cause: err, hint: ERRORS[hs.code].hint,
  });
}
