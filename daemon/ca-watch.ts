// Watches the CA bundle files that tunnels verify with (tls.ca_file, and any
// cafile=), through their directories and, for a link, the directory of the
// file it leads to, so that a package upgrade, update-ca-trust, an editor's
// save or a config-management run that replaces a bundle reaches new
// connections without a restart, which would reset every NFS connection. A
// bundle that cannot be read is read again on its own: a removed CA must not
// stay trusted because the one read after its removal failed (say, for want
// of a file descriptor) and nothing changed the file since.
import { Retry } from './backoff.js';
import { asRelayError, type RelayError } from './errors.js';
import { FileWatch } from './file-watch.js';
import type { Logger } from './log.js';

/** Long enough that a file written in a few pieces is read once it is whole. */
const DEBOUNCE_MS = 300;
/** Reads again of a bundle that could not be used: 5 s, doubling, then every minute. */
const RETRY_FIRST_MS = 5_000;
const RETRY_MAX_MS = 60_000;

/** Reads a changed bundle into use; the error when it cannot be used (its tunnels keep the trust they had). */
export type ReloadBundle = (file: string) => Promise<RelayError | null>;

interface Watched {
  watch: FileWatch;
  retry: Retry;
  /** The failure last logged, while it lasts: the same one again is a debug line. */
  failed: string | null;
}

export class CaBundleWatcher {
  private readonly files = new Map<string, Watched>();
  private stopped = false;

  constructor(
    private readonly reload: ReloadBundle,
    private readonly log: Logger,
  ) {}

  /** Watch one more bundle file (an absolute path); watching it twice is watching it once. */
  add(file: string): void {
    if (this.stopped || this.files.has(file)) return;
    const watched: Watched = {
      watch: new FileWatch(file, DEBOUNCE_MS, () => this.read(file, true), this.log, 'tls.ca_watch_error'),
      retry: new Retry(RETRY_FIRST_MS, RETRY_MAX_MS, () => this.read(file, false)), failed: null,
    };
    this.files.set(file, watched);
    watched.watch.start().catch((err: unknown) => {
      this.log.warn('tls.ca_watch_error', { code: 'INTERNAL', msg: `cannot watch ${file} for changes: ${String(err)}; a changed bundle is read at the next restart` });
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const w of this.files.values()) w.retry.cancel();
    await Promise.all([...this.files.values()].map((w) => w.watch.stop()));
    this.files.clear();
  }

  /** Read the bundle into use: after a change of the file (`changed`), or again after a failure. */
  private read(file: string, changed: boolean): void {
    const w = this.files.get(file);
    if (!w || this.stopped) return;
    if (changed) w.retry.reset();
    else w.retry.cancel();
    // A read again on its own looks again where a link leads: a link along the way may have changed unseen.
    void (changed ? Promise.resolve() : w.watch.follow()).then(() => this.reload(file)).catch((err: unknown) => asRelayError(err)).then((e) => {
      if (this.stopped) return;
      if (e === null) {
        w.failed = null;
        w.retry.reset();
        return;
      }
      const again = `read again in ${w.retry.nextMs / 1000} s, then less often, and at each change of the file`;
      if (w.failed !== e.message) {
        this.log.error('tls.ca_reload_failed', { code: e.code, msg: `${e.message}; its tunnels keep verifying against the bundle as it was before; ${again}`, file });
      } else {
        this.log.debug('tls.ca_reload_retried', { code: e.code, msg: `read ${file} again: it still cannot be used`, file });
      }
      w.failed = e.message;
      w.retry.schedule();
    });
  }
}
