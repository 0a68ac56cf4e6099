import { Gauge } from 'prom-client';
import { ConfigError, type ModuleOptions } from '../config.js';
import { EngineStatus } from '../docker/errors.js';
import type { RouteName } from '../docker/routes.js';
import { BackgroundRefresh } from '../helpers.js';
import { obj, PayloadError } from '../parse/guards.js';
import {
  isActiveManager, parseNodes, parseServices, parseSwarmMembership, parseTasks, serviceFigures,
  type ServiceFigures, type SwarmMembership, type SwarmNode,
} from '../parse/swarm.js';
import type { CollectorModule } from './collector.js';
import { INFO_MAX_AGE_MS, sharedInfo } from './engine.js';

/** The `swarm` section of Config, from the flag below. */
export interface SwarmConfig {
  /** Export the cluster's series from every manager, not only from the leader. */
  allManagers: boolean;
}

declare module '../config.js' {
  interface Config {
    swarm: SwarmConfig;
  }
}

/** `--swarm.all-managers`: the leader-only rule's way out. */
const swarmOptions: ModuleOptions<'swarm'> = {
  section: 'swarm',
  flags: [
    {
      flags: '--swarm.all-managers [bool]',
      description: 'export the services\', tasks\' and nodes\' series from every manager, not only from the leader (then every manager\'s series count the same tasks: aggregate with max, not sum)',
      defaultValue: 'false',
    },
  ],
  parse: (values) => ({ allManagers: boolOf('swarm.all-managers', values.string('swarm.all-managers')) }),
};

function boolOf(flag: string, value: string | undefined): boolean {
  const s = (value ?? '').trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(s)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(s)) return false;
  throw new ConfigError(`--${flag}: "${value}" is not a boolean (use true or false)`);
}

const SERVICE_LABELS = ['service_id', 'service_name', 'mode', 'stack'] as const;
const NODE_LABELS = ['node_id', 'hostname', 'role', 'availability', 'state', 'leader'] as const;

/** How long the first scrape waits for the engine's swarm membership; later scrapes never wait for it. */
const FIRST_INFO_WAIT_MS = 1000;

/**
 * A 503 from a swarm route: the engine is not (or no longer) a manager of an unlocked swarm
 * ("This node is not a swarm manager…", "…not part of a swarm", "Swarm is encrypted and needs to
 * be unlocked…"). Demoted, left or locked since /info said otherwise: nothing to export, not a failure.
 */
function notManager(err: unknown): boolean {
  return err instanceof EngineStatus && err.statusCode === 503 && /swarm/i.test(err.message);
}

/**
 * Swarm services, tasks and nodes from a manager's `GET /services?status=true`, `/tasks` and
 * `/nodes`, asked on every scrape. Silent (no series, success) on an engine that is not an active
 * manager, which `/info`'s Swarm member says (at most 30 s old, the engine collector's own answer
 * where it has one, refreshed in the background). Only the leader exports the cluster's series, so
 * that a Prometheus scraping every manager counts each task once; every manager exports
 * docker_swarm_leader.
 */
