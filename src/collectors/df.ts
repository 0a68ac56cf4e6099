import { Gauge } from 'prom-client';
import { SeriesMetric } from '../exposition.js';
import { Backoff } from '../backoff.js';
import type { ModuleOptions } from '../config.js';
import { compareApiVersions } from '../docker/client.js';
import { EngineTimeout } from '../docker/errors.js';
import { DistinctFailures, setIfDefined } from '../helpers.js';
import { DISK_USAGE_KINDS, parseDiskUsage, type DiskUsage } from '../parse/df.js';
import { PayloadError } from '../parse/guards.js';
import type { Collector, CollectorDeps, CollectorModule, RunOutcome } from './collector.js';

/** The `df` section of Config, from the flags below. */
export interface DfConfig {
  intervalMs: number;
  timeoutMs: number;
}

declare module '../config.js' {
  interface Config {
    df: DfConfig;
  }
}

/** `--df.*`: how often disk usage is asked for, and how long a run may take. */
const dfOptions: ModuleOptions<'df'> = {
  section: 'df',
  flags: [
    { flags: '--df.interval <duration>', description: 'time between two /system/df runs', defaultValue: '5m' },
    { flags: '--df.timeout <duration>', description: 'give up on a /system/df run after this long', defaultValue: '2m' },
  ],
  parse: (values) => ({ intervalMs: values.duration('df.interval'), timeoutMs: values.duration('df.timeout') }),
};

/**
 * From API 1.42 an engine given `type` computes only the kinds listed; all four are named so the
 * answer is complete (https://github.com/moby/moby/blob/v23.0.0/api/server/router/system/system_routes.go).
 */
const ALL_TYPES = ['container', 'image', 'volume', 'build-cache'];

/** Retries after a quick failure (engine restarting, "already running") start fast and stay under a minute. */
const RETRY_BASE_MS = 1_000;
const RETRY_MAX_MS = 60_000;

/** The query that makes `/system/df` answer everything the collector exports, for a negotiated API version. */
export function dfQuery(apiVersion: string): Record<string, unknown> | undefined {
  if (compareApiVersions(apiVersion, '1.42') < 0) return undefined;
  // From 1.52, Items (per-container and per-volume figures) are only promised with verbose; it
  // also drops the duplicate legacy lists from the answer.
  return compareApiVersions(apiVersion, '1.52') < 0 ? { type: ALL_TYPES } : { type: ALL_TYPES, verbose: 1 };
}

/**
 * `docker system df` as metrics. `/system/df` walks every layer and volume and can take minutes, so
 * it runs in the background, one run at a time, and scrapes read the last good result.
 */
export const dfCollector: CollectorModule = {
  name: 'df',
  defaultEnabled: true,
  help: 'disk usage as `docker system df` reports it, refreshed in the background',
  options: dfOptions,
  // Per-container sizes carry the inventory's labels.
  needsInventory: true,
  create: (deps) => new DfCollector(deps),
};

class DfCollector implements Collector {
  private readonly objects: Gauge<'kind'>;
  private readonly activeObjects: Gauge<'kind'>;
  private readonly bytes: Gauge<'kind'>;
  private readonly reclaimable: Gauge<'kind'>;
  private readonly rwSize: SeriesMetric;
  private readonly rootFsSize: SeriesMetric;
  private readonly fsUsage: SeriesMetric;
  private readonly volumeSize: Gauge<'volume' | 'driver'>;
  private readonly volumeRefCount: Gauge<'volume' | 'driver'>;
  private readonly lastSuccess: Gauge;

  private last: DiskUsage | undefined;
  private outcome: RunOutcome | undefined;
  private running: Promise<void> | undefined;
  private inFlight: AbortController | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** What the logged failure was ('timeout' or its message), so a failure repeated run after run logs once. */
  private readonly failures = new DistinctFailures();
  private readonly retry = new Backoff(RETRY_BASE_MS, RETRY_MAX_MS);

  constructor(private readonly deps: CollectorDeps) {
    const registers = [deps.registry];
    const kind = (name: string, help: string): Gauge<'kind'> => new Gauge({ name, help, labelNames: ['kind'], registers });
    this.objects = kind('docker_disk_usage_objects', 'Objects of each kind, as the TOTAL column of `docker system df`.');
    this.activeObjects = kind('docker_disk_usage_active_objects', 'Objects of each kind in use, as the ACTIVE column of `docker system df`.');
    this.bytes = kind('docker_disk_usage_bytes', 'Disk space used by each kind, as the SIZE column of `docker system df`, in bytes.');
    this.reclaimable = kind('docker_disk_usage_reclaimable_bytes', 'Disk space that pruning each kind could free, as the RECLAIMABLE column of `docker system df`, in bytes.');
    const labelNames = deps.inventory.labelNames;
    this.rwSize = new SeriesMetric({ type: 'gauge', name: 'docker_container_rw_size_bytes', help: 'Size of the container\'s writable layer (SizeRw), in bytes, from the last disk usage run.', labelNames, registers });
    this.rootFsSize = new SeriesMetric({ type: 'gauge', name: 'docker_container_rootfs_size_bytes', help: 'Size of the container\'s whole root filesystem, image included (SizeRootFs), in bytes, from the last disk usage run.', labelNames, registers });
    // cAdvisor's per-container filesystem figure; here the writable layer, the part the container itself wrote.
    this.fsUsage = new SeriesMetric({ type: 'gauge', name: 'container_fs_usage_bytes', help: 'Number of bytes consumed by the container on its filesystem: the writable layer (SizeRw), from the last disk usage run.', labelNames, registers });
    this.volumeSize = new Gauge({ name: 'docker_volume_size_bytes', help: 'Disk space used by the volume, in bytes, from the last disk usage run.', labelNames: ['volume', 'driver'], registers });
    this.volumeRefCount = new Gauge({ name: 'docker_volume_refcount', help: 'Containers referencing the volume, from the last disk usage run.', labelNames: ['volume', 'driver'], registers });
    this.lastSuccess = new Gauge({ name: 'docker_exporter_df_last_success_timestamp_seconds', help: 'Unix time the last successful disk usage run finished; absent until one has.', registers });
    // prom-client shows a label-less gauge as 0 until set, which would read as "succeeded in 1970".
    this.lastSuccess.remove({});
  }

