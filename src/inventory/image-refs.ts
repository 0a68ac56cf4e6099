import pLimit from 'p-limit';
import type { Logger } from 'pino';
import { Backoff } from '../backoff.js';
import type { EngineApi } from '../docker/client.js';
import { isNotFound } from '../docker/errors.js';
import type { ExporterMetrics } from '../exporter-metrics.js';
import { CoalescingRunner, DistinctFailures } from '../helpers.js';
import { baseAction } from '../parse/event.js';
import { PayloadError } from '../parse/guards.js';
import { parseImageId } from '../parse/image.js';
import type { ContainerRecord, Inventory } from './inventory.js';

/**
 * The image actions after which a reference may name another image. Every other image action
 * (push, save, inspect) changes no name. `prune` is listed for engines that send it besides the
 * per-image `delete`s, `remove` for Podman, whose compat API reports a removal so.
 */
export const REFERENCE_ACTIONS = new Set(['pull', 'tag', 'untag', 'delete', 'load', 'import', 'prune', 'remove']);

/** An image id without its algorithm, so that `sha256:ab…` and `ab…` (an engine that leaves it out) compare equal. */
const bareId = (id: string): string => id.replace(/^sha256:/, '');

/** Image inspects in flight at once: a reference resolves in a few ms, and a burst must not crowd out the inventory's. */
const RESOLVE_CONCURRENCY = 4;

/**
 * Whether `ref` can only ever name the image the container runs: a reference pinned by digest
 * (`name@sha256:…`), or the image's id itself, whole or a prefix of it (`docker run 3f57d9401f8d`).
 */
export function isPinned(ref: string, imageId: string): boolean {
  if (ref.includes('@')) return true;
  const hex = /^(?:sha256:)?([0-9a-f]{12,64})$/.exec(ref)?.[1];
  return hex !== undefined && bareId(imageId).startsWith(hex);
}

/**
 * What each image reference containers were created from (`Config.Image`) resolves to locally now,
 * so that a container can be told to run another image than its reference names
 * (`docker_container_image_outdated`). Each distinct reference is inspected once when a container
 * with it appears, and all again after an image event that can move a name (REFERENCE_ACTIONS) and
 * after every resync of the inventory (events missed while its stream was down). All are
 * re-resolved rather than the one an event names: an event names the image by id and one of its
 * names in whichever spelling the engine keeps (`docker.io/library/x:latest` for `x`), and
 * resolving the few distinct references of a host is cheap. Never `/images/json`: with the
 * containerd image store that list costs the engine about a second of CPU (moby#53077).
 */
export class ImageRefs {
  /** Reference → image id, or null when nothing local has that name (untagged, deleted, never pulled). */
  private readonly resolved = new Map<string, string | null>();
  /** Container id → the reference it was created from, and how many containers use each reference. */
  private readonly refOf = new Map<string, string>();
  private readonly users = new Map<string, number>();
  /** Per reference: one resolve at a time, asks while it runs coalesced into one more. */
  private readonly resolving = new CoalescingRunner<string>(pLimit(RESOLVE_CONCURRENCY), (ref) => this.resolveOnce(ref), () => this.stopped);
  /** References whose last resolve failed (not a 404), retried with backoff. */
  private readonly failed = new Set<string>();
  private retryTimer: NodeJS.Timeout | undefined;
  private readonly retry: Backoff;
  private readonly failures = new DistinctFailures();
  private readonly abort = new AbortController();
  private stopped = false;
  private readonly listeners: Array<() => void> = [];

  constructor(
    private readonly deps: {
      docker: EngineApi;
      inventory: Inventory;
      logger: Logger;
      metrics: ExporterMetrics;
      /** Delays between retries of a failed resolve (tests pass a fast one). */
      backoff?: Backoff;
    },
  ) {
    this.retry = deps.backoff ?? new Backoff(1_000, 60_000);
  }

