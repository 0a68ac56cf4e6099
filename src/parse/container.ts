import { arr, bool, num, obj, optional, PayloadError, str, stringMap, typeName } from './guards.js';
import { parseEngineTime } from './time.js';

export const CONTAINER_STATES = ['created', 'running', 'paused', 'restarting', 'removing', 'exited', 'dead'] as const;
export type ContainerState = (typeof CONTAINER_STATES)[number];

export const HEALTH_STATUSES = ['none', 'starting', 'healthy', 'unhealthy'] as const;
export type HealthStatus = (typeof HEALTH_STATUSES)[number];

/** What the exporter keeps of `GET /containers/{id}/json`. */
export interface ContainerInfo {
  id: string;
  /** Without the leading slash. */
  name: string;
  /** `Config.Image`: the image as the container was created with it. */
  image: string;
  imageId: string;
  labels: Record<string, string>;
  /** From `State.Status`, never from the `Running` flag (a restarting container is also "Running"). */
  state: ContainerState;
  health: HealthStatus;
  failingStreak: number;
  restartCount: number;
  exitCode: number;
  oomKilled: boolean;
  createdSeconds?: number;
  startedAtSeconds?: number;
  finishedAtSeconds?: number;
  /** `State.Pid`: the container's first process on the host, 0 when it does not run. */
  pid: number;
  /** `HostConfig.NetworkMode`: `host`, `none` and `container:<id>` have no network of their own. */
  networkMode: string;
  spec: {
    memory: number;
    memoryReservation: number;
    memorySwap: number;
    /**
     * CFS quota and period in microseconds, NanoCpus converted as the engine applies it; 0 means
     * "not set" (no quota; the kernel's default period of 100000).
     */
    cpuQuota: number;
    cpuPeriod: number;
    /** 0 means "not set" (the kernel's default of 1024). */
    cpuShares: number;
  };
}

/** The CFS period the engine uses for `--cpus` (NanoCpus). */
const NANO_CPUS_PERIOD = 100_000;

/** Container ids as the engine makes them (a sha256); anything else is not a container's id. */
const CONTAINER_ID = /^[0-9a-f]{64}$/;

/** What the inventory takes of one entry of `GET /containers/json`. */
export interface ListedContainer {
  id: string;
  /** As listed: with the leading slash, link aliases (`/other/alias`) included; empty for a dead container. */
  names: string[];
}

/**
 * Parses a container list. Throws PayloadError unless it is an array whose every entry is an object
 * with a 64-hex Id and Names, if any, a list of strings: one entry of the wrong shape makes the
 * whole list untrustworthy. The engine sends [] for no containers and for a dead container's
 * Names, never null (https://github.com/moby/moby/blob/v20.10.24/daemon/list.go, reduceContainers
 * and transformContainer); a null Names is taken as that [] all the same.
 */
export function parseContainerList(payload: unknown): ListedContainer[] {
  if (!Array.isArray(payload)) throw new PayloadError(`container list is ${typeName(payload)}, not an array`);
  return payload.map((item, i) => {
    const entry = obj(item);
    if (!entry) throw new PayloadError(`container list entry ${i} is ${typeName(item)}, not an object`);
    const id = str(entry.Id);
    if (!id || !CONTAINER_ID.test(id)) throw new PayloadError(`container list entry ${i} has no 64-hex Id`);
    const names = optional(entry.Names, arr, `container list entry ${i} Names`) ?? [];
    if (!names.every((n) => typeof n === 'string')) throw new PayloadError(`container list entry ${i} Names holds a non-string`);
    return { id, names: names as string[] };
  });
}

/**
 * Parses an inspect payload. Throws PayloadError when it lacks what identifies a container (a 64-hex
 * Id, a Name, a State object) or when a member it reads is of the wrong type: a default in its place
 * would be an invented fact (a restart counter back at 0, say). Absent or null members take Go's
 * zero value, as the engine means by leaving them out; an unparseable time is unknown (left out).
 */
