import { Counter, Gauge, type Registry } from 'prom-client';

/**
 * The exporter's own counters that more than one module increments. Each collector's own metrics
 * live in its file; these are here because the Docker client, the stream reader and several
 * parsers all feed them.
 */
export interface ExporterMetrics {
  dockerRequests: Counter<'endpoint'>;
  dockerRequestFailures: Counter<'endpoint'>;
  /** Records from the engine that could not be used (malformed JSON, wrong shape, oversized line). */
  parseErrors: Counter<'source'>;
  eventsReconnects: Counter;
  /** Label keys a glob of --container.label-allowlist matched but that are not exported (the inventory's). */
  labelKeysDropped: Gauge<'reason'>;
}

export function createExporterMetrics(registry: Registry): ExporterMetrics {
  const registers = [registry];
  return {
    dockerRequests: new Counter({
      name: 'docker_exporter_docker_requests_total',
      help: 'Requests sent to the Docker Engine API, by route template.',
      labelNames: ['endpoint'],
      registers,
    }),
    dockerRequestFailures: new Counter({
      name: 'docker_exporter_docker_request_failures_total',
      help: 'Requests to the Docker Engine API that failed (connection error, timeout or error status), by route template.',
      labelNames: ['endpoint'],
      registers,
    }),
    parseErrors: new Counter({
      name: 'docker_exporter_parse_errors_total',
      help: 'Records received from the Docker Engine that could not be parsed or had an unusable shape, by source.',
      labelNames: ['source'],
      registers,
    }),
    eventsReconnects: new Counter({
      name: 'docker_exporter_events_reconnects_total',
      help: 'Times an events stream from the Docker Engine was re-established after it dropped.',
      registers,
    }),
    labelKeysDropped: new Gauge({
      name: 'docker_exporter_container_label_keys_dropped',
      help: 'Label keys matched by a glob of --container.label-allowlist but not exported: reason "limit" (past --container.label-glob-max) or "clash" (the label name is another key\'s).',
      labelNames: ['reason'],
      registers,
    }),
  };
}
