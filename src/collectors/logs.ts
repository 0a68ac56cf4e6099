import fs from 'node:fs/promises';
import path from 'node:path';
import { Counter } from 'prom-client';
import { SeriesMetric } from '../exposition.js';
import { DistinctFailures, setIfDefined } from '../helpers.js';
import type { ContainerRecord } from '../inventory/inventory.js';
import type { CollectorModule } from './collector.js';

/** The log drivers that write a file on the host the exporter can measure. */
export const FILE_LOG_DRIVERS = new Set(['json-file', 'local']);

/** Why a log file could not be measured: the `reason` label of the failure counter. */
export type LogFailure = 'missing' | 'denied' | 'error';

/** A stat error's reason: missing (not there, or not mounted), denied (no read access to the folder), or another error. */
export function failureOf(err: unknown): LogFailure {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT' || code === 'ENOTDIR') return 'missing';
  if (code === 'EACCES' || code === 'EPERM') return 'denied';
  return 'error';
}

/** What to do about each failure, for the one log line per spell of it. */
const HINTS: Record<LogFailure, string> = {
  missing: 'mount the engine\'s containers folder (e.g. /var/lib/docker/containers) read-only at the same path under --path.rootfs',
  denied: 'the folders are root-only (0710, local-logs 0700): run as root or grant CAP_DAC_READ_SEARCH',
  error: 'see the error',
};

/**
 * `docker_container_log_size_bytes`: the size of each container's log file (json-file and local
 * drivers), stat'ed under --path.rootfs at every scrape. Off by default: it needs the engine's
 * root-only containers folder mounted and readable, which the exporter otherwise never needs.
 * Only the file being written is measured, not the rotated ones (`-json.log.1`, `container.log.1.gz`):
 * those are bounded by the container's own max-size × max-file, while the file that grows without
 * bound, the one worth an alert, is the current one of a container without rotation (json-file's
 * default). A file that cannot be read loses its series and is counted; the others are unaffected.
 */
export const logsCollector: CollectorModule = {
  name: 'logs',
  defaultEnabled: false,
  help: 'size of each container\'s log file (json-file and local drivers), read under --path.rootfs; needs the engine\'s containers folder',
  needsInventory: true,
  create({ registry, inventory, config, logger }) {
    const registers = [registry];
    const size = new SeriesMetric({
      type: 'gauge',
      name: 'docker_container_log_size_bytes',
      help: 'Size of the log file the container\'s json-file or local log driver is writing (rotated files not included), in bytes.',
      labelNames: inventory.labelNames,
      registers,
    });
    const failures = new Counter({
      name: 'docker_exporter_log_size_failures_total',
      help: 'Times a container\'s log file could not be measured, by reason: missing (not there or not mounted), denied (no read access) or error.',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of ['missing', 'denied', 'error'] as const) failures.inc({ reason }, 0);
    const logged = new DistinctFailures();
    const log = logger.child({ collector: 'logs' });

    const measure = async (r: ContainerRecord, seen: Set<LogFailure>): Promise<number | undefined> => {
      const file = path.join(config.path.rootfs, r.logPath);
      try {
        return (await fs.stat(file)).size;
      } catch (err) {
        const reason = failureOf(err);
        failures.inc({ reason });
        seen.add(reason);
        // Once per reason until a file is read again, not once per container per scrape.
        if (logged.isNew(reason, reason)) log.warn({ file, err: (err as Error).message, hint: HINTS[reason] }, 'container log file could not be measured');
        else log.debug({ file, err: (err as Error).message }, 'container log file could not be measured');
      }
    };

    return {
      async update() {
        const seen = new Set<LogFailure>();
        size.beginRefill();
        try {
          const measured = inventory.list().filter((r) => FILE_LOG_DRIVERS.has(r.logDriver) && r.logPath !== '');
          const sizes = await Promise.all(measured.map((r) => measure(r, seen)));
          // Set in the inventory's order, not as the stats complete: the same order every scrape.
          measured.forEach((r, i) => setIfDefined(size, r.promLabels, sizes[i]));
        } finally {
          size.endRefill();
        }
        // A spell of a failure ends with the first scrape without it.
        for (const reason of ['missing', 'denied', 'error'] as const) if (!seen.has(reason) && logged.clear(reason)) log.info({ reason }, 'container log files no longer fail so');
      },
    };
  },
};