export function parseContainerInspect(payload: unknown): ContainerInfo {
  const c = obj(payload);
  if (!c || payload instanceof Uint8Array) throw new PayloadError(`inspect payload is ${typeName(payload)}, not an object`);
  const id = str(c.Id);
  if (!id || !CONTAINER_ID.test(id)) throw new PayloadError('inspect payload without a 64-hex Id');
  const name = str(c.Name);
  if (name === undefined) throw new PayloadError(`inspect Name is ${typeName(c.Name)}, not a string`);
  const state = obj(c.State);
  if (!state) throw new PayloadError(`inspect State is ${typeName(c.State)}, not an object`);
  const config = optional(c.Config, obj, 'inspect Config') ?? {};
  const host = optional(c.HostConfig, obj, 'inspect HostConfig') ?? {};
  const health = optional(state.Health, obj, 'inspect State.Health');
  const number = (value: unknown, what: string): number => optional(value, num, `inspect ${what}`) ?? 0;
  const time = (value: unknown, what: string): number | undefined => parseEngineTime(optional(value, str, `inspect ${what}`));

  const status = optional(state.Status, str, 'inspect State.Status');
  const nanoCpus = number(host.NanoCpus, 'HostConfig.NanoCpus');
  let cpuQuota = number(host.CpuQuota, 'HostConfig.CpuQuota');
  let cpuPeriod = number(host.CpuPeriod, 'HostConfig.CpuPeriod');
  if (nanoCpus > 0) {
    // Integer division, as the engine computes it (daemon/daemon_unix.go, getCPUResources).
    cpuPeriod = NANO_CPUS_PERIOD;
    cpuQuota = Math.floor((nanoCpus * NANO_CPUS_PERIOD) / 1e9);
  }
  const healthStatus = optional(health?.Status, str, 'inspect State.Health.Status');

  return {
    id,
    name: name.replace(/^\//, ''),
    image: optional(config.Image, str, 'inspect Config.Image') ?? '',
    imageId: optional(c.Image, str, 'inspect Image') ?? '',
    // A label value that is not a string is not one Docker could hold: dropped, the rest kept.
    labels: stringMap(optional(config.Labels, obj, 'inspect Config.Labels')),
    state: (CONTAINER_STATES as readonly string[]).includes(status ?? '') ? (status as ContainerState) : fallbackState(state),
    health: (HEALTH_STATUSES as readonly string[]).includes(healthStatus ?? '') ? (healthStatus as HealthStatus) : 'none',
    failingStreak: number(health?.FailingStreak, 'State.Health.FailingStreak'),
    restartCount: number(c.RestartCount, 'RestartCount'),
    exitCode: number(state.ExitCode, 'State.ExitCode'),
    oomKilled: optional(state.OOMKilled, bool, 'inspect State.OOMKilled') ?? false,
    createdSeconds: time(c.Created, 'Created'),
    startedAtSeconds: time(state.StartedAt, 'State.StartedAt'),
    pid: number(state.Pid, 'State.Pid'),
    networkMode: optional(host.NetworkMode, str, 'inspect HostConfig.NetworkMode') ?? '',
    finishedAtSeconds: time(state.FinishedAt, 'State.FinishedAt'),
    spec: {
      memory: number(host.Memory, 'HostConfig.Memory'),
      memoryReservation: number(host.MemoryReservation, 'HostConfig.MemoryReservation'),
      memorySwap: number(host.MemorySwap, 'HostConfig.MemorySwap'),
      cpuQuota,
      cpuPeriod,
      cpuShares: number(host.CpuShares, 'HostConfig.CpuShares'),
    },
  };
}

/** Engines before API 1.21 lack State.Status; derive it from the flags the way the CLI does. */
function fallbackState(state: Record<string, unknown>): ContainerState {
  if (state.Dead === true) return 'dead';
  if (state.Restarting === true) return 'restarting';
  if (state.Paused === true) return 'paused';
  if (state.Running === true) return 'running';
  return parseEngineTime(state.StartedAt) === undefined ? 'created' : 'exited';
}
