import { Gauge, Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { Collector, CollectorDeps, CollectorModule, RunOutcome } from './collectors/collector.js';
import { renderRegistry, type Format } from './exposition.js';
import { DistinctFailures, withDeadline } from './helpers.js';

export type { Format } from './exposition.js';

/**
 * How long a scrape waits for one collector's update. Collectors read state their background loops
 * keep, so an update takes milliseconds; one that is still busy past this (waiting on a sick engine)
 * is reported failed for this scrape and goes on in the background, and the scrape answers with
 * what the registry holds, well inside Prometheus's default 10 s scrape timeout.
 */
export const COLLECTOR_BUDGET_MS = 1500;

/** A render (every collector's update, then the exposition) that shows no end for this long is stuck. */
export const RENDER_BOUND_MS = 30_000;

export interface Rendered {
  contentType: string;
  /** UTF-8 text; shared by every scraper of one render, so never written to. */
  body: Buffer;
}

/**
 * Runs the enabled collectors on each scrape and renders the registry. The orchestrator, not the
 * collectors, times every run and reports its success, so a failing collector costs its own
 * success series and a log line, never the scrape. Concurrent scrapes of one format share one
 * render: with 100 scrapers at once the engine and the collectors still work once, and every
 * scraper gets the same consistent output.
 */
export class Orchestrator {
  private readonly collectors: Array<{ name: string; collector: Collector }> = [];
  private readonly success: Gauge<'collector'>;
  private readonly duration: Gauge<'collector'>;
  private readonly inFlight = new Map<Format, Promise<Rendered>>();
  /** Renders run one after another, so that concurrent scrapes share one rather than race. */
  private queue: Promise<unknown> = Promise.resolve();
  /** So that a collector failing every scrape logs once, not every time. */
  private readonly failures = new DistinctFailures();
  /** Updates still running past their budget: the next scrape waits on the same one, never starts a second. */
  private readonly updating = new Map<string, Promise<RunOutcome | void>>();

  constructor(
    modules: readonly CollectorModule[],
    enabled: Record<string, boolean>,
    private readonly deps: CollectorDeps,
    private readonly logger: Logger,
  ) {
    const registers = [deps.registry];
    this.success = new Gauge({ name: 'docker_exporter_collector_success', help: 'Whether the collector\'s last run succeeded (1) or failed (0).', labelNames: ['collector'], registers });
    this.duration = new Gauge({ name: 'docker_exporter_collector_duration_seconds', help: 'How long the collector\'s last run took, in seconds.', labelNames: ['collector'], registers });
    for (const module of modules) {
      if (!enabled[module.name]) continue;
      this.collectors.push({ name: module.name, collector: module.create(deps) });
    }
  }

  /** Names of the collectors that run. */
  get names(): string[] {
    return this.collectors.map((c) => c.name);
  }

  start(): void {
    for (const { collector } of this.collectors) collector.start?.();
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.collectors.map(async ({ name, collector }) => {
        try {
          await collector.stop?.();
        } catch (err) {
          this.logger.warn({ collector: name, err: (err as Error).message }, 'collector did not stop cleanly');
        }
      }),
    );
  }

  /** Updates every collector and renders the registry in the asked format. */
  render(format: Format): Promise<Rendered> {
    const pending = this.inFlight.get(format);
    if (pending) return pending;
    const run = this.queue.then(async () => {
      // Later scrapes of this format start a new render: this one's data is now being read.
      this.inFlight.delete(format);
      return this.deps.health.run('render', RENDER_BOUND_MS, async () => {
        await this.updateAll();
        return {
          contentType: format === 'openmetrics' ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE,
          body: await renderRegistry(this.deps.registry, format),
        };
      });
    });
    this.inFlight.set(format, run);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** The collector's update, or a failure once it has taken COLLECTOR_BUDGET_MS (the update goes on). */
  private withinBudget(name: string, collector: Collector): Promise<RunOutcome | void> {
    let update = this.updating.get(name);
    if (!update) {
      update = (async () => collector.update())();
      this.updating.set(name, update);
      const forget = (): void => void this.updating.delete(name);
      update.then(forget, forget);
    }
    return withDeadline(update, COLLECTOR_BUDGET_MS, () => new Error(`still updating after ${COLLECTOR_BUDGET_MS} ms; this scrape went on without it`));
  }

  private async updateAll(): Promise<void> {
    await Promise.all(
      this.collectors.map(async ({ name, collector }) => {
        const started = performance.now();
        let ok = true;
        let durationSeconds: number | undefined;
        try {
          const outcome = await this.withinBudget(name, collector);
          if (outcome) {
            ok = outcome.success;
            durationSeconds = outcome.durationSeconds;
          }
          this.failures.clear(name);
        } catch (err) {
          ok = false;
          const message = (err as Error).message;
          if (this.failures.isNew(name, message)) this.logger.warn({ collector: name, err: message }, 'collector failed');
          else this.logger.debug({ collector: name, err: message }, 'collector failed');
        }
        this.success.set({ collector: name }, ok ? 1 : 0);
        this.duration.set({ collector: name }, durationSeconds ?? (performance.now() - started) / 1000);
      }),
    );
  }
}
