import path from 'node:path';
import type { Counter } from 'prom-client';
import { detectCgroupLayout, FdBudget, FileCache, locateCgroup, pathExists, readCgroupFile, readCgroupSample, type CgroupLayout, type CgroupLocation } from './cgroup-files.js';
import { EnginePollSource } from './engine-poll.js';
import type { SourceDeps, StatsSink, StatsSource, Target } from './source.js';

/** Containers read between two turns of the event loop (~3 ms of reads with their files open, ~14 ms without). */
const READ_BATCH = 64;

/**
 * How long a container's cgroup may stay unfound before it is sampled through the engine: one
 * scrape interval or so, time for the die event of a container that just exited to arrive.
 */
const LOCATE_GRACE_MS = 5000;

/** What the source keeps per container run: where its cgroup is, once found. */
interface Found {
  pid: number;
  location: CgroupLocation;
  /** Its `/proc/<pid>/net/dev`, when it has a network namespace of its own. */
  netDev: string | undefined;
  /** Its files, kept open between scrapes; closed whenever the entry is dropped. */
  files: FileCache;
}

/** Network modes in which a container has no network namespace of its own (the engine reports none). */
function ownNetwork(mode: string | undefined): boolean {
  return mode !== 'host' && mode !== 'none' && !mode?.startsWith('container:');
}

/**
 * `--stats.source cgroupfs`: reads each container's cgroup files (and its `/proc/<pid>/net/dev`)
 * itself, when Prometheus scrapes, instead of asking the engine for a sample: the engine spends
 * ~2 ms of CPU and Node ~1.5 ms per engine sample, these reads ~45 µs a container with its files kept open, ~0.2 ms
 * without (measured in cgroup-files.ts, FileCache), and every scrape is current. A container whose cgroup cannot be read (its pid's /proc entry hidden, a layout this
 * does not know) is sampled through the engine instead, alone, and counted.
 */
export class CgroupfsSource implements StatsSource {
  private readonly found = new Map<Target, Found>();
  /** The open files of every container's FileCache, bounded. */
  private readonly fds: FdBudget;
  /** Containers whose cgroup could not be found, since when (and for which pid). */
  private readonly unlocated = new Map<Target, { pid: number; at: number }>();
  /** Containers sampled through the engine instead. */
  private readonly fallback = new Set<Target>();
  private readonly engine: EnginePollSource;
  private readonly cgroupRoot: string;
  /** The host's cgroup layout, found at the first read. */
  private layout: Promise<CgroupLayout | undefined> | undefined;
  /** Whether a container's cgroup has been read yet: until then a failure may mean none can be. */
  private readAny = false;

  /**
   * `fallbacks` counts the containers handed to the engine. `onUnreadable`, for `auto`: called
   * instead when the very first container's cgroup cannot be read (a container without the host's
   * /proc, a sandbox hiding it), as that says the engine is the source to use here.
   */
  constructor(
    private readonly deps: SourceDeps,
    private readonly sink: StatsSink,
    private readonly fallbacks: Counter,
    private onUnreadable?: (reason: string) => void,
  ) {
    this.cgroupRoot = path.join(deps.config.path.sysfs, 'fs', 'cgroup');
    // The exporter's own limit: /proc/self, not the host's --path.procfs.
    this.fds = FdBudget.forThisProcess();
    const fallback = this.fallback;
    // The engine source sees only the containers that fell back.
    this.engine = new EnginePollSource(deps, {
      targets: () => fallback.values(),
      follows: (t) => fallback.has(t) && sink.follows(t),
      deliver: (t, payload) => sink.deliver(t, payload),
      deliverSample: (t, sample) => sink.deliverSample(t, sample),
      bad: (id, reason) => sink.bad(id, reason),
    });
  }

  get openStreams(): number {
    return 0;
  }

  start(): void {
    this.engine.start();
  }

  follow(t: Target, fresh: boolean): void {
    if (!fresh) return;
    // A new run has a new pid, and so perhaps another cgroup.
    this.forget(t);
    if (this.fallback.delete(t)) this.engine.unfollow(t);
  }

  unfollow(t: Target): void {
    this.forget(t);
    if (this.fallback.delete(t)) this.engine.unfollow(t);
  }

