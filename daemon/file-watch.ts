// Watch one file by its path: through its directory, so that an editor's
// write-then-rename and a delete-then-recreate are seen, and, where the path
// is a symbolic link, through the directory of every path the chain of links
// passes, to the file it ends at. On RHEL and Amazon Linux
// /etc/pki/tls/certs/ca-bundle.crt is such a link: update-ca-trust rewrites
// the file it leads to and leaves the link alone, so a watch of the link's
// directory alone never sees the change. A link along the way (as in
// /etc/alternatives) may be pointed elsewhere with neither end changing.
import { basename, dirname } from 'node:path';
import { DirWatch } from './dir-watch.js';
import { linkHops } from './links.js';
import type { Logger } from './log.js';

export class FileWatch {
  private readonly own: DirWatch;
  /** Each path the chain of links passes after the file itself, to where it ends, and the watch of its directory. */
  private hops = new Map<string, DirWatch>();
  /** Follows run one after another, so that two changes in a row never leave two watches of one hop. */
  private following: Promise<void> = Promise.resolve();
  private stopped = false;

  constructor(
    readonly file: string,
    private readonly debounceMs: number,
    private readonly onChange: () => void,
    private readonly log: Logger,
    private readonly event: string,
  ) {
    const name = basename(file);
    this.own = new DirWatch(dirname(file), (p) => basename(p) === name, debounceMs, () => this.changed(), log, event);
  }

  async start(): Promise<void> {
    await this.own.start();
    await this.follow();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    await this.following;
    await Promise.all([this.own.stop(), ...[...this.hops.values()].map((w) => w.stop())]);
    this.hops.clear();
  }

  /**
   * Look again where the link leads, for a reader that reads the file again on its own after a failed read: a link
   * along the way, in a directory no watch looks at, may lead elsewhere now.
   */
  follow(): Promise<void> {
    return this.after(() => this.followNow());
  }

  /** The file or what it leads to changed; the link may lead elsewhere now, so where it leads is looked at first. */
  private changed(): void {
    void this.after(async () => {
      await this.followNow();
      if (!this.stopped) this.onChange();
    });
  }

  private after(step: () => Promise<void>): Promise<void> {
    this.following = this.following.then(step).catch((err: unknown) => {
      this.log.warn(this.event, { code: 'INTERNAL', msg: `following ${this.file}: ${String(err)}` });
    });
    return this.following;
  }

  private async followNow(): Promise<void> {
    const now = (await linkHops(this.file)).slice(1);
    if (this.stopped) return;
    for (const [path, watch] of this.hops) {
      if (now.includes(path)) continue;
      this.hops.delete(path);
      await watch.stop();
    }
    for (const path of now) {
      if (this.hops.has(path) || this.stopped) continue;
      const name = basename(path);
      const watch = new DirWatch(dirname(path), (p) => basename(p) === name, this.debounceMs, () => this.changed(), this.log, this.event);
      this.hops.set(path, watch);
      await watch.start().catch((err: unknown) => {
        this.log.warn(this.event, { code: 'INTERNAL', msg: `cannot watch ${dirname(path)}, where ${this.file} leads: ${String(err)}; a change there is seen at the next change of ${this.file}` });
      });
    }
  }
}
