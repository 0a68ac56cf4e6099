import { EventEmitter } from 'node:events';
import pLimit from 'p-limit';
import type { Logger } from 'pino';
import { Backoff, sleep } from '../backoff.js';
import type { Config, ModuleOptions } from '../config.js';
import type { EngineApi } from '../docker/client.js';
import { isNotFound } from '../docker/errors.js';
import { ConfigError } from '../errors.js';
import { EventStream } from '../docker/event-stream.js';
import type { ExporterMetrics } from '../exporter-metrics.js';
import { CoalescingRunner, safeEmit } from '../helpers.js';
import { LoopHealth, type Pass } from '../loop-health.js';
import { parseContainerInspect, parseContainerList, type ContainerInfo, type ListedContainer } from '../parse/container.js';
import { dockerAction, type EngineEvent } from '../parse/event.js';
import { PayloadError } from '../parse/guards.js';

/** The label keys exported as `container_label_<key>` unless --container.label-allowlist says otherwise. */
export const DEFAULT_LABEL_ALLOWLIST = [
  'com.docker.compose.project',
  'com.docker.compose.service',
  'com.docker.swarm.service.name',
  'com.docker.stack.namespace',
];

/** The `container` section of Config: which containers are held, and which of their labels every series carries. */
export interface ContainerConfig {
  /** Allowlist entries as given: exact label keys, or glob patterns (`*`, `?`) such as `org.label-schema.*`. */
  labelAllowlist: string[];
  /** Most label keys the glob entries may add, all together; keys matched beyond it are left out, counted and logged. */
  labelGlobMax: number;
  include?: RegExp;
  exclude?: RegExp;
}

declare module '../config.js' {
  interface Config {
    container: ContainerConfig;
  }
}

/** Whether an allowlist entry is a glob pattern rather than an exact label key. */
export function isLabelGlob(entry: string): boolean {
  return /[*?]/.test(entry);
}

