import { readdirSync, statSync } from 'node:fs';
import { Gauge, type Registry } from 'prom-client';

/**
 * `process_open_fds`, in place of prom-client's, which lists /proc/self/fd at every scrape: 0.7–1.7 µs
 * an entry, and the cgroupfs stats source keeps ~15 files a container open, so at 1,000 containers
 * that listing was ~20 ms of every scrape (measured: 2.1 ms for 3,000 fds). Since Linux 6.2 a
 * `stat` of /proc/<pid>/fd gives the count as its size (7 µs whatever the count); older kernels
 * say 0 there, and get the listing as before. The same name, help and value as prom-client's.
 */
export function registerOpenFds(registry: Registry, dir = '/proc/self/fd'): void {
  if (process.platform !== 'linux') return;
  registry.removeSingleMetric('process_open_fds');
  new Gauge({
    name: 'process_open_fds',
    help: 'Number of open file descriptors.',
    registers: [registry],
    collect() {
      const n = openFds(dir);
      if (n !== undefined) this.set(n);
    },
  });
}

/** The open file descriptors of the process whose fd directory is `dir`; undefined when it cannot tell. */
export function openFds(dir: string): number | undefined {
  try {
    const size = statSync(dir).size;
    if (size > 0) return size;
    // The listing opens the directory itself: not one of the process's own.
    return readdirSync(dir).length - 1;
  } catch {
    return undefined;
  }
}
