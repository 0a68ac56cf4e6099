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
  /** `HostConfig.RestartPolicy.Name`, with the engine's default `no` where it is empty. */
  restartPolicy: string;
  /** The published ports, sorted and bounded (see formatPorts): `127.0.0.1:8080->80/tcp,…`; '' for none. */
  ports: string;
  /** `HostConfig.LogConfig.Type` (json-file, local, none, journald, …); '' when not given. */
  logDriver: string;
  /** The file the json-file or local driver writes on the host (see logFileOf); '' for other drivers and before the first start. */
  logPath: string;
  /** The GPUs the container asked for (see gpuDevices): indexes, UUIDs or `all`; empty for none. */
  gpus: string[];
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
  const restart = optional(host.RestartPolicy, obj, 'inspect HostConfig.RestartPolicy');
  const logConfig = optional(host.LogConfig, obj, 'inspect HostConfig.LogConfig');
  const network = optional(c.NetworkSettings, obj, 'inspect NetworkSettings');

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
    restartPolicy: optional(restart?.Name, str, 'inspect HostConfig.RestartPolicy.Name') || 'no',
    ports: formatPorts(publishedPorts(network?.Ports)),
    logDriver: optional(logConfig?.Type, str, 'inspect HostConfig.LogConfig.Type') ?? '',
    logPath: logFileOf(
      id,
      optional(logConfig?.Type, str, 'inspect HostConfig.LogConfig.Type') ?? '',
      optional(c.LogPath, str, 'inspect LogPath') ?? '',
      optional(c.HostnamePath, str, 'inspect HostnamePath') ?? '',
    ),
    gpus: gpuDevices(
      optional(host.DeviceRequests, arr, 'inspect HostConfig.DeviceRequests') ?? [],
      optional(host.Runtime, str, 'inspect HostConfig.Runtime') ?? '',
      optional(config.Env, arr, 'inspect Config.Env') ?? [],
    ),
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

/** One published port: where the host listens and the container port it forwards to. */
export interface PortBinding {
  hostIp: string;
  hostPort: number;
  containerPort: number;
  protocol: string;
}

/**
 * The published ports of `NetworkSettings.Ports` (`{"80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}]}`):
 * what the engine has bound now, as `docker ps` shows them, so a stopped container has none.
 * Exposed ports that are not published (a null list) are left out; so is an entry the engine would
 * not write (a port that is not a number), rather than failing the whole inspect for a label.
 */
export function publishedPorts(ports: unknown): PortBinding[] {
  const out: PortBinding[] = [];
  const map = obj(ports);
  if (!map) return out;
  for (const [key, bindings] of Object.entries(map)) {
    const m = /^(\d{1,5})(?:\/([a-z]+))?$/.exec(key);
    if (!m) continue;
    for (const b of arr(bindings) ?? []) {
      const hostPort = Number(str(obj(b)?.HostPort));
      if (!Number.isInteger(hostPort) || hostPort <= 0 || hostPort > 65535) continue;
      out.push({ hostIp: str(obj(b)?.HostIp) ?? '', hostPort, containerPort: Number(m[1]), protocol: m[2] ?? 'tcp' });
    }
  }
  return out;
}

/** The longest `ports` label: a container publishing a range of hundreds of ports would otherwise make a label of kilobytes. */
export const PORTS_LABEL_MAX = 200;

/**
 * `0.0.0.0:8080->80/tcp,[::]:8080->80/tcp`: sorted by container port, protocol, host address (IPv4
 * first) and host port, so the label is the same whatever order the engine's map came in. Beyond
 * PORTS_LABEL_MAX characters the remaining bindings are cut, whole, and counted: `…,+12`.
 */
export function formatPorts(bindings: PortBinding[]): string {
  const sorted = [...bindings].sort(
    (a, b) =>
      a.containerPort - b.containerPort ||
      a.protocol.localeCompare(b.protocol) ||
      Number(a.hostIp.includes(':')) - Number(b.hostIp.includes(':')) ||
      a.hostIp.localeCompare(b.hostIp) ||
      a.hostPort - b.hostPort,
  );
  const items = sorted.map((p) => `${p.hostIp.includes(':') ? `[${p.hostIp}]` : p.hostIp || '0.0.0.0'}:${p.hostPort}->${p.containerPort}/${p.protocol}`);
  let text = '';
  for (let i = 0; i < items.length; i++) {
    const next = text === '' ? items[i]! : `${text},${items[i]}`;
    const rest = items.length - i - 1;
    // Room is kept for the count of what is cut, unless this is the last one.
    if (next.length + (rest > 0 ? `,+${rest}`.length : 0) > PORTS_LABEL_MAX) return text === '' ? `+${items.length}` : `${text},+${items.length - i}`;
    text = next;
  }
  return text;
}

