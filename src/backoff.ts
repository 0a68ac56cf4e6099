/**
 * Exponential backoff with full jitter, for reconnecting to an engine that went away. Retries stay
 * quick (at most `quickMs` apart) for the first `quickWindowMs` of an outage, because an engine
 * restart or upgrade takes seconds and everything should be back within a few seconds of its
 * return; only an engine that stays down longer is asked less often, up to `maxMs` apart.
 */
export class Backoff {
  private attempt = 0;
  /** When the current run of failures began (first next() since reset). */
  private since: number | undefined;

  constructor(
    private readonly baseMs = 250,
    private readonly maxMs = 10_000,
    private readonly quickMs = 1_000,
    private readonly quickWindowMs = 60_000,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Delay before the next attempt. */
  next(): number {
    const now = this.now();
    this.since ??= now;
    let ceiling = Math.min(this.maxMs, this.baseMs * 2 ** this.attempt);
    if (now - this.since < this.quickWindowMs) ceiling = Math.min(ceiling, Math.max(this.quickMs, this.baseMs));
    this.attempt = Math.min(this.attempt + 1, 30);
    return Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
  }

  reset(): void {
    this.attempt = 0;
    this.since = undefined;
  }
}

/** Resolves after `ms`, or early (without rejecting) when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
    function done(): void {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
  });
}
