// Running out of file descriptors, seen by counting them. Once none is
// left, libuv accepts and closes the connections waiting on a listener by
// itself (its EMFILE trick, which keeps the listener from spinning) and Node
// never hears of them: a relay cannot report a connection it never saw. So
// the daemon counts its open descriptors every few seconds against its limit,
// once its tunnels and connections alone could take half of it: an idle
// daemon does not wake for the count. A new connection past that half is
// counted within NUDGE_MS too, so that a burst that fills the table and
// closes again between two counts is not missed.
import { readdir, readFile } from 'node:fs/promises';
import { ERRORS, RelayError } from './errors.js';
import type { Logger } from './log.js';
import { RateLimitedLog } from './report-once.js';

export interface FdUsage {
  open: number;
  /** The soft limit (Max open files); null when there is none. */
  limit: number | null;
}

/** Open descriptors and their limit, of this process or another one (doctor, as root). */
export async function fdUsage(pid: number | 'self' = 'self'): Promise<FdUsage> {
  const open = (await readdir(`/proc/${pid}/fd`)).length;
  const limit = Number(/^Max open files\s+(\d+)/m.exec(await readFile(`/proc/${pid}/limits`, 'utf8'))?.[1]);
  return { open, limit: Number.isFinite(limit) && limit > 0 ? limit : null };
}

const CHECK_MS = 5_000;
/** How soon after a connection near the limit it is counted; the nudges of a burst share one count. */
const NUDGE_MS = 100;
/** A relayed connection takes two descriptors: with fewer free, the next one cannot be relayed. */
const PER_CONNECTION = 2;

export class FdWatcher {
  private timer: NodeJS.Timeout | null = null;
  private nudged: NodeJS.Timeout | null = null;
  private readonly full = new RateLimitedLog(60_000);
  private atLimit = false;
  /** The limit as last read; counted again at every precise check (prlimit can change it). */
  private limit: number | null = null;

  /**
   * `inUse`: the descriptors the daemon's tunnels and connections hold by its own count, without a system call.
   * `onFull` hears of each episode, as it is logged (at most once a minute while it lasts).
   */
  constructor(private readonly log: Logger, private readonly inUse: () => number, private readonly onFull: (e: RelayError) => void) {}

  async start(): Promise<void> {
    this.limit = await fdUsage().then((u) => u.limit, () => null);
    this.timer = setInterval(() => void this.check(), CHECK_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    if (this.nudged) clearTimeout(this.nudged);
    this.timer = null;
    this.nudged = null;
  }

  /** A connection was opened: past half the limit by the daemon's own count, count the descriptors soon. */
  nudge(): void {
    if (this.timer === null || this.nudged !== null || this.limit === null || this.inUse() < this.limit / 2) return;
    this.nudged = setTimeout(() => {
      this.nudged = null;
      void this.check();
    }, NUDGE_MS);
    this.nudged.unref();
  }

  async check(): Promise<void> {
    if (!this.atLimit && (this.limit === null || this.inUse() < this.limit / 2)) return;
    let u: FdUsage;
    try {
      u = await fdUsage();
    } catch (err) {
      // Counting takes a descriptor too: a table so full that it has none left is the limit itself.
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'EMFILE' || this.limit === null) return; // no /proc: nothing to count with
      u = { open: this.limit, limit: this.limit };
    }
    this.limit = u.limit;
    if (u.limit === null) return;
    this.atLimit = u.limit - u.open < PER_CONNECTION;
    if (this.atLimit) {
      if (!this.full.admit('FD_LIMIT')) return;
      const e = new RelayError('FD_LIMIT', `efs-relayd has ${u.open} of ${u.limit} file descriptors open: no room for another relayed connection (each takes two), so new NFS connections are refused or dropped`);
      this.log.warn('daemon.fd_limit', { code: e.code, msg: `${e.message}. ${ERRORS.FD_LIMIT.hint}`, open: u.open, limit: u.limit });
      this.onFull(e);
    } else if (this.full.reset()) {
      this.log.info('daemon.fd_available', { msg: `${u.open} of ${u.limit} file descriptors open: new connections are relayed again`, open: u.open, limit: u.limit });
    }
  }
}
