import { arr, bool, num, obj, optional, PayloadError, str, stringMap, typeName, type Json } from './guards.js';

/** What `/info`'s `Swarm` member says of this engine's place in a swarm. */
export interface SwarmMembership {
  /** `LocalNodeState`: inactive, pending, active, error, locked ('' when the engine has no Swarm member). */
  state: string;
  /** `ControlAvailable`: this engine is a manager, so the swarm routes answer it. */
  manager: boolean;
  /** `NodeID`: this engine's node in the swarm ('' outside one). */
  nodeId: string;
}

/** A node of `GET /nodes`, as `docker_swarm_node_info` labels it. */
export interface SwarmNode {
  id: string;
  hostname: string;
  /** manager or worker. */
  role: string;
  /** active, pause or drain. */
  availability: string;
  /** unknown, down, ready or disconnected. */
  state: string;
  /** `ManagerStatus.Leader`: false for workers, which have no ManagerStatus. */
  leader: boolean;
}

/** The service modes as the `mode` label spells them: the CLI's `--mode` values. */
export const SERVICE_MODES = { Replicated: 'replicated', Global: 'global', ReplicatedJob: 'replicated-job', GlobalJob: 'global-job' } as const;

/** A service of `GET /services?status=true`. */
export interface SwarmService {
  id: string;
  name: string;
  /** One of SERVICE_MODES' values; an unknown future mode its API key in kebab case. */
  mode: string;
  /** The `com.docker.stack.namespace` label of the service: the stack `docker stack deploy` put it in ('' for none). */
  stack: string;
  /** `Spec.Mode.Replicated.Replicas`. */
  replicas?: number;
  /** `Spec.Mode.ReplicatedJob.MaxConcurrent` and `TotalCompletions`. */
  maxConcurrent?: number;
  totalCompletions?: number;
  /** `ServiceStatus` (API 1.41+ with `status=true`); absent from an engine that ignored the query. */
  status?: { running: number; desired: number; completed: number };
}

/** A task of `GET /tasks`, as much as the counts need. */
export interface SwarmTask {
  serviceId: string;
  nodeId: string;
  /** What the orchestrator wants of it: running, ready, complete (jobs), shutdown, remove, … */
  desiredState: string;
  /** `Status.State`: new, pending, assigned, …, running, complete, failed, rejected, shutdown, … */
  state: string;
}

/** What the exporter shows of one service: its labels' values and its figures. */
export interface ServiceFigures {
  service: SwarmService;
  desired: number;
  running: number;
  /** Current tasks (see isCurrent) by `Status.State`; only states that occur. */
  tasks: Record<string, number>;
}

/** The stack label `docker stack deploy` puts on every service it makes. */
export const STACK_LABEL = 'com.docker.stack.namespace';

/**
 * `/info`'s Swarm member. An engine without one (a Podman, an engine built without Swarm) is not
 * in a swarm; one of the wrong shape is a PayloadError, since "not a manager" would hide it.
 */
export function parseSwarmMembership(info: unknown): SwarmMembership {
  const i = obj(info);
  if (!i) throw new PayloadError(`GET /info payload is ${typeName(info)}, not an object`);
  const s = optional(i.Swarm, obj, 'GET /info Swarm');
  if (!s) return { state: '', manager: false, nodeId: '' };
  return {
    state: optional(s.LocalNodeState, str, 'Swarm.LocalNodeState') ?? '',
    manager: optional(s.ControlAvailable, bool, 'Swarm.ControlAvailable') ?? false,
    nodeId: optional(s.NodeID, str, 'Swarm.NodeID') ?? '',
  };
}

/** Whether the swarm routes answer this engine: an active member that is a manager. */
export function isActiveManager(m: SwarmMembership): boolean {
  return m.state === 'active' && m.manager && m.nodeId !== '';
}

/** A list payload's items, each an object with a string `ID`, or PayloadError naming the route. */
function items(payload: unknown, what: string): Json[] {
  const list = arr(payload);
  if (!list) throw new PayloadError(`${what} payload is ${typeName(payload)}, not a list`);
  return list.map((item, n) => {
    const o = obj(item);
    if (!o || typeof o.ID !== 'string' || o.ID === '') throw new PayloadError(`${what} item ${n} is ${o ? 'an object without an ID' : typeName(item)}`);
    return o;
  });
}

/** `GET /nodes`. Fields of the wrong type read as '' (a label), never as another node's. */
export function parseNodes(payload: unknown): SwarmNode[] {
  return items(payload, 'GET /nodes').map((n) => {
    const spec = obj(n.Spec);
    const status = obj(n.Status);
    return {
      id: n.ID as string,
      hostname: str(obj(n.Description)?.Hostname) ?? '',
      role: str(spec?.Role) ?? '',
      availability: str(spec?.Availability) ?? '',
      state: str(status?.State) ?? '',
      leader: bool(obj(n.ManagerStatus)?.Leader) ?? false,
    };
  });
}

/** A count the engine sends as a uint64: a whole number from 0, else undefined. */
function count(value: unknown): number | undefined {
  const n = num(value);
  return n !== undefined && Number.isInteger(n) && n >= 0 ? n : undefined;
}

