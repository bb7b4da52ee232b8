// The files the TLS verification rests on (the CA bundles tunnels verify
// with, the config file that names them) are judged at each read
// (file-trust.ts). A chmod or chown made later changes no content, so no
// read follows and no file watch sees it; this looks again every
// health.trust_check_interval seconds, and says when a file becomes
// changeable by another user than root, and when it no longer is.
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { warnExposed, whoElseCanChangeForDaemon, type TrustedFile } from './file-trust.js';

export class TrustWatcher {
  private timer: NodeJS.Timeout | null = null;
  private readonly files = new Map<string, TrustedFile>();
  /** File → why another user can change it, as last found; files judged at least once are keys of `judged`. */
  private readonly exposed = new Map<string, string>();
  private readonly judged = new Set<string>();
  private running: Promise<void> | null = null;

  constructor(private readonly cfg: Config, private readonly log: Logger) {}

  /** Judge one more file from now on (the config file; each CA bundle as a tunnel starts to use it). */
  add(file: string, what: TrustedFile): void {
    this.files.set(file, what);
  }

  start(): void {
    this.stop();
    const seconds = this.cfg.health.trust_check_interval;
    if (seconds === 0) {
      // Nothing will look again: a count kept now would hold its alert after the file is fixed.
      this.exposed.clear();
      this.judged.clear();
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

  /** Trusted files another user than root can change, as of the latest check. */
  get exposedCount(): number {
    return this.exposed.size;
  }

  /** One look at every file. The first look at a file says nothing new: its read, just before, said it already. */
  check(): Promise<void> {
    this.running ??= this.checkAll().finally(() => (this.running = null));
    return this.running;
  }

  private async checkAll(): Promise<void> {
    const started = performance.now();
    for (const [file, what] of this.files) {
      const why = await whoElseCanChangeForDaemon(file).catch(() => null);
      const before = this.exposed.get(file);
      const known = this.judged.has(file);
      this.judged.add(file);
      if (why === null) {
        if (before === undefined) continue;
        this.exposed.delete(file);
        this.log.info('trust.restored', { file, msg: `only root can change ${what} ${file} again` });
      } else if (why !== before) {
        this.exposed.set(file, why);
        if (known) warnExposed(file, what, why, this.log);
      }
    }
    // That the looks go on, and how long one takes (a file on a slow or hung file system holds up the rest).
    this.log.debug('trust.checked', { msg: `looked at ${this.files.size} trusted file(s): ${this.exposed.size} exposed`, files: this.files.size, ms: Math.round(performance.now() - started) });
  }
}
