import { arr, obj, PayloadError, str, type Json } from './guards.js';
import { parseEngineTime } from './time.js';

/** One network interface of a stats sample; a field the payload lacks is undefined. */
export interface NetworkSample {
  name: string;
  rxBytes?: number;
  rxPackets?: number;
  rxDropped?: number;
  rxErrors?: number;
  txBytes?: number;
  txPackets?: number;
  txDropped?: number;
  txErrors?: number;
}

/** Block I/O of one device (`major:minor`); counts exist on cgroup v1 only. */
export interface BlkioSample {
  device: string;
  readBytes?: number;
  writeBytes?: number;
  reads?: number;
  writes?: number;
}

/**
 * What the exporter uses of one `GET /containers/{id}/stats` sample, in base units (seconds, bytes),
 * or of the same figures read from the container's cgroup files (src/stats/cgroup-files.ts).
 * Anything the payload does not carry is undefined, never 0.
 */
export interface StatsSample {
  /** Unix seconds of `read`. */
  read: number;
  /** Which field names the payload used: Linux cgroup v1 or v2, or Windows (HCS). */
  flavour: 'cgroup1' | 'cgroup2' | 'windows';
  cpuTotalSeconds?: number;
  cpuUserSeconds?: number;
  cpuSystemSeconds?: number;
  /** CFS throttling as the kernel reports it; meaningful only for a container with a CPU quota. */
  cfsPeriods?: number;
  cfsThrottledPeriods?: number;
  cfsThrottledSeconds?: number;
  memoryUsageBytes?: number;
  /** Usage minus inactive file pages, floored at 0 (what `docker stats` shows as MEM USAGE). */
  memoryWorkingSetBytes?: number;
  memoryRssBytes?: number;
  memoryCacheBytes?: number;
  memoryMappedFileBytes?: number;
  memoryMaxUsageBytes?: number;
  pgfault?: number;
  pgmajfault?: number;
  networks: NetworkSample[];
  blkio: BlkioSample[];
  threads?: number;
  threadsMax?: number;
  // The engine's stats carry none of the fields below; only the cgroupfs source fills them.
  /** Swap in use, in bytes: v2 `memory.swap.current`, v1 `memory.memsw.usage_in_bytes` − usage. */
  memorySwapBytes?: number;
  /** PSI `some` of `cpu.pressure`: time some tasks waited for a CPU, in seconds. */
  pressureCpuWaitingSeconds?: number;
  /** PSI `full` of `cpu.pressure` (Linux 5.13+): time all non-idle tasks were stalled at once, in seconds. */
  pressureCpuStalledSeconds?: number;
  /** PSI `some` of `memory.pressure`, in seconds. */
  pressureMemoryWaitingSeconds?: number;
  /** PSI `full` of `memory.pressure`, in seconds. */
  pressureMemoryStalledSeconds?: number;
  /** PSI `some` of `io.pressure`, in seconds. */
  pressureIoWaitingSeconds?: number;
  /** PSI `full` of `io.pressure`, in seconds. */
  pressureIoStalledSeconds?: number;
  /** Fields present with an unusable value (wrong type, negative; a cgroup file cut short or garbled); they were left out. */
  malformed: number;
}

// Go's time.Time{} as encoding/json writes it: the engine's "no sample" marker.
const ZERO_TIME = /^0001-01-01T00:00:00(?:\.0+)?Z$/;

// Kernel pid_max is at most 2^22; cgroup v2 reports an unlimited pids.max as MaxUint64
// (containerd cgroups getStatFileContentUint64), which JSON.parse rounds to 2^64.
const UNLIMITED = 2 ** 63;

/** Per-parse state: counts malformed fields without allocating a closure per call. */
class Reader {
  malformed = 0;

  /** A non-negative number, or undefined (absent, null, or malformed and counted). */
  u64(value: unknown): number | undefined {
    if (typeof value === 'number') {
      if (Number.isFinite(value) && value >= 0) return value;
    } else if (value === undefined || value === null) {
      return undefined;
    }
    this.malformed++;
    return undefined;
  }

