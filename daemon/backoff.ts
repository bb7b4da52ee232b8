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

/**
 * A try again, on a timer, of something that failed and may pass on its own: at most one pending, each wait
 * twice the last (Backoff) while it keeps failing. Shared by the watchers that read a file or directory again.
 */
export class Retry {
  private timer: NodeJS.Timeout | null = null;
  private readonly wait: Backoff;

  constructor(firstMs: number, maxMs: number, private readonly tryAgain: () => void) {
    this.wait = new Backoff(firstMs, maxMs);
  }

  /** The wait before the next try, for the log line that says when it comes. */
  get nextMs(): number {
    return this.wait.nextMs;
  }

  /** It failed (again): the next try after the next wait, in place of one pending. */
  schedule(): void {
    this.cancel();
    this.timer = setTimeout(() => {
      this.timer = null;
      this.tryAgain();
    }, this.wait.take());
  }

  /** No try pending (one is being made now, or the watcher stops); the waits go on growing. */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  /** It passed, or what failed changed: no try pending, and the next wait is the first again. */
  reset(): void {
    this.cancel();
    this.wait.reset();
  }
}
