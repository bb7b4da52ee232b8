// Watches the fstab file (through its directory, so an editor's
// write-then-rename and a delete-then-recreate are both seen) and tells the
// tunnel manager which file systems fstab wants ready.
import { basename, dirname, resolve } from 'node:path';
import { DirWatch } from './dir-watch.js';
import { asRelayError } from './errors.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { readFstab } from './fstab.js';
import { tunnelOptions, type MountOptions } from './options.js';
import { resolveTarget } from './target.js';
import { caFileFor } from './tls-policy.js';
import type { AddRequest, TunnelManager } from './tunnels.js';

const DEBOUNCE_MS = 100;

/** What makes a tunnel another one, as the tunnel manager compares it: port asked for, target, CA bundle. */
interface TunnelIdentity { tlsport: string; target: string; cafile: string }

export class FstabWatcher {
  private readonly watch: DirWatch;
  private running: Promise<void> = Promise.resolve();
  private readonly file: string;

  constructor(
    private readonly cfg: Config,
    private readonly manager: TunnelManager,
    private readonly log: Logger,
  ) {
    this.file = resolve(cfg.fstab);
    const name = basename(this.file);
    // Reloads run one after another, so an older read never applies after a newer one.
    const reload = (): void => {
      // A reload that fails must not end the chain: the next change of fstab is applied all the same.
      this.running = this.running.then(() => this.reload()).catch((err: unknown) => {
        const e = asRelayError(err);
        this.log.warn('fstab.apply_failed', { code: e.code, msg: `applying ${this.file} failed: ${e.message}; the next change of the file is applied` });
      });
    };
    this.watch = new DirWatch(dirname(this.file), (p) => basename(p) === name, DEBOUNCE_MS, reload, log, 'fstab.watch_error');
  }

  /**
   * How a later line's tunnel options differ from the first line's, as the
   * tunnel manager compares them (port asked for, target, CA bundle), each as
   * "what (this line's, the first line's)". None when a target cannot be
   * resolved (no region): that line's own error is reported where its tunnel is made.
   */
  private tunnelDifferences(fsId: string, first: MountOptions, later: MountOptions): string[] {
    let a;
    let b;
    try {
      [a, b] = [first, later].map((o) => {
        const t = resolveTarget(fsId, o, {}, this.cfg);
        const target = t.address === t.dnsName ? t.dnsName : `${t.address} (${t.dnsName})`;
        return { tlsport: o.tlsport ?? 'any', target, cafile: caFileFor(o, this.cfg) };
      }) as [TunnelIdentity, TunnelIdentity];
    } catch {
      return [];
    }
    return (Object.keys(a) as Array<keyof TunnelIdentity>).filter((k) => a[k] !== b[k]).map((k) => `${k} (${b[k]} here, ${a[k]} there)`);
  }

  async start(): Promise<void> {
    await this.watch.start();
    await this.reload();
  }

  stop(): Promise<void> {
    return this.watch.stop();
  }

  /** Read fstab and apply it. */
  async reload(): Promise<void> {
    let parsed;
    try {
      parsed = await readFstab(this.file);
    } catch (err) {
      this.log.warn('fstab.read_failed', { code: 'INTERNAL', msg: `cannot read ${this.file}: ${(err as Error).message}` });
      return;
    }
    for (const p of parsed.problems) {
      this.log.warn('fstab.line_invalid', { code: 'BAD_OPTION', msg: `${this.file}:${p.line}: ${p.message}; line skipped`, line: p.line });
    }
    const wanted = new Map<string, AddRequest>();
    const lineOf = new Map<string, number>();
    for (const e of parsed.entries) {
      if (e.noauto) continue;
      try {
        const options = tunnelOptions({ tls: null, ...e.options });
        const first = wanted.get(e.fsId);
        if (first) {
          // One file system, one tunnel: a later line that wants another one would only fail at its mount.
          const differ = this.tunnelDifferences(e.fsId, first.options, options);
          if (differ.length > 0) {
            this.log.warn('fstab.line_invalid', {
              fs: e.fsId, code: 'BAD_OPTION', line: e.line,
              msg: `${this.file}:${e.line}: ${e.fsId} is also on line ${lineOf.get(e.fsId)} with another ${differ.join(', ')}; a file system has one tunnel, made from line ${lineOf.get(e.fsId)}, so this line's mount would be refused`,
            });
          }
          continue;
        }
        wanted.set(e.fsId, { fsId: e.fsId, options, env: {}, source: 'fstab' });
        lineOf.set(e.fsId, e.line);
      } catch (err) {
        const { code, message } = asRelayError(err);
        this.log.warn('fstab.line_invalid', { fs: e.fsId, code, msg: `${this.file}:${e.line}: ${message}; line skipped`, line: e.line });
      }
    }
    const failed = await this.manager.setFstabWanted(wanted);
    for (const f of failed) {
      this.log.warn('fstab.line_invalid', { fs: f.fsId, code: f.error.code, msg: `${this.file}:${lineOf.get(f.fsId)}: ${f.error.message}; no tunnel for this line`, line: lineOf.get(f.fsId) });
    }
  }
}
