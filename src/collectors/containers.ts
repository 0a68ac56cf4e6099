import type { Registry } from 'prom-client';
import { SeriesMetric } from '../exposition.js';
import { ImageRefs } from '../inventory/image-refs.js';
import { inventoryOptions, type ContainerRecord } from '../inventory/inventory.js';
import { CONTAINER_STATES, HEALTH_STATUSES } from '../parse/container.js';
import type { CollectorModule } from './collector.js';
import { setIfDefined } from '../helpers.js';

/** The kernel's CFS period when none is set (sched-bwc.txt), which cAdvisor reports from the cgroup. */
export const DEFAULT_CPU_PERIOD = 100_000;
/** The kernel's cpu.shares when none is set, which cAdvisor reports from the cgroup. */
export const DEFAULT_CPU_SHARES = 1024;

/** cAdvisor's encoding of the health check in container_health_state. */
const HEALTH_STATE = { none: -1, starting: 0, unhealthy: 0, healthy: 1 } as const;

type Labels = Record<string, string>;

/** The containers collector's metrics, registered once; `render` fills them from the records. */
export class ContainerMetrics {
  /** The metrics whose series carry only the container's labels. */
  private readonly plain: SeriesMetric[] = [];
  /** What each container's series were last made from. */
  private readonly rendered = new Map<string, { record: ContainerRecord; oomEvents: number; outdated: number | undefined }>();
  private readonly info: SeriesMetric;
  private readonly imageOutdated: SeriesMetric;
  private readonly gpuInfo: SeriesMetric;
  private readonly state: SeriesMetric;
  private readonly healthStatus: SeriesMetric;
  private readonly failingStreak: SeriesMetric;
  private readonly restarts: SeriesMetric;
  private readonly exitCode: SeriesMetric;
  private readonly oomKilled: SeriesMetric;
  private readonly oomEvents: SeriesMetric;
  private readonly created: SeriesMetric;
  private readonly startedAt: SeriesMetric;
  private readonly finishedAt: SeriesMetric;
  private readonly startTime: SeriesMetric;
  private readonly healthState: SeriesMetric;
  private readonly memoryLimit: SeriesMetric;
  private readonly memoryReservation: SeriesMetric;
  private readonly memorySwap: SeriesMetric;
  private readonly cpuQuota: SeriesMetric;
  private readonly cpuPeriod: SeriesMetric;
  private readonly cpuShares: SeriesMetric;
  /**
   * The label objects with an extra label, made once per record: the exposition reuses a label
   * set's text for as long as it is handed the same object (a record lives until it changes).
   */
  private readonly derived = new WeakMap<ContainerRecord, { info: Labels; states: Labels[]; statuses: Labels[]; gpus: Labels[] }>();

