import fs from 'node:fs';
import path from 'node:path';
import { Counter, Gauge } from 'prom-client';
import { sleep } from '../backoff.js';
import type { Config, ModuleOptions } from '../config.js';
import { SeriesMetric } from '../exposition.js';
import { setIfDefined } from '../helpers.js';
import type { ContainerRecord } from '../inventory/inventory.js';
import { PayloadError } from '../parse/guards.js';
import { parseStats, type StatsSample } from '../parse/stats.js';
import { detectCgroupLayoutSync } from '../stats/cgroup-files.js';
import { CgroupfsSource } from '../stats/cgroupfs.js';
import { EnginePollSource } from '../stats/engine-poll.js';
import { EngineStreamSource } from '../stats/engine-stream.js';
import type { StatsSink, StatsSource, Target } from '../stats/source.js';
import type { Collector, CollectorDeps, CollectorModule } from './collector.js';

/** The value of docker_exporter_stats_source. */
type SourceKind = 'cgroupfs' | 'engine-poll' | 'engine-stream';

/**
 * Why `auto` cannot use cgroupfs here, or undefined when it can try: the engine must be local (a
 * remote engine's containers' cgroups are on another host) and a cgroup filesystem must be where
 * --path.sysfs says. Whether a container's own cgroup can be read shows at the first one read.
 */
