import type { EventEmitter } from 'node:events';
import type { Logger } from 'pino';

/** A per-container series family (SeriesMetric); prom-client's overloaded set() does not fit this shape. */
interface Settable<L> {
  set(labels: L, value: number): void;
}

/** Sets a series where the engine reported the value; leaves it out (no line) where it did not. */
export function setIfDefined<L>(metric: Settable<L>, labels: L, value: number | undefined): void {
  if (value !== undefined) metric.set(labels, value);
}

/**
 * Emits without letting a listener's bug (a collector's) escape into the emitter's own loop, where
 * it would break the stream or inventory, or be mistaken for the engine's failure. Logged with
 * what it was (`what listener failed`).
 */
export function safeEmit<T extends Record<keyof T, unknown[]>, K extends keyof T & string>(emitter: EventEmitter<T>, logger: Logger, what: string, name: K, ...args: T[K]): void {
  try {
    // Node's typed emit() cannot be called generically over the event map; the signature above is
    // what keeps callers to their events' argument types.
    (emitter as unknown as EventEmitter).emit(name, ...args);
  } catch (err) {
    logger.error({ err: (err as Error).message, stack: (err as Error).stack, listener: name }, `${what} listener failed`);
  }
}

/**
 * The last failure message per key, so that a failure repeated run after run, scrape after scrape,
 * is logged once (at its level) and then at debug at most, and its end once.
 */
export class DistinctFailures {
  private readonly last = new Map<string, string>();

  /** True when `message` is not what `key` failed with last time: log it. */
  isNew(key: string, message: string): boolean {
    if (this.last.get(key) === message) return false;
    this.last.set(key, message);
    return true;
  }

  /** Forgets `key`'s failure; true when it had one (log that it recovered). */
  clear(key: string): boolean {
    return this.last.delete(key);
  }
}

/**
 * `promise`, or a rejection with `expired()` once `ms` have passed; the promise itself goes on (its
 * outcome is then nobody's). For a caller whose own deadline is shorter than the work's.
 */
export function withDeadline<T>(promise: Promise<T>, ms: number, expired: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expiry = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(expired()), ms);
  });
  return Promise.race([promise, expiry]).finally(() => clearTimeout(timer));
}

/**
 * Runs `work(key)` under a shared concurrency limit, one run at a time per key, coalescing asks:
 * an ask while that key's run is still queued is served by it (its answer will reflect the change
 * already); an ask while it is in flight owes one more run after it, however many asks came. The
 * promise settles when the key has no run queued or owed. Used for the inventory's inspects and the
 * image references' resolves, where a burst of events about one object must cost one request.
 */
export class CoalescingRunner<K> {
  private readonly pending = new Map<K, { started: boolean; again: boolean; done: Promise<void> }>();

  constructor(
    private readonly limit: <T>(fn: () => Promise<T>) => Promise<T>,
    private readonly work: (key: K) => Promise<void>,
    /** Once true, no further run starts (an owed one included). */
    private readonly stopped: () => boolean,
  ) {}

  /** Keys with a run queued, in flight or owed. */
  get size(): number {
    return this.pending.size;
  }

  run(key: K): Promise<void> {
    const pending = this.pending.get(key);
    if (pending) {
      if (pending.started) pending.again = true;
      return pending.done;
    }
    const slot = { started: false, again: false, done: Promise.resolve() };
    this.pending.set(key, slot);
    slot.done = (async () => {
      try {
        do {
          slot.again = false;
          slot.started = false;
          await this.limit(() => {
            slot.started = true;
            return this.work(key);
          });
        } while (slot.again && !this.stopped());
      } finally {
        this.pending.delete(key);
      }
    })();
    return slot.done;
  }
}

/**
 * A fact from the engine that may be some seconds old (the engine and swarm collectors' `/info`):
 * `due()` starts a refresh in the background once the last good one is older than `maxAgeMs` (a
 * refresh in flight is joined, never doubled) and, until the first success, waits at most
 * `firstWaitMs` for it, so the first scrape has the fact and no later scrape waits. `error` is why
 * the last refresh failed, until one succeeds; the fact itself stays with the caller's `load`.
 */
export class BackgroundRefresh {
  private at = -Infinity;
  private inFlight: Promise<void> | undefined;
  error: Error | undefined;

  constructor(
    private readonly load: () => Promise<void>,
    private readonly maxAgeMs: number,
    private readonly firstWaitMs: number,
    private readonly notYet: () => Error,
  ) {}

  async due(): Promise<void> {
    if (performance.now() - this.at > this.maxAgeMs) this.inFlight ??= this.run();
    if (this.at === -Infinity && this.inFlight) await withDeadline(this.inFlight, this.firstWaitMs, this.notYet);
  }

  /** The next `due()` refreshes, and waits for it as for the first. */
  expire(): void {
    this.at = -Infinity;
  }

  private async run(): Promise<void> {
    try {
      await this.load();
      this.at = performance.now();
      this.error = undefined;
    } catch (err) {
      this.error = err as Error;
    } finally {
      this.inFlight = undefined;
    }
  }
}
