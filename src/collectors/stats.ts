import type { IncomingMessage } from 'node:http';
import pLimit, { type LimitFunction } from 'p-limit';
import { Gauge } from 'prom-client';
import { Backoff, sleep } from '../backoff.js';
import type { ModuleOptions } from '../config.js';
import { isNotFound } from '../docker/client.js';
import { readNdjson } from '../docker/ndjson.js';
import { SeriesMetric } from '../exposition.js';
import type { ContainerRecord } from '../inventory/inventory.js';
import { PayloadError } from '../parse/guards.js';
import { parseStats, type StatsSample } from '../parse/stats.js';
import type { Collector, CollectorDeps, CollectorModule } from './collector.js';

export type StatsMode = 'stream' | 'poll';

/** The `stats` section of Config, from the flags below. */
export interface StatsConfig {
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
    { flags: '--stats.mode <mode>', description: 'stream (one long-lived stats stream per container) or poll (one-shot samples every interval)', defaultValue: 'poll' },
    { flags: '--stats.interval <duration>', description: 'poll mode: time between two samples of a container', defaultValue: '15s' },
    { flags: '--stats.concurrency <n>', description: 'poll mode: stats requests in flight at once; the engine answers each at its next 1-second collection, so a round takes about running containers ÷ n seconds', defaultValue: '32' },
  ],
  parse: (values) => ({
    mode: values.oneOf('stats.mode', ['stream', 'poll'] as const),
    intervalMs: values.duration('stats.interval'),
    concurrency: values.integer('stats.concurrency', 1, 1000),
  }),
};

/** What is kept per container with resource series: the latest raw payload, parsed lazily once. */
interface Tracked {
  id: string;
  /** The latest usable payload as the engine sent it; undefined until the first one arrives. */
  raw: unknown;
  /** `raw` parsed at the first scrape after it arrived: undefined = not yet, null = unusable. */
  parsed: StatsSample | null | undefined;
  /** Start time of the run the stream or samples belong to; a restart begins a new one. */
  startedAt: number | undefined;
  stream?: { ctl: AbortController; done: Promise<void> };
  /** Poll mode: the one-shot request in flight, so one container never has two. */
  polling?: Promise<void>;
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
    memMaxUsage: gauge('container_memory_max_usage_bytes', 'Maximum memory usage recorded, in bytes (cgroup v1 only).'),
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
    fsReads: counter('container_fs_reads_total', 'Cumulative count of reads completed (cgroup v1 only).', ['device']),
    fsWrites: counter('container_fs_writes_total', 'Cumulative count of writes completed (cgroup v1 only).', ['device']),
    threads: gauge('container_threads', 'Number of threads (tasks) running in the container.'),
    threadsMax: gauge('container_threads_max', 'Maximum number of threads (tasks) allowed in the container (absent when unlimited).'),
    lastSeen: gauge('container_last_seen', 'Unix time of the latest stats sample of the container, in seconds.'),
  };
}

type StatsMetrics = ReturnType<typeof createMetrics>;

