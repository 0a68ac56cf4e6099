import pLimit, { type LimitFunction } from 'p-limit';
import { sleep } from '../backoff.js';
import { isNotFound } from '../docker/errors.js';
import type { SourceDeps, StatsSink, StatsSource, Target } from './source.js';

/**
 * `--stats.mode poll` (the default): one one-shot sample per container every `--stats.interval`,
 * at most `--stats.concurrency` in flight. The engine answers each at its next 1-second
 * collection, so a round takes about running containers ÷ concurrency seconds.
 */
export class EnginePollSource implements StatsSource {
  private readonly stopCtl = new AbortController();
  private readonly limit: LimitFunction;
  /** The one-shot request in flight per container, so one container never has two. */
  private readonly polling = new Map<Target, Promise<void>>();
  private loop: Promise<void> | undefined;

  constructor(
    private readonly deps: SourceDeps,
    private readonly sink: StatsSink,
  ) {
    this.limit = pLimit(deps.config.stats.concurrency);
  }

  readonly openStreams = 0;

  start(): void {
    this.loop ??= this.run();
  }

  follow(t: Target, fresh: boolean): void {
    // A container that just started gets series now, not one interval later, and ahead of the
    // round (those found running at the exporter's start wait their turn, or all would go at once).
    if (fresh) void this.sampleOnce(t, this.startedWithinInterval(t));
  }

  unfollow(_t: Target): void {
    // A sample in flight for it is dropped on arrival (the sink no longer follows it).
  }

  async stop(): Promise<void> {
    this.stopCtl.abort();
    await Promise.allSettled([...this.polling.values(), this.loop]);
  }

  private startedWithinInterval(t: Target): boolean {
    return t.startedAt !== undefined && Date.now() / 1000 - t.startedAt < this.deps.config.stats.intervalMs / 1000;
  }

  /** One round per interval, each after the previous finished, so rounds never overlap. */
  private async run(): Promise<void> {
    const { config, health } = this.deps;
    const signal = this.stopCtl.signal;
    while (!signal.aborted) {
      const started = performance.now();
      // Each sample ends within --docker.timeout and --stats.concurrency run at once, so a round
      // that completes no sample for twice that is stuck.
      const pass = health.begin('stats poll round', 2 * config.docker.timeoutMs);
      try {
        await Promise.all([...this.sink.targets()].map((t) => this.sampleOnce(t).then(() => pass.beat())));
      } finally {
        pass.end();
      }
      await sleep(Math.max(0, config.stats.intervalMs - (performance.now() - started)), signal);
    }
  }

  /**
   * One one-shot sample of a container, through the concurrency limit; joins one in flight.
   * `urgent` (the container just started) skips the limit's queue, which holds the round:
   * the engine answers each one-shot request at its next 1-second collection, so at 1,000
   * containers a round takes half a minute, and a new container behind it would wait that long.
   */
  private sampleOnce(t: Target, urgent = false): Promise<void> {
    const inFlight = this.polling.get(t);
    if (inFlight) return inFlight;
    let startedAt = t.startedAt;
    const signal = this.stopCtl.signal;
    const sample = async (): Promise<void> => {
      if (!this.sink.follows(t) || signal.aborted) return;
      startedAt = t.startedAt;
      try {
        const payload = await this.deps.docker.get<unknown>('stats', { id: t.id, query: { stream: false, 'one-shot': true }, signal });
        // Removed, stopped or restarted meanwhile: the answer belongs to nothing we export.
        if (this.sink.follows(t) && t.startedAt === startedAt) this.sink.deliver(t, payload);
      } catch (err) {
        if (signal.aborted || isNotFound(err)) return;
        this.deps.logger.debug({ collector: 'stats', id: t.id, err: (err as Error).message }, 'stats sample failed');
      }
    };
    const run = (urgent ? sample() : this.limit(sample)).finally(() => {
      this.polling.delete(t);
      // The container restarted while this sample was in flight: the new run deserves one now.
      if (t.startedAt !== startedAt && this.sink.follows(t)) void this.sampleOnce(t, true);
    });
    this.polling.set(t, run);
    return run;
  }
}