export const swarmCollector: CollectorModule = {
  name: 'swarm',
  defaultEnabled: true,
  help: 'Swarm services, tasks and nodes, from the leader manager (silent elsewhere)',
  options: swarmOptions,
  needsInventory: false,
  create({ registry, docker, config, metrics, logger, health }) {
    const registers = [registry];
    const desired = new Gauge({ name: 'docker_swarm_service_replicas_desired', help: 'Tasks the service should be running now: its replicas, the eligible nodes of a global service, the tasks a job still runs at once (leader only).', labelNames: SERVICE_LABELS, registers });
    const running = new Gauge({ name: 'docker_swarm_service_replicas_running', help: 'Tasks of the service in the running state, as `docker service ls` counts them (leader only).', labelNames: SERVICE_LABELS, registers });
    const tasks = new Gauge({ name: 'docker_swarm_service_tasks', help: 'The service\'s current tasks (desired state not shutdown) by state; only states that occur (leader only).', labelNames: [...SERVICE_LABELS, 'state'], registers });
    const nodeInfo = new Gauge({ name: 'docker_swarm_node_info', help: 'Each node of the swarm, its role, availability, state and whether it leads; always 1 (leader only).', labelNames: NODE_LABELS, registers });
    const leader = new Gauge({ name: 'docker_swarm_leader', help: 'Whether this engine is the swarm\'s leader (1) or another manager (0); absent outside a swarm\'s managers.', registers });
    // prom-client shows a label-less gauge as 0 until set; absent is the truth until a manager says.
    leader.remove({});
    const all = [desired, running, tasks, nodeInfo];
    const clear = (): void => {
      for (const g of all) g.reset();
      leader.remove({});
    };

    let membership: SwarmMembership | undefined;
    /** Set when a swarm route said "not a manager": the next /info must be a new answer, not a shared one. */
    let stale = false;
    const load = async (): Promise<void> => {
      // The engine collector's answer when it is fresh enough: one /info for both.
      const payload = await sharedInfo(docker, stale ? 0 : INFO_MAX_AGE_MS);
      stale = false;
      try {
        membership = parseSwarmMembership(payload);
      } catch (err) {
        // A payload that is no object at all the engine collector counts already, when it runs.
        if (err instanceof PayloadError && (obj(payload) || !config.collectors.engine)) metrics.parseErrors.inc({ source: 'info' });
        throw err;
      }
    };
    const info = new BackgroundRefresh(
      () => health.run('swarm-info', 2 * config.docker.timeoutMs, load),
      INFO_MAX_AGE_MS,
      FIRST_INFO_WAIT_MS,
      () => new Error(`GET /info has not answered within ${FIRST_INFO_WAIT_MS} ms; whether this engine is a swarm manager follows when it does`),
    );

    /** A swarm route's payload parsed; a malformed one counted under its route's source. */
    const ask = async <T>(route: RouteName, parse: (p: unknown) => T, query?: Record<string, unknown>): Promise<T> => {
      const payload = await docker.get(route, { query });
      try {
        return parse(payload);
      } catch (err) {
        if (err instanceof PayloadError) metrics.parseErrors.inc({ source: route });
        throw err;
      }
    };

    const render = (nodes: SwarmNode[], figures: ServiceFigures[] | undefined): void => {
      for (const g of all) g.reset();
      if (!figures) return;
      for (const n of nodes) {
        nodeInfo.set({ node_id: n.id, hostname: n.hostname, role: n.role, availability: n.availability, state: n.state, leader: String(n.leader) }, 1);
      }
      for (const f of figures) {
        const labels = { service_id: f.service.id, service_name: f.service.name, mode: f.service.mode, stack: f.service.stack };
        desired.set(labels, f.desired);
        running.set(labels, f.running);
        for (const [state, n] of Object.entries(f.tasks)) tasks.set({ ...labels, state }, n);
      }
    };

    return {
      async update() {
        await info.due();
        // Not knowing whether this is a manager is a failure; the last good series stay meanwhile.
        if (!membership) throw info.error ?? new Error('GET /info has not answered yet');
        if (!isActiveManager(membership)) {
          clear();
          return;
        }
        const self = membership.nodeId;
        try {
          const nodes = await ask('nodes', parseNodes);
          const isLeader = nodes.some((n) => n.id === self && n.leader);
          let figures: ServiceFigures[] | undefined;
          if (isLeader || config.swarm.allManagers) {
            const [services, taskList] = await Promise.all([ask('services', parseServices, { status: true }), ask('tasks', parseTasks)]);
            figures = serviceFigures(services, taskList, nodes);
          }
          render(nodes, figures);
          leader.set(isLeader ? 1 : 0);
        } catch (err) {
          if (!notManager(err)) throw err;
          // Demoted or gone since /info was read: ask it again at the next scrape.
          logger.debug({ collector: 'swarm', err: (err as Error).message }, 'this engine is no longer a swarm manager');
          clear();
          info.expire();
          stale = true;
          membership = { ...membership, manager: false };
        }
      },
    };
  },
};