  /** An object, or undefined (absent, null, or malformed and counted). */
  obj(value: unknown): Json | undefined {
    const o = obj(value);
    if (o === undefined && value !== undefined && value !== null) this.malformed++;
    return o;
  }

  /** An array, or undefined (absent, null, or malformed and counted). */
  arr(value: unknown): unknown[] | undefined {
    const a = arr(value);
    if (a === undefined && value !== undefined && value !== null) this.malformed++;
    return a;
  }
}

/**
 * Parses one stats payload (cgroup v1, cgroup v2 or Windows). Returns null for the engine's empty
 * samples, whose `read` is the zero time (it keeps streaming those after a container stops);
 * throws PayloadError when the payload is not a stats object at all. Fields of the wrong type are
 * left out and counted in `malformed`.
 */
export function parseStats(payload: unknown): StatsSample | null {
  const p = obj(payload);
  if (!p) throw new PayloadError('stats payload is not an object');
  const readText = str(p.read);
  if (readText !== undefined && ZERO_TIME.test(readText)) return null;
  const read = parseEngineTime(readText);
  if (read === undefined) throw new PayloadError(`stats payload without a usable read time: ${String(p.read).slice(0, 40)}`);

  const r = new Reader();
  const memory = r.obj(p.memory_stats);
  const memStats = r.obj(memory?.stats);
  const cpu = r.obj(p.cpu_stats);
  const usage = r.obj(cpu?.cpu_usage);
  const flavour = isWindows(p, memory) ? 'windows' : isCgroup1(memory, memStats, usage) ? 'cgroup1' : 'cgroup2';
  const sample: StatsSample = { read, flavour, networks: [], blkio: [], malformed: 0 };

  if (usage) {
    // Windows counts CPU time in 100 ns units (moby api/types/container/stats.go, CPUUsage).
    const unit = flavour === 'windows' ? 1e7 : 1e9;
    const total = r.u64(usage.total_usage);
    const user = r.u64(usage.usage_in_usermode);
    const system = r.u64(usage.usage_in_kernelmode);
    if (total !== undefined) sample.cpuTotalSeconds = total / unit;
    // Hyper-V isolated Windows containers leave user/kernel unpopulated: zeros are not data there.
    const unpopulated = flavour === 'windows' && !user && !system;
    if (user !== undefined && !unpopulated) sample.cpuUserSeconds = user / unit;
    if (system !== undefined && !unpopulated) sample.cpuSystemSeconds = system / unit;
  }
  if (flavour !== 'windows') {
    const throttling = r.obj(cpu?.throttling_data);
    if (throttling) {
      sample.cfsPeriods = r.u64(throttling.periods);
      sample.cfsThrottledPeriods = r.u64(throttling.throttled_periods);
      const ns = r.u64(throttling.throttled_time);
      if (ns !== undefined) sample.cfsThrottledSeconds = ns / 1e9;
    }
  }

  if (flavour === 'windows') {
    // Private working set is the figure `docker stats` shows for Windows containers.
    sample.memoryWorkingSetBytes = r.u64(memory?.privateworkingset);
  } else if (memory) {
    const v1 = flavour === 'cgroup1';
    const used = r.u64(memory.usage);
    const inactive = r.u64(memStats?.[v1 ? 'total_inactive_file' : 'inactive_file']);
    sample.memoryUsageBytes = used;
    if (used !== undefined) sample.memoryWorkingSetBytes = inactive === undefined ? used : Math.max(0, used - inactive);
    if (memStats) {
      sample.memoryRssBytes = r.u64(memStats[v1 ? 'total_rss' : 'anon']);
      sample.memoryCacheBytes = r.u64(memStats[v1 ? 'total_cache' : 'file']);
      sample.memoryMappedFileBytes = r.u64(memStats[v1 ? 'total_mapped_file' : 'file_mapped']);
      sample.pgfault = r.u64(memStats[v1 ? 'total_pgfault' : 'pgfault']);
      sample.pgmajfault = r.u64(memStats[v1 ? 'total_pgmajfault' : 'pgmajfault']);
    }
    if (v1) sample.memoryMaxUsageBytes = r.u64(memory.max_usage);
  }

  const networks = r.obj(p.networks);
  if (networks) {
    for (const name in networks) {
      const n = r.obj(networks[name]);
      if (!n) continue;
      const windows = flavour === 'windows';
      sample.networks.push({
        name,
        rxBytes: r.u64(n.rx_bytes),
        rxPackets: r.u64(n.rx_packets),
        rxDropped: r.u64(n.rx_dropped),
        // Windows (HNS) reports no error counts; the engine writes zeros that mean nothing.
        rxErrors: windows ? undefined : r.u64(n.rx_errors),
        txBytes: r.u64(n.tx_bytes),
        txPackets: r.u64(n.tx_packets),
        txDropped: r.u64(n.tx_dropped),
        txErrors: windows ? undefined : r.u64(n.tx_errors),
      });
    }
  }

  const blkio = r.obj(p.blkio_stats);
  if (blkio) {
    addBlkio(r, sample.blkio, r.arr(blkio.io_service_bytes_recursive), 'readBytes', 'writeBytes');
    addBlkio(r, sample.blkio, r.arr(blkio.io_serviced_recursive), 'reads', 'writes');
  }

  const pids = r.obj(p.pids_stats);
  if (pids) {
    sample.threads = r.u64(pids.current);
    const limit = r.u64(pids.limit);
    if (limit !== undefined && limit > 0 && limit < UNLIMITED) sample.threadsMax = limit;
  }

  sample.malformed = r.malformed;
  return sample;
}

