import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { Logger } from 'pino';
import type { CollectorModule } from './collectors/collector.js';
import { PING_TIMEOUT_MS } from './collectors/engine.js';
import { COLLECTORS } from './collectors/index.js';
import type { Config } from './config.js';
import { DockerClient } from './docker/client.js';
import { createExporterMetrics } from './exporter-metrics.js';
import { Inventory } from './inventory/inventory.js';
import { LoopHealth } from './loop-health.js';
import { registerOpenFds } from './open-fds.js';
import { Orchestrator } from './orchestrator.js';
import { REVISION, VERSION } from './version.js';
import { startWebServer, type WebServer } from './web/server.js';
import { WebConfigSource } from './web/web-config-source.js';
import { createWebMetrics } from './web/web-metrics.js';

/** prom-client defaults that are gauges named `_total`, which `promtool check metrics` rejects. */
const LINT_FAILING_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

export interface App {
  registry: Registry;
  docker: DockerClient;
  inventory: Inventory;
  /** Starts collectors and the web server; resolves with the bound port. */
  start(): Promise<{ port: number }>;
  stop(): Promise<void>;
}

/**
 * Wires one exporter instance: its own registry, engine client, inventory, collectors and web server.
 * Throws ConfigError (WebConfigError) for a --web.config.file it cannot use.
 */
export function createApp(config: Config, logger: Logger, modules: readonly CollectorModule[] = COLLECTORS): App {
  const registry = new Registry();
  // prom-client samples the event loop's delay every 10 ms by default: 100 wake-ups a second, which
  // on a 2-core VM cost ~0.6 % of a core with nothing else to do (measured with every collector
  // off), twice the exporter's whole budget. Once a second still shows a stalled loop.
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: 1000 });
  for (const name of LINT_FAILING_DEFAULTS) registry.removeSingleMetric(name);
  registerOpenFds(registry);
  new Gauge({
    name: 'docker_exporter_build_info',
    help: 'The exporter\'s version, revision and Node.js version; always 1.',
    labelNames: ['version', 'revision', 'nodejs_version'],
    registers: [registry],
  }).set({ version: VERSION, revision: REVISION, nodejs_version: process.versions.node }, 1);

  const metrics = createExporterMetrics(registry);
  const webMetrics = createWebMetrics(registry);
  // Read once, here, before anything starts, so a bad file ends the program with its one error line
  // only; the web server serves from this source, which re-reads the file when it changes.
  const webConfig = config.web.configFile ? new WebConfigSource(config.web.configFile, logger, { metrics: webMetrics }) : undefined;
  const docker = new DockerClient(config.docker, metrics, logger.child({ component: 'docker' }));
  const health = new LoopHealth();
  const inventory = new Inventory({ config, docker, logger, metrics, health });
  const orchestrator = new Orchestrator(modules, config.collectors, { config, docker, inventory, registry, logger, metrics, health }, logger);
  // The inventory is shared: it runs when any collector that reads it runs.
  const needsInventory = modules.some((m) => m.needsInventory && config.collectors[m.name]);
  let web: WebServer | undefined;

  async function ready(): Promise<{ ready: boolean; detail: string }> {
    try {
      await docker.get('ping', { timeoutMs: Math.min(config.docker.timeoutMs, PING_TIMEOUT_MS) });
      return { ready: true, detail: `engine API ${docker.apiVersion ?? '?'} at ${config.docker.host}` };
    } catch (err) {
      return { ready: false, detail: `engine at ${config.docker.host} does not answer: ${(err as Error).message}` };
    }
  }

  return {
    registry,
    docker,
    inventory,
    async start() {
      logger.info({ version: VERSION, collectors: orchestrator.names, docker: config.docker.host, statsMode: config.stats.mode }, 'starting docker-exporter');
      if (needsInventory) inventory.start();
      orchestrator.start();
      web = await startWebServer(
        { ...config.web, version: VERSION, logger },
        { metrics: (format) => orchestrator.render(format), ready, live: () => health.report() },
        webConfig,
      );
      return { port: web.port };
    },
    async stop() {
      // The server closes the web config's password worker; without a server, nothing else would.
      await (web ? web.close() : webConfig?.close());
      await Promise.all([orchestrator.stop(), inventory.stop()]);
    },
  };
}
