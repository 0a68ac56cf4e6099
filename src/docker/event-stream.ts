import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { Backoff, sleep } from '../backoff.js';
import type { ExporterMetrics } from '../exporter-metrics.js';
import { parseEvent, type EngineEvent } from '../parse/event.js';
import type { EngineApi } from './client.js';
import { readNdjson } from './ndjson.js';
import { safeEmit } from '../helpers.js';

interface EventStreamEvents {
  /** The stream is (re)established; `reconnect` is false on the first connection only. */
  connected: [reconnect: boolean];
  /** The stream dropped or could not be opened. */
  disconnected: [error: Error];
  event: [event: EngineEvent];
}

/** `since` as the engine takes it: seconds with a nanosecond fraction. */
export function sinceParam(timeNano: bigint): string {
  const s = timeNano / 1_000_000_000n;
  const ns = timeNano % 1_000_000_000n;
  return `${s}.${ns.toString().padStart(9, '0')}`;
}

/** The local clock in nanoseconds since the epoch (millisecond precision). */
export function nowNano(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}

/**
 * How far before the newest delivered event a reconnect asks the engine to replay from. The engine
 * stamps an event before it publishes it, so two events can reach us slightly out of time order;
 * replaying this much more (and dropping what was already delivered) loses none of them.
 */
export const REPLAY_MARGIN_NS = 1_000_000_000n;

export interface EventStreamOptions {
  filters: Record<string, string[]>;
  /**
   * Where the history starts (engine time, ns): the first connection asks for events since then,
   * so nothing between start() and the connection is missed. Without it, the first connection sees
   * live events only, and a reconnect before any event replays from the moment it connected.
   */
  since?: bigint;
  /** `source` label of the parse error counter and of log lines. */
  source: string;
  metrics: ExporterMetrics;
  logger: Logger;
  /** Reconnect delays (tests pass a fast one). */
  backoff?: Backoff;
}

/**
 * One long-lived `GET /events` that survives the engine: when it drops, it reconnects with backoff
 * and `since` just before the last delivered event, and drops the replayed events it already
 * delivered, so that nothing the engine still holds is lost or delivered twice.
 */
export class EventStream extends EventEmitter<EventStreamEvents> {
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;
  /** The start of the history: no replay reaches before it. */
  private floorNano: bigint | undefined;
  /** The newest event time delivered. */
  private highNano: bigint | undefined;
  /** Identity → time of every event delivered within REPLAY_MARGIN_NS of highNano. */
  private readonly recent = new Map<string, bigint>();
  private prunedAt = 0n;
  private up = false;
  private lastErrorText: string | undefined;

  constructor(
    private readonly docker: EngineApi,
    private readonly opts: EventStreamOptions,
  ) {
    super();
    this.floorNano = opts.since;
  }

  /** Whether the stream is open right now. */
  get connected(): boolean {
    return this.up;
  }

  /** Why the stream is not open, if it is not. */
  get lastError(): string | undefined {
    return this.up ? undefined : (this.lastErrorText ?? 'events stream not connected yet');
  }

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  /** The `since` of the next connection, if any. */
  sinceNano(): bigint | undefined {
    if (this.highNano === undefined) return this.floorNano;
    const replayFrom = this.highNano - REPLAY_MARGIN_NS;
    return this.floorNano !== undefined && this.floorNano > replayFrom ? this.floorNano : replayFrom;
  }

  private async loop(): Promise<void> {
    const backoff = this.opts.backoff ?? new Backoff();
    let connections = 0;
    let warned = false;
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        const query: Record<string, unknown> = {};
        if (Object.keys(this.opts.filters).length > 0) query.filters = JSON.stringify(this.opts.filters);
        const since = this.sinceNano();
        if (since !== undefined) query.since = sinceParam(since);
        const res = await this.docker.stream('events', { query, signal });
        // Without a given start, history starts at the first connection (the local clock: exact
        // for an engine on this host, off by the clock skew for a remote one).
        this.floorNano ??= nowNano();
        if (connections > 0) {
          this.opts.metrics.eventsReconnects.inc();
          this.opts.logger.info({ since: query.since }, 'events stream reconnected');
        }
        this.up = true;
        warned = false;
        this.lastErrorText = undefined;
        safeEmit(this, this.opts.logger, 'events', 'connected', connections > 0);
        connections++;
        backoff.reset();
        await readNdjson(res, {
          onRecord: (value: unknown, line: string) => this.deliver(value, line),
          onBadRecord: (reason: 'malformed' | 'oversized', sample: string) => {
            this.opts.metrics.parseErrors.inc({ source: this.opts.source });
            this.opts.logger.debug({ reason, sample }, 'bad events record skipped');
          },
        });
        if (!signal.aborted) throw new Error('events stream ended');
      } catch (err) {
        this.up = false;
        if (signal.aborted) break;
        this.lastErrorText = `events stream: ${(err as Error).message}`;
        // Logged once per outage, not once per failed attempt.
        if (!warned) this.opts.logger.warn({ err: (err as Error).message }, 'events stream down; reconnecting');
        else this.opts.logger.debug({ err: (err as Error).message }, 'events stream still down');
        warned = true;
        safeEmit(this, this.opts.logger, 'events', 'disconnected', err as Error);
      }
      await sleep(backoff.next(), signal);
    }
    this.up = false;
  }

  private deliver(value: unknown, line: string): void {
    const event = parseEvent(value, line);
    if (!event) {
      this.opts.metrics.parseErrors.inc({ source: this.opts.source });
      this.opts.logger.debug({ sample: line.slice(0, 200) }, 'events record without type or action skipped');
      return;
    }
    // An event without a time cannot be matched against a replay; it is delivered as it comes.
    if (event.timeNano > 0n) {
      const key = `${event.timeNano}|${event.type}|${event.action}|${event.actorId}`;
      if (this.recent.has(key)) return;
      this.recent.set(key, event.timeNano);
      if (this.highNano === undefined || event.timeNano > this.highNano) this.highNano = event.timeNano;
      this.prune();
    }
    safeEmit(this, this.opts.logger, 'events', 'event', event);
  }

  /** Forgets delivered events older than the replay margin, at most once per margin of time. */
  private prune(): void {
    const high = this.highNano ?? 0n;
    if (high - this.prunedAt < REPLAY_MARGIN_NS) return;
    this.prunedAt = high;
    const oldest = high - REPLAY_MARGIN_NS;
    for (const [key, t] of this.recent) if (t < oldest) this.recent.delete(key);
  }
}
