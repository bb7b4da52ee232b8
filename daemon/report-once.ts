// Keeping repeated findings out of the log. ReportOnce, for scans that repeat
// (state dir, /proc/mounts): each finding is logged once while it lasts, and
// again if it goes away and comes back.
export class ReportOnce {
  private known = new Set<string>();

  /** The keys of this scan that the previous scans had not seen; keys now absent are forgotten. */
  fresh(keys: Iterable<string>): Set<string> {
    const now = new Set(keys);
    const fresh = new Set([...now].filter((k) => !this.known.has(k)));
    this.known = now;
    return fresh;
  }
}

/** A failure kind is logged when it is new, then at most once per interval while it repeats. */
export class RateLimitedLog {
  private last = '';
  private at = 0;
  constructor(private readonly intervalMs: number) {}

  admit(kind: string, now = Date.now()): boolean {
    if (kind === this.last && now - this.at <= this.intervalMs) return false;
    this.last = kind;
    this.at = now;
    return true;
  }

  /** Forget the last kind (the failure is over); true if there was one. */
  reset(): boolean {
    const had = this.last !== '';
    this.last = '';
    return had;
  }
}