/**
 * Per-container CPU, memory, network, block I/O and PIDs under cAdvisor's names, from the engine's
 * stats API: one long-lived stream per container (`--stats.mode stream`) or one-shot samples every
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
export class StatsCollector implements Collector {
  private readonly tracked = new Map<string, Tracked>();
  private readonly m: StatsMetrics;
  private readonly stopCtl = new AbortController();
  private readonly limit: LimitFunction;
  private readonly streaming: boolean;
  private openStreams = 0;
  private pollLoop: Promise<void> | undefined;
  private started = false;

  private readonly onUpsert = (record: ContainerRecord): void => this.follow(record);
  private readonly onRemove = (record: ContainerRecord): void => this.untrack(record.id);
  private readonly onSynced = (): void => this.reconcile();

  constructor(private readonly deps: CollectorDeps) {
    this.m = createMetrics(deps);
    this.streaming = deps.config.stats.mode === 'stream';
    this.limit = pLimit(deps.config.stats.concurrency);
    const self = this;
    new Gauge({
      name: 'docker_exporter_stats_streams',
      help: 'Stats streams open to the Docker Engine (one per running container in stream mode; 0 in poll mode).',
      registers: [deps.registry],
      collect() {
        this.set(self.openStreams);
      },
    });
  }

  /** Open streams right now (for tests). */
  get streams(): number {
    return this.openStreams;
  }

  start(): void {
    if (this.started) return;
    this.started = true;
    const { inventory } = this.deps;
    inventory.on('upsert', this.onUpsert);
    inventory.on('remove', this.onRemove);
    inventory.on('synced', this.onSynced);
    this.reconcile();
    if (!this.streaming) this.pollLoop = this.runPollLoop();
  }

  async stop(): Promise<void> {
    const { inventory } = this.deps;
    inventory.off('upsert', this.onUpsert);
    inventory.off('remove', this.onRemove);
    inventory.off('synced', this.onSynced);
    this.stopCtl.abort();
    const pending: Promise<unknown>[] = [];
    for (const t of this.tracked.values()) {
      if (t.stream) {
        t.stream.ctl.abort();
        pending.push(t.stream.done);
      }
      if (t.polling) pending.push(t.polling);
    }
    if (this.pollLoop) pending.push(this.pollLoop);
    this.tracked.clear();
    // Aborted requests settle at once; the cap only guards against a misbehaving socket.
    await Promise.race([Promise.allSettled(pending), sleep(1500)]);
  }

  update(): void {
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

  /** Starts or stops following a container as the inventory reports it. */
  private follow(record: ContainerRecord): void {
    if (this.stopCtl.signal.aborted) return;
    if (!hasStats(record)) {
      this.untrack(record.id);
      return;
    }
    let t = this.tracked.get(record.id);
    const restarted = t !== undefined && t.startedAt !== record.startedAtSeconds;
    if (t && !restarted && (!this.streaming || t.stream)) return;
    if (!t) {
      t = { id: record.id, raw: undefined, parsed: undefined, startedAt: record.startedAtSeconds };
      this.tracked.set(record.id, t);
    } else if (restarted) {
      // Samples of the previous run are not this run's: its counters started again from zero.
      t.startedAt = record.startedAtSeconds;
      t.raw = undefined;
      t.parsed = undefined;
    }
    if (this.streaming) this.openStream(t);
    // A container that just started gets series now, not one interval later, and ahead of the
    // round (those found running at the exporter's start wait their turn, or all would go at once).
    else void this.sampleOnce(t, this.startedWithinInterval(record));
  }

  private startedWithinInterval(record: ContainerRecord): boolean {
    const startedAt = record.startedAtSeconds;
    return startedAt !== undefined && Date.now() / 1000 - startedAt < this.deps.config.stats.intervalMs / 1000;
  }

  private untrack(id: string): void {
    const t = this.tracked.get(id);
    if (!t) return;
    this.tracked.delete(id);
    t.stream?.ctl.abort();
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

  private store(t: Tracked, value: unknown): void {
    const read = (value as { read?: unknown } | null)?.read;
    if (typeof read === 'string' && ZERO_READ.test(read)) return;
    t.raw = value;
    t.parsed = undefined;
  }

  private parse(t: Tracked): StatsSample | null {
    try {
      const sample = parseStats(t.raw);
      if (sample && sample.malformed > 0) this.countBad(t.id, `${sample.malformed} field(s) of an unexpected type left out`);
      return sample;
    } catch (err) {
      if (!(err instanceof PayloadError)) throw err;
      this.countBad(t.id, err.message);
      return null;
    }
  }

  private countBad(id: string, reason: string): void {
    this.deps.metrics.parseErrors.inc({ source: 'stats' });
    this.deps.logger.debug({ id, reason }, 'unusable stats record');
  }

  private openStream(t: Tracked): void {
    t.stream?.ctl.abort();
    const ctl = new AbortController();
    const handle = { ctl, done: Promise.resolve() };
    t.stream = handle;
    handle.done = this.runStream(t, ctl.signal).finally(() => {
      // Gave up (container gone): let a later upsert or sync open a new one.
      if (t.stream === handle) t.stream = undefined;
    });
  }

  /**
   * Follows one container's stream until aborted, reopening it with backoff when it drops while the
   * container still runs (an engine restart ends every stream).
   */
  private async runStream(t: Tracked, signal: AbortSignal): Promise<void> {
    const { docker, logger } = this.deps;
    const log = logger.child({ collector: 'stats', id: t.id });
    const backoff = new Backoff();
    while (!signal.aborted) {
      let res: IncomingMessage | undefined;
      let received = false;
      try {
        res = await docker.stream('/containers/{id}/stats', `/containers/${t.id}/stats`, { query: { stream: true }, signal });
        if (signal.aborted) break;
        const response = res;
        // Ends the socket however the abort comes, even between two records.
        const close = (): void => void response.destroy();
        signal.addEventListener('abort', close, { once: true });
        this.openStreams++;
        try {
          await readNdjson(response, {
            onRecord: (value) => {
              if (signal.aborted) return;
              received = true;
              this.store(t, value);
            },
            onBadRecord: (reason, sample) => this.countBad(t.id, `${reason} line: ${sample}`),
          });
          if (!signal.aborted) log.debug('stats stream ended by the engine');
        } finally {
          this.openStreams--;
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

  /** One round per interval, each after the previous finished, so rounds never overlap. */
  private async runPollLoop(): Promise<void> {
    const { intervalMs } = this.deps.config.stats;
    const signal = this.stopCtl.signal;
    while (!signal.aborted) {
      const started = performance.now();
      // Each sample ends within --docker.timeout and --stats.concurrency run at once, so a round
      // that completes no sample for twice that is stuck.
      const pass = this.deps.health.begin('stats poll round', 2 * this.deps.config.docker.timeoutMs);
      try {
        await Promise.all([...this.tracked.values()].map((t) => this.sampleOnce(t).then(() => pass.beat())));
      } finally {
        pass.end();
      }
      await sleep(Math.max(0, intervalMs - (performance.now() - started)), signal);
    }
  }

  /**
   * One one-shot sample of a container, through the concurrency limit; joins one in flight.
   * `urgent` (the container just started) skips the limit's queue, which holds the round:
   * the engine answers each one-shot request at its next 1-second collection, so at 1,000
   * containers a round takes half a minute, and a new container behind it would wait that long.
   */
  private sampleOnce(t: Tracked, urgent = false): Promise<void> {
    if (t.polling) return t.polling;
    let startedAt = t.startedAt;
    const sample = async (): Promise<void> => {
      if (this.tracked.get(t.id) !== t || this.stopCtl.signal.aborted) return;
      startedAt = t.startedAt;
      try {
        const payload = await this.deps.docker.get<unknown>('/containers/{id}/stats', `/containers/${t.id}/stats`, {
          query: { stream: false, 'one-shot': true },
          signal: this.stopCtl.signal,
        });
        // Removed, stopped or restarted meanwhile: the answer belongs to nothing we export.
        if (this.tracked.get(t.id) === t && t.startedAt === startedAt) this.store(t, payload);
      } catch (err) {
        if (this.stopCtl.signal.aborted || isNotFound(err)) return;
        this.deps.logger.debug({ collector: 'stats', id: t.id, err: (err as Error).message }, 'stats sample failed');
      }
    };
    const run = (urgent ? sample() : this.limit(sample)).finally(() => {
      t.polling = undefined;
      // The container restarted while this sample was in flight: the new run deserves one now.
      if (t.startedAt !== startedAt && this.tracked.get(t.id) === t) void this.sampleOnce(t, true);
    });
    t.polling = run;
    return run;
  }
}

/** Turns one sample into series; throttling only for containers with a CPU quota (as cAdvisor). */
function emit(m: StatsMetrics, record: ContainerRecord, s: StatsSample): void {
  const L = record.promLabels;
  count(m.cpuTotal, L, s.cpuTotalSeconds);
  count(m.cpuUser, L, s.cpuUserSeconds);
  count(m.cpuSystem, L, s.cpuSystemSeconds);
  if (record.spec.cpuQuota > 0) {
    count(m.cfsPeriods, L, s.cfsPeriods);
    count(m.cfsThrottledPeriods, L, s.cfsThrottledPeriods);
    count(m.cfsThrottledSeconds, L, s.cfsThrottledSeconds);
  }
  set(m.memUsage, L, s.memoryUsageBytes);
  set(m.memWorkingSet, L, s.memoryWorkingSetBytes);
  set(m.memRss, L, s.memoryRssBytes);
  set(m.memCache, L, s.memoryCacheBytes);
  set(m.memMappedFile, L, s.memoryMappedFileBytes);
  set(m.memMaxUsage, L, s.memoryMaxUsageBytes);
  if (s.pgfault !== undefined) m.memFailures.set(derive(L, 'failure_type', 'pgfault', 'scope', 'container'), s.pgfault);
  if (s.pgmajfault !== undefined) m.memFailures.set(derive(L, 'failure_type', 'pgmajfault', 'scope', 'container'), s.pgmajfault);
  for (const n of s.networks) {
    const NL = derive(L, 'interface', n.name);
    count(m.netRxBytes, NL, n.rxBytes);
    count(m.netRxPackets, NL, n.rxPackets);
    count(m.netRxDropped, NL, n.rxDropped);
    count(m.netRxErrors, NL, n.rxErrors);
    count(m.netTxBytes, NL, n.txBytes);
    count(m.netTxPackets, NL, n.txPackets);
    count(m.netTxDropped, NL, n.txDropped);
    count(m.netTxErrors, NL, n.txErrors);
  }
  for (const d of s.blkio) {
    const DL = derive(L, 'device', d.device);
    count(m.fsReadBytes, DL, d.readBytes);
    count(m.fsWriteBytes, DL, d.writeBytes);
    count(m.fsReads, DL, d.reads);
    count(m.fsWrites, DL, d.writes);
  }
  set(m.threads, L, s.threads);
  set(m.threadsMax, L, s.threadsMax);
  m.lastSeen.set(L, s.read);
}

/** Counters carry the engine's absolute totals, set as they are. */
function count(c: SeriesMetric, labels: Labels, value: number | undefined): void {
  if (value !== undefined) c.set(labels, value);
}

function set(g: SeriesMetric, labels: Labels, value: number | undefined): void {
  if (value !== undefined) g.set(labels, value);
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
