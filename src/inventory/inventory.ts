import { EventEmitter } from 'node:events';
import pLimit from 'p-limit';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import { isNotFound, type DockerClient } from '../docker/client.js';
import { EventStream } from '../docker/event-stream.js';
import type { ExporterMetrics } from '../exporter-metrics.js';
import { parseContainerInspect, type ContainerInfo } from '../parse/container.js';
import { baseAction, type EngineEvent } from '../parse/event.js';
import { arr, obj, str } from '../parse/guards.js';

/** A container as every collector sees it: its inspect facts plus its Prometheus labels. */
export interface ContainerRecord extends ContainerInfo {
  /** `id`, `name`, `image` and one `container_label_<key>` per allowlisted key ('' when absent). */
  promLabels: Record<string, string>;
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
}

/** The container events that can change what inspect says; exec_* and the like are ignored. */
const REFRESH_ACTIONS = new Set([
  'create', 'start', 'die', 'stop', 'kill', 'oom', 'pause', 'unpause', 'restart', 'rename', 'update', 'health_status',
]);

/** `com.docker.compose.project` → `container_label_com_docker_compose_project`. */
export function labelNameFor(key: string): string {
  return `container_label_${key.replace(/[^a-zA-Z0-9_]/g, '_')}`;
}

/** Inspect requests in flight at once during a full sync. */
const SYNC_CONCURRENCY = 8;

/**
 * The one container inventory: list + inspect at start, kept current by the engine's container
 * events, and rebuilt from scratch after every reconnect of the events stream (events missed while
 * it was down cannot be trusted to be replayed). Only containers that pass --container.include and
 * --container.exclude are held.
 */
export class Inventory extends EventEmitter<InventoryEvents> {
  /** The label names of every per-container series, in order. */
  readonly labelNames: string[];
  private readonly allowlist: Array<[key: string, labelName: string]>;
  private readonly records = new Map<string, ContainerRecord>();
  private readonly stream: EventStream;
  /** Per container: a refresh in flight, and whether another is owed after it. */
  private readonly refreshing = new Map<string, { again: boolean }>();
  /** oom events that arrived before the container's first inspect. */
  private readonly pendingOoms = new Map<string, number>();
  private syncing: Promise<void> | undefined;
  private syncedOnce = false;
  private streamUp = false;
  private lastErrorText: string | undefined;

  constructor(
    private readonly deps: {
      config: Config;
      docker: DockerClient;
      logger: Logger;
      metrics: ExporterMetrics;
    },
  ) {
    super();
    this.setMaxListeners(50);
    const seen = new Set(['id', 'name', 'image']);
    this.allowlist = [];
    for (const key of deps.config.container.labelAllowlist) {
      const labelName = labelNameFor(key);
      if (seen.has(labelName)) continue;
      seen.add(labelName);
      this.allowlist.push([key, labelName]);
    }
    this.labelNames = ['id', 'name', 'image', ...this.allowlist.map(([, n]) => n)];
    this.stream = new EventStream(deps.docker, {
      filters: { type: ['container'] },
      source: 'inventory_events',
      metrics: deps.metrics,
      logger: deps.logger.child({ component: 'inventory' }),
    });
    this.stream.on('connected', () => {
      this.streamUp = true;
      void this.resync();
    });
    this.stream.on('disconnected', (err) => {
      this.streamUp = false;
      this.lastErrorText = err.message;
    });
    this.stream.on('event', (event) => this.onEvent(event));
  }

  /** Opens the events stream; the first full sync follows its connection. */
  start(): void {
    this.stream.start();
  }

