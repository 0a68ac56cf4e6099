import { Gauge, Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { Collector, CollectorDeps, CollectorModule } from './collectors/collector.js';
import { renderRegistry, type Format } from './exposition.js';

export type { Format } from './exposition.js';

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
  /** Last failure message per collector, so a collector failing every scrape logs once, not every time. */
  private readonly lastFailure = new Map<string, string>();

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
      await this.updateAll();
      return {
        contentType: format === 'openmetrics' ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE,
        body: await renderRegistry(this.deps.registry, format),
      };
    });
    this.inFlight.set(format, run);
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async updateAll(): Promise<void> {
    await Promise.all(
      this.collectors.map(async ({ name, collector }) => {
        const started = performance.now();
        let ok = true;
        let durationSeconds: number | undefined;
        try {
          const outcome = await collector.update();
          if (outcome) {
            ok = outcome.success;
            durationSeconds = outcome.durationSeconds;
          }
          this.lastFailure.delete(name);
        } catch (err) {
          ok = false;
          const message = (err as Error).message;
          if (this.lastFailure.get(name) !== message) {
            this.logger.warn({ collector: name, err: message }, 'collector failed');
            this.lastFailure.set(name, message);
          } else {
            this.logger.debug({ collector: name, err: message }, 'collector failed');
          }
        }
        this.success.set({ collector: name }, ok ? 1 : 0);
        this.duration.set({ collector: name }, durationSeconds ?? (performance.now() - started) / 1000);
      }),
    );
  }
}
