// Watches the fstab file (through its directory, so an editor's
// write-then-rename and a delete-then-recreate are both seen) and tells the
// tunnel manager which file systems fstab wants ready.
import { basename, dirname, resolve } from 'node:path';
import { DirWatch } from './dir-watch.js';
import { asRelayError } from './errors.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { readFstab } from './fstab.js';
import { planFstab } from './fstab-plan.js';
import type { RegionSource } from './instance-region.js';
import type { AddRequest, TunnelManager } from './tunnels.js';

const DEBOUNCE_MS = 100;

export class FstabWatcher {
  private readonly watch: DirWatch;
  private running: Promise<void> = Promise.resolve();
  private readonly file: string;
  private invalid = 0;

  constructor(
    private readonly cfg: Config,
    private readonly manager: TunnelManager,
    private readonly log: Logger,
    private readonly region: RegionSource,
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

  async start(): Promise<void> {
    await this.watch.start();
    await this.reload();
  }

  /** efs lines that got no tunnel, or whose mount would be refused, at the latest read (log: fstab.line_invalid). */
  get invalidLines(): number {
    return this.invalid;
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
    const plan = planFstab(parsed, this.cfg, this.region.current);
    for (const p of plan.problems) {
      this.log.warn('fstab.line_invalid', { fs: p.fsId ?? undefined, code: p.code, msg: `${this.file}:${p.line}: ${p.message}`, line: p.line });
    }
    const wanted = new Map<string, AddRequest>();
    for (const [fsId, options] of plan.wanted) wanted.set(fsId, { fsId, options, env: {}, source: 'fstab' });
    const failed = await this.manager.setFstabWanted(wanted);
    for (const f of failed) {
      this.log.warn('fstab.line_invalid', { fs: f.fsId, code: f.error.code, msg: `${this.file}:${plan.lineOf.get(f.fsId)}: ${f.error.message}; no tunnel for this line`, line: plan.lineOf.get(f.fsId) });
    }
    this.invalid = plan.problems.length + failed.length;
  }
}