/** `GET /services?status=true`. A service whose Spec has no Mode member of a known shape is a PayloadError. */
export function parseServices(payload: unknown): SwarmService[] {
  return items(payload, 'GET /services').map((s) => {
    const spec = obj(s.Spec);
    const mode = obj(spec?.Mode);
    const kind = mode ? Object.keys(mode).find((k) => mode[k] !== null && mode[k] !== undefined) : undefined;
    if (!spec || !kind) throw new PayloadError(`GET /services: service ${s.ID as string} has no Spec.Mode`);
    const settings = obj(mode![kind]) ?? {};
    const st = obj(s.ServiceStatus);
    const running = count(st?.RunningTasks);
    const desired = count(st?.DesiredTasks);
    const service: SwarmService = {
      id: s.ID as string,
      name: str(spec.Name) ?? '',
      mode: (SERVICE_MODES as Record<string, string>)[kind] ?? kind.replace(/(?<=[a-z0-9])([A-Z])/g, '-$1').toLowerCase(),
      stack: stringMap(spec.Labels)[STACK_LABEL] ?? '',
    };
    if (kind === 'Replicated') service.replicas = count(settings.Replicas);
    if (kind === 'ReplicatedJob') {
      service.maxConcurrent = count(settings.MaxConcurrent);
      service.totalCompletions = count(settings.TotalCompletions);
    }
    if (running !== undefined && desired !== undefined) service.status = { running, desired, completed: count(st?.CompletedTasks) ?? 0 };
    return service;
  });
}

/** `GET /tasks`. A task without a ServiceID belongs to no service (none is made so), and is dropped. */
export function parseTasks(payload: unknown): SwarmTask[] {
  return items(payload, 'GET /tasks').flatMap((t) => {
    const serviceId = str(t.ServiceID);
    if (!serviceId) return [];
    return [{ serviceId, nodeId: str(t.NodeID) ?? '', desiredState: str(t.DesiredState) ?? '', state: str(obj(t.Status)?.State) ?? '' }];
  });
}

/**
 * A task the orchestrator still means to have: not one it retired (desired state shutdown or
 * remove). `/tasks` also holds up to TaskHistoryRetentionLimit (default 5) dead tasks per slot:
 * counted, a service that once restarted would show `failed` tasks for as long as they are kept,
 * a number set by retention, not by what runs now. The CLI and Telegraf draw the same line for
 * "tasks not shut down".
 */
export function isCurrent(t: SwarmTask): boolean {
  return t.desiredState !== 'shutdown' && t.desiredState !== 'remove';
}

/**
 * Each service's desired and running task counts, as `docker service ls` shows them in REPLICAS
 * (running/desired, from ServiceStatus: https://github.com/docker/cli/blob/master/cli/command/service/formatter.go),
 * and its current tasks by state. Where they differ from REPLICAS, on purpose:
 * - replicated jobs: desired is the tasks that should run now, min(MaxConcurrent, TotalCompletions
 *   − completed), the CLI's own figure in `docker service create`'s job progress. The engine's
 *   DesiredTasks is 1 for a job that completed 2 of 2 (20.10, measured), which would read as a
 *   job one task short forever;
 * - global jobs: desired is the current tasks not yet complete, which the CLI's formatter says
 *   DesiredTasks means;
 * - an engine that sent no ServiceStatus: running is counted from the tasks (state running, on a
 *   node not down) and desired is the spec's replicas, or the current tasks for global services,
 *   as the CLI did before API 1.41.
 */
export function serviceFigures(services: readonly SwarmService[], tasks: readonly SwarmTask[], nodes: readonly SwarmNode[]): ServiceFigures[] {
  const down = new Set(nodes.filter((n) => n.state === 'down').map((n) => n.id));
  const byService = new Map<string, SwarmTask[]>();
  for (const t of tasks) {
    if (!isCurrent(t)) continue;
    const list = byService.get(t.serviceId);
    if (list) list.push(t);
    else byService.set(t.serviceId, [t]);
  }
  return services.map((service) => {
    const current = byService.get(service.id) ?? [];
    const states: Record<string, number> = {};
    for (const t of current) states[t.state] = (states[t.state] ?? 0) + 1;
    const completed = service.status?.completed ?? states.complete ?? 0;
    const running = service.status?.running ?? current.filter((t) => t.state === 'running' && !down.has(t.nodeId)).length;
    let desired: number;
    switch (service.mode) {
      case 'replicated-job': {
        // The API's defaults: MaxConcurrent 1, TotalCompletions MaxConcurrent.
        const max = service.maxConcurrent ?? 1;
        desired = Math.max(0, Math.min(max, (service.totalCompletions ?? max) - completed));
        break;
      }
      case 'global-job':
        desired = current.filter((t) => t.state !== 'complete').length;
        break;
      case 'replicated':
        desired = service.status?.desired ?? service.replicas ?? 0;
        break;
      default:
        desired = service.status?.desired ?? current.length;
    }
    return { service, desired, running, tasks: states };
  });
}
