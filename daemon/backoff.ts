// Waits between tries of something that failed and may pass on its own: the
// first wait, doubling at each try, up to a maximum.
export class Backoff {
  private ms: number;

  constructor(private readonly firstMs: number, private readonly maxMs: number) {
    this.ms = firstMs;
  }

  /** The wait before the next try, without taking it. */
  get nextMs(): number {
    return this.ms;
  }

  /** The wait before the next try; the one after it is twice as long, up to the maximum. */
  take(): number {
    const ms = this.ms;
    this.ms = Math.min(ms * 2, this.maxMs);
    return ms;
  }

  /** Back to the first wait (what failed has passed, or changed). */
  reset(): void {
    this.ms = this.firstMs;
  }
}
