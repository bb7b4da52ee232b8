// Watches the fstab file (through its directory, so an editor's
// write-then-rename and a delete-then-recreate are both seen) and tells the
// tunnel manager which file systems fstab wants ready.
import { watch, type FSWatcher } from 'chokidar';
import { basename, dirname, resolve } from 'node:path';
import { RelayError } from './errors.js';
import type { Config } from './config.js';
import type { Logger } from './log.js';
import { readFstab } from './fstab.js';
import { tunnelOptions } from './options.js';
import type { AddRequest, TunnelManager } from './tunnels.js';

const DEBOUNCE_MS = 100;

export class FstabWatcher {
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> = Promise.resolve();
  private readonly file: string;

  constructor(
    private readonly cfg: Config,
    private readonly manager: TunnelManager,
    private readonly log: Logger,
  ) {
    this.file = resolve(cfg.fstab);
  }

  async start(): Promise<void> {
    const dir = dirname(this.file);
    const name = basename(this.file);
    this.watcher = watch(dir, {
      ignoreInitial: true,
      depth: 0,
      ignored: (p: string) => p !== dir && basename(p) !== name,
    });
    this.watcher.on('all', (_event, path) => {
      if (basename(path) === name) this.changed();
    });
    this.watcher.on('error', (err) => this.log.warn('fstab.watch_error', { code: 'INTERNAL', msg: String(err) }));
    await new Promise<void>((r) => this.watcher?.once('ready', () => r()));
    await this.reload();
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    await this.watcher?.close();
    this.watcher = null;
  }

  private changed(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.running = this.running.then(() => this.reload());
    }, DEBOUNCE_MS);
  }

  /** Read fstab and apply it. Exposed for tests. */
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
      if (e.noauto || wanted.has(e.fsId)) continue;
      try {
        wanted.set(e.fsId, { fsId: e.fsId, options: tunnelOptions({ tls: null, ...e.options }), env: {}, source: 'fstab' });
        lineOf.set(e.fsId, e.line);
      } catch (err) {
        const code = err instanceof RelayError ? err.code : 'INTERNAL';
        this.log.warn('fstab.line_invalid', { fs: e.fsId, code, msg: `${this.file}:${e.line}: ${(err as Error).message}; line skipped`, line: e.line });
      }
    }
    const failed = await this.manager.setFstabWanted(wanted);
    for (const f of failed) {
      this.log.warn('fstab.line_invalid', { fs: f.fsId, code: f.error.code, msg: `${this.file}:${lineOf.get(f.fsId)}: ${f.error.message}; no tunnel for this line`, line: lineOf.get(f.fsId) });
    }
  }
}
