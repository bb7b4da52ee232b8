// Watches the state dir: a record added, changed or removed by hand (or by
// another version of the daemon) is reconciled within a moment.
import { basename } from 'node:path';
import { DirWatch } from './dir-watch.js';
import { asRelayError } from './errors.js';
import type { Logger } from './log.js';
import type { TunnelManager } from './tunnels.js';

const DEBOUNCE_MS = 200;
/** A reading of the state dir that failed (no file descriptor left) is made again this much later. */
export const RESCAN_RETRY_MS = 5_000;

export class StateWatcher {
  private readonly watch: DirWatch;
  private retry: NodeJS.Timeout | null = null;

  constructor(dir: string, private readonly manager: TunnelManager, private readonly log: Logger) {
    // Our own temp files (dot files) and the control socket are not records.
    const accept = (p: string): boolean => !basename(p).startsWith('.') && basename(p) !== 'control.sock';
    this.watch = new DirWatch(dir, accept, DEBOUNCE_MS, () => void this.sync(), log, 'state.watch_error');
  }

  /**
   * Apply the state dir as it is now. A reading that fails changes no tunnel (a record it could not read is not a
   * removed one), and is made again a little later, so that the change that asked for it is not lost.
   */
  private async sync(): Promise<void> {
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    try {
      await this.manager.syncFromDisk();
    } catch (err) {
      const e = asRelayError(err);
      this.log.warn('state.rescan_failed', { code: e.code, msg: `${e.message}; no tunnel was changed, and the state dir is read again in ${RESCAN_RETRY_MS / 1000} s` });
      this.retry = setTimeout(() => void this.sync(), RESCAN_RETRY_MS);
    }
  }

  start(): Promise<void> {
    return this.watch.start();
  }

  stop(): Promise<void> {
    if (this.retry) clearTimeout(this.retry);
    this.retry = null;
    return this.watch.stop();
  }
}
