// Watches the fstab file (through its directory, so an editor's
// write-then-rename and a delete-then-recreate are both seen, and through
// the directory of the file it leads to when it is a link) and tells the
// tunnel manager which file systems fstab wants ready. A line whose tunnel
// could not be made (no free port, a full state dir, an unreadable CA bundle)
// is tried again on its own, since what stopped it usually passes without
// anyone editing fstab. So is a read of fstab that failed (no descriptor
// left, a file replaced by something unreadable): until one succeeds, every
// tunnel its lines have stays as it was.
import { resolve } from 'node:path';
import { FileWatch } from './file-watch.js';
import { RelayError, asRelayError, noDescriptorError, noDescriptorLeft, type ErrorBody, type ErrorCode } from './errors.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { followFstabAliases, readFstab } from './fstab.js';
import { followAlias } from './spec-alias.js';
import { AZ_ID_NOT_ASKED, isCrossAccount, type AliasSpec, type MountSpec } from './target.js';
import { planFstab } from './fstab-plan.js';
import type { RegionSource } from './instance-region.js';
import { ReportOnce } from './report-once.js';
import { Retry } from './backoff.js';
import type { AddRequest, TunnelManager } from './tunnels.js';

const DEBOUNCE_MS = 100;
/** Tries of lines whose tunnel failed: 5 s, doubling, then every minute. */
const RETRY_FIRST_MS = 5_000;
const RETRY_MAX_MS = 60_000;

/** An fstab line the daemon could not make a tunnel for, though the line itself is valid; tried again on its own. */
export interface FstabFailure {
  line: number;
  /** Null for a line whose alias (CNAME) led to no file system. */
  fs_id: string | null;
  /** The line's alias, when its spec is one. */
  alias?: string;
  code: ErrorCode;
  message: string;
  hint: string;
}

/** What the control socket tells of fstab (doctor shows it beside the lines it judges itself). */
export interface FstabStatus {
  readonly file: string;
  readonly failures: readonly FstabFailure[];
  /** Why the latest read of the file failed; null once one succeeds (the failures above are the last good read's). */
  readonly read_error: ErrorBody | null;
}

/** An alias line's key in FstabWatcher.followed: the alias and the path, as the spec gives them. */
const aliasKey = (spec: AliasSpec): string => `${spec.alias}:${spec.path}`;

/** Why fstab is applied: the file changed (or start), a retry of failed lines, or the instance's region became known. */
type Cause = 'changed' | 'retry' | 'region';

export class FstabWatcher implements FstabStatus {
  private readonly watch: FileWatch;
  private running: Promise<void> = Promise.resolve();
  readonly file: string;
  failures: FstabFailure[] = [];
  read_error: ErrorBody | null = null;
  private invalid = 0;
  /** Problems logged since fstab last changed: a retry logs only what is new, a change of the file all again. */
  private reported = new ReportOnce();
  private readonly retry = new Retry(RETRY_FIRST_MS, RETRY_MAX_MS, () => this.apply('retry'));
  private stopped = false;
  /** What each alias of fstab led to when DNS last answered: kept while DNS does not answer, so its tunnel stays. */
  private followed = new Map<string, MountSpec>();

  constructor(
    private readonly cfg: Config,
    private readonly manager: TunnelManager,
    private readonly log: Logger,
    private readonly region: RegionSource,
  ) {
    this.file = resolve(cfg.fstab);
    this.watch = new FileWatch(this.file, DEBOUNCE_MS, () => this.apply('changed'), log, 'fstab.watch_error');
  }

  async start(): Promise<void> {
    await this.watch.start();
    await this.reload('changed');
  }

  /** Apply fstab again, for lines that wait for the instance's region. */
  regionKnown(): void {
    this.apply('region');
  }

  /** Applies run one after another, so an older read never applies after a newer one. */
  private apply(cause: Cause): void {
    // One that fails must not end the chain, and is tried again: it may pass without anyone editing fstab.
    this.running = this.running.then(() => this.reload(cause)).catch((err: unknown) => {
      const e = asRelayError(err);
      this.log.warn('fstab.apply_failed', { code: e.code, msg: `applying ${this.file} failed: ${e.message}; ${this.retryText()}` });
      this.scheduleRetry(true);
    });
  }

  /** efs lines that got no tunnel, or whose mount would be refused, at the latest read (log: fstab.line_invalid). */
  get invalidLines(): number {
    return this.invalid;
  }

  stop(): Promise<void> {
    this.stopped = true;
    this.retry.cancel();
    return this.watch.stop();
  }