  async stop(): Promise<void> {
    for (const f of this.found.values()) f.files.close();
    this.found.clear();
    this.fallback.clear();
    await this.engine.stop();
  }

  /** Reads every followed container now (at scrape time); the fallen-back ones come from the engine. */
  async read(): Promise<void> {
    const now = Date.now();
    const targets = [...this.sink.targets()].filter((t) => !this.fallback.has(t));
    // The files are read with synchronous syscalls (~45 µs a container, 4-6× less CPU than the
    // threadpool: see cgroup-files.ts), so the loop yields between batches: at 1,000 containers a
    // scrape must not hold every other request for 200 ms at once.
    for (let i = 0; i < targets.length; i += READ_BATCH) {
      if (i > 0) await new Promise((resolve) => setImmediate(resolve));
      await Promise.all(targets.slice(i, i + READ_BATCH).map((t) => this.readOne(t, now)));
    }
  }

  private async readOne(t: Target, now: number): Promise<void> {
    let sample;
    try {
      let found;
      try {
        found = await this.locate(t);
        this.unlocated.delete(t);
      } catch (err) {
        // Its process may just have exited (the die event on its way): no sample now, and the
        // engine only if its cgroup still cannot be found LOCATE_GRACE_MS later. Seen in the bench:
        // 12 short-lived containers of other users counted as fallbacks, each ~20 s before a die.
        const since = this.unlocated.get(t);
        if (since === undefined || since.pid !== t.pid) {
          this.unlocated.set(t, { pid: t.pid, at: now });
          return;
        }
        if (now - since.at < LOCATE_GRACE_MS) return;
        throw err;
      }
      if (!found) return;
      sample = await readCgroupSample(found.location, found.files.read, { now: () => now, netDev: found.netDev, throttling: t.cpuQuota });
    } catch (err) {
      this.fallBack(t, (err as Error).message);
      return;
    }
    if (!this.sink.follows(t)) return;
    if (sample) {
      this.readAny = true;
      this.onUnreadable = undefined;
    } else {
      // Gone between the list and this read (stopped or removed): found again if it runs again.
      this.forget(t);
    }
    this.sink.deliverSample(t, sample ?? undefined);
  }

  /** Where `t`'s cgroup is, from its pid's own /proc entry (found once per run). */
  private async locate(t: Target): Promise<Found | undefined> {
    const known = this.found.get(t);
    if (known && known.pid === t.pid) return known;
    if (!t.pid) return undefined;
    this.layout ??= detectCgroupLayout(this.cgroupRoot, pathExists);
    const layout = await this.layout;
    if (!layout) throw new Error(`no cgroup filesystem at ${this.cgroupRoot} (--path.sysfs)`);
    const file = path.join(this.deps.config.path.procfs, String(t.pid), 'cgroup');
    const text = await readCgroupFile(file);
    // The engine says it runs: a missing entry means this is not the host's /proc (or not all of it).
    if (text === undefined) throw new Error(`${file} does not exist: is the host's /proc at --path.procfs?`);
    const located = await locateCgroup(layout, text, pathExists, t.id);
    if (!located.found) throw new Error(located.reason);
    this.forget(t);
    const netDev = ownNetwork(t.networkMode) ? path.join(this.deps.config.path.procfs, String(t.pid), 'net', 'dev') : undefined;
    const found = { pid: t.pid, location: located.location, netDev, files: new FileCache(this.fds, this.cgroupRoot, netDev) };
    this.found.set(t, found);
    return found;
  }

  /** Drops what is known of `t`'s cgroup, and closes its files. */
  private forget(t: Target): void {
    this.unlocated.delete(t);
    const known = this.found.get(t);
    if (!known) return;
    known.files.close();
    this.found.delete(t);
  }

  private fallBack(t: Target, reason: string): void {
    this.forget(t);
    if (this.fallback.has(t) || !this.sink.follows(t)) return;
    if (!this.readAny && this.onUnreadable) {
      const give = this.onUnreadable;
      this.onUnreadable = undefined;
      give(`the cgroup of container ${t.id.slice(0, 12)} cannot be read: ${reason}`);
      return;
    }
    this.fallback.add(t);
    this.fallbacks.inc();
    this.deps.logger.info({ id: t.id, reason }, 'cannot read the container\'s cgroup; sampling it through the engine');
    this.engine.follow(t, true);
  }
}
