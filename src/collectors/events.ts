import { Counter } from 'prom-client';
import type { ModuleOptions } from '../config.js';
import { ConfigError } from '../errors.js';
import { EventStream, nowNano } from '../docker/event-stream.js';
import { baseAction } from '../parse/event.js';
import type { CollectorModule } from './collector.js';

/** The `events` section of Config, from the flag below. */
export interface EventsConfig {
  /** Docker event filters, key → values, as `docker events --filter` takes them. */
  filters: Record<string, string[]>;
}

declare module '../config.js' {
  interface Config {
    events: EventsConfig;
  }
}

/** `--events.filter`: which events are counted; checked at start even with the collector off. */
const eventsOptions: ModuleOptions<'events'> = {
  section: 'events',
  flags: [{ flags: '--events.filter <key=value>', description: 'count only events matching this Docker filter (repeatable; env: comma-separated)', repeatable: true }],
  parse(values) {
    const filters = eventFilters(values.all('events.filter'));
    checkEventFilters(filters);
    return { filters };
  },
};

/** The filter keys `GET /events` takes (the same as `docker events --filter`). */
export const EVENT_FILTER_KEYS = [
  'config', 'container', 'daemon', 'event', 'image', 'label', 'network', 'node', 'plugin', 'scope', 'secret', 'service', 'type', 'volume',
] as const;

/** The object types the engine reports events for. */
export const EVENT_TYPES = [
  'builder', 'config', 'container', 'daemon', 'image', 'network', 'node', 'plugin', 'secret', 'service', 'volume',
] as const;

const SCOPES = ['local', 'swarm'] as const;

/** `KEY=VALUE` items → key → values. */
function eventFilters(items: string[]): Record<string, string[]> {
  const filters: Record<string, string[]> = {};
  for (const item of items) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--events.filter: "${item}" is not KEY=VALUE (e.g. type=container)`);
    const key = item.slice(0, eq).trim();
    (filters[key] ??= []).push(item.slice(eq + 1).trim());
  }
  return filters;
}

/**
 * Checks --events.filter against what the engine understands: an unknown key would be ignored by
 * some engines (counting everything) and an unknown type would silently match nothing.
 */
export function checkEventFilters(filters: Record<string, string[]>): void {
  for (const [key, values] of Object.entries(filters)) {
    if (!(EVENT_FILTER_KEYS as readonly string[]).includes(key)) {
      throw new ConfigError(`--events.filter: unknown key "${key}" (use one of ${EVENT_FILTER_KEYS.join(', ')})`);
    }
    for (const value of values) {
      if (value === '') throw new ConfigError(`--events.filter: "${key}=" has no value`);
      if (key === 'type' && !(EVENT_TYPES as readonly string[]).includes(value)) {
        throw new ConfigError(`--events.filter: unknown type "${value}" (use one of ${EVENT_TYPES.join(', ')})`);
      }
      if (key === 'scope' && !(SCOPES as readonly string[]).includes(value)) {
        throw new ConfigError(`--events.filter: unknown scope "${value}" (use local or swarm)`);
      }
    }
  }
}

/**
 * `docker_events_total{type,action}` from one long-lived events stream of its own, counted from the
 * moment the collector starts; fails while that stream is down (the counts it has stay).
 */
export const eventsCollector: CollectorModule = {
  name: 'events',
  defaultEnabled: true,
  help: 'docker_events_total from the engine\'s event stream',
  options: eventsOptions,
  needsInventory: false,
  create({ config, docker, registry, logger, metrics }) {
    const filters = config.events.filters;
    const total = new Counter({
      name: 'docker_events_total',
      help: 'Events the Docker Engine reported since the exporter started, by object type and action (its detail after the colon cut off).',
      labelNames: ['type', 'action'],
      registers: [registry],
    });
    let stream: EventStream | undefined;

    return {
      start() {
        stream = new EventStream(docker, { filters, since: nowNano(), source: 'events', metrics, logger: logger.child({ component: 'events' }) });
        stream.on('event', (event) => total.inc({ type: event.type, action: baseAction(event.action) }));
        stream.start();
      },
      update() {
        if (!stream?.connected) throw new Error(stream?.lastError ?? 'events collector not started');
      },
      async stop() {
        await stream?.stop();
      },
    };
  },
};
