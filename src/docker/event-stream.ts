import { EventEmitter } from 'node:events';
import type { Logger } from 'pino';
import { Backoff, sleep } from '../backoff.js';
import type { ExporterMetrics } from '../exporter-metrics.js';
import { parseEvent, type EngineEvent } from '../parse/event.js';
import type { DockerClient } from './client.js';
import { readNdjson } from './ndjson.js';

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

/**
 * One long-lived `GET /events` that survives the engine: when it drops it reconnects with backoff
 * and `since` = the last event's exact time, and drops the replayed events it already delivered,
 * so that nothing the engine still holds is lost or delivered twice.
 */
export class EventStream extends EventEmitter<EventStreamEvents> {
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;
  private lastNano: bigint | undefined;
  /** Keys of the events delivered at exactly `lastNano`, to drop them when `since` replays them. */
  private atLastNano = new Set<string>();

  constructor(
    private readonly docker: DockerClient,
    private readonly opts: {
      filters: Record<string, string[]>;
      /** `source` label of the parse error counter and of log lines. */
      source: string;
      metrics: ExporterMetrics;
      logger: Logger;
    },
  ) {
    super();
  }

  start(): void {
    this.running ??= this.loop();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.running;
  }

  private async loop(): Promise<void> {
    const backoff = new Backoff();
    let connections = 0;
    const signal = this.abort.signal;
    while (!signal.aborted) {
      try {
        const query: Record<string, unknown> = {};
        if (Object.keys(this.opts.filters).length > 0) query.filters = JSON.stringify(this.opts.filters);
        if (this.lastNano !== undefined) query.since = sinceParam(this.lastNano);
        const res = await this.docker.stream('/events', '/events', { query, signal });
        if (connections > 0) this.opts.metrics.eventsReconnects.inc();
        this.emit('connected', connections > 0);
        connections++;
        backoff.reset();
        await readNdjson(res, {
          onRecord: (value, line) => this.deliver(value, line),
          onBadRecord: (reason, sample) => {
            this.opts.metrics.parseErrors.inc({ source: this.opts.source });
            this.opts.logger.debug({ reason, sample }, 'bad events record skipped');
          },
        });
        if (!signal.aborted) throw new Error('events stream ended');
      } catch (err) {
        if (signal.aborted) break;
        this.opts.logger.warn({ err: (err as Error).message }, 'events stream dropped; reconnecting');
        this.emit('disconnected', err as Error);
      }
      await sleep(backoff.next(), signal);
    }
  }

  private deliver(value: unknown, line: string): void {
    const event = parseEvent(value, line);
    if (!event) {
      this.opts.metrics.parseErrors.inc({ source: this.opts.source });
      this.opts.logger.debug({ sample: line.slice(0, 200) }, 'events record without type or action skipped');
      return;
    }
    const key = `${event.type}|${event.action}|${event.actorId}`;
    if (this.lastNano !== undefined) {
      if (event.timeNano < this.lastNano) return;
      if (event.timeNano === this.lastNano && this.atLastNano.has(key)) return;
    }
    if (event.timeNano !== this.lastNano) {
      this.lastNano = event.timeNano;
      this.atLastNano = new Set();
    }
    this.atLastNano.add(key);
    this.emit('event', event);
  }
}