function cgroupfsUnusable(config: Config): string | undefined {
  if (!/^(unix|npipe):\/\//.test(config.docker.host)) return `the engine at ${config.docker.host} is not local`;
  const root = path.join(config.path.sysfs, 'fs', 'cgroup');
  // The same test as the source's own, at its first read.
  if (!detectCgroupLayoutSync(root, fs.existsSync)) return `no cgroup filesystem at ${root}`;
  if (!fs.existsSync(path.join(config.path.procfs, 'self', 'cgroup'))) return `no /proc at ${config.path.procfs}`;
  return undefined;
}

export type StatsMode = 'stream' | 'poll';

/** The `stats` section of Config, from the flags below. */
export type StatsSourceChoice = 'auto' | 'cgroupfs' | 'engine';

export interface StatsConfig {
  /** Where samples come from: the kernel's cgroup files, the engine's stats API, or the cheaper that works. */
  source: StatsSourceChoice;
  mode: StatsMode;
  intervalMs: number;
  concurrency: number;
}

declare module '../config.js' {
  interface Config {
    stats: StatsConfig;
  }
}

/** `--stats.*`: how the samples are taken. */
const statsOptions: ModuleOptions<'stats'> = {
  section: 'stats',
  flags: [
    { flags: '--stats.source <source>', description: 'cgroupfs (read the kernel\'s cgroup files under --path.sysfs and --path.procfs at every scrape), engine (the engine\'s stats API, as --stats.mode says), or auto: cgroupfs for a local engine whose containers\' cgroups can be read, else engine', defaultValue: 'auto' },
    { flags: '--stats.mode <mode>', description: 'engine source: stream (one long-lived stats stream per container) or poll (one-shot samples every interval)', defaultValue: 'poll' },
    { flags: '--stats.interval <duration>', description: 'poll mode: time between two samples of a container', defaultValue: '15s' },
    { flags: '--stats.concurrency <n>', description: 'poll mode: stats requests in flight at once; the engine answers each at its next 1-second collection, so a round takes about running containers ÷ n seconds', defaultValue: '32' },
  ],
  parse: (values) => ({
    source: values.oneOf('stats.source', ['auto', 'cgroupfs', 'engine'] as const),
    mode: values.oneOf('stats.mode', ['stream', 'poll'] as const),
    intervalMs: values.duration('stats.interval'),
    concurrency: values.integer('stats.concurrency', 1, 1000),
  }),
};

/** What is kept per container with resource series: the latest raw payload, parsed lazily once. */
interface Tracked extends Target {
  /** The latest usable payload as the engine sent it; undefined until the first one arrives. */
  raw: unknown;
  /** `raw` parsed at the first scrape after it arrived: undefined = not yet, null = unusable. */
  parsed: StatsSample | null | undefined;
}

// Go's zero time: the engine's empty sample. Dropped on arrival so it never hides the last good one.
const ZERO_READ = /^0001-01-01T00:00:00(?:\.0+)?Z$/;

/** A stopped container has no cgroup to report; a paused one still holds its memory. */
function hasStats(record: ContainerRecord): boolean {
  return record.state === 'running' || record.state === 'paused';
}

type Labels = Record<string, string>;

function createMetrics(deps: CollectorDeps) {
  const registers = [deps.registry];
  const base = deps.inventory.labelNames;
  const series = (type: 'gauge' | 'counter') => (name: string, help: string, extra: string[] = []) => new SeriesMetric({ name, help, type, labelNames: [...base, ...extra], registers });
  const counter = series('counter');
  const gauge = series('gauge');
  return {
    cpuTotal: counter('container_cpu_usage_seconds_total', 'Cumulative CPU time consumed, in seconds.'),
    cpuUser: counter('container_cpu_user_seconds_total', 'Cumulative user CPU time consumed, in seconds.'),
    cpuSystem: counter('container_cpu_system_seconds_total', 'Cumulative system CPU time consumed, in seconds.'),
    cfsPeriods: counter('container_cpu_cfs_periods_total', 'Number of elapsed enforcement period intervals (containers with a CPU quota only).'),
    cfsThrottledPeriods: counter('container_cpu_cfs_throttled_periods_total', 'Number of throttled period intervals (containers with a CPU quota only).'),
    cfsThrottledSeconds: counter('container_cpu_cfs_throttled_seconds_total', 'Total time duration the container has been throttled, in seconds (containers with a CPU quota only).'),
    memUsage: gauge('container_memory_usage_bytes', 'Current memory usage, including all memory regardless of when it was accessed, in bytes.'),
    memWorkingSet: gauge('container_memory_working_set_bytes', 'Current working set (usage minus inactive file cache), in bytes: what docker stats shows as MEM USAGE.'),
    memRss: gauge('container_memory_rss', 'Size of RSS (anonymous memory), in bytes.'),
    memCache: gauge('container_memory_cache', 'Number of bytes of page cache memory.'),
    memMappedFile: gauge('container_memory_mapped_file', 'Size of memory mapped files, in bytes.'),
    memMaxUsage: gauge('container_memory_max_usage_bytes', 'Maximum memory usage recorded, in bytes (cgroup v1; on v2 memory.peak, with the cgroupfs source only).'),
    memFailures: counter('container_memory_failures_total', 'Cumulative count of memory allocation failures (page faults).', ['failure_type', 'scope']),
    netRxBytes: counter('container_network_receive_bytes_total', 'Cumulative count of bytes received.', ['interface']),
    netRxPackets: counter('container_network_receive_packets_total', 'Cumulative count of packets received.', ['interface']),
    netRxDropped: counter('container_network_receive_packets_dropped_total', 'Cumulative count of packets dropped while receiving.', ['interface']),
    netRxErrors: counter('container_network_receive_errors_total', 'Cumulative count of errors encountered while receiving.', ['interface']),
    netTxBytes: counter('container_network_transmit_bytes_total', 'Cumulative count of bytes transmitted.', ['interface']),
    netTxPackets: counter('container_network_transmit_packets_total', 'Cumulative count of packets transmitted.', ['interface']),
    netTxDropped: counter('container_network_transmit_packets_dropped_total', 'Cumulative count of packets dropped while transmitting.', ['interface']),
    netTxErrors: counter('container_network_transmit_errors_total', 'Cumulative count of errors encountered while transmitting.', ['interface']),
    fsReadBytes: counter('container_fs_reads_bytes_total', 'Cumulative count of bytes read from block devices.', ['device']),
    fsWriteBytes: counter('container_fs_writes_bytes_total', 'Cumulative count of bytes written to block devices.', ['device']),
    fsReads: counter('container_fs_reads_total', 'Cumulative count of reads completed (cgroup v1; on v2 with the cgroupfs source only).', ['device']),
    fsWrites: counter('container_fs_writes_total', 'Cumulative count of writes completed (cgroup v1; on v2 with the cgroupfs source only).', ['device']),
    threads: gauge('container_threads', 'Number of threads (tasks) running in the container.'),
    threadsMax: gauge('container_threads_max', 'Maximum number of threads (tasks) allowed in the container (absent when unlimited).'),
    lastSeen: gauge('container_last_seen', 'Unix time of the latest stats sample of the container, in seconds (the scrape\'s own with --stats.source cgroupfs).'),
    // Only the cgroupfs source has these: the engine's stats carry neither swap nor pressure.
    memSwap: gauge('container_memory_swap', 'Container swap usage in bytes (cgroupfs source).'),
    cpuWaiting: counter('container_pressure_cpu_waiting_seconds_total', 'Total time duration tasks in the container have waited due to CPU congestion (PSI some; cgroup v2, cgroupfs source).'),
    cpuStalled: counter('container_pressure_cpu_stalled_seconds_total', 'Total time duration no tasks in the container could make progress due to CPU congestion (PSI full; cgroup v2, cgroupfs source).'),
    memWaiting: counter('container_pressure_memory_waiting_seconds_total', 'Total time duration tasks in the container have waited due to memory congestion (PSI some; cgroup v2, cgroupfs source).'),
    memStalled: counter('container_pressure_memory_stalled_seconds_total', 'Total time duration no tasks in the container could make progress due to memory congestion (PSI full; cgroup v2, cgroupfs source).'),
    ioWaiting: counter('container_pressure_io_waiting_seconds_total', 'Total time duration tasks in the container have waited due to I/O congestion (PSI some; cgroup v2, cgroupfs source).'),
    ioStalled: counter('container_pressure_io_stalled_seconds_total', 'Total time duration no tasks in the container could make progress due to I/O congestion (PSI full; cgroup v2, cgroupfs source).'),
  };
}

type StatsMetrics = ReturnType<typeof createMetrics>;

/**
 * Per-container CPU, memory, network, block I/O and PIDs under cAdvisor's names. The collector
 * follows the inventory and renders; its source (src/stats/) reads the samples: the engine's stats
 * API as one long-lived stream per container (`--stats.mode stream`) or one-shot samples every
 * interval (`poll`). Only the latest raw sample is kept; it is parsed at the first scrape after it
 * arrived, never per sample.
 */
export const statsCollector: CollectorModule = {
  name: 'stats',
  defaultEnabled: true,
  help: 'per-container CPU, memory, network, block I/O and PIDs (cAdvisor names)',
  options: statsOptions,
  needsInventory: true,
  create(deps) {
    return new StatsCollector(deps);
  },
};

/** The stats collector; exported for tests, which drive it with a fake engine and inventory. */
export class StatsCollector implements Collector, StatsSink {
  private readonly tracked = new Map<string, Tracked>();
  private readonly m: StatsMetrics;
  private source: StatsSource;
  private readonly sourceInUse: Gauge<'source'>;
  /** The collector's, not the source's: it outlives a switch of source. */
  private readonly cgroupfsFallbacks: Counter;
  private stopped = false;
  private started = false;

  private readonly onUpsert = (record: ContainerRecord): void => this.follow(record);
  private readonly onRemove = (record: ContainerRecord): void => this.untrack(record.id);
  private readonly onSynced = (): void => this.reconcile();

  constructor(private readonly deps: CollectorDeps) {
    this.m = createMetrics(deps);
    const self = this;
    new Gauge({
      name: 'docker_exporter_stats_streams',
      help: 'Stats streams open to the Docker Engine (one per running container in stream mode; 0 in poll mode).',
      registers: [deps.registry],
      collect() {
        this.set(self.source.openStreams);
      },
    });
    this.cgroupfsFallbacks = new Counter({
      name: 'docker_exporter_stats_fallbacks_total',
      help: 'Containers sampled through the engine because their cgroup could not be read (--stats.source cgroupfs or auto).',
      registers: [deps.registry],
    });
    this.sourceInUse = new Gauge({
      name: 'docker_exporter_stats_source',
      help: 'Where the per-container resource samples come from (--stats.source): 1 for the source in use.',
      labelNames: ['source'],
      registers: [deps.registry],
    });
    const { source } = deps.config.stats;
    const engineKind = this.engineKind();
    if (source === 'engine') {
      this.source = this.use(engineKind, '--stats.source engine');
    } else if (source === 'cgroupfs') {
      this.source = this.use('cgroupfs', '--stats.source cgroupfs');
    } else {
      const unusable = cgroupfsUnusable(deps.config);
      this.source = unusable ? this.use(engineKind, `auto: ${unusable}`) : this.use('cgroupfs', 'auto: the engine is local and its cgroups are readable here', true);
    }
  }

  /** Open streams right now (for tests). */
  get streams(): number {
    return this.source.openStreams;
  }

  /** Makes the source of `kind` the one in use, says so once, and shows it in docker_exporter_stats_source. */
  private use(kind: SourceKind, why: string, tentative = false): StatsSource {
    const { deps } = this;
    const source =
      kind === 'cgroupfs'
        ? new CgroupfsSource(deps, this, this.cgroupfsFallbacks, tentative ? (reason) => this.switchToEngine(reason) : undefined)
        : kind === 'engine-stream'
          ? new EngineStreamSource(deps, this)
          : new EnginePollSource(deps, this);
    this.sourceInUse.reset();
    this.sourceInUse.set({ source: kind }, 1);
    this.deps.logger.info({ collector: 'stats', source: kind, why }, `stats source: ${kind}`);
    return source;
  }

  /** The engine source --stats.mode names. */
  private engineKind(): SourceKind {
    return this.deps.config.stats.mode === 'stream' ? 'engine-stream' : 'engine-poll';
  }

  /** auto, when the first container's cgroup cannot be read: the engine serves every container instead. */
  private switchToEngine(reason: string): void {
    const previous = this.source;
    this.source = this.use(this.engineKind(), `auto: ${reason}`);
    void previous.stop().catch(() => undefined);
    if (this.started && !this.stopped) {
      this.source.start();
      for (const t of this.tracked.values()) this.source.follow(t, true);
    }
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    const { inventory } = this.deps;
    inventory.on('upsert', this.onUpsert);
    inventory.on('remove', this.onRemove);
    inventory.on('synced', this.onSynced);
    this.reconcile();
    this.source.start();
  }

  async stop(): Promise<void> {
    const { inventory } = this.deps;
    inventory.off('upsert', this.onUpsert);
    inventory.off('remove', this.onRemove);
    inventory.off('synced', this.onSynced);
    this.stopped = true;
    this.tracked.clear();
    // Aborted requests settle at once; the cap only guards against a misbehaving socket.
    await Promise.race([this.source.stop(), sleep(1500)]);
  }

  async update(): Promise<void> {
    // A source read at scrape time (cgroupfs) reads now, so every scrape is current.
    await this.source.read?.();
    const m = this.m;
    const all = Object.values(m);
    for (const metric of all) metric.beginRefill();
    for (const t of this.tracked.values()) {
      if (t.raw === undefined) continue;
      if (t.parsed === undefined) t.parsed = this.parse(t);
      const record = this.deps.inventory.get(t.id);
      if (t.parsed && record) emit(m, record, t.parsed);
    }
    for (const metric of all) metric.endRefill();
    // Samples are only as current as the container list they follow: with the engine away, the
    // series above are the last ones seen, and the collector says so.
    const { inventory } = this.deps;
    if (!inventory.current) throw new Error(inventory.lastError ?? 'container inventory is not current');
  }

  targets(): Iterable<Target> {
    return this.tracked.values();
  }

  follows(t: Target): boolean {
    return this.tracked.get(t.id) === t;
  }

  deliver(t: Target, value: unknown): void {
    const read = (value as { read?: unknown } | null)?.read;
    if (typeof read === 'string' && ZERO_READ.test(read)) return;
    const tracked = this.tracked.get(t.id);
    if (tracked !== t) return;
    tracked.raw = value;
    tracked.parsed = undefined;
  }

  deliverSample(t: Target, sample: StatsSample | undefined): void {
    const tracked = this.tracked.get(t.id);
    if (tracked !== t) return;
    tracked.raw = sample;
    tracked.parsed = sample;
    if (sample && sample.malformed > 0) this.bad(t.id, `${sample.malformed} cgroup field(s) unreadable, left out`);
  }

  bad(id: string, reason: string): void {
    this.deps.metrics.parseErrors.inc({ source: 'stats' });
    this.deps.logger.debug({ id, reason }, 'unusable stats record');
  }

  /** Starts or stops following a container as the inventory reports it. */
  private follow(record: ContainerRecord): void {
    if (this.stopped) return;
    if (!hasStats(record)) {
      this.untrack(record.id);
      return;
    }
    let t = this.tracked.get(record.id);
    let fresh = true;
    if (!t) {
      t = { id: record.id, raw: undefined, parsed: undefined, startedAt: record.startedAtSeconds, pid: record.pid, networkMode: record.networkMode, cpuQuota: record.spec.cpuQuota > 0 };
      this.tracked.set(record.id, t);
    } else if (t.startedAt !== record.startedAtSeconds) {
      // Samples of the previous run are not this run's: its counters started again from zero.
      t.startedAt = record.startedAtSeconds;
      t.raw = undefined;
      t.parsed = undefined;
    } else {
      fresh = false;
    }
    t.pid = record.pid;
    t.networkMode = record.networkMode;
    // `docker update --cpus` changes it within the run: read at the next scrape.
    t.cpuQuota = record.spec.cpuQuota > 0;
    this.source.follow(t, fresh);
  }

  private untrack(id: string): void {
    const t = this.tracked.get(id);
    if (!t) return;
    this.tracked.delete(id);
    this.source.unfollow(t);
  }

  /** Brings the tracked set in line with the inventory (after its full syncs and at start). */
  private reconcile(): void {
    const keep = new Set<string>();
    for (const record of this.deps.inventory.list()) {
      if (!hasStats(record)) continue;
      keep.add(record.id);
      this.follow(record);
    }
    for (const id of [...this.tracked.keys()]) if (!keep.has(id)) this.untrack(id);
  }

  private parse(t: Tracked): StatsSample | null {
    try {
      const sample = parseStats(t.raw);
      if (sample && sample.malformed > 0) this.bad(t.id, `${sample.malformed} field(s) of an unexpected type left out`);
      return sample;
    } catch (err) {
      if (!(err instanceof PayloadError)) throw err;
      this.bad(t.id, err.message);
      return null;
    }
  }
}

/**
 * Turns one sample into series; throttling only for containers with a CPU quota (as cAdvisor).
 * Counters carry the engine's absolute totals, set as they are.
 */
function emit(m: StatsMetrics, record: ContainerRecord, s: StatsSample): void {
  const L = record.promLabels;
  setIfDefined(m.cpuTotal, L, s.cpuTotalSeconds);
  setIfDefined(m.cpuUser, L, s.cpuUserSeconds);
  setIfDefined(m.cpuSystem, L, s.cpuSystemSeconds);
  if (record.spec.cpuQuota > 0) {
    setIfDefined(m.cfsPeriods, L, s.cfsPeriods);
    setIfDefined(m.cfsThrottledPeriods, L, s.cfsThrottledPeriods);
    setIfDefined(m.cfsThrottledSeconds, L, s.cfsThrottledSeconds);
  }
  setIfDefined(m.memUsage, L, s.memoryUsageBytes);
  setIfDefined(m.memWorkingSet, L, s.memoryWorkingSetBytes);
  setIfDefined(m.memRss, L, s.memoryRssBytes);
  setIfDefined(m.memCache, L, s.memoryCacheBytes);
  setIfDefined(m.memMappedFile, L, s.memoryMappedFileBytes);
  setIfDefined(m.memMaxUsage, L, s.memoryMaxUsageBytes);
  if (s.pgfault !== undefined) m.memFailures.set(derive(L, 'failure_type', 'pgfault', 'scope', 'container'), s.pgfault);
  if (s.pgmajfault !== undefined) m.memFailures.set(derive(L, 'failure_type', 'pgmajfault', 'scope', 'container'), s.pgmajfault);
  for (const n of s.networks) {
    const NL = derive(L, 'interface', n.name);
    setIfDefined(m.netRxBytes, NL, n.rxBytes);
    setIfDefined(m.netRxPackets, NL, n.rxPackets);
    setIfDefined(m.netRxDropped, NL, n.rxDropped);
    setIfDefined(m.netRxErrors, NL, n.rxErrors);
    setIfDefined(m.netTxBytes, NL, n.txBytes);
    setIfDefined(m.netTxPackets, NL, n.txPackets);
    setIfDefined(m.netTxDropped, NL, n.txDropped);
    setIfDefined(m.netTxErrors, NL, n.txErrors);
  }
  for (const d of s.blkio) {
    const DL = derive(L, 'device', d.device);
    setIfDefined(m.fsReadBytes, DL, d.readBytes);
    setIfDefined(m.fsWriteBytes, DL, d.writeBytes);
    setIfDefined(m.fsReads, DL, d.reads);
    setIfDefined(m.fsWrites, DL, d.writes);
  }
  setIfDefined(m.threads, L, s.threads);
  setIfDefined(m.threadsMax, L, s.threadsMax);
  setIfDefined(m.memSwap, L, s.memorySwapBytes);
  setIfDefined(m.cpuWaiting, L, s.pressureCpuWaitingSeconds);
  setIfDefined(m.cpuStalled, L, s.pressureCpuStalledSeconds);
  setIfDefined(m.memWaiting, L, s.pressureMemoryWaitingSeconds);
  setIfDefined(m.memStalled, L, s.pressureMemoryStalledSeconds);
  setIfDefined(m.ioWaiting, L, s.pressureIoWaitingSeconds);
  setIfDefined(m.ioStalled, L, s.pressureIoStalledSeconds);
  m.lastSeen.set(L, s.read);
}

/** Label sets made from a container's labels, kept as long as those are (its inventory record's life). */
const derivedLabels = new WeakMap<Labels, Map<string, Labels>>();

/**
 * `{ ...L, k: v }`, the same object on every scrape: the exposition caches each label set's text by
 * its object, so a new one per scrape per interface would be formatted and escaped anew each time.
 */
function derive(L: Labels, k: string, v: string, k2?: string, v2?: string): Labels {
  let byKey = derivedLabels.get(L);
  if (!byKey) derivedLabels.set(L, (byKey = new Map()));
  const key = k2 === undefined ? `${k}\u0000${v}` : `${k}\u0000${v}\u0000${k2}\u0000${v2}`;
  let labels = byKey.get(key);
  if (!labels) {
    labels = Object.freeze(k2 === undefined ? { ...L, [k]: v } : { ...L, [k]: v, [k2]: v2 ?? '' });
    byKey.set(key, labels);
  }
  return labels;
}
