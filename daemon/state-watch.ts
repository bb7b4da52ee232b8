// Watches the state dir: a record added, changed or removed by hand (or by
// another version of the daemon) is reconciled within a moment.
import { basename } from 'node:path';
import { DirWatch } from './dir-watch.js';
import type { Logger } from './log.js';
import type { TunnelManager } from './tunnels.js';

const DEBOUNCE_MS = 200;

export class StateWatcher {
  private readonly watch: DirWatch;

  constructor(dir: string, manager: TunnelManager, log: Logger) {
    // Our own temp files (dot files) and the control socket are not records.
    const accept = (p: string): boolean => !basename(p).startsWith('.') && basename(p) !== 'control.sock';
    this.watch = new DirWatch(dir, accept, DEBOUNCE_MS, () => void manager.syncFromDisk(), log, 'state.watch_error');
  }

  start(): Promise<void> {
    return this.watch.start();
  }

  stop(): Promise<void> {
    return this.watch.stop();
  }
}