  async stop(): Promise<void> {
    await this.stream.stop();
    await this.syncing;
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

  /** True while the events stream is up and a full sync has completed since it connected. */
  get current(): boolean {
    return this.streamUp && this.syncedOnce && this.syncing === undefined;
  }

  /** Why the inventory is not current, if it is not. */
  get lastError(): string | undefined {
    return this.current ? undefined : (this.lastErrorText ?? 'not synchronised with the engine yet');
  }

  /** Whether a container name is exported under --container.include / --container.exclude. */
  exported(name: string): boolean {
    const { include, exclude } = this.deps.config.container;
    return (!include || include.test(name)) && !(exclude && exclude.test(name));
  }

  /** List + inspect every container; drops what the engine no longer has. */
  resync(): Promise<void> {
    if (this.syncing) return this.syncing;
    this.syncing = (async () => {
      try {
        const listed = arr(await this.deps.docker.get<unknown>('/containers/json', '/containers/json', { query: { all: true } })) ?? [];
        const ids = new Set<string>();
        for (const item of listed) {
          const id = str(obj(item)?.Id);
          const names = arr(obj(item)?.Names);
          const name = str(names?.[0])?.replace(/^\//, '') ?? '';
          if (id && this.exported(name)) ids.add(id);
          else if (!id) this.countBad('list entry without Id');
        }
        for (const record of this.records.values()) if (!ids.has(record.id)) this.drop(record.id);
        const limit = pLimit(SYNC_CONCURRENCY);
        await Promise.all([...ids].map((id) => limit(() => this.refresh(id))));
        this.syncedOnce = true;
        this.lastErrorText = undefined;
        this.emit('synced');
      } catch (err) {
        this.lastErrorText = `container list failed: ${(err as Error).message}`;
        this.deps.logger.warn({ err: (err as Error).message }, 'container inventory sync failed');
      } finally {
        this.syncing = undefined;
      }
    })();
    return this.syncing;
  }

  private onEvent(event: EngineEvent): void {
    if (event.type !== 'container' || !/^[0-9a-f]{64}$/.test(event.actorId)) return;
    const action = baseAction(event.action);
    const id = event.actorId;
    if (action === 'destroy') {
      this.drop(id);
      return;
    }
    if (action === 'oom') {
      const record = this.records.get(id);
      if (record) record.oomEvents++;
      else this.pendingOoms.set(id, (this.pendingOoms.get(id) ?? 0) + 1);
    }
    if (REFRESH_ACTIONS.has(action)) void this.refresh(id);
  }

  /** Inspects one container and updates the inventory; coalesces bursts of events for it. */
  private async refresh(id: string): Promise<void> {
    const inFlight = this.refreshing.get(id);
    if (inFlight) {
      inFlight.again = true;
      return;
    }
    const slot = { again: false };
    this.refreshing.set(id, slot);
    try {
      do {
        slot.again = false;
        await this.inspectOnce(id);
      } while (slot.again);
    } finally {
      this.refreshing.delete(id);
    }
  }

  private async inspectOnce(id: string): Promise<void> {
    let payload: unknown;
    try {
      payload = await this.deps.docker.get<unknown>('/containers/{id}/json', `/containers/${id}/json`);
    } catch (err) {
      // Gone between list (or event) and inspect: simply not there any more.
      if (isNotFound(err)) this.drop(id);
      else this.deps.logger.debug({ id, err: (err as Error).message }, 'container inspect failed');
      return;
    }
    let info: ContainerInfo;
    try {
      info = parseContainerInspect(payload);
    } catch (err) {
      this.countBad((err as Error).message);
      return;
    }
    if (!this.exported(info.name)) {
      this.drop(id);
      return;
    }
    const previous = this.records.get(id);
    const pending = this.pendingOoms.get(id) ?? 0;
    this.pendingOoms.delete(id);
    const record: ContainerRecord = {
      ...info,
      promLabels: this.promLabelsOf(info),
      oomEvents: (previous?.oomEvents ?? 0) + pending,
    };
    this.records.set(id, record);
    this.emit('upsert', record, previous);
  }

  private promLabelsOf(info: ContainerInfo): Record<string, string> {
    const labels: Record<string, string> = { id: info.id, name: info.name, image: info.image };
    for (const [key, labelName] of this.allowlist) labels[labelName] = info.labels[key] ?? '';
    return labels;
  }

  private drop(id: string): void {
    this.pendingOoms.delete(id);
    const record = this.records.get(id);
    if (!record) return;
    this.records.delete(id);
    this.emit('remove', record);
  }

  private countBad(reason: string): void {
    this.deps.metrics.parseErrors.inc({ source: 'inspect' });
    this.deps.logger.debug({ reason }, 'unusable container payload skipped');
  }
}
