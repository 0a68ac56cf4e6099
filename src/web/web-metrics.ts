import { Counter, type Registry } from 'prom-client';

/**
 * The web layer's own counters. The app registers them on its registry and hands them to the
 * WebConfigSource, so the web layer needs no registry of its own and knows nothing of collectors.
 */
export interface WebMetrics {
  configReloads: Counter<'result'>;
  passwordChecksRefused: Counter<'reason'>;
}

/** Declares the web layer's counters on `registry`, every label value at 0 so that alerts see the series from the start. */
export function createWebMetrics(registry: Registry): WebMetrics {
  const registers = [registry];
  const metrics: WebMetrics = {
    configReloads: new Counter({
      name: 'docker_exporter_web_config_reloads_total',
      help: 'Reads of a changed --web.config.file (or on SIGHUP): success when it took effect, failure when it was refused (a bad file, or one that would turn off basic auth, TLS or client-certificate checks) and the last good config stayed.',
      labelNames: ['result'],
      registers,
    }),
    passwordChecksRefused: new Counter({
      name: 'docker_exporter_web_password_checks_refused_total',
      help: 'Basic auth passwords not checked: queue_full when too many checks were waiting (answered 429), worker_failed when the bcrypt worker failed (answered 503).',
      labelNames: ['reason'],
      registers,
    }),
  };
  for (const result of ['success', 'failure']) metrics.configReloads.inc({ result }, 0);
  for (const reason of ['queue_full', 'worker_failed']) metrics.passwordChecksRefused.inc({ reason }, 0);
  return metrics;
}
