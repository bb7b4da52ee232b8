// Watches the state dir: a record added, changed or removed by hand (or by
// another version of the daemon) is reconciled within a moment.
import { basename } from 'node:path';
import { Retry } from './backoff.js';
import { DirWatch } from './dir-watch.js';
import { asRelayError } from './errors.js';
import type { Logger } from './log.js';
import type { TunnelManager } from './tunnels.js';

const DEBOUNCE_MS = 200;
/** Readings again of a state dir that could not be read (no file descriptor left): 5 s, doubling, then every minute. */
const RETRY_FIRST_MS = 5_000;
const RETRY_MAX_MS = 60_000;

export class StateWatcher {
  private readonly watch: DirWatch;
  private readonly retry = new Retry(RETRY_FIRST_MS, RETRY_MAX_MS, () => void this.sync(false));
  /** The code of the failure last logged, while it lasts: the same one again is a debug line. */
  private failed: string | null = null;

  constructor(dir: string, private readonly manager: TunnelManager, private readonly log: Logger) {
    // Our own temp files (dot files) and the control socket are not records.
    const accept = (p: string): boolean => !basename(p).startsWith('.') && basename(p) !== 'control.sock';
    this.watch = new DirWatch(dir, accept, DEBOUNCE_MS, () => void this.sync(true), log, 'state.watch_error');
  }

  /**
   * Apply the state dir as it is now, after a change in it (`changed`) or again after a failure. A reading that
   * fails changes no tunnel (a record it could not read is not a removed one), and is made again a little later,
   * so that the change that asked for it is not lost. Logged when the reason is new, not at every try.
   */
  private async sync(changed: boolean): Promise<void> {
    if (changed) this.retry.reset();
    else this.retry.cancel();
    try {
      await this.manager.syncFromDisk();
    } catch (err) {
      const e = asRelayError(err);
      if (this.failed !== e.code) {
        this.log.warn('state.rescan_failed', {
          code: e.code,
          msg: `${e.message}; no tunnel was changed, and the state dir is read again in ${this.retry.nextMs / 1000} s, then less often, and at each change in it`,
        });
      } else {
        this.log.debug('state.rescan_retried', { code: e.code, msg: `read the state dir again: ${e.message}` });
      }
      this.failed = e.code;
      this.retry.schedule();
      return;
    }
    this.retry.reset();
    if (this.failed !== null) {
      this.failed = null;
      this.log.info('state.readable', { msg: 'the state dir can be read again; its records are applied' });
    }
  }

  start(): Promise<void> {
    return this.watch.start();
  }

  stop(): Promise<void> {
    this.retry.cancel();
    return this.watch.stop();
  }
}
