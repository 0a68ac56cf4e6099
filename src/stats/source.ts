import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Config } from '../config.js';
import type { EngineApi } from '../docker/client.js';
import type { LoopHealth } from '../loop-health.js';
import type { StatsSample } from '../parse/stats.js';

/** One container the stats collector follows, for one run of it (a restart begins a new run). */
export interface Target {
  readonly id: string;
  /** Start time of the run samples must belong to; the collector sets it anew on a restart. */
  startedAt: number | undefined;
  /** The run's first process on the host (inspect's `State.Pid`), 0 while unknown. */
  pid: number;
  /** `HostConfig.NetworkMode`: `host`, `none` and `container:<id>` have no network of their own. */
  networkMode: string;
  /** Whether it has a CPU quota: its throttling is rendered only then (as cAdvisor). */
  cpuQuota: boolean;
}

/** Where a source hands what it reads, and asks what it is to read. */
export interface StatsSink {
  /** The containers followed now. */
  targets(): Iterable<Target>;
  /** Whether `t` is still followed (not removed, stopped or replaced). */
  follows(t: Target): boolean;
  /** A sample for `t`, as the engine sent it (parsed at the next scrape that renders it). */
  deliver(t: Target, payload: unknown): void;
  /** A sample for `t` read and parsed already; undefined: `t` has none now (it vanished). */
  deliverSample(t: Target, sample: StatsSample | undefined): void;
  /** A record that could not be used: counted as a parse error. */
  bad(id: string, reason: string): void;
}

/** What a source may use. */
export interface SourceDeps {
  docker: EngineApi;
  /** Where a source registers its own metrics. */
  registry: Registry;
  config: Config;
  logger: Logger;
  health: LoopHealth;
}

/**
 * Where per-container samples come from. The collector follows the inventory and tells its source
 * which containers to sample; the source delivers samples to the sink. One file per source.
 */
export interface StatsSource {
  /** Starts background work (a poll loop). */
  start(): void;
  /** `t` is followed from now on; `fresh` when it is new or its run restarted (else a repeat). */
  follow(t: Target, fresh: boolean): void;
  /** `t` is no longer followed. */
  unfollow(t: Target): void;
  /** Ends every request and stream; settles within a second or two. */
  stop(): Promise<void>;
  /** Reads every followed container now: for a source read at scrape time, called before each render. */
  read?(): Promise<void>;
  /** Streams open to the engine now (`docker_exporter_stats_streams`). */
  readonly openStreams: number;
}
