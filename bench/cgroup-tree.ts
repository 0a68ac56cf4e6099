/**
 * A simulated host's cgroup tree for the fake engine's containers, so that the cgroupfs source can
 * run at 1,000 containers where real ones would not fit: under one root, what `--path.rootfs`
 * points the exporter at —
 *   sys/fs/cgroup/cgroup.controllers                      cgroup v2 (unified)
 *   sys/fs/cgroup/system.slice/docker-<id>.scope/…        the systemd driver's layout, every file the
 *                                                          source reads on v2 (cpu.stat, memory.*, pids.*,
 *                                                          io.stat, *.pressure)
 *   proc/<pid>/cgroup, proc/<pid>/net/dev                  each container's first process
 * File formats are those of test/fixtures/cgroup/v2-systemd/ (runc's test data, see its README),
 * with figures scaled to small containers and varied per container; the moving counters
 * (cpu.stat, memory.current, net/dev) are rewritten in place every few seconds: in place because
 * the exporter keeps the cgroup files open and reads them again at offset 0, so a file replaced by
 * a rename would never be seen to change.
 *
 * What it does not reproduce: these are regular files on a tmpfs, not the kernel's seq_files, so a
 * read costs the page-cache copy rather than the kernel formatting the figures (on this machine's
 * cgroupfs the median pread of an open file is ~3 µs; see FileCache in src/stats/cgroup-files.ts).
 */
import fs from 'node:fs';
import path from 'node:path';

/** What the tree needs of one container. */
export interface TreeContainer {
  id: string;
  pid: number;
  /** Small integer that varies the figures. */
  index: number;
  /** CPU used, in cores, to move cpu.stat. */
  cores: number;
  /** Network interfaces the engine reports for it (none: `--network host` or none). */
  interfaces: string[];
  /** Bytes a second received on each interface. */
  netBytesPerS: number;
  /** A pids limit, or none. */
  pidsMax?: number;
  /** Whether its block I/O shows in io.stat. */
  io: boolean;
  createdMs: number;
}

/** The simulated tree; every path it writes is under `root`. */
export class CgroupTree {
  readonly sysfs: string;
  readonly procfs: string;
  private readonly cgroupRoot: string;
  private readonly live = new Map<string, TreeContainer>();

  constructor(readonly root: string) {
    this.sysfs = path.join(root, 'sys');
    this.procfs = path.join(root, 'proc');
    this.cgroupRoot = path.join(this.sysfs, 'fs/cgroup');
    fs.mkdirSync(path.join(this.cgroupRoot, 'system.slice'), { recursive: true });
    fs.mkdirSync(this.procfs, { recursive: true });
    fs.writeFileSync(path.join(this.cgroupRoot, 'cgroup.controllers'), 'cpuset cpu io memory hugetlb pids rdma misc\n');
    fs.writeFileSync(path.join(this.cgroupRoot, 'system.slice/cgroup.controllers'), 'cpuset cpu io memory pids\n');
  }

  /** The container's cgroup directory. */
  dirOf(id: string): string {
    return path.join(this.cgroupRoot, 'system.slice', `docker-${id}.scope`);
  }

  add(c: TreeContainer, nowMs = Date.now()): void {
    const dir = this.dirOf(c.id);
    fs.mkdirSync(dir, { recursive: true });
    const k = c.index % 17;
    const anon = 300_000 + k * 40_960;
    const file = 1_200_000 + k * 81_920;
    const w = (name: string, text: string): void => fs.writeFileSync(path.join(dir, name), text);
    w('cgroup.controllers', 'cpu io memory pids\n');
    w('memory.peak', `${anon + file + 900_000}\n`);
    w('memory.stat', memoryStat(anon, file, k));
    w('memory.swap.current', '0\n');
    w('pids.current', `${1 + (k % 3)}\n`);
    w('pids.max', c.pidsMax === undefined ? 'max\n' : `${c.pidsMax}\n`);
    w('io.stat', c.io ? `254:0 rbytes=${4096 * (10 + k)} wbytes=${8192 * k} rios=${10 + k} wios=${2 * k} dbytes=0 dios=0\n` : '');
    w('cpu.pressure', pressure(1200 + k * 31, 600 + k * 7));
    w('memory.pressure', pressure(0, 0));
    w('io.pressure', pressure(k * 11, k * 5));
    const proc = path.join(this.procfs, String(c.pid));
    fs.mkdirSync(path.join(proc, 'net'), { recursive: true });
    fs.writeFileSync(path.join(proc, 'cgroup'), `0::/system.slice/docker-${c.id}.scope\n`);
    this.live.set(c.id, c);
    this.move(c, nowMs);
  }

  remove(id: string): void {
    const c = this.live.get(id);
    if (!c) return;
    this.live.delete(id);
    fs.rmSync(this.dirOf(id), { recursive: true, force: true });
    fs.rmSync(path.join(this.procfs, String(c.pid)), { recursive: true, force: true });
  }