  start(): void {
    this.schedule(0);
  }

  update(): RunOutcome {
    this.render();
    // Until a run has finished there is no result to vouch for.
    return this.outcome ?? { success: false, durationSeconds: 0 };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.inFlight?.abort();
    await this.running;
  }

  private schedule(delayMs: number): void {
    if (this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      // Runs are chained (the next is scheduled when one ends), so two never overlap.
      this.running = this.run().finally(() => {
        this.running = undefined;
      });
    }, delayMs);
  }

  private async run(): Promise<void> {
    const { config, docker, logger, metrics, health } = this.deps;
    const { intervalMs, timeoutMs } = config.df;
    const controller = new AbortController();
    this.inFlight = controller;
    const started = performance.now();
    // Its two requests end within --df.timeout each; past both, the run is stuck.
    const pass = health.begin('df run', 2 * timeoutMs);
    let nextDelay = intervalMs;
    try {
      // The query depends on the API version, which the client learns on its first request.
      if (docker.apiVersion === undefined) await docker.get('ping', { signal: controller.signal, timeoutMs });
      const query = dfQuery(docker.apiVersion ?? '1.41');
      const payload = await docker.get<unknown>('df', { query, signal: controller.signal, timeoutMs });
      const usage = parseDiskUsage(payload);
      this.last = usage;
      this.lastSuccess.set(Date.now() / 1000);
      this.outcome = { success: true, durationSeconds: (performance.now() - started) / 1000 };
      this.retry.reset();
      if (this.failures.clear('run')) logger.info({ collector: 'df' }, 'disk usage run succeeded again');
    } catch (err) {
      if (this.stopped) return;
      const durationMs = performance.now() - started;
      this.outcome = { success: false, durationSeconds: durationMs / 1000 };
      const message = (err as Error).message;
      if (err instanceof PayloadError) metrics.parseErrors.inc({ source: 'df' });
      const timedOut = err instanceof EngineTimeout;
      // Timeouts are one failure whichever request hit them; other failures are told apart by message.
      const key = timedOut ? 'timeout' : message;
      if (this.failures.isNew('run', key)) {
        logger.warn(
          { collector: 'df', err: message, ms: Math.round(durationMs), keeping: this.last ? 'previous values' : 'no values yet' },
          timedOut ? 'disk usage run timed out' : 'disk usage run failed',
        );
      } else {
        logger.debug({ collector: 'df', err: message }, 'disk usage run failed again');
      }
      // A run that used up its timeout would only time out again sooner; one that failed fast
      // (engine restarting, an old engine still busy with another df) is worth retrying early.
      if (!timedOut) nextDelay = Math.min(intervalMs, this.retry.next());
    } finally {
      this.inFlight = undefined;
      pass.end();
    }
    this.schedule(Math.max(0, nextDelay - (performance.now() - started)));
  }

  /** Turns the last good result into series; per-container ones follow the inventory's labels now. */
  private render(): void {
    const gauges = [this.objects, this.activeObjects, this.bytes, this.reclaimable, this.volumeSize, this.volumeRefCount];
    for (const g of gauges) g.reset();
    // The per-container ones are set anew, keeping the lines that did not change.
    const perContainer = [this.rwSize, this.rootFsSize, this.fsUsage];
    for (const g of perContainer) g.beginRefill();
    try {
      this.renderUsage();
    } finally {
      for (const g of perContainer) g.endRefill();
    }
  }

  private renderUsage(): void {
    const usage = this.last;
    if (!usage) return;
    for (const kind of DISK_USAGE_KINDS) {
      const row = usage.kinds[kind];
      if (!row) continue;
      this.objects.set({ kind }, row.total);
      this.activeObjects.set({ kind }, row.active);
      this.bytes.set({ kind }, row.size);
      this.reclaimable.set({ kind }, row.reclaimable);
    }
    for (const [id, sizes] of Object.entries(usage.containers)) {
      const labels = this.deps.inventory.get(id)?.promLabels;
      if (!labels) continue;
      setIfDefined(this.rwSize, labels, sizes.sizeRw);
      setIfDefined(this.fsUsage, labels, sizes.sizeRw);
      setIfDefined(this.rootFsSize, labels, sizes.sizeRootFs);
    }
    for (const v of usage.volumes) {
      const labels = { volume: v.name, driver: v.driver };
      if (v.size !== undefined) this.volumeSize.set(labels, v.size);
      if (v.refCount !== undefined) this.volumeRefCount.set(labels, v.refCount);
    }
  }
}
