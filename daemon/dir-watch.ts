// Watch one directory (not its subdirectories) for changes to the entries
// `accept` picks, and call `onChange` once per burst of events. Watching the
// directory, not a file, is what survives rename-over and delete-recreate.
import { realpath } from 'node:fs/promises';
import { watch, type FSWatcher } from 'chokidar';
import { noDescriptorLeft } from './errors.js';
import type { Logger } from './log.js';

export class DirWatch {
  private watcher: FSWatcher | null = null;
  private timer: NodeJS.Timeout | null = null;
  /** The kind of watch error last logged, while it lasts (until the watch reports a change again): the same again is a debug line. */
  private failing: string | null = null;

  constructor(
    private readonly dir: string,
    private readonly accept: (path: string) => boolean,
    private readonly debounceMs: number,
    private readonly onChange: () => void,
    private readonly log: Logger,
    private readonly event: string,
  ) {}

  async start(): Promise<void> {
    // The directory itself may be reached through a link (Debian's /usr/lib/ssl/certs leads to /etc/ssl/certs):
    // chokidar, not following links, would watch the link and not the directory.
    const dir = await realpath(this.dir).catch(() => this.dir);
    this.watcher = watch(dir, {
      ignoreInitial: true,
      depth: 0,
      // A link is an entry like any other: chokidar's own following loses the file a link leads to once that file
      // is removed, and never sees it again (FileWatch watches where a link leads itself).
      followSymlinks: false,
      ignored: (p: string) => p !== dir && !this.accept(p),
    });
    this.watcher.on('all', (_event, path) => {
      this.failing = null;
      if (path !== dir) this.changed();
    });
    // chokidar lists the directory to tell what an event changed: when that fails (no file descriptor left), the
    // change is not reported. Its owner reads again all the same, and tries again on its own if that fails too.
    // During a descriptor shortage every event fails alike: it is logged once while it lasts.
    this.watcher.on('error', (err) => {
      const fd = noDescriptorLeft(err);
      const kind = fd ? 'FD_LIMIT' : String(err);
      const fields = {
        code: fd ? 'FD_LIMIT' : 'INTERNAL',
        msg: `watching ${this.dir}: ${String(err)}; ${fd ? 'a change in it may have gone unseen: it is read again' : 'it is read again'}`,
      };
      if (kind === this.failing) this.log.debug(this.event, fields);
      else this.log.warn(this.event, fields);
      this.failing = kind;
      this.changed();
    });
    await new Promise<void>((r) => this.watcher?.once('ready', () => r()));
  }

  /** Once per burst of events. */
  private changed(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(this.onChange, this.debounceMs);
  }

  async stop(): Promise<void> {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    await this.watcher?.close();
    this.watcher = null;
  }
}
