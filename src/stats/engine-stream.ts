import type { Readable } from 'node:stream';
import { Backoff, sleep } from '../backoff.js';
import { isNotFound } from '../docker/errors.js';
import { readNdjson } from '../docker/ndjson.js';
import type { SourceDeps, StatsSink, StatsSource, Target } from './source.js';

/**
 * `--stats.mode stream`: one long-lived stats stream per container, each record delivered as it
 * comes (the engine writes one a second). Costs the engine a goroutine and a cgroup read a second
 * per container, whether anyone scrapes or not (see "Stats modes and what they cost").
 */
export class EngineStreamSource implements StatsSource {
  private readonly streams = new Map<Target, { ctl: AbortController; done: Promise<void> }>();
  private open = 0;

  constructor(
    private readonly deps: SourceDeps,
    private readonly sink: StatsSink,
  ) {}

  get openStreams(): number {
    return this.open;
  }

  start(): void {}

  follow(t: Target, fresh: boolean): void {
    // A stream that gave up (the container was gone) is opened again by a later upsert.
    if (!fresh && this.streams.has(t)) return;
    this.streams.get(t)?.ctl.abort();
    const ctl = new AbortController();
    const handle = { ctl, done: Promise.resolve() };
    this.streams.set(t, handle);
    handle.done = this.run(t, ctl.signal).finally(() => {
      if (this.streams.get(t) === handle) this.streams.delete(t);
    });
  }

  unfollow(t: Target): void {
    this.streams.get(t)?.ctl.abort();
    this.streams.delete(t);
  }

  async stop(): Promise<void> {
    const pending = [...this.streams.values()].map((s) => {
      s.ctl.abort();
      return s.done;
    });
    this.streams.clear();
    await Promise.allSettled(pending);
  }

  /**
   * Follows one container's stream until aborted, reopening it with backoff when it drops while the
   * container still runs (an engine restart ends every stream).
   */
  private async run(t: Target, signal: AbortSignal): Promise<void> {
    const { docker, logger } = this.deps;
    const log = logger.child({ collector: 'stats', id: t.id });
    const backoff = new Backoff();
    while (!signal.aborted) {
      let res: Readable | undefined;
      let received = false;
      try {
        res = await docker.stream('stats', { id: t.id, query: { stream: true }, signal });
        if (signal.aborted) break;
        const response = res;
        // Ends the socket however the abort comes, even between two records.
        const close = (): void => void response.destroy();
        signal.addEventListener('abort', close, { once: true });
        this.open++;
        try {
          await readNdjson(response, {
            onRecord: (value) => {
              if (signal.aborted) return;
              received = true;
              this.sink.deliver(t, value);
            },
            onBadRecord: (reason, sample) => this.sink.bad(t.id, `${reason} line: ${sample}`),
          });
          if (!signal.aborted) log.debug('stats stream ended by the engine');
        } finally {
          this.open--;
          signal.removeEventListener('abort', close);
        }
      } catch (err) {
        if (signal.aborted) break;
        if (isNotFound(err)) {
          log.debug('container gone; stats stream closed');
          return;
        }
        log.debug({ err: (err as Error).message }, 'stats stream failed');
      } finally {
        res?.destroy();
      }
      if (signal.aborted) break;
      if (received) backoff.reset();
      await sleep(backoff.next(), signal);
    }
  }
}