  /** `outdated` tells whether a container's image reference now names another image (ImageRefs); without it, no such series. */
  constructor(
    registry: Registry,
    labelNames: readonly string[],
    private readonly outdated: (r: ContainerRecord) => 0 | 1 | undefined = () => undefined,
  ) {
    const gauge = (name: string, help: string, extra: string[] = []): SeriesMetric => {
      const g = new SeriesMetric({ name, help, type: 'gauge', labelNames: [...labelNames, ...extra], registers: [registry] });
      if (extra.length === 0) this.plain.push(g);
      return g;
    };
    const counter = (name: string, help: string): SeriesMetric => {
      const c = new SeriesMetric({ name, help, type: 'counter', labelNames: [...labelNames], registers: [registry] });
      this.plain.push(c);
      return c;
    };
    this.info = gauge('docker_container_info', 'Container facts; always 1.', ['image_id', 'restart_policy', 'ports']);
    this.imageOutdated = gauge('docker_container_image_outdated', 'Whether the image reference the container was created from (Config.Image) now names another local image than the one it runs: 1 = recreate it to run the new one.');
    this.gpuInfo = gauge('docker_container_gpu_info', 'A GPU the container asked for (--gpus, DeviceRequests, NVIDIA_VISIBLE_DEVICES under the NVIDIA runtime), by index, UUID or "all"; always 1.', ['device']);
    this.state = gauge('docker_container_state', 'Whether the container is in this state (State.Status): 1 on the current one, 0 on the others.', ['state']);
    this.healthStatus = gauge('docker_container_health_status', 'Whether the container\'s health check is in this status (none when it has no check): 1 on the current one, 0 on the others.', ['status']);
    this.failingStreak = gauge('docker_container_health_failing_streak', 'Consecutive failed health probes (State.Health.FailingStreak).');
    this.restarts = counter('docker_container_restarts_total', 'Times the engine restarted the container under its restart policy (RestartCount).');
    this.exitCode = gauge('docker_container_exit_code', 'Exit code of the container\'s last run (State.ExitCode).');
    this.oomKilled = gauge('docker_container_oom_killed', 'Whether the OOM killer ended the container\'s last run (State.OOMKilled).');
    this.oomEvents = counter('docker_container_oom_events_total', 'oom events the engine reported for the container since the exporter started.');
    this.created = gauge('docker_container_created_seconds', 'When the container was created, in unix seconds.');
    this.startedAt = gauge('docker_container_started_at_seconds', 'When the container was last started, in unix seconds (State.StartedAt).');
    this.finishedAt = gauge('docker_container_finished_at_seconds', 'When the container\'s last run ended, in unix seconds (State.FinishedAt).');
    this.startTime = gauge('container_start_time_seconds', 'Start time of the container since unix epoch in seconds.');
    this.healthState = gauge('container_health_state', 'The result of the container\'s health check: 1 healthy, 0 starting or unhealthy, -1 no health check.');
    this.memoryLimit = gauge('container_spec_memory_limit_bytes', 'Memory limit for the container, in bytes (0 = unlimited).');
    this.memoryReservation = gauge('container_spec_memory_reservation_limit_bytes', 'Memory reservation (soft limit) for the container, in bytes (0 = none).');
    this.memorySwap = gauge('container_spec_memory_swap_limit_bytes', 'Memory plus swap limit for the container, in bytes (-1 or 0 = unlimited).');
    this.cpuQuota = gauge('container_spec_cpu_quota', 'CPU quota of the container, in microseconds per period (absent when the container has none).');
    this.cpuPeriod = gauge('container_spec_cpu_period', 'CPU period of the container, in microseconds.');
    this.cpuShares = gauge('container_spec_cpu_shares', 'CPU share of the container.');
  }

  /**
   * Makes the series exactly those of `records`: a removed container's series vanish, a changed
   * one's are replaced. Only what changed since the last call is touched (the inventory replaces a
   * record whenever the container changes), so a scrape of 1,000 quiet containers costs next to nothing.
   */
  render(records: Iterable<ContainerRecord>): void {
    const seen = new Set<string>();
    for (const r of records) {
      seen.add(r.id);
      const prev = this.rendered.get(r.id);
      // oom events are counted on the record in place; what its image reference names changes apart from it.
      const outdated = this.outdated(r);
      if (prev && prev.record === r && prev.oomEvents === r.oomEvents && prev.outdated === outdated) continue;
      if (prev) this.removeOne(prev.record);
      this.renderOne(r, outdated);
      this.rendered.set(r.id, { record: r, oomEvents: r.oomEvents, outdated });
    }
    for (const [id, prev] of this.rendered) {
      if (seen.has(id)) continue;
      this.removeOne(prev.record);
      this.rendered.delete(id);
    }
  }