  /** Follows the inventory; the references of the containers it holds already are resolved now. */
  start(): void {
    const inv = this.deps.inventory;
    const onUpsert = (r: ContainerRecord): void => this.track(r);
    const onRemove = (r: ContainerRecord): void => this.untrack(r.id);
    const onImage = (e: { action: string }): void => {
      if (REFERENCE_ACTIONS.has(baseAction(e.action))) this.resolveAll();
    };
    // The first sync's references are resolved as they appear, after the stream was up; every
    // later sync follows a reconnect, and image events of the gap may be lost.
    let syncs = inv.current ? 1 : 0;
    const onSynced = (): void => {
      if (syncs++ > 0) this.resolveAll();
    };
    inv.on('upsert', onUpsert).on('remove', onRemove).on('image', onImage).on('synced', onSynced);
    this.listeners.push(() => inv.off('upsert', onUpsert).off('remove', onRemove).off('image', onImage).off('synced', onSynced));
    for (const r of inv.list()) this.track(r);
  }

  stop(): void {
    this.stopped = true;
    this.abort.abort();
    clearTimeout(this.retryTimer);
    for (const off of this.listeners.splice(0)) off();
  }

  /**
   * 1 when the container's reference now names another image than the one it runs, 0 when it
   * names that one (or is pinned to it), undefined when that cannot be said: not resolved yet, or
   * the reference names no local image any more. In that last case the next `docker run` of it
   * would pull whatever the registry holds, which the exporter cannot know without asking the
   * registry; a value that cannot be had is left out, never guessed.
   */
  outdated(r: ContainerRecord): 0 | 1 | undefined {
    if (r.image === '' || r.imageId === '') return undefined;
    if (isPinned(r.image, r.imageId)) return 0;
    const id = this.resolved.get(r.image);
    if (id === undefined || id === null) return undefined;
    return bareId(id) === bareId(r.imageId) ? 0 : 1;
  }

  /** Settles once every resolve queued so far has finished (for tests). */
  async idle(): Promise<void> {
    while (this.resolving.size > 0) await new Promise((resolve) => setTimeout(resolve, 5));
  }

  private track(r: ContainerRecord): void {
    const before = this.refOf.get(r.id);
    if (before === r.image) return;
    if (before !== undefined) this.untrack(r.id);
    if (r.image === '' || isPinned(r.image, r.imageId)) return;
    this.refOf.set(r.id, r.image);
    const n = this.users.get(r.image) ?? 0;
    this.users.set(r.image, n + 1);
    if (n === 0) this.resolve(r.image);
  }

  private untrack(id: string): void {
    const ref = this.refOf.get(id);
    if (ref === undefined) return;
    this.refOf.delete(id);
    const n = (this.users.get(ref) ?? 1) - 1;
    if (n > 0) {
      this.users.set(ref, n);
      return;
    }
    this.users.delete(ref);
    this.resolved.delete(ref);
    this.failed.delete(ref);
  }

  private resolveAll(): void {
    for (const ref of this.users.keys()) this.resolve(ref);
  }

  /** Inspects `ref`; coalesces: asked again while in flight, it runs once more afterwards. */
  private resolve(ref: string): void {
    if (!this.stopped) void this.resolving.run(ref);
  }

  private async resolveOnce(ref: string): Promise<void> {
    if (this.stopped || !this.users.has(ref)) return;
    let id: string | null;
    try {
      id = parseImageId(await this.deps.docker.get<unknown>('image', { id: ref, signal: this.abort.signal }));
    } catch (err) {
      if (this.stopped) return;
      if (isNotFound(err)) {
        id = null;
      } else {
        // The client counted a failed request; a garbage answer is counted here. The last known
        // id is kept (an engine hiccup is not a re-tag) and the reference is asked again later.
        if (err instanceof PayloadError) this.deps.metrics.parseErrors.inc({ source: 'image' });
        const message = (err as Error).message;
        if (this.failures.isNew(ref, message)) this.deps.logger.warn({ ref, err: message }, 'image reference could not be resolved; retrying');
        this.failed.add(ref);
        this.scheduleRetry();
        return;
      }
    }
    if (!this.users.has(ref)) return;
    if (this.failures.clear(ref)) this.deps.logger.info({ ref }, 'image reference resolved again');
    this.failed.delete(ref);
    if (this.failed.size === 0) this.retry.reset();
    this.resolved.set(ref, id);
  }

  private scheduleRetry(): void {
    if (this.retryTimer || this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.retryTimer = undefined;
      for (const ref of this.failed) this.resolve(ref);
    }, this.retry.next());
  }
}
