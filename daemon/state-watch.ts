// Watches the state dir: a record added, changed or removed by hand (or by
// another version of the daemon) is reconciled within a moment.
import { watch, type FSWatcher } from 'chokidar';
import { basename } from 'node:path';
import type { Logger } from './log.js';
import type { TunnelManager } from './tunnels.js';

const DEBOUNCE_MS = 200;

export class StateWatcher {
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly dir: string,
    private readonly manager: TunnelManager,
    private readonly log: Logger,
  ) {}

  async start(): Promise<void> {
    this.watcher = watch(this.dir, {
      ignoreInitial: true,
      depth: 0,
      // Our own temp files and the control socket are not records.
      ignored: (p: string) => p !== this.dir && (basename(p).startsWith('.') || basename(p) === 'control.sock'),
    });
    this.watcher.on('all', () => this.changed());
    this.watcher.on('error', (err) => this.log.warn('state.watch_error', { code: 'INTERNAL', msg: String(err) }));
    await new Promise<void>((r) => this.watcher?.once('ready', () => r()));
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    await this.watcher?.close();
    this.watcher = null;
  }

  private changed(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.manager.syncFromDisk(), DEBOUNCE_MS);
  }
}
