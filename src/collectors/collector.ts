import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { EngineApi } from '../docker/client.js';
import type { Inventory } from '../inventory/inventory.js';
import type { ExporterMetrics } from '../exporter-metrics.js';
import type { LoopHealth } from '../loop-health.js';

/** The collector names, in the order they are listed in `--help` and run at scrape time. */
export const COLLECTOR_NAMES = ['engine', 'containers', 'stats', 'events', 'df'] as const;
export type CollectorName = (typeof COLLECTOR_NAMES)[number];

/** What every collector may use; each takes only what it needs. */
export interface CollectorDeps {
  config: Config;
  docker: EngineApi;
  inventory: Inventory;
  /** Register this collector's metrics here (a fresh registry per app instance, never the global one). */
  registry: Registry;
  logger: Logger;
  /** The exporter's own counters (parse errors, …) shared by all collectors. */
  metrics: ExporterMetrics;
  /** Where background loops report their passes, for /healthz. */
  health: LoopHealth;
}

/**
 * Outcome of a background run, for collectors whose work happens off the scrape path (df): the
 * orchestrator then reports this instead of timing `update()` itself.
 */
export interface RunOutcome {
  success: boolean;
  durationSeconds: number;
}

/**
 * One collector instance. `update()` runs on every scrape and must be cheap: it turns the state the
 * collector keeps (a snapshot, the latest samples) into series. Throwing marks the collector failed
 * for this scrape (`docker_exporter_collector_success 0`) and never fails the scrape itself.
 */
export interface Collector {
  /** Starts background work (streams, timers). Called once, after every collector was created. */
  start?(): void;
  update(): Promise<RunOutcome | void> | RunOutcome | void;
  /** Closes streams and timers; must settle within a second or two. */
  stop?(): Promise<void> | void;
}

/** How a collector is registered in `collectors/index.ts`. */
export interface CollectorModule {
  name: CollectorName;
  defaultEnabled: boolean;
  /** One line for `--help`. */
  help: string;
  create(deps: CollectorDeps): Collector;
}
