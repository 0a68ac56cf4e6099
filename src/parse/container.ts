import { bool, num, obj, PayloadError, str, stringMap } from './guards.js';
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

/** Parses an inspect payload; throws PayloadError when it lacks what identifies a container. */
export function parseContainerInspect(payload: unknown): ContainerInfo {
  const c = obj(payload);
  const id = str(c?.Id);
  if (!c || !id || !/^[0-9a-f]{64}$/.test(id)) throw new PayloadError('inspect payload without a 64-hex Id');
  const state = obj(c.State) ?? {};
  const config = obj(c.Config) ?? {};
  const host = obj(c.HostConfig) ?? {};
  const health = obj(state.Health);

  const status = str(state.Status);
  const nanoCpus = num(host.NanoCpus) ?? 0;
  let cpuQuota = num(host.CpuQuota) ?? 0;
  let cpuPeriod = num(host.CpuPeriod) ?? 0;
  if (nanoCpus > 0) {
    // Integer division, as the engine computes it (daemon/daemon_unix.go, getCPUResources).
    cpuPeriod = NANO_CPUS_PERIOD;
    cpuQuota = Math.floor((nanoCpus * NANO_CPUS_PERIOD) / 1e9);
  }
  const healthStatus = str(health?.Status);

  return {
    id,
    name: (str(c.Name) ?? '').replace(/^\//, ''),
    image: str(config.Image) ?? '',
    imageId: str(c.Image) ?? '',
    labels: stringMap(config.Labels),
    state: (CONTAINER_STATES as readonly string[]).includes(status ?? '') ? (status as ContainerState) : fallbackState(state),
    health: (HEALTH_STATUSES as readonly string[]).includes(healthStatus ?? '') ? (healthStatus as HealthStatus) : 'none',
    failingStreak: num(health?.FailingStreak) ?? 0,
    restartCount: num(c.RestartCount) ?? 0,
    exitCode: num(state.ExitCode) ?? 0,
    oomKilled: bool(state.OOMKilled) ?? false,
    createdSeconds: parseEngineTime(c.Created),
    startedAtSeconds: parseEngineTime(state.StartedAt),
    finishedAtSeconds: parseEngineTime(state.FinishedAt),
    spec: {
      memory: num(host.Memory) ?? 0,
      memoryReservation: num(host.MemoryReservation) ?? 0,
      memorySwap: num(host.MemorySwap) ?? 0,
      cpuQuota,
      cpuPeriod,
      cpuShares: num(host.CpuShares) ?? 0,
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
