// The files the TLS verification rests on (the CA bundles tunnels verify
// with, the config file that names them) are judged at each read (atRead,
// by file-trust.ts's rules). A chmod or chown made later changes no content,
// so no read follows and no file watch sees it; this looks again every
// health.trust_check_interval seconds, and says when a file becomes
// changeable by another user than root since the last read or look, and
// when it no longer is.
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { warnExposed, whoElseCanChangeForDaemon, type TrustedFile, type TrustJudge } from './file-trust.js';

export class TrustWatcher implements TrustJudge {
  private timer: NodeJS.Timeout | null = null;
  private readonly files = new Map<string, TrustedFile>();
  /** File → why another user can change it, as last found, at a read or a look. */
  private readonly exposed = new Map<string, string>();
  /** health.trust_check_interval is 0: nothing looks again, so nothing found is kept. */
  private off = false;
  private running: Promise<void> | null = null;

  constructor(private readonly cfg: Config, private readonly log: Logger) {}

  /** Judge one more file from now on (each CA bundle as a tunnel starts to use it, before it is read). */
  add(file: string, what: TrustedFile): void {
    this.files.set(file, what);
  }

  /**
   * A read of the file: warned at each read while exposed, as before there were looks. What it finds is kept: a
   * look that came first would take a change made since the read for how the read found it, and say nothing.
   */
  async atRead(file: string, what: TrustedFile): Promise<void> {
    this.add(file, what);
    const why = await whoElseCanChangeForDaemon(file).catch(() => null);
    if (why !== null) warnExposed(file, what, why, this.log);
    if (!this.off) this.found(file, what, why, 'read');
  }

  start(): void {
    this.stop();
    const seconds = this.cfg.health.trust_check_interval;
    this.off = seconds === 0;
    if (this.off) {
      // Nothing will look again: a count kept now would hold its alert after the file is fixed.
      this.exposed.clear();
      return;
    }
    this.timer = setInterval(() => void this.check(), seconds * 1000);
    this.timer.unref();
    void this.check();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** health.trust_check_interval changed (a config reload). */
  reconfigure(): void {
    this.start();
  }

  /** Trusted files another user than root can change, as of the latest read or look. */
  get exposedCount(): number {
    return this.exposed.size;
  }

  /** One look at every file. */
  check(): Promise<void> {
    this.running ??= this.checkAll().finally(() => (this.running = null));
    return this.running;
  }

  private async checkAll(): Promise<void> {
    const started = performance.now();
    for (const [file, what] of this.files) {
      this.found(file, what, await whoElseCanChangeForDaemon(file).catch(() => null), 'look');
    }
    // That the looks go on, and how long one takes (a file on a slow or hung file system holds up the rest).
    this.log.debug('trust.checked', { msg: `looked at ${this.files.size} trusted file(s): ${this.exposed.size} exposed`, files: this.files.size, ms: Math.round(performance.now() - started) });
  }

  /** What a read or a look found (`why`: how another user can change the file, or null); a look warns of what is new, a read has warned already. */
  private found(file: string, what: TrustedFile, why: string | null, by: 'read' | 'look'): void {
    const before = this.exposed.get(file);
    if (why === null) {
      if (before === undefined) return;
      this.exposed.delete(file);
      this.log.info('trust.restored', { file, msg: `only root can change ${what} ${file} again` });
      return;
    }
    if (by === 'look' && why !== before) warnExposed(file, what, why, this.log);
    this.exposed.set(file, why);
  }
}