/** Windows payloads say so since API 1.52 (`os_type`); older ones only by their Windows-only fields. */
function isWindows(p: Json, memory: Json | undefined): boolean {
  const osType = str(p.os_type);
  if (osType !== undefined) return osType === 'windows';
  if (typeof p.num_procs === 'number' && p.num_procs > 0) return true;
  return memory !== undefined && ('privateworkingset' in memory || 'commitbytes' in memory);
}

/** Only cgroup v1 has the hierarchical `total_*` memory keys, `max_usage` and per-CPU usage. */
function isCgroup1(memory: Json | undefined, memStats: Json | undefined, usage: Json | undefined): boolean {
  if (memStats) return 'total_rss' in memStats || 'total_cache' in memStats || 'total_inactive_file' in memStats;
  return (memory !== undefined && 'max_usage' in memory) || (usage !== undefined && 'percpu_usage' in usage);
}

/**
 * Adds the Read and Write entries of one blkio list to the per-device samples (v1 writes `Read`,
 * v2 `read`; Sync/Async/Discard/Total are other views of the same bytes). Entries for the same
 * device and op are summed, as `docker stats` does.
 */
function addBlkio(r: Reader, out: BlkioSample[], entries: unknown[] | undefined, readKey: 'readBytes' | 'reads', writeKey: 'writeBytes' | 'writes'): void {
  if (!entries) return;
  for (const item of entries) {
    const e = r.obj(item);
    if (!e) continue;
    const op = e.op;
    const key = op === 'Read' || op === 'read' ? readKey : op === 'Write' || op === 'write' ? writeKey : undefined;
    if (key === undefined) {
      if (typeof op !== 'string') r.malformed++;
      continue;
    }
    const { major, minor, value } = e;
    if (!isDeviceNumber(major) || !isDeviceNumber(minor) || typeof value !== 'number' || !(value >= 0) || value === Infinity) {
      r.malformed++;
      continue;
    }
    const device = `${major}:${minor}`;
    let d: BlkioSample | undefined;
    for (const candidate of out) {
      if (candidate.device === device) {
        d = candidate;
        break;
      }
    }
    if (!d) {
      d = { device };
      out.push(d);
    }
    d[key] = (d[key] ?? 0) + value;
  }
}

function isDeviceNumber(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= 0;
}
