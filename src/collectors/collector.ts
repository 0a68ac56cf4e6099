import type { Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { Config, ConfigModule } from '../config.js';
import type { EngineApi } from '../docker/client.js';
import type { Inventory } from '../inventory/inventory.js';
import type { ExporterMetrics } from '../exporter-metrics.js';
import type { LoopHealth } from '../loop-health.js';

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

/**
 * How a collector is registered: one object exported by `collectors/<name>.ts` and listed in
 * `collectors/index.ts`. Config reads its name, default, help and options (ConfigModule) to make
 * `--collector.<name>`, `--no-collector.<name>` and the module's own flags; the app reads the rest.
 */
export interface CollectorModule extends ConfigModule {
  /** Whether it reads the shared container inventory, which runs only while such a collector does (default false). */
  needsInventory?: boolean;
  create(deps: CollectorDeps): Collector;
}