  /** Read fstab and apply it. */
  private async reload(cause: Cause): Promise<void> {
    if (this.stopped) return;
    if (cause === 'changed') {
      this.reported = new ReportOnce();
      this.retry.reset();
    }
    // Where a link leads may have changed unseen (a link along the way, in a directory no watch looks at).
    if (cause === 'retry') await this.watch.follow();
    let parsed;
    try {
      parsed = await readFstab(this.file);
    } catch (err) {
      this.readFailed(err as NodeJS.ErrnoException);
      return;
    }
    if (this.read_error) {
      this.read_error = null;
      this.log.info('fstab.readable', { msg: `${this.file} can be read again; its lines are applied` });
    }
    const { unfollowed, ...lines } = await followFstabAliases(parsed, (spec) => this.follow(spec));
    const aliases = new Set(parsed.aliases.map((a) => aliasKey(a.spec)));
    for (const key of this.followed.keys()) if (!aliases.has(key)) this.followed.delete(key);
    // Asked only for crossaccount lines, which alone need it; an answer is kept, a failure asked again at each retry.
    const azId = lines.entries.some((e) => isCrossAccount(e.options)) ? await this.region.azId() : AZ_ID_NOT_ASKED;
    const plan = planFstab(lines, this.cfg, this.region.current, azId);
    const wanted = new Map<string, AddRequest>();
    for (const [fsId, options] of plan.wanted) wanted.set(fsId, { fsId, options, env: {}, source: 'fstab', azId });
    const failed = await this.manager.setFstabWanted(wanted);
    const waiting = plan.problems.filter((p) => p.code === 'NO_AZ_ID');
    const problems = plan.problems.filter((p) => p.code !== 'NO_AZ_ID');
    // The lines a try of their own may mend: a tunnel that could not be made, an alias DNS leads nowhere yet, a
    // crossaccount line before instance metadata gives the zone ID.
    this.failures = [
      ...failed.map((f) => ({ line: plan.lineOf.get(f.fsId) as number, fs_id: f.fsId, code: f.error.code, message: f.error.message, hint: f.error.hint })),
      ...unfollowed.map((u) => ({ line: u.line, fs_id: null, alias: u.alias, code: u.error.code, message: u.error.message, hint: u.error.hint })),
      ...waiting.map((p) => ({ line: p.line, fs_id: p.fsId, code: p.code, message: p.message, hint: p.hint })),
    ].sort((a, b) => a.line - b.line);
    const retry = `; no tunnel for this line yet: ${this.retryText()}`;
    // Keyed without the retry interval, which grows: one problem that lasts is logged once.
    const found = [
      ...problems.map((p) => ({ key: `${p.line} ${p.code} ${p.message}`, fs: p.fsId ?? undefined, code: p.code, line: p.line, msg: `${this.file}:${p.line}: ${p.message}` })),
      ...this.failures.map((f) => ({ key: `${f.line} ${f.code} ${f.message}`, fs: f.fs_id ?? undefined, code: f.code, line: f.line, msg: `${this.file}:${f.line}: ${f.message}${retry}` })),
    ].sort((a, b) => a.line - b.line);
    const fresh = this.reported.fresh(found.map((p) => p.key));
    for (const { key, ...fields } of found) if (fresh.has(key)) this.log.warn('fstab.line_invalid', fields);
    this.invalid = found.length;
    const left = this.failures.length;
    if (cause === 'retry') this.log.debug('fstab.retried', { msg: `tried again the lines whose tunnel failed: ${left} still without a tunnel`, failed: left });
    this.scheduleRetry(left > 0);
  }

  /**
   * fstab could not be read: nothing is applied, so every tunnel its lines have stays, and it is read again on its
   * own. Logged when the reason is new (or fstab changed), not at every try while it lasts.
   */
  private readFailed(err: NodeJS.ErrnoException): void {
    const e = noDescriptorLeft(err)
      ? noDescriptorError(err, this.file)
      : new RelayError('FSTAB_UNREADABLE', `Cannot read ${this.file}: ${err.message}`, { cause: err });
    const fresh = this.reported.fresh([`read ${e.code} ${e.message}`]).size > 0;
    this.read_error = e.toJSON();
    if (fresh) this.log.warn('fstab.read_failed', { code: e.code, msg: `${e.message}; the tunnels of its lines keep running as they were; ${this.retryText()}` });
    else this.log.debug('fstab.retried', { code: e.code, msg: `read ${this.file} again: it still cannot be read` });
    this.scheduleRetry(true);
  }

  /** When a failure is tried again, as the log says it. */
  private retryText(): string {
    return `tried again in ${this.retry.nextMs / 1000} s, then less often, and at each change of fstab`;
  }

  /** An alias line's file system; when DNS gives no answer, what it led to last time (its tunnel is not dropped for that). */
  private async follow(spec: AliasSpec): Promise<MountSpec> {
    try {
      const found = await followAlias(spec);
      this.followed.set(aliasKey(spec), found);
      return found;
    } catch (err) {
      const e = asRelayError(err);
      const last = this.followed.get(aliasKey(spec));
      // DNS's answer that the alias leads nowhere (no such name, no file system's name at the end) is believed.
      if (last && e.code === 'DNS_FAILED' && !e.final) return last;
      this.followed.delete(aliasKey(spec));
      throw e;
    }
  }

  private scheduleRetry(needed: boolean): void {
    if (!needed) this.retry.reset();
    else if (this.stopped) this.retry.cancel();
    else this.retry.schedule();
  }
}