/** A glob entry as a RegExp over whole label keys: `*` any run of characters (dots included), `?` one. */
export function labelGlob(entry: string): RegExp {
  const body = entry.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`, 's');
}

/** `--container.*`, the inventory's flags (registered by the containers collector module). */
export const inventoryOptions: ModuleOptions<'container'> = {
  section: 'container',
  flags: [
    {
      flags: '--container.label-allowlist <keys>',
      description: 'comma-separated Docker label keys exported as container_label_<key> on every per-container series; an entry with * or ? is a glob (org.label-schema.*) that adds every matching key the containers carry, up to --container.label-glob-max',
      defaultValue: DEFAULT_LABEL_ALLOWLIST.join(','),
    },
    { flags: '--container.label-glob-max <n>', description: 'most label keys the glob entries of --container.label-allowlist may add, all together; further keys are left out, logged and counted in docker_exporter_container_label_keys_dropped', defaultValue: '16' },
    { flags: '--container.include <regex>', description: 'export only containers whose name matches' },
    { flags: '--container.exclude <regex>', description: 'do not export containers whose name matches' },
  ],
  parse(values) {
    const include = values.regex('container.include');
    const exclude = values.regex('container.exclude');
    const labelAllowlist = [...new Set(values.list('container.label-allowlist'))];
    const labelGlobMax = values.integer('container.label-glob-max', 0, 1000);
    const byName = new Map<string, string>();
    for (const key of labelAllowlist) {
      // A glob's keys are known only once containers carry them; the inventory resolves their clashes.
      if (isLabelGlob(key)) continue;
      const labelName = labelNameFor(key);
      const other = byName.get(labelName);
      if (other !== undefined) {
        throw new ConfigError(`--container.label-allowlist: "${other}" and "${key}" both become the label ${labelName}; keep one of them`);
      }
      byName.set(labelName, key);
    }
    return { labelAllowlist, labelGlobMax, include, exclude };
  },
};

/** A container as every collector sees it: its inspect facts plus its Prometheus labels. */
export interface ContainerRecord extends ContainerInfo {
  /** `id`, `name`, `image` and one `container_label_<key>` per allowlisted key ('' when absent). */
  promLabels: Readonly<Record<string, string>>;
  /** `oom` events seen for this container since the exporter started. */
  oomEvents: number;
}

interface InventoryEvents {
  /** A container was added or its facts were refreshed (previous is undefined when new). */
  upsert: [record: ContainerRecord, previous: ContainerRecord | undefined];
  /** A container was removed, or stopped being exported (renamed out of the include filter). */
  remove: [record: ContainerRecord];
  /** A full list + inspect finished (at start and after every reconnect of the events stream). */
  synced: [];
  /** An image event (pull, tag, untag, …), passed on for inventory/image-refs.ts: one stream carries both. */
  image: [event: EngineEvent];
}

/** The container events that can change what inspect says; exec_* and the like are ignored. */
const REFRESH_ACTIONS = new Set([
  'create', 'start', 'die', 'stop', 'kill', 'oom', 'pause', 'unpause', 'restart', 'rename', 'update', 'health_status',
]);

/**
 * The engine sends `health_status` only when the status changes, but every probe (an exec) can
 * change the failing streak; the probe's result is stored just after its `exec_die`, hence the delay.
 */
const HEALTH_PROBE_SETTLE_MS = 250;

/** Destroyed ids remembered so that a late inspect answer cannot bring a container back. */
const TOMBSTONES_KEPT = 10_000;

/** `com.docker.compose.project` → `container_label_com_docker_compose_project`. */
export function labelNameFor(key: string): string {
  return `container_label_${key.replace(/[^a-zA-Z0-9_]/g, '_')}`;
}

/** Inspect requests in flight at once, for a full sync and for event bursts alike. */
const INSPECT_CONCURRENCY = 8;

/**
 * The one container inventory: list + inspect at start, kept current by the engine's container
 * events, and rebuilt from scratch after every reconnect of the events stream (events missed while
 * it was down cannot be trusted to be replayed). Only containers that pass --container.include and
 * --container.exclude are held.
 */
export class Inventory extends EventEmitter<InventoryEvents> {
  /** The exact allowlist keys, then the keys the globs matched (sorted), each with its label name. */
  private allowlist: Array<[key: string, labelName: string]>;
  private readonly exactKeys: Array<[key: string, labelName: string]>;
  private readonly globs: RegExp[];
  /** Keys a glob matched and that are exported, for the exporter's life (see learnLabelKeys). */
  private readonly globKeys = new Map<string, string>();
  /** Keys a glob matched and that are left out, with why: over --container.label-glob-max, or a label name already taken. */
  private readonly droppedKeys = new Map<string, 'limit' | 'clash'>();
  private readonly records = new Map<string, ContainerRecord>();
  private readonly health: LoopHealth;
  private readonly stream: EventStream;
  /** Per container: one inspect at a time, a burst of events about it coalesced into one more. */
  private readonly refreshing = new CoalescingRunner<string>(pLimit(INSPECT_CONCURRENCY), (id) => this.inspectOnce(id), () => this.stopped);
  /** oom events that arrived before the container's first inspect. */
  private readonly pendingOoms = new Map<string, number>();
  private readonly tombstones = new Set<string>();
  /** Containers not exported under include/exclude: only a rename can change that. */
  private excluded = new Set<string>();
  private readonly probeTimers = new Map<string, NodeJS.Timeout>();
  /** Bumped on every change of a record, so a sync knows what changed after its list was taken. */
  private version = 0;
  private readonly versions = new Map<string, number>();
  private syncing: Promise<void> | undefined;
  private syncAgain = false;
  /** Connection count of the events stream, and the connection the last successful sync followed. */
  private connection = 0;
  private syncedConnection = -1;
  private streamUp = false;
  private stopped = false;
  private readonly stopController = new AbortController();
  private lastErrorText: string | undefined;
  /**
   * Containers whose last inspect failed or answered garbage, with why: their facts (or, for a new
   * one, the container itself) may be missing, so the inventory is not current until each is read.
   */
  private readonly unread = new Map<string, string>();
  private unreadTimer: NodeJS.Timeout | undefined;
  private readonly unreadBackoff: Backoff;

  constructor(
    private readonly deps: {
      config: Config;
      docker: EngineApi;
      logger: Logger;
      metrics: ExporterMetrics;
      /** Delays between failed syncs and between reconnects (tests pass a fast one). */
      backoff?: () => Backoff;
      /** Where a sync reports its progress, for /healthz (tests that do not look may leave it out). */
      health?: LoopHealth;
    },
  ) {
    super();
    this.health = deps.health ?? new LoopHealth();
    this.setMaxListeners(50);
    this.unreadBackoff = deps.backoff?.() ?? new Backoff(500, 30_000);
    // Config has checked that no two exact keys become one label name.
    const entries = deps.config.container.labelAllowlist;
    this.exactKeys = entries.filter((e) => !isLabelGlob(e)).map((key) => [key, labelNameFor(key)]);
    this.globs = entries.filter(isLabelGlob).map(labelGlob);
    this.allowlist = this.exactKeys;
    if (this.globs.length > 0) for (const reason of ['limit', 'clash'] as const) deps.metrics.labelKeysDropped.set({ reason }, 0);
    this.stream = new EventStream(deps.docker, {
      // Image events ride along for the image reference tracker rather than open a second stream.
      filters: { type: ['container', 'image'] },
      source: 'inventory_events',
      metrics: deps.metrics,
      logger: deps.logger.child({ component: 'inventory' }),
      backoff: deps.backoff?.(),
    });
    this.stream.on('connected', () => {
      this.streamUp = true;
      this.lastErrorText = undefined;
      this.connection++;
      void this.resync();
    });
    this.stream.on('disconnected', (err) => {
      this.streamUp = false;
      this.lastErrorText = `events stream: ${err.message}`;
    });
    this.stream.on('event', (event) => this.onEvent(event));
  }

  /** Opens the events stream; the first full sync follows its connection. */
  start(): void {
    this.stream.start();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.stopController.abort();
    clearTimeout(this.unreadTimer);
    for (const timer of this.probeTimers.values()) clearTimeout(timer);
    this.probeTimers.clear();
    await this.stream.stop();
    await this.syncing;
  }

  /**
   * The label names of every per-container series, in order: `id`, `name`, `image`, the exact
   * allowlist keys, then the keys the globs matched. With globs it grows as containers bring new
   * matching keys; a collector reads it when it needs it, not once.
   */
  get labelNames(): string[] {
    return ['id', 'name', 'image', ...this.allowlist.map(([, n]) => n)];
  }

  get(id: string): ContainerRecord | undefined {
    return this.records.get(id);
  }

  /** Every exported container, in no particular order. */
  list(): ContainerRecord[] {
    return [...this.records.values()];
  }

  get size(): number {
    return this.records.size;
  }

  /**
   * True while the events stream is up, a full sync has completed since it (re)connected, and every
   * container has been read since it last changed.
   */
  get current(): boolean {
    return this.streamUp && this.syncedConnection === this.connection && this.unread.size === 0;
  }

  /** Why the inventory is not current, if it is not. */
  get lastError(): string | undefined {
    if (this.current) return undefined;
    if (this.lastErrorText !== undefined) return this.lastErrorText;
    if (!this.streamUp) return 'not synchronised with the engine yet';
    if (this.syncedConnection !== this.connection) return 'container inventory is synchronising with the engine';
    const [id, reason] = this.unread.entries().next().value!;
    const more = this.unread.size > 1 ? ` (and ${this.unread.size - 1} more)` : '';
    return `container ${id.slice(0, 12)} could not be read: ${reason}${more}`;
  }

  /** Whether a container name is exported under --container.include / --container.exclude. */
  exported(name: string): boolean {
    const { include, exclude } = this.deps.config.container;
    return (!include || include.test(name)) && !(exclude && exclude.test(name));
  }

  /**
   * List + inspect every container, and drop what the engine no longer has. Asked again while it
   * runs (a reconnect in the middle), it runs once more afterwards; failing, it retries with
   * backoff for as long as the events stream is up.
   */
  resync(): Promise<void> {
    if (this.syncing) {
      this.syncAgain = true;
      return this.syncing;
    }
    this.syncing = (async () => {
      const backoff = this.deps.backoff?.() ?? new Backoff(500, 30_000);
      try {
        do {
          this.syncAgain = false;
          const connection = this.connection;
          if (await this.syncOnce()) {
            this.syncedConnection = connection;
            this.lastErrorText = undefined;
            safeEmit(this, this.deps.logger, 'inventory', 'synced');
          } else if (this.streamUp && !this.stopped) {
            await sleep(backoff.next(), this.stopController.signal);
            this.syncAgain = true;
          }
        } while (this.syncAgain && this.streamUp && !this.stopped);
      } finally {
        this.syncing = undefined;
      }
    })();
    return this.syncing;
  }

  private async syncOnce(): Promise<boolean> {
    // Every request ends within --docker.timeout and up to INSPECT_CONCURRENCY run at once, so a
    // sync that shows no progress (the list, then each inspect) for twice that is stuck.
    const pass = this.health.begin('inventory sync', 2 * this.deps.config.docker.timeoutMs);
    try {
      return await this.syncPass(pass);
    } finally {
      pass.end();
    }
  }

  private async syncPass(pass: Pass): Promise<boolean> {
    const startedAt = this.version;
    let listed: ListedContainer[];
    try {
      // One entry of the wrong shape fails the whole list rather than being skipped: a container
      // missing from the list is dropped below, so skipping it would make it vanish (its series
      // gone, as if removed), while a failed sync keeps the last good inventory and says so.
      listed = parseContainerList(await this.deps.docker.get<unknown>('containers', { query: { all: true }, signal: this.stopController.signal }));
    } catch (err) {
      if (err instanceof PayloadError) this.deps.metrics.parseErrors.inc({ source: 'containers' });
      this.lastErrorText = `container list failed: ${(err as Error).message}`;
      this.deps.logger.warn({ err: (err as Error).message }, 'container inventory sync failed');
      return false;
    }
    const ids = new Set<string>();
    const excluded = new Set<string>();
    for (const { id, names } of listed) {
      // Names also holds link aliases (/other/alias); the container's own name has one slash.
      const own = names.find((n) => /^\/[^/]+$/.test(n)) ?? names[0] ?? '';
      if (this.exported(own.replace(/^\//, ''))) ids.add(id);
      // Unless renamed in (and inspected) since the list was taken.
      else if ((this.versions.get(id) ?? 0) <= startedAt) excluded.add(id);
    }
    this.excluded = excluded;
    for (const record of [...this.records.values()]) {
      // A record changed after the list was taken is newer than the list.
      if (!ids.has(record.id) && (this.versions.get(record.id) ?? 0) <= startedAt) this.drop(record.id);
    }
    // Unread containers the list leaves out are read too: gone (404) or excluded, they are dropped.
    pass.beat();
    await Promise.all([...new Set([...ids, ...this.unread.keys()])].map((id) => this.refresh(id).then(() => pass.beat())));
    return true;
  }

  private onEvent(event: EngineEvent): void {
    if (!this.stopped && event.type === 'image') safeEmit(this, this.deps.logger, 'inventory', 'image', event);
    if (this.stopped || event.type !== 'container' || !/^[0-9a-f]{64}$/.test(event.actorId)) return;
    // Podman's remove and exec_died are Docker's destroy and exec_die.
    const action = dockerAction(event.action);
    const id = event.actorId;
    if (action === 'destroy') {
      this.bury(id);
      this.drop(id);
      return;
    }
    if (this.excluded.has(id) && action !== 'rename') return;
    if (action === 'oom') {
      const record = this.records.get(id);
      if (record) record.oomEvents++;
      else this.pendingOoms.set(id, (this.pendingOoms.get(id) ?? 0) + 1);
    }
    if (REFRESH_ACTIONS.has(action)) void this.refresh(id);
    else if (action === 'exec_die' && (this.records.get(id)?.health ?? 'none') !== 'none') this.refreshAfterProbe(id, event.attributes.exitCode);
  }

  /**
   * After an exec of a health-checked container ends: re-read it only when the failing streak may
   * have changed. The engine keeps the streak at 0 after a passing probe, so an exit code of 0 on a
   * container whose streak is 0 changes nothing inspect would show (a status change comes with its
   * own health_status event). That is every probe of a healthy container, nearly all of them: at
   * 100 containers, 15 of them health-checked every 30 s, one inspect every 2 s before this. A
   * failing probe (its streak grows), a passing one after failures (it resets) and an exec_die
   * without an exit code (older engines) are re-read. An exec_die does not say whether it was a
   * probe: a `docker exec` is judged alike, and changes no health fact either way.
   */
  private refreshAfterProbe(id: string, exitCode: string | undefined): void {
    if (exitCode === '0' && this.records.get(id)?.failingStreak === 0) return;
    if (this.probeTimers.has(id)) return;
    this.probeTimers.set(
      id,
      setTimeout(() => {
        this.probeTimers.delete(id);
        void this.refresh(id);
      }, HEALTH_PROBE_SETTLE_MS),
    );
  }

  /**
   * Inspects one container and updates the inventory; coalesces bursts of events for it. Resolves
   * once the container's facts are at least as new as the call.
   */
  private refresh(id: string): Promise<void> {
    return this.refreshing.run(id);
  }

  private async inspectOnce(id: string): Promise<void> {
    if (this.stopped || this.tombstones.has(id)) return;
    let payload: unknown;
    try {
      payload = await this.deps.docker.get<unknown>('inspect', { id, signal: this.stopController.signal });
    } catch (err) {
      if (this.stopped || this.tombstones.has(id)) return;
      // Gone between list (or event) and inspect: simply not there any more.
      if (isNotFound(err)) this.drop(id);
      // The client counted it; what this container is now is unknown.
      else this.markUnread(id, (err as Error).message);
      return;
    }
    // Destroyed while the answer was on its way: that answer is older than the destroy event.
    if (this.stopped || this.tombstones.has(id)) return;
    let info: ContainerInfo;
    try {
      info = parseContainerInspect(payload);
      // Another container's facts (a proxy that mixed up answers) are not this one's.
      if (info.id !== id) throw new PayloadError(`inspect answered for ${info.id.slice(0, 12)}`);
    } catch (err) {
      if (err instanceof PayloadError) this.deps.metrics.parseErrors.inc({ source: 'inspect' });
      this.markUnread(id, (err as Error).message);
      return;
    }
    this.markRead(id);
    if (!this.exported(info.name)) {
      this.excluded.add(id);
      this.drop(id);
      return;
    }
    this.excluded.delete(id);
    const previous = this.records.get(id);
    const pendingOoms = this.pendingOoms.get(id) ?? 0;
    this.pendingOoms.delete(id);
    const relabel = this.learnLabelKeys(info.labels);
    const record: ContainerRecord = {
      ...info,
      promLabels: this.promLabelsOf(info, previous?.promLabels),
      oomEvents: (previous?.oomEvents ?? 0) + pendingOoms,
    };
    this.records.set(id, record);
    this.versions.set(id, ++this.version);
    safeEmit(this, this.deps.logger, 'inventory', 'upsert', record, previous);
    if (relabel) this.relabelAll(id);
  }

  /**
   * Adds the keys of `labels` that a glob matches and that are not exported yet; true when the label
   * set changed. Every series of a metric carries the same label set, so a key one container brings
   * becomes a label (empty where absent) on every container's series. Keys stay for the exporter's
   * life, even when the last container carrying them is gone: the label set then changes only when a
   * key is seen for the first time (at most --container.label-glob-max times), never back and forth
   * as containers come and go, which would end and restart every series each time. Keys are taken in
   * the order they are first seen, up to the limit; a key whose label name is already taken (by an
   * exact key, or a key that differs only in characters the sanitising replaces) is left out.
   */
  private learnLabelKeys(labels: Readonly<Record<string, string>>): boolean {
    if (this.globs.length === 0) return false;
    let changed = false;
    for (const key of Object.keys(labels).sort()) {
      if (this.globKeys.has(key) || this.droppedKeys.has(key) || !this.globs.some((g) => g.test(key))) continue;
      if (this.exactKeys.some(([k]) => k === key)) continue;
      const labelName = labelNameFor(key);
      const taken = this.allowlist.find(([, n]) => n === labelName);
      const reason = taken ? 'clash' : this.globKeys.size >= this.deps.config.container.labelGlobMax ? 'limit' : undefined;
      if (reason) {
        this.droppedKeys.set(key, reason);
        this.deps.metrics.labelKeysDropped.inc({ reason });
        this.deps.logger.warn(
          { key, labelName, ...(taken ? { exportedKey: taken[0] } : { limit: this.deps.config.container.labelGlobMax }) },
          taken
            ? `label key "${key}" matches --container.label-allowlist but its label ${labelName} is already "${taken[0]}"'s; left out`
            : `label key "${key}" matches --container.label-allowlist but the globs already added --container.label-glob-max=${this.deps.config.container.labelGlobMax} keys; left out`,
        );
        continue;
      }
      this.globKeys.set(key, labelName);
      // Exact keys first, in the order given; glob keys after them, sorted, whatever order they came in.
      this.allowlist = [...this.exactKeys, ...[...this.globKeys].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))];
      changed = true;
      this.deps.logger.info({ key, labelName }, `label key "${key}" matches --container.label-allowlist: every per-container series now carries ${labelName}`);
    }
    return changed;
  }

  /** Gives every record but `except` (already made with them) the current label set, as an update of its facts. */
  private relabelAll(except: string): void {
    for (const previous of [...this.records.values()]) {
      if (previous.id === except) continue;
      const record: ContainerRecord = { ...previous, promLabels: this.promLabelsOf(previous, previous.promLabels) };
      this.records.set(previous.id, record);
      safeEmit(this, this.deps.logger, 'inventory', 'upsert', record, previous);
    }
  }

  /**
   * The container's label set, frozen: the exposition caches a frozen labels object's text without
   * checking it again. The previous record's object is kept when nothing in it changed (a state
   * change, say), so that text and the label sets derived from it stay cached.
   */
  private promLabelsOf(info: ContainerInfo, previous: Readonly<Record<string, string>> | undefined): Readonly<Record<string, string>> {
    const labels: Record<string, string> = { id: info.id, name: info.name, image: info.image };
    for (const [key, labelName] of this.allowlist) labels[labelName] = info.labels[key] ?? '';
    if (previous && Object.keys(previous).length === Object.keys(labels).length && Object.keys(labels).every((k) => previous[k] === labels[k])) return previous;
    return Object.freeze(labels);
  }

  /** Remembers a destroyed id (container ids are never reused), forgetting the oldest beyond a bound. */
  private bury(id: string): void {
    this.excluded.delete(id);
    this.tombstones.add(id);
    if (this.tombstones.size > TOMBSTONES_KEPT) {
      const oldest = this.tombstones.values().next().value;
      if (oldest !== undefined) this.tombstones.delete(oldest);
    }
    const timer = this.probeTimers.get(id);
    if (timer) {
      clearTimeout(timer);
      this.probeTimers.delete(id);
    }
  }

  private drop(id: string): void {
    this.markRead(id);
    this.pendingOoms.delete(id);
    this.versions.delete(id);
    const record = this.records.get(id);
    if (!record) return;
    this.records.delete(id);
    safeEmit(this, this.deps.logger, 'inventory', 'remove', record);
  }

  /**
   * Keeps the container's last good facts (none for a new one), makes the inventory not current and
   * reads it again with backoff. Logged once per spell of unreadable containers, not per retry.
   */
  private markUnread(id: string, reason: string): void {
    if (this.unread.size === 0) this.deps.logger.warn({ id, err: reason }, 'container could not be read; keeping its last facts and retrying');
    else this.deps.logger.debug({ id, err: reason }, 'container could not be read');
    this.unread.set(id, reason);
    if (this.unreadTimer || this.stopped) return;
    this.unreadTimer = setTimeout(() => {
      this.unreadTimer = undefined;
      for (const unreadId of this.unread.keys()) void this.refresh(unreadId);
    }, this.unreadBackoff.next());
  }

  /** The container was read (or is gone): its facts are current again. */
  private markRead(id: string): void {
    if (!this.unread.delete(id) || this.unread.size > 0) return;
    this.unreadBackoff.reset();
    this.deps.logger.info('every container read again (or gone); the inventory is no longer held back');
  }
}