  private labelsOf(r: ContainerRecord): { info: Labels; states: Labels[]; statuses: Labels[]; gpus: Labels[] } {
    let d = this.derived.get(r);
    if (!d) {
      const l = r.promLabels;
      d = {
        info: Object.freeze({ ...l, image_id: r.imageId, restart_policy: r.restartPolicy, ports: r.ports }),
        states: CONTAINER_STATES.map((state) => Object.freeze({ ...l, state })),
        statuses: HEALTH_STATUSES.map((status) => Object.freeze({ ...l, status })),
        gpus: r.gpus.map((device) => Object.freeze({ ...l, device })),
      };
      this.derived.set(r, d);
    }
    return d;
  }

  private removeOne(r: ContainerRecord): void {
    const d = this.labelsOf(r);
    this.info.remove(d.info);
    for (const labels of d.states) this.state.remove(labels);
    for (const labels of d.statuses) this.healthStatus.remove(labels);
    for (const labels of d.gpus) this.gpuInfo.remove(labels);
    for (const m of this.plain) m.remove(r.promLabels);
  }

  private renderOne(r: ContainerRecord, outdated: number | undefined): void {
    const l: Labels = r.promLabels;
    const d = this.labelsOf(r);
    this.info.set(d.info, 1);
    setIfDefined(this.imageOutdated, l, outdated);
    for (const labels of d.gpus) this.gpuInfo.set(labels, 1);
    CONTAINER_STATES.forEach((state, i) => this.state.set(d.states[i]!, state === r.state ? 1 : 0));
    HEALTH_STATUSES.forEach((status, i) => this.healthStatus.set(d.statuses[i]!, status === r.health ? 1 : 0));
    this.healthState.set(l, HEALTH_STATE[r.health]);
    // A streak belongs to a health check; a container without one has none to report.
    if (r.health !== 'none') this.failingStreak.set(l, r.failingStreak);
    this.restarts.set(l, r.restartCount);
    this.exitCode.set(l, r.exitCode);
    this.oomKilled.set(l, r.oomKilled ? 1 : 0);
    this.oomEvents.set(l, r.oomEvents);
    setIfDefined(this.created, l, r.createdSeconds);
    setIfDefined(this.startedAt, l, r.startedAtSeconds);
    setIfDefined(this.finishedAt, l, r.finishedAtSeconds);
    setIfDefined(this.startTime, l, r.startedAtSeconds);
    this.memoryLimit.set(l, r.spec.memory);
    this.memoryReservation.set(l, r.spec.memoryReservation);
    this.memorySwap.set(l, r.spec.memorySwap);
    // As cAdvisor: the period and shares the container actually runs with, the quota only if any.
    if (r.spec.cpuQuota > 0) this.cpuQuota.set(l, r.spec.cpuQuota);
    this.cpuPeriod.set(l, r.spec.cpuPeriod > 0 ? r.spec.cpuPeriod : DEFAULT_CPU_PERIOD);
    this.cpuShares.set(l, r.spec.cpuShares > 0 ? r.spec.cpuShares : DEFAULT_CPU_SHARES);
  }
}

/**
 * Every container's state, health, restarts, last exit and limits, rendered from the shared
 * inventory at scrape time; fails (while still rendering what it holds) when the inventory is not
 * known to be current.
 */
export const containersCollector: CollectorModule = {
  name: 'containers',
  defaultEnabled: true,
  help: 'every container\'s state, health, restarts, exit code and limits',
  // The inventory's --container.* flags: registered with this module, they are declared whether or
  // not it runs, and shape the series of every collector that reads the inventory.
  options: inventoryOptions,
  needsInventory: true,
  create({ registry, inventory, docker, logger, metrics: exporterMetrics }) {
    const refs = new ImageRefs({ docker, inventory, logger: logger.child({ component: 'image-refs' }), metrics: exporterMetrics });
    const metrics = new ContainerMetrics(registry, inventory.labelNames, (r) => refs.outdated(r));
    return {
      start: () => refs.start(),
      stop: () => refs.stop(),
      update() {
        metrics.render(inventory.list());
        if (!inventory.current) throw new Error(inventory.lastError ?? 'container inventory is not current');
      },
    };
  },
};
