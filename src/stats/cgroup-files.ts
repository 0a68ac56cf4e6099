import { closeSync, openSync, readFile, readFileSync, readSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { parseBlkio, parseCgroupLimit, parseCgroupValue, parseIoStat, parseKeyed, parseNetDev, parsePressure, parseProcCgroup, type ProcCgroup } from '../parse/cgroup.js';
import type { NetworkSample, StatsSample } from '../parse/stats.js';

// The files under the cgroupfs source: where one container's cgroup is (once, when it is followed)
// and its sample read from there (each scrape). Every figure is the one the engine would report for
// the same container at the same moment, computed as its stats path computes it, then mapped as
// parseStats maps the engine's payload: moby's statsV1/statsV2
// (https://github.com/moby/moby/blob/v28.0.0/daemon/stats_unix.go; daemon_unix.go in 20.10) over
// what containerd's shim reads with its cgroups package
// (https://github.com/containerd/cgroups/tree/v1.1.0: cpuacct.go, cpu.go, memory.go, pids.go,
// blkio.go for v1, v2/manager.go Stat for v2). Where this sample has more than the engine's, the
// field says so (StatsSample's cgroupfs-only fields; v2 max usage and I/O counts below).
//
// One sample is 10–15 small files (v1 on a hybrid host: 14 and net/dev). Measured on this project's
// 2-core test VM (Linux 6.18, hybrid v1) against a running container, median of 3,000–5,000 reads:
// parsing and assembly take ~7 µs; the reads ~0.2 ms of CPU with readCgroupFile (the syscalls on
// the calling thread), ~0.9 ms through the threadpool with readCgroupFileInPool (~1.2 ms each with
// 100 containers in flight), ~1.5 ms (~2.5 ms) with fs.promises.readFile. For comparison, the
// engine path costs ~2 ms of engine and ~1.5 ms of Node CPU per sample.

/**
 * Reads one file whole; undefined when it does not exist (the cgroup or process went away), null
 * when it is there but not to be read (a PSI file the kernel refuses: left out). Rejects on other errors.
 */
export type ReadFile = (path: string) => Promise<string | null | undefined>;

/** Whether a path exists, symlinks followed. */
export type Exists = (path: string) => Promise<boolean>;

/** How the host's cgroup filesystem is laid out, as the exporter sees it. */
export interface CgroupLayout {
  version: 1 | 2;
  /** The cgroup filesystem root (`/sys/fs/cgroup`, `/host/sys/fs/cgroup`), no trailing slash. */
  root: string;
  /** A hybrid v1 host's unified hierarchy (`<root>/unified`), read for PSI only: the engine reads v1. */
  unified?: string;
}

/** The absolute paths one container's sample is read from; a file this host does not have is not listed. */
export interface CgroupFiles {
  /** v1 `cpuacct.usage`: total CPU time, ns. */
  cpuUsage?: string;
  /** v1 `cpuacct.stat`: user and system time in USER_HZ ticks. */
  cpuTicks?: string;
  /** `cpu.stat`: v1 CFS throttling (ns); v2 usage and throttling (µs). */
  cpuStat?: string;
  /** v1 `memory.usage_in_bytes`, v2 `memory.current`. */
  memoryUsage?: string;
  /** v1 `memory.max_usage_in_bytes`, v2 `memory.peak` (Linux 5.19+). */
  memoryMaxUsage?: string;
  /** `memory.stat`. */
  memoryStat?: string;
  /** v1 `memory.memsw.usage_in_bytes` (memory + swap; needs swap accounting), v2 `memory.swap.current`. */
  memorySwap?: string;
  /** `pids.current`. */
  pidsCurrent?: string;
  /** `pids.max`. */
  pidsMax?: string;
  /** v1 `blkio.throttle.io_service_bytes`. */
  blkioBytes?: string;
  /** v1 `blkio.throttle.io_serviced`. */
  blkioServiced?: string;
  /** v1 `blkio.io_service_bytes_recursive` of the CFQ scheduler (kernels before 5.0). */
  blkioCfqBytes?: string;
  /** v1 `blkio.io_serviced_recursive` of the CFQ scheduler. */
  blkioCfqServiced?: string;
  /** v2 `io.stat`. */
  ioStat?: string;
  /** `cpu.pressure` (v2, or a hybrid host's unified hierarchy). */
  cpuPressure?: string;
  /** `memory.pressure`. */
  memoryPressure?: string;
  /** `io.pressure`. */
  ioPressure?: string;
}

/** Where one container's cgroup is, and the files its sample is read from. */
export interface CgroupLocation {
  version: 1 | 2;
  /** The container's cgroup directories: v2 `unified`; v1 one per controller found, and `unified` on a hybrid host. */
  dirs: Readonly<Partial<Record<'unified' | V1Controller, string>>>;
  files: Readonly<CgroupFiles>;
}

/** The result of locateCgroup: the location, or why there is none (for a log line; the caller falls back to the engine). */
export type Located = { found: true; location: CgroupLocation } | { found: false; reason: string };

/** What readCgroupSample may be told. */
export interface ReadOptions {
  /**
   * `/proc/<pid>/net/dev` of the container's process, when the engine made its network namespace
   * (bridge, user-defined, macvlan, `container:` networks). Leave it out for `--network host`: the
   * engine reports no interfaces there, and the file would list the host's.
   */
  netDev?: string;
  /** The clock for `read`, in ms since the epoch (tests fix it). */
  now?: () => number;
  /**
   * False: the container's CFS throttling is not wanted (it has no CPU quota, and the collector
   * renders throttling only with one), so v1's `cpu.stat`, which holds nothing else, is not read.
   * v2's holds the CPU usage too: read regardless.
   */
  throttling?: boolean;
}

type V1Controller = (typeof V1_CONTROLLERS)[number];

/** The v1 controllers the engine reads stats from. */
const V1_CONTROLLERS = ['cpuacct', 'cpu', 'memory', 'pids', 'blkio'] as const;

/** The entries under a cgroup root that tell its layout (detectCgroupLayout's only inputs). */
const LAYOUT_MARKERS = ['cgroup.controllers', 'cpuacct', 'cpu,cpuacct', 'memory', 'unified/cgroup.controllers'] as const;

type LayoutMarker = (typeof LAYOUT_MARKERS)[number];

/**
 * Tells v2 (unified: `<root>/cgroup.controllers`) from v1 (per-controller directories, plus
 * `<root>/unified` on a hybrid host), as runc does (https://github.com/opencontainers/runc/blob/main/docs/cgroup-v2.md).
 * Undefined when `root` holds no cgroup filesystem.
 */
export async function detectCgroupLayout(root: string, exists: Exists): Promise<CgroupLayout | undefined> {
  const r = trimRoot(root);
  const present = await Promise.all(LAYOUT_MARKERS.map((m) => exists(`${r}/${m}`)));
  return layoutFrom(r, new Set(LAYOUT_MARKERS.filter((_, i) => present[i])));
}

/** detectCgroupLayout with a synchronous exists (fs.existsSync), for a choice made at start-up. */
export function detectCgroupLayoutSync(root: string, exists: (path: string) => boolean): CgroupLayout | undefined {
  const r = trimRoot(root);
  return layoutFrom(r, new Set(LAYOUT_MARKERS.filter((m) => exists(`${r}/${m}`))));
}

function trimRoot(root: string): string {
  return root.length > 1 && root.endsWith('/') ? root.slice(0, -1) : root;
}

function layoutFrom(r: string, has: ReadonlySet<LayoutMarker>): CgroupLayout | undefined {
  if (has.has('cgroup.controllers')) return { version: 2, root: r };
  if (!has.has('cpuacct') && !has.has('cpu,cpuacct') && !has.has('memory')) return undefined;
  return has.has('unified/cgroup.controllers') ? { version: 1, root: r, unified: `${r}/unified` } : { version: 1, root: r };
}

/**
 * Finds a container's cgroup from its process's `/proc/<pid>/cgroup` text. With `id` (the full
 * container id) the path is cut to its last component that names the container (`<id>`,
 * `docker-<id>.scope`, `libpod-<id>.scope`, …, but not `libpod-conmon-<id>.scope`), so a process that
 * moved itself into a sub-cgroup (systemd's `init.scope` in the container) still yields the
 * container's cgroup, and a process in a cgroup that is not the container's yields none.
 * Not found: no usable line, a path relative to another cgroup namespace (the exporter runs with
 * its own: it needs the host's), a removed cgroup, or a directory missing under the root.
 */
export async function locateCgroup(layout: CgroupLayout, procCgroup: string, exists: Exists, id?: string): Promise<Located> {
  const proc = parseProcCgroup(procCgroup);
  if (!proc) return { found: false, reason: 'no usable line in /proc/<pid>/cgroup' };
  return layout.version === 2 ? locateV2(layout, proc, exists, id) : locateV1(layout, proc, exists, id);
}

async function locateV2(layout: CgroupLayout, proc: ProcCgroup, exists: Exists, id: string | undefined): Promise<Located> {
  if (proc.unified === undefined) return { found: false, reason: 'no cgroup v2 line (0::) in /proc/<pid>/cgroup' };
  const p = containerPath(proc.unified, id);
  if (typeof p !== 'string') return { found: false, reason: p.reason };
  const dir = layout.root + p;
  // cpu.stat is a core file of every v2 cgroup (Linux 4.15+), whichever controllers are enabled.
  if (!(await exists(`${dir}/cpu.stat`))) return { found: false, reason: `no cgroup directory ${dir}` };
  const files = await probe(exists, [
    ['cpuStat', `${dir}/cpu.stat`],
    ['memoryUsage', `${dir}/memory.current`],
    ['memoryMaxUsage', `${dir}/memory.peak`],
    ['memoryStat', `${dir}/memory.stat`],
    ['memorySwap', `${dir}/memory.swap.current`],
    ['pidsCurrent', `${dir}/pids.current`],
    ['pidsMax', `${dir}/pids.max`],
    ['ioStat', `${dir}/io.stat`],
    ['cpuPressure', `${dir}/cpu.pressure`],
    ['memoryPressure', `${dir}/memory.pressure`],
    ['ioPressure', `${dir}/io.pressure`],
  ]);
  return { found: true, location: { version: 2, dirs: { unified: dir }, files } };
}

async function locateV1(layout: CgroupLayout, proc: ProcCgroup, exists: Exists, id: string | undefined): Promise<Located> {
  const dirs: Partial<Record<'unified' | V1Controller, string>> = {};
  let cpuacctReason = 'no cpuacct line in /proc/<pid>/cgroup';
  const found = await Promise.all(
    V1_CONTROLLERS.map(async (c) => {
      const h = proc.v1.get(c);
      if (!h) return undefined;
      const p = containerPath(h.path, id);
      if (typeof p !== 'string') {
        if (c === 'cpuacct') cpuacctReason = p.reason;
        return undefined;
      }
      // Mounted by its controller list (`cpu,cpuacct`), usually with a symlink per controller.
      const at = h.list === c ? [`${layout.root}/${c}${p}`] : [`${layout.root}/${h.list}${p}`, `${layout.root}/${c}${p}`];
      for (const d of at) if (await exists(d)) return d;
      if (c === 'cpuacct') cpuacctReason = `no cgroup directory ${at.join(' or ')}`;
      return undefined;
    }),
  );
  V1_CONTROLLERS.forEach((c, i) => {
    if (found[i] !== undefined) dirs[c] = found[i];
  });
  if (dirs.cpuacct === undefined) return { found: false, reason: cpuacctReason };
  if (layout.unified !== undefined && proc.unified !== undefined) {
    const p = containerPath(proc.unified, id);
    if (typeof p === 'string' && (await exists(layout.unified + p))) dirs.unified = layout.unified + p;
  }
  const want: [keyof CgroupFiles, string][] = [
    ['cpuUsage', `${dirs.cpuacct}/cpuacct.usage`],
    ['cpuTicks', `${dirs.cpuacct}/cpuacct.stat`],
  ];
  if (dirs.cpu) want.push(['cpuStat', `${dirs.cpu}/cpu.stat`]);
  if (dirs.memory) {
    want.push(
      ['memoryUsage', `${dirs.memory}/memory.usage_in_bytes`],
      ['memoryMaxUsage', `${dirs.memory}/memory.max_usage_in_bytes`],
      ['memoryStat', `${dirs.memory}/memory.stat`],
      ['memorySwap', `${dirs.memory}/memory.memsw.usage_in_bytes`],
    );
  }
  if (dirs.pids) want.push(['pidsCurrent', `${dirs.pids}/pids.current`], ['pidsMax', `${dirs.pids}/pids.max`]);
  if (dirs.blkio) {
    // containerd reads the CFQ files when the kernel has them and they list a device, else the
    // throttle ones, and those not *_recursive (https://github.com/containerd/cgroups/blob/v1.1.0/blkio.go, Stat).
    want.push(
      ['blkioBytes', `${dirs.blkio}/blkio.throttle.io_service_bytes`],
      ['blkioServiced', `${dirs.blkio}/blkio.throttle.io_serviced`],
      ['blkioCfqBytes', `${dirs.blkio}/blkio.io_service_bytes_recursive`],
      ['blkioCfqServiced', `${dirs.blkio}/blkio.io_serviced_recursive`],
    );
  }
  if (dirs.unified) {
    want.push(['cpuPressure', `${dirs.unified}/cpu.pressure`], ['memoryPressure', `${dirs.unified}/memory.pressure`], ['ioPressure', `${dirs.unified}/io.pressure`]);
  }
  return { found: true, location: { version: 1, dirs, files: await probe(exists, want) } };
}

/** The files of `want` that exist. */
async function probe(exists: Exists, want: [keyof CgroupFiles, string][]): Promise<CgroupFiles> {
  const present = await Promise.all(want.map(([, path]) => exists(path)));
  const files: CgroupFiles = {};
  want.forEach(([key, path], i) => {
    if (present[i]) files[key] = path;
  });
  return files;
}

/** The container's cgroup path within its hierarchy, or why it cannot be used. */
function containerPath(path: string, id: string | undefined): string | { reason: string } {
  // proc(5): a v2 cgroup removed while the process is in it is shown with this suffix.
  if (path.endsWith(' (deleted)')) return { reason: `cgroup ${path}: removed` };
  if (path === '/') return { reason: 'the process is in the root cgroup, not a container cgroup' };
  const parts = path.split('/');
  for (let i = 1; i < parts.length; i++) {
    const part = parts[i]!;
    // cgroup_namespaces(7): a cgroup outside the reader's namespace is shown relative to its root.
    if (part === '..') return { reason: `cgroup ${path} is relative to another cgroup namespace: the exporter needs the host's (docker run --cgroupns=host)` };
    if (part === '' || part === '.') return { reason: `unusable cgroup path ${path}` };
  }
  if (id === undefined) return path;
  for (let i = parts.length - 1; i > 0; i--) if (namesContainer(parts[i]!, id)) return parts.slice(0, i + 1).join('/');
  return { reason: `cgroup ${path} does not name container ${id.slice(0, 12)}` };
}

/** `<id>`, or `<manager>-<id>` / `<manager>-<id>.scope` with a one-word manager (docker, libpod, crio). */
function namesContainer(part: string, id: string): boolean {
  const at = part.indexOf(id);
  if (at === -1) return false;
  const rest = part.length - at - id.length;
  if (rest !== 0 && !(rest === 6 && part.endsWith('.scope'))) return false;
  return at === 0 || /^[a-z0-9_]+-$/.test(part.slice(0, at));
}

const NONE: Promise<null> = Promise.resolve(null);

/** A tuple of file texts with none gone. */
type Present<T> = { [K in keyof T]: Exclude<T[K], undefined> };

/** Kernel USER_HZ, as containerd's cgroups package hard-codes it (ticks.go) to convert cpuacct.stat. */
const CLOCK_TICKS = 100;
const NS_PER_TICK = 1e9 / CLOCK_TICKS;

// Kernel pid_max is at most 2^22: a larger pids.max is "unlimited" as parseStats treats it.
const UNLIMITED = 2 ** 63;

const V1_TICKS = ['user', 'system'] as const;
const V1_CPU = ['nr_periods', 'nr_throttled', 'throttled_time'] as const;
// moby copies these total_* keys (hierarchical: the container and any sub-cgroups) into the
// payload, and parseStats reads them (statsV1 in daemon/stats_unix.go).
const V1_MEMORY = ['total_rss', 'total_cache', 'total_mapped_file', 'total_inactive_file', 'total_pgfault', 'total_pgmajfault'] as const;
const V2_CPU = ['usage_usec', 'user_usec', 'system_usec', 'nr_periods', 'nr_throttled', 'throttled_usec'] as const;
const V2_MEMORY = ['anon', 'file', 'file_mapped', 'inactive_file', 'pgfault', 'pgmajfault'] as const;

/**
 * Interfaces the engine never reports: loopback, and the fallback devices that tunnel modules
 * (ipip, ip_gre, ip_vti, sit, ip6_tunnel, ip6_gre) add to every network namespace unless
 * net.core.fb_tunnels_only_for_init_net is set (https://docs.kernel.org/admin-guide/sysctl/net.html).
 * The engine lists only the interfaces it attached (libnetwork sandbox Statistics).
 */
const NOT_ATTACHED = new Set(['lo', 'tunl0', 'gre0', 'gretap0', 'erspan0', 'ip_vti0', 'ip6_vti0', 'sit0', 'ip6tnl0', 'ip6gre0']);

/**
 * Reads one container's sample from its located files, in parallel. Null when a listed file is gone
 * (the container stopped or was removed: no sample, locate again if it runs again). A file cut short
 * or garbled leaves its fields out, counted in `malformed`; it never throws for that. Rejects only
 * when `read` does (permissions, I/O errors), except an unreadable PSI file, left out.
 */
export async function readCgroupSample(location: CgroupLocation, read: ReadFile, options: ReadOptions = {}): Promise<StatsSample | null> {
  const f = location.files;
  const get = (path: string | undefined): Promise<string | null | undefined> => (path === undefined ? NONE : read(path));
  const texts = await Promise.all([
    get(f.cpuUsage),
    get(f.cpuTicks),
    get(location.version === 1 && options.throttling === false ? undefined : f.cpuStat),
    get(f.memoryUsage),
    get(f.memoryMaxUsage),
    get(f.memoryStat),
    get(f.memorySwap),
    get(f.pidsCurrent),
    get(f.pidsMax),
    get(f.blkioBytes),
    get(f.blkioServiced),
    get(f.blkioCfqBytes),
    get(f.blkioCfqServiced),
    get(f.ioStat),
    pressureFile(read, f.cpuPressure),
    pressureFile(read, f.memoryPressure),
    pressureFile(read, f.ioPressure),
    get(options.netDev),
  ]);
  // Every listed file existed when the container was located: one missing now, it has gone.
  if (texts.includes(undefined)) return null;
  const [cpuUsage, cpuTicks, cpuStat, memUsage, memMax, memStat, memSwap, pidsCurrent, pidsMax, blkBytes, blkServiced, cfqBytes, cfqServiced, ioStat, cpuP, memP, ioP, netDev] =
    texts as Present<typeof texts>;

  const v1 = location.version === 1;
  const s: StatsSample = { read: 0, flavour: v1 ? 'cgroup1' : 'cgroup2', networks: [], blkio: [], malformed: 0 };

  if (v1) {
    if (cpuUsage !== null) {
      const ns = parseCgroupValue(cpuUsage, s);
      if (ns !== undefined) s.cpuTotalSeconds = ns / 1e9;
    }
    if (cpuTicks !== null) {
      // containerd: ticks × 1e9 / USER_HZ, exact in its uint64; here one rounding, as JSON.parse's.
      const t = parseKeyed(cpuTicks, V1_TICKS, s);
      if (t.user !== undefined) s.cpuUserSeconds = (t.user * NS_PER_TICK) / 1e9;
      if (t.system !== undefined) s.cpuSystemSeconds = (t.system * NS_PER_TICK) / 1e9;
    }
    if (cpuStat !== null) {
      const t = parseKeyed(cpuStat, V1_CPU, s);
      s.cfsPeriods = t.nr_periods;
      s.cfsThrottledPeriods = t.nr_throttled;
      if (t.throttled_time !== undefined) s.cfsThrottledSeconds = t.throttled_time / 1e9;
    }
  } else if (cpuStat !== null) {
    // moby statsV2: the µs of cpu.stat × 1000 into the payload's ns.
    const t = parseKeyed(cpuStat, V2_CPU, s);
    if (t.usage_usec !== undefined) s.cpuTotalSeconds = (t.usage_usec * 1000) / 1e9;
    if (t.user_usec !== undefined) s.cpuUserSeconds = (t.user_usec * 1000) / 1e9;
    if (t.system_usec !== undefined) s.cpuSystemSeconds = (t.system_usec * 1000) / 1e9;
    s.cfsPeriods = t.nr_periods;
    s.cfsThrottledPeriods = t.nr_throttled;
    if (t.throttled_usec !== undefined) s.cfsThrottledSeconds = (t.throttled_usec * 1000) / 1e9;
  }

  const usage = memUsage === null ? undefined : parseCgroupValue(memUsage, s);
  s.memoryUsageBytes = usage;
  // v2: memory.peak, as runc and cAdvisor read it; the engine reports no max usage on v2.
  if (memMax !== null) s.memoryMaxUsageBytes = parseCgroupValue(memMax, s);
  if (memStat !== null) {
    let inactive: number | undefined;
    if (v1) {
      const m = parseKeyed(memStat, V1_MEMORY, s);
      s.memoryRssBytes = m.total_rss;
      s.memoryCacheBytes = m.total_cache;
      s.memoryMappedFileBytes = m.total_mapped_file;
      s.pgfault = m.total_pgfault;
      s.pgmajfault = m.total_pgmajfault;
      inactive = m.total_inactive_file;
    } else {
      const m = parseKeyed(memStat, V2_MEMORY, s);
      s.memoryRssBytes = m.anon;
      s.memoryCacheBytes = m.file;
      s.memoryMappedFileBytes = m.file_mapped;
      s.pgfault = m.pgfault;
      s.pgmajfault = m.pgmajfault;
      inactive = m.inactive_file;
    }
    // parseStats' working set; without a usable inactive_file it is unknown, not usage.
    if (usage !== undefined && inactive !== undefined) s.memoryWorkingSetBytes = Math.max(0, usage - inactive);
  }
  if (memSwap !== null) {
    const swap = parseCgroupValue(memSwap, s);
    // v1 counts memory + swap in one counter, read a moment apart from usage: floored at 0.
    if (swap !== undefined) {
      if (!v1) s.memorySwapBytes = swap;
      else if (usage !== undefined) s.memorySwapBytes = Math.max(0, swap - usage);
    }
  }

  if (pidsCurrent !== null) s.threads = parseCgroupValue(pidsCurrent, s);
  if (pidsMax !== null) {
    // "max", and 0 (the engine's "no limit" for v1), are no limit: parseStats omits both.
    const max = parseCgroupLimit(pidsMax, s);
    if (max && max < UNLIMITED) s.threadsMax = max;
  }

  if (v1) {
    if (cfqBytes !== null) parseBlkio(cfqBytes, s.blkio, 'readBytes', 'writeBytes', s);
    if (cfqServiced !== null) parseBlkio(cfqServiced, s.blkio, 'reads', 'writes', s);
    if (s.blkio.length === 0) {
      if (blkBytes !== null) parseBlkio(blkBytes, s.blkio, 'readBytes', 'writeBytes', s);
      if (blkServiced !== null) parseBlkio(blkServiced, s.blkio, 'reads', 'writes', s);
    }
  } else if (ioStat !== null) {
    // With the read and write counts, which the engine drops on v2 (runc and cAdvisor keep them).
    parseIoStat(ioStat, s.blkio, s);
  }

  if (cpuP !== null) {
    const p = parsePressure(cpuP, s);
    if (p.some !== undefined) s.pressureCpuWaitingSeconds = p.some / 1e6;
    if (p.full !== undefined) s.pressureCpuStalledSeconds = p.full / 1e6;
  }
  if (memP !== null) {
    const p = parsePressure(memP, s);
    if (p.some !== undefined) s.pressureMemoryWaitingSeconds = p.some / 1e6;
    if (p.full !== undefined) s.pressureMemoryStalledSeconds = p.full / 1e6;
  }
  if (ioP !== null) {
    const p = parsePressure(ioP, s);
    if (p.some !== undefined) s.pressureIoWaitingSeconds = p.some / 1e6;
    if (p.full !== undefined) s.pressureIoStalledSeconds = p.full / 1e6;
  }

  if (netDev !== null) s.networks = attached(parseNetDev(netDev, s));

  s.read = (options.now ?? Date.now)() / 1000;
  return s;
}

/**
 * A PSI file, or null when PSI is off: booted with psi=0, kernels before 5.19 keep the files and
 * fail their reads with EOPNOTSUPP (later ones hide them).
 */
function pressureFile(read: ReadFile, path: string | undefined): Promise<string | null | undefined> {
  if (path === undefined) return NONE;
  return read(path).catch((err: unknown) => {
    if ((err as NodeJS.ErrnoException | null)?.code === 'EOPNOTSUPP') return null;
    throw err;
  });
}

/**
 * The interfaces the engine would list, in its order (Go's encoding/json writes map keys sorted).
 * Their error counts are the kernel's: the engine's are always 0, libnetwork copying only bytes,
 * packets and drops (https://github.com/moby/moby/blob/v28.0.0/libnetwork/osl/interface_linux.go, Statistics).
 */
function attached(all: NetworkSample[]): NetworkSample[] {
  const out = all.filter((n) => !NOT_ATTACHED.has(n.name));
  if (out.length > 1) out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  return out;
}

// Errors of a cgroup or process that went away while it was read: ENOENT (removed), ENODEV (a
// cgroup file of a removed cgroup still open), ESRCH (/proc/<pid> of an exited process).
const GONE = new Set(['ENOENT', 'ENODEV', 'ESRCH']);

/**
 * The exporter's ReadFile: the file read at once on the calling thread. cgroupfs and procfs make
 * their files in memory when read, so this never waits on a disk; it holds the event loop only for
 * the syscalls (~0.2 ms a container), which the threadpool would spend too, and 4–6× more besides.
 */
export function readCgroupFile(path: string): Promise<string | undefined> {
  try {
    return Promise.resolve(readFileSync(path, 'utf8'));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code !== undefined && GONE.has(code) ? Promise.resolve(undefined) : Promise.reject(err);
  }
}

/** The same through libuv's threadpool (fs.readFile): never holds the event loop, 4–6× the CPU. */
export function readCgroupFileInPool(path: string): Promise<string | undefined> {
  return new Promise((resolve, reject) => {
    readFile(path, 'utf8', (err, text) => {
      if (!err) resolve(text);
      else if (err.code !== undefined && GONE.has(err.code)) resolve(undefined);
      else reject(err);
    });
  });
}

/** Scratch for the reads below: they are synchronous, so one buffer serves every file. */
let scratch = Buffer.allocUnsafe(16 * 1024);

/**
 * The text of an open cgroup or proc file, read from offset 0 with pread. These are seq_files: one
 * read fills the buffer with every record that fits and stops short only at the end, so a short
 * read is the whole file (no second read to see EOF, which readFileSync makes, with an fstat).
 */
function readOpen(fd: number): string {
  let n = readSync(fd, scratch, 0, scratch.length, 0);
  while (n === scratch.length) {
    const bigger = Buffer.allocUnsafe(scratch.length * 2);
    scratch.copy(bigger, 0, 0, n);
    scratch = bigger;
    n += readSync(fd, scratch, n, scratch.length - n, n);
  }
  return scratch.toString('utf8', 0, n);
}

/** File descriptors the FileCaches of one source hold open, and how many they may. */
export class FdBudget {
  open = 0;
  constructor(readonly max: number) {}

  /**
   * The budget for this process: what RLIMIT_NOFILE leaves after a quarter of it (at least 1,024)
   * for sockets and everything else, and at most 32,768. Each open cgroup file holds its seq_file
   * buffer in the kernel: 4.6 KiB of unreclaimable slab a file, measured (8,000 files read and kept
   * open, /proc/meminfo before and after), so ~65 KiB a v1 container (14 files), next to the
   * several MB of the container's own shim; 150 MB at the cap. process_open_fds counts them with
   * one stat on Linux 6.2+; older kernels list /proc/self/fd at each scrape, ~1 µs an entry (open-fds.ts).
   */
  static forThisProcess(procfs = '/proc'): FdBudget {
    let soft = 1024;
    try {
      const m = /^Max open files\s+(\d+|unlimited)/m.exec(readFileSync(`${procfs}/self/limits`, 'utf8'));
      if (m) soft = m[1] === 'unlimited' ? Number.MAX_SAFE_INTEGER : Number(m[1]);
    } catch {
      // No /proc/self/limits: assume the common default.
    }
    return new FdBudget(Math.max(0, Math.min(FD_CAP, soft - Math.max(1024, Math.floor(soft / 4)))));
  }
}

const FD_CAP = 32_768;

/**
 * One container's cgroup files, kept open between scrapes and read again at offset 0: one pread a
 * file instead of open, fstat, two reads and close. Measured on this project's test VM (Linux 6.18,
 * hybrid v1, 15 files of a running container, median of 2,000 rounds): 220 µs of CPU a container
 * with readFileSync, 168 µs with open/read/close into one buffer, 43 µs with the files kept open.
 * Files under `keepUnder` (the cgroup root) and `keepAlso` (the container's `/proc/<pid>/net/dev`)
 * are kept open, within the shared `budget`; others are opened for each read. An open net/dev holds
 * the container's network namespace while it is open (the sample is of that namespace, so a reused
 * pid cannot show another's): its owner closes the cache when the container stops, restarts or its
 * cgroup goes. Opening it is the dearest of these files (~23 µs, a procfs lookup of the pid; the
 * profile of a scrape at 100 containers: 2.3 ms of opens of the 14 ms of reads). A file of a
 * removed cgroup answers ENODEV: gone, and closed.
 * A PSI file the kernel refuses (EOPNOTSUPP) is not asked again: null from then on. No text is
 * cached: with its file open, a limit (pids.max) costs ~2.5 µs a read (the profile of a scrape at
 * 100 containers: 3.2 ms of preads in all), less than keeping it right across `docker update` is worth.
 */
export class FileCache {
  private readonly fds = new Map<string, number>();
  private readonly refused = new Set<string>();

  constructor(
    private readonly budget: FdBudget,
    private readonly keepUnder: string,
    private readonly keepAlso?: string,
  ) {}

  /** A ReadFile over this cache. */
  readonly read: ReadFile = (path) => {
    try {
      return Promise.resolve(this.readNow(path));
    } catch (err) {
      return Promise.reject(err);
    }
  };

  /** Open descriptors of this cache (for tests). */
  get openFiles(): number {
    return this.fds.size;
  }

  private readNow(path: string): string | null | undefined {
    if (this.refused.has(path)) return null;
    let fd = this.fds.get(path);
    let keep = fd !== undefined;
    try {
      if (fd === undefined) {
        fd = openSync(path, 'r');
        if (this.budget.open < this.budget.max && (path.startsWith(this.keepUnder) || path === this.keepAlso)) {
          this.fds.set(path, fd);
          this.budget.open++;
          keep = true;
        }
      }
      return readOpen(fd);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (keep) this.drop(path);
      if (code === 'EOPNOTSUPP' && path.endsWith('.pressure')) {
        this.refused.add(path);
        return null;
      }
      if (code !== undefined && GONE.has(code)) return undefined;
      throw err;
    } finally {
      if (!keep && fd !== undefined) closeSync(fd);
    }
  }

  private drop(path: string): void {
    const fd = this.fds.get(path);
    if (fd === undefined) return;
    this.fds.delete(path);
    this.budget.open--;
    try {
      closeSync(fd);
    } catch {
      // Closed already: nothing to release.
    }
  }

  /** Closes every file (the container stopped, restarted or is no longer followed). */
  close(): void {
    for (const path of [...this.fds.keys()]) this.drop(path);
    this.refused.clear();
  }
}

/** The exporter's Exists: fs.promises.access (an unreadable path counts as absent). */
export function pathExists(path: string): Promise<boolean> {
  return access(path).then(
    () => true,
    () => false,
  );
}