  /** Rewrites every container's moving counters for the time `nowMs`. */
  tick(nowMs = Date.now()): void {
    for (const c of this.live.values()) this.move(c, nowMs);
  }

  close(): void {
    fs.rmSync(this.root, { recursive: true, force: true });
  }

  private move(c: TreeContainer, nowMs: number): void {
    const dir = this.dirOf(c.id);
    const t = Math.max(0, (nowMs - c.createdMs) / 1000);
    const usage = Math.floor((c.cores * t + 0.05) * 1e6) + (c.index % 97);
    const user = Math.floor(usage * 0.65);
    const periods = c.pidsMax === undefined ? 0 : Math.floor(t * 10);
    overwrite(
      path.join(dir, 'cpu.stat'),
      `usage_usec ${usage}\nuser_usec ${user}\nsystem_usec ${usage - user}\nnr_periods ${periods}\nnr_throttled ${Math.floor(periods / 20)}\nthrottled_usec ${Math.floor(periods * 500)}\nnr_bursts 0\nburst_usec 0\n`,
    );
    const k = c.index % 17;
    overwrite(path.join(dir, 'memory.current'), `${300_000 + k * 40_960 + 1_200_000 + k * 81_920 + 512_000 + (Math.floor(t) % 8) * 4096}\n`);
    const rx = Math.floor(c.netBytesPerS * t) + 698;
    overwrite(path.join(this.procfs, String(c.pid), 'net/dev'), netDev(c.interfaces, rx));
  }
}

/**
 * Writes `text` over the file's bytes where it is (no new inode: an open descriptor sees it), then
 * cuts what an older, longer text left. A reader at that moment may see a mix, as it may see a
 * counter change between two of the kernel's files; the figures only grow, so the length rarely shrinks.
 */
function overwrite(file: string, text: string): void {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r+');
  } catch {
    fs.writeFileSync(file, text);
    return;
  }
  try {
    const n = fs.writeSync(fd, text, 0);
    fs.ftruncateSync(fd, n);
  } finally {
    fs.closeSync(fd);
  }
}

/** memory.stat with the keys (and order) of the v2-systemd fixture, scaled to a small container. */
function memoryStat(anon: number, file: number, k: number): string {
  const inactiveFile = Math.floor(file * 0.8);
  const rows: Array<[string, number]> = [
    ['anon', anon], ['file', file], ['kernel_stack', 16_384 + k * 4096], ['pagetables', 40_960], ['percpu', 288], ['sock', 0],
    ['shmem', 0], ['file_mapped', Math.floor(file / 3)], ['file_dirty', 0], ['file_writeback', 0], ['swapcached', 0], ['anon_thp', 0],
    ['file_thp', 0], ['shmem_thp', 0], ['inactive_anon', anon], ['active_anon', 4096], ['inactive_file', inactiveFile], ['active_file', file - inactiveFile],
    ['unevictable', 0], ['slab_reclaimable', 90_000 + k * 1000], ['slab_unreclaimable', 120_000], ['slab', 210_000 + k * 1000],
    ['workingset_refault_anon', 0], ['workingset_refault_file', 0], ['workingset_activate_anon', 0], ['workingset_activate_file', 0],
    ['workingset_restore_anon', 0], ['workingset_restore_file', 0], ['workingset_nodereclaim', 0], ['pgfault', 1500 + k * 37],
    ['pgmajfault', k], ['pgrefill', 0], ['pgscan', 0], ['pgsteal', 0], ['pgactivate', 12], ['pgdeactivate', 0], ['pglazyfree', 0],
    ['pglazyfreed', 0], ['thp_fault_alloc', 0], ['thp_collapse_alloc', 0],
  ];
  return rows.map(([key, v]) => `${key} ${v}\n`).join('');
}

function pressure(some: number, full: number): string {
  return `some avg10=0.00 avg60=0.00 avg300=0.00 total=${some}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=${full}\n`;
}

/** /proc/<pid>/net/dev in dev_seq_printf_stats' layout: lo, the interfaces, and the fallback tunnel tunl0. */
function netDev(interfaces: string[], rx: number): string {
  const line = (name: string, rb: number, rp: number, tb: number, tp: number): string =>
    `${name.padStart(6)}: ${String(rb).padStart(7)} ${String(rp).padStart(7)}    0    0    0     0          0         0 ${String(tb).padStart(8)} ${String(tp).padStart(7)}    0    0    0     0       0          0\n`;
  let out = 'Inter-|   Receive                                                |  Transmit\n face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n';
  out += line('lo', 0, 0, 0, 0);
  out += line('tunl0', 0, 0, 0, 0);
  for (const name of interfaces) out += line(name, rx, Math.floor(rx / 70), Math.floor(rx / 3), Math.floor(rx / 210));
  return out;
}