/** The capability a device request names for a GPU (`--gpus` asks for [["gpu"]]). */
const GPU_CAPABILITY = 'gpu';

/**
 * The GPUs a container asked for, as DCGM exporter can be joined on: indexes (`0`), UUIDs
 * (`GPU-…`) or `all`, deduplicated, in the order asked. From `HostConfig.DeviceRequests` (`--gpus
 * all` → Count -1 → `all`; `--gpus 2` → Count 2 → `0`, `1`, as the engine itself hands the NVIDIA
 * hook the first n, moby daemon/nvidia_linux.go countToDevices; `--gpus device=0,1` → DeviceIDs; a
 * CDI request `nvidia.com/gpu=0` → `0`) and from `NVIDIA_VISIBLE_DEVICES` in Config.Env, but that
 * only where the container runs under the NVIDIA runtime: the CUDA images set it to `all` for
 * every container, and only that runtime's hook reads it (`none` and `void` ask for none).
 * `all` stays one device: the exporter cannot count the host's GPUs without NVML.
 */
export function gpuDevices(deviceRequests: unknown[], runtime: string, env: unknown[]): string[] {
  const devices: string[] = [];
  const add = (id: string): void => {
    const d = id.trim();
    if (d !== '' && !devices.includes(d)) devices.push(d);
  };
  for (const item of deviceRequests) {
    const req = obj(item);
    if (!req) continue;
    const driver = str(req.Driver) ?? '';
    const ids = (arr(req.DeviceIDs) ?? []).filter((d): d is string => typeof d === 'string');
    if (driver === 'cdi') {
      for (const id of ids) {
        const m = /^nvidia\.com\/gpu=(.+)$/.exec(id);
        if (m) add(m[1]!);
      }
      continue;
    }
    const caps = (arr(req.Capabilities) ?? []).flatMap((set) => arr(set) ?? []);
    if (driver !== 'nvidia' && !caps.includes(GPU_CAPABILITY)) continue;
    const count = num(req.Count) ?? 0;
    if (ids.length > 0) ids.forEach(add);
    else if (count < 0) add('all');
    else for (let i = 0; i < count; i++) add(String(i));
  }
  if (/nvidia/.test(runtime)) {
    // The last definition wins, as in a process's environment.
    const value = env
      .filter((e): e is string => typeof e === 'string' && e.startsWith('NVIDIA_VISIBLE_DEVICES='))
      .at(-1)
      ?.slice('NVIDIA_VISIBLE_DEVICES='.length);
    if (value !== undefined && value !== 'none' && value !== 'void') value.split(',').forEach(add);
  }
  return devices.includes('all') ? ['all'] : devices;
}

/**
 * Whether a host path from the engine can be followed under --path.rootfs as it is: absolute, with
 * no `..` step (which would lead out of the mounted root) and no NUL. An engine names such paths
 * itself; a proxy or a broken engine could name anything, and the exporter only stats what it is told.
 */
function plainAbsolute(p: string): boolean {
  return p.startsWith('/') && !p.includes('\0') && !p.split('/').includes('..');
}

/**
 * The log file a container's driver writes on the host. json-file: `LogPath`, as inspect names it.
 * local: inspect leaves LogPath empty on purpose (moby container/container.go StartLogger: the
 * file is the driver's business), and the file is `<container folder>/local-logs/container.log`.
 * That folder is found from `HostnamePath` (`<root>/containers/<id>/hostname`), the grandparent
 * of which is the engine's containers folder; not from its parent, since a container sharing
 * another's network (`--network container:<x>`) is handed that one's hostname file. Only the
 * file written now, not the rotated ones (see collectors/logs.ts).
 */
export function logFileOf(id: string, driver: string, logPath: string, hostnamePath: string): string {
  if (driver === 'json-file') return plainAbsolute(logPath) ? logPath : '';
  if (driver !== 'local' || !plainAbsolute(hostnamePath)) return '';
  const containersDir = hostnamePath.split('/').slice(0, -2).join('/');
  return containersDir === '' ? '' : `${containersDir}/${id}/local-logs/container.log`;
}
