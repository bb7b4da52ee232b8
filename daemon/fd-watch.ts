// Running out of file descriptors, seen by counting them. Once none is
// left, libuv accepts and closes the connections waiting on a listener by
// itself (its EMFILE trick, which keeps the listener from spinning) and Node
// never hears of them: a relay cannot report a connection it never saw. So
// the daemon counts its open descriptors every few seconds against its limit.
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
/** A relayed connection takes two descriptors: with fewer free, the next one cannot be relayed. */
const PER_CONNECTION = 2;

export class FdWatcher {
  private timer: NodeJS.Timeout | null = null;
  private readonly full = new RateLimitedLog(60_000);

  /** `onFull` hears of each episode, as it is logged (at most once a minute while it lasts). */
  constructor(private readonly log: Logger, private readonly onFull: (e: RelayError) => void) {}

  start(): void {
    this.timer = setInterval(() => void this.check(), CHECK_MS);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async check(): Promise<void> {
    let u: FdUsage;
    try {
      u = await fdUsage();
    } catch {
      return; // no /proc: nothing to count with
    }
    if (u.limit === null) return;
    if (u.limit - u.open < PER_CONNECTION) {
      if (!this.full.admit('FD_LIMIT')) return;
      const e = new RelayError('FD_LIMIT', `efs-relayd has ${u.open} of ${u.limit} file descriptors open: no room for another relayed connection (each takes two), so new NFS connections are refused or dropped`);
      this.log.warn('daemon.fd_limit', { code: e.code, msg: `${e.message}. ${ERRORS.FD_LIMIT.hint}`, open: u.open, limit: u.limit });
      this.onFull(e);
    } else if (this.full.reset()) {
      this.log.info('daemon.fd_available', { msg: `${u.open} of ${u.limit} file descriptors open: new connections are relayed again`, open: u.open, limit: u.limit });
    }
  }
}
