// Watches the CA bundle files that tunnels verify with (tls.ca_file, and any
// cafile=), through their directories, so that a package upgrade, an
// editor's save or a config-management run that replaces a bundle reaches
// new connections without a restart, which would reset every NFS connection.
import { basename, dirname, join } from 'node:path';
import { DirWatch } from './dir-watch.js';
import type { Logger } from './log.js';

/** Long enough that a file written in a few pieces is read once it is whole. */
const DEBOUNCE_MS = 300;

export class CaBundleWatcher {
  /** Directory → the names of the bundle files in it that are watched, and its watch. */
  private readonly dirs = new Map<string, { names: Set<string>; watch: DirWatch }>();
  private stopped = false;

  constructor(
    private readonly onChange: (file: string) => void,
    private readonly log: Logger,
  ) {}

  /** Watch one more bundle file (an absolute path); watching it twice is watching it once. */
  add(file: string): void {
    if (this.stopped) return;
    const dir = dirname(file);
    const known = this.dirs.get(dir);
    if (known) {
      known.names.add(basename(file));
      return;
    }
    const names = new Set([basename(file)]);
    // One change event for the directory re-reads each of its bundles; the manager ignores one whose text is the same.
    const changed = (): void => {
      for (const name of names) this.onChange(join(dir, name));
    };
    const watch = new DirWatch(dir, (p) => names.has(basename(p)), DEBOUNCE_MS, changed, this.log, 'tls.ca_watch_error');
    this.dirs.set(dir, { names, watch });
    watch.start().catch((err: unknown) => {
      this.log.warn('tls.ca_watch_error', { code: 'INTERNAL', msg: `cannot watch ${dir} for changes of ${file}: ${String(err)}; a changed bundle is read at the next restart` });
    });
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await Promise.all([...this.dirs.values()].map((d) => d.watch.stop()));
    this.dirs.clear();
  }
}
