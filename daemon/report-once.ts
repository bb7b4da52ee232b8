// For scans that repeat (state dir, /proc/mounts): each finding is logged
// once while it lasts, and logged again if it goes away and comes back.
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
