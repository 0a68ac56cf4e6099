/**
 * `npm run bench`: what the exporter costs the host, measured on the real engine with N real
 * containers, and at 1,000 / 5,000 containers against the fake engine. See bench/README.md.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pLimit from 'p-limit';
import { KIND_CYCLE, type Kind } from './fake-engine.js';
import { BENCH_IMAGE, NODE_FLAGS, cpuSecondsOf, docker, listProcesses, median, percentile, REPO_ROOT, rssBytesOf, sleep, socketGet, TEST_LABEL } from './lib.js';
import { parseDuration } from '../src/duration.js';

// ---------------------------------------------------------------- options

interface Options {
  containers: number;
  windowMs: number;
  rounds: number;
  /** `poll`, `stream`, or either with `@name` for the exporter at `--alt name=PATH` (A/B runs). */
  modes: string[];
  alt: Record<string, string>;
  simulate: number[];
  simWindowMs: number;
  simRounds: number;
  intervalMs: number;
  scrapeEveryMs: number;
  scrapes: number;
  soakMs: number;
  only: 'all' | 'real' | 'sim';
  out: string;
  cpuProf: boolean;
  quick: boolean;
  exporterArgs: string[];
}

const USAGE = `usage: npm run bench -- [flags] [-- extra exporter flags]
  --containers N      real containers on the engine (default 100)
  --window 60s        length of one measurement window (default 60s)
  --rounds K          windows per mode on the real engine, modes alternating (default 2)
  --modes poll,stream,cgroupfs  stats sources to compare: poll and stream (the engine's), cgroupfs (default all three);
                      MODE@NAME runs the exporter of --alt NAME
  --alt NAME=PATH     another build of the exporter (its dist/cli.js) to compare with, e.g. a patched tree
  --interval 15s      --stats.interval of the exporter, and Prometheus' scrape interval (default 15s)
  --scrapes 30        scrapes per format in each latency burst (default 30)
  --simulate 1000     fake-engine sizes, e.g. 100,1000,5000, or "none" (default 1000); each with a
                      simulated cgroup v2 tree for cgroupfs (bench/cgroup-tree.ts)
  --sim-window 60s    window length of the simulation (default: --window)
  --sim-rounds K      windows per mode per size in the simulation (default 1)
  --soak 10m          also run the default mode this long on the real engine and report RSS drift (default off)
  --only real|sim     run only one part
  --out DIR           results folder (default bench/results)
  --cpu-prof          run the exporter under node --cpu-prof (profiles into <out>/profiles)
  --quick             a short sanity run: 10 containers, 15 s windows, 1 round, simulate 200, 20 scrapes`;

function parseOptions(argv: string[]): Options {
  const dashdash = argv.indexOf('--');
  const exporterArgs = dashdash >= 0 ? argv.slice(dashdash + 1) : [];
  const args = dashdash >= 0 ? argv.slice(0, dashdash) : argv;
  const values = new Map<string, string>();
  const flags = new Set<string>();
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    if (a === '--help' || a === '-h') {
      process.stdout.write(USAGE + '\n');
      process.exit(0);
    }
    if (!a.startsWith('--')) throw new Error(`unexpected argument "${a}"\n${USAGE}`);
    const [k, inline] = a.slice(2).split('=', 2) as [string, string | undefined];
    if (['quick', 'cpu-prof'].includes(k)) flags.add(k);
    else if (inline !== undefined) values.set(k, inline);
    else if (i + 1 < args.length) values.set(k, args[++i]!);
    else throw new Error(`--${k} needs a value\n${USAGE}`);
  }
  const known = ['alt', 'containers', 'window', 'rounds', 'modes', 'interval', 'scrapes', 'simulate', 'sim-window', 'sim-rounds', 'soak', 'only', 'out'];
  for (const k of values.keys()) if (!known.includes(k)) throw new Error(`unknown flag --${k}\n${USAGE}`);
  const quick = flags.has('quick');
  const int = (k: string, dflt: number, min = 1): number => {
    const v = values.get(k);
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) throw new Error(`--${k}: "${v}" is not a whole number ≥ ${min}`);
    return n;
  };
  const dur = (k: string, dflt: string): number => {
    try {
      return parseDuration(values.get(k) ?? dflt);
    } catch (err) {
      throw new Error(`--${k}: ${(err as Error).message}`);
    }
  };
  const modes = (values.get('modes') ?? 'poll,stream,cgroupfs').split(',').map((s) => s.trim());
  const alt: Record<string, string> = {};
  for (const item of (values.get('alt') ?? '').split(',').filter(Boolean)) {
    const [name, file] = item.split('=', 2) as [string, string | undefined];
    if (!file || !fs.existsSync(file)) throw new Error(`--alt: "${item}" is not NAME=PATH of an existing dist/cli.js`);
    alt[name] = path.resolve(file);
  }
  for (const m of modes) {
    const [base, name] = m.split('@', 2) as [string, string | undefined];
    if (base !== 'poll' && base !== 'stream' && base !== 'cgroupfs') throw new Error(`--modes: "${m}" is not poll, stream or cgroupfs`);
    if (name !== undefined && !alt[name]) throw new Error(`--modes: "${m}" names no --alt ${name}=PATH`);
  }
  const simRaw = values.get('simulate') ?? (quick ? '200' : '1000');
  const simulate = simRaw === 'none' || simRaw === '' ? [] : simRaw.split(',').map((s) => Number(s.trim()));
  for (const n of simulate) if (!Number.isInteger(n) || n < 1) throw new Error(`--simulate: "${simRaw}" is not a list of container counts`);
  const only = values.get('only') ?? 'all';
  if (!['all', 'real', 'sim'].includes(only)) throw new Error(`--only: "${only}" is not real or sim`);
  const windowMs = dur('window', quick ? '15s' : '60s');
  return {
    containers: int('containers', quick ? 10 : 100),
    windowMs,
    rounds: int('rounds', quick ? 1 : 2),
    modes,
    alt,
    simulate,
    simWindowMs: values.has('sim-window') ? dur('sim-window', '60s') : windowMs,
    simRounds: int('sim-rounds', 1),
    intervalMs: dur('interval', '15s'),
    scrapeEveryMs: dur('interval', '15s'),
    scrapes: int('scrapes', quick ? 20 : 30),
    soakMs: values.has('soak') ? dur('soak', '10m') : 0,
    only: only as Options['only'],
    out: path.resolve(values.get('out') ?? path.join(REPO_ROOT, 'bench/results')),
    cpuProf: flags.has('cpu-prof'),
    quick,
    exporterArgs,
  };
}

// ---------------------------------------------------------------- metric catalogue

/**
 * Every metric of /work/shared/METRICS.md. Those marked conditional appear only when something
 * happened or the engine reports the field (a request failure, blkio counters that this VM's
 * cgroup v1 engine does not report, an OOM).
 */
const CATALOGUE: Record<string, 'always' | 'conditional'> = {
  container_cpu_usage_seconds_total: 'always', container_cpu_user_seconds_total: 'always', container_cpu_system_seconds_total: 'always',
  container_cpu_cfs_periods_total: 'always', container_cpu_cfs_throttled_periods_total: 'always', container_cpu_cfs_throttled_seconds_total: 'always',
  container_memory_usage_bytes: 'always', container_memory_working_set_bytes: 'always', container_memory_rss: 'always', container_memory_cache: 'always',
  container_memory_mapped_file: 'always', container_memory_max_usage_bytes: 'always', container_memory_failures_total: 'always',
  container_network_receive_bytes_total: 'always', container_network_receive_packets_total: 'always', container_network_receive_packets_dropped_total: 'always',
  container_network_receive_errors_total: 'always', container_network_transmit_bytes_total: 'always', container_network_transmit_packets_total: 'always',
  container_network_transmit_packets_dropped_total: 'always', container_network_transmit_errors_total: 'always',
  container_fs_reads_bytes_total: 'conditional', container_fs_writes_bytes_total: 'conditional', container_fs_reads_total: 'conditional', container_fs_writes_total: 'conditional',
  container_threads: 'always', container_threads_max: 'always', container_last_seen: 'always',
  container_spec_memory_limit_bytes: 'always', container_spec_memory_reservation_limit_bytes: 'always', container_spec_memory_swap_limit_bytes: 'always',
  container_spec_cpu_quota: 'always', container_spec_cpu_period: 'always', container_spec_cpu_shares: 'always', container_start_time_seconds: 'always',
  container_health_state: 'always', docker_container_info: 'always', docker_container_state: 'always', docker_container_health_status: 'always',
  docker_container_health_failing_streak: 'always', docker_container_restarts_total: 'always', docker_container_exit_code: 'always',
  docker_container_oom_killed: 'always', docker_container_oom_events_total: 'always', docker_container_created_seconds: 'always',
  docker_container_started_at_seconds: 'always', docker_container_finished_at_seconds: 'always',
  docker_events_total: 'always',
  docker_disk_usage_objects: 'always', docker_disk_usage_active_objects: 'always', docker_disk_usage_bytes: 'always', docker_disk_usage_reclaimable_bytes: 'always',
  docker_container_rw_size_bytes: 'always', docker_container_rootfs_size_bytes: 'always', docker_volume_size_bytes: 'always', docker_volume_refcount: 'always',
  docker_up: 'always', docker_engine_info: 'always', docker_engine_cpus: 'always', docker_engine_memory_bytes: 'always', docker_engine_containers: 'always', docker_engine_images: 'always',
  docker_exporter_build_info: 'always', docker_exporter_collector_success: 'always', docker_exporter_collector_duration_seconds: 'always',
  docker_exporter_stats_streams: 'always', docker_exporter_docker_requests_total: 'always', docker_exporter_docker_request_failures_total: 'conditional',
  docker_exporter_events_reconnects_total: 'always',
};

// ---------------------------------------------------------------- exposition helpers

/** Sample lines of an exposition: name → count, plus the values of unlabelled and selected series. */
function summarise(text: string): { series: number; names: Map<string, number>; lines: string[] } {
  const names = new Map<string, number>();
  const lines: string[] = [];
  let series = 0;
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    series++;
    lines.push(line);
    const end = line.search(/[{ ]/);
    const name = end < 0 ? line : line.slice(0, end);
    names.set(name, (names.get(name) ?? 0) + 1);
  }
  return { series, names, lines };
}

/** Value of the first sample of `name` whose label text contains `labelPart` (or of the unlabelled one). */
function sampleValue(text: string, name: string, labelPart = ''): number | undefined {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    if (labelPart && !rest.includes(labelPart)) continue;
    return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return undefined;
}

// ---------------------------------------------------------------- exporter process

interface Scrape {
  ms: number;
  bytes: number;
  body: string;
}

class Exporter {
  private readonly agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  /** The body of the latest plain scrape. */
  lastBody: string | undefined;

  private constructor(
    readonly proc: ChildProcess,
    readonly port: number,
    /** The latest 500 lines of its stdout and stderr. */
    readonly logs: string[],
  ) {}

  get pid(): number {
    return this.proc.pid!;
  }

  static async start(cli: string, args: string[], opts: { cpuProfDir?: string }): Promise<Exporter> {
    // As `npm start`, the image and the systemd unit run it (test/unit/launchers.test.ts keeps them alike).
    const nodeArgs = [NODE_FLAGS, ...(opts.cpuProfDir ? ['--cpu-prof', '--cpu-prof-dir', opts.cpuProfDir] : [])];
    const proc = spawn(process.execPath, [...nodeArgs, cli, '--web.listen-address', '127.0.0.1:0', ...args], {
      cwd: path.dirname(path.dirname(cli)),
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DOCKER_HOST: undefined },
    });
    children.add(proc);
    proc.on('exit', () => children.delete(proc));
    const logs: string[] = [];
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`exporter did not listen within 30 s:\n${logs.join('\n')}`)), 30_000);
      for (const stream of [proc.stdout!, proc.stderr!]) {
        let buf = '';
        stream.setEncoding('utf8');
        // Always drained: a full pipe would stall the exporter and skew every number.
        stream.on('data', (chunk: string) => {
          buf += chunk;
          for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            logs.push(line);
            if (logs.length > 500) logs.shift();
            const m = /"msg":"listening"/.test(line) ? /"port":(\d+)/.exec(line) : null;
            if (m) {
              clearTimeout(timer);
              resolve(Number(m[1]));
            }
          }
        });
      }
      proc.on('exit', (code) => {
        clearTimeout(timer);
        reject(new Error(`exporter exited with ${code} before listening:\n${logs.join('\n')}`));
      });
    });
    // The same array goes on collecting lines for as long as the process runs.
    return new Exporter(proc, port, logs);
  }

  /** One GET /metrics over a kept-alive connection, timed to the last byte. */
  async scrape(gzip = false): Promise<Scrape> {
    try {
      return await this.scrapeOnce(gzip);
    } catch (err) {
      // The server may close an idle kept-alive socket just as it is reused (Node's 5 s keep-alive
      // timeout against a 15 s scrape interval); like Prometheus' client, try once more.
      if ((err as { reusedSocket?: boolean }).reusedSocket) return this.scrapeOnce(gzip);
      throw err;
    }
  }

  private scrapeOnce(gzip: boolean): Promise<Scrape> {
    return new Promise((resolve, reject) => {
      const started = performance.now();
      const headers: Record<string, string> = { accept: 'text/plain;version=0.0.4' };
      if (gzip) headers['accept-encoding'] = 'gzip';
      const req = http.get({ host: '127.0.0.1', port: this.port, path: '/metrics', agent: this.agent, headers, timeout: 120_000 }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const ms = performance.now() - started;
          const raw = Buffer.concat(chunks);
          if (res.statusCode !== 200) return reject(new Error(`GET /metrics: HTTP ${res.statusCode}: ${raw.toString().slice(0, 300)}`));
          const body = gzip ? '' : raw.toString();
          if (!gzip) this.lastBody = body;
          resolve({ ms, bytes: raw.length, body });
        });
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error('GET /metrics timed out')));
      req.on('error', (err) => reject(Object.assign(err, { reusedSocket: req.reusedSocket })));
    });
  }

  async stop(): Promise<void> {
    this.agent.destroy();
    if (this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    const exited = new Promise((r) => this.proc.once('exit', r));
    this.proc.kill('SIGTERM');
    const timer = setTimeout(() => this.proc.kill('SIGKILL'), 8000);
    await exited;
    clearTimeout(timer);
  }
}

/** Every child process of this run, so that Ctrl-C or a failure never leaves one behind. */
const children = new Set<ChildProcess>();

// ---------------------------------------------------------------- targets: the real engine or the fake one

interface Target {
  kind: 'real' | 'sim';
  n: number;
  /** --docker.host for the exporter, when not the default engine. */
  dockerHost?: string;
  /** The simulated host's root (cgroup tree and /proc) for the cgroupfs source: its --path.rootfs. */
  rootfs?: string;
  /** Engine processes to measure (dockerd, containerd, shims of this run's containers), by group. */
  engineProcesses(): Record<string, number[]>;
  /** Ids of this target's running containers (their stats series are what warm-up waits for). */
  runningIds(): string[];
  /** Starts one more container; resolves with its id once the engine reports it started. */
  addProbe(): Promise<string>;
  removeProbe(id: string): Promise<void>;
  /** Extra per-window facts (fake engine: samples served). */
  counters?(): Promise<Record<string, number>>;
  /**
   * Makes sure every container that should run does (a colleague's test may have restarted the
   * engine, which stops them all); returns an identity of the engine process to compare after.
   */
  ensureUp(): Promise<string>;
  cleanup(): Promise<void>;
}

async function realTarget(o: Options, runId: string): Promise<Target> {
  const label = `docker-exporter-bench=${runId}`;
  const net = `bench-${runId}-net`;
  const volume = `bench-${runId}-vol`;
  const ids: string[] = [];
  const running = new Set<string>();
  const probes = new Set<string>();
  let cleaned = false;
  const cleanup = async (): Promise<void> => {
    if (cleaned) return;
    cleaned = true;
    // Anything of this run, including containers whose `docker run` was still under way.
    const listed = (await docker(['ps', '-aq', '--no-trunc', '--filter', `label=${label}`]).catch(() => '')).split('\n').filter(Boolean);
    const all = [...new Set([...ids, ...probes, ...listed])];
    for (let i = 0; i < all.length; i += 50) await docker(['rm', '-f', '-v', ...all.slice(i, i + 50)]).catch(() => undefined);
    await docker(['network', 'rm', net]).catch(() => undefined);
    await docker(['volume', 'rm', '-f', volume]).catch(() => undefined);
  };
  cleanups.push(cleanup);
  await docker(['network', 'create', '--label', TEST_LABEL, '--label', label, net]);
  // One named volume, mounted by the limited containers: docker_volume_* need one to report.
  await docker(['volume', 'create', '--label', TEST_LABEL, '--label', label, volume]);
  const argsFor = (kind: Kind, i: number): string[] => {
    const base = ['run', '-d', '--name', `bench-${runId}-${kind}-${String(i).padStart(4, '0')}`, '--label', TEST_LABEL, '--label', label];
    switch (kind) {
      case 'idle':
        return [...base, '--label', `com.docker.compose.project=bench`, '--label', `com.docker.compose.service=idle${i % 7}`, BENCH_IMAGE, 'sleep', '86400'];
      case 'busy':
        return [...base, '--network', net, BENCH_IMAGE, 'sh', '-c', 'while true; do sleep 0.5; echo x >/dev/null; done'];
      case 'limited':
        return [...base, '--memory', '64m', '--cpus', '0.5', '--pids-limit', '100', '--health-cmd', 'true', '--health-interval', '30s', '-v', `${volume}:/data`, BENCH_IMAGE, 'sleep', '86400'];
      case 'exited':
        return [...base, BENCH_IMAGE, 'sh', '-c', 'exit 3'];
    }
  };
  log(`starting ${o.containers} containers (${label})`);
  const started = performance.now();
  const limit = pLimit(4);
  await Promise.all(
    Array.from({ length: o.containers }, (_, i) =>
      limit(async () => {
        const kind = KIND_CYCLE[i % KIND_CYCLE.length]!;
        const id = await docker(argsFor(kind, i));
        ids.push(id);
        if (kind !== 'exited') running.add(id);
      }),
    ),
  );
  log(`  ${o.containers} containers up in ${((performance.now() - started) / 1000).toFixed(1)} s`);
  let probeNo = 0;
  return {
    kind: 'real',
    n: o.containers,
    engineProcesses() {
      const procs = listProcesses();
      const mine = new Set([...running, ...probes]);
      return {
        dockerd: procs.filter((p) => p.comm === 'dockerd').map((p) => p.pid),
        containerd: procs.filter((p) => p.comm === 'containerd').map((p) => p.pid),
        // Only the shims of this run's containers: colleagues' containers are not our cost.
        shims: procs.filter((p) => p.comm.startsWith('containerd-shim') && [...mine].some((id) => p.args.includes(id))).map((p) => p.pid),
      };
    },
    runningIds: () => [...running],
    async ensureUp() {
      const up = new Set((await docker(['ps', '-q', '--no-trunc', '--filter', `label=${label}`])).split('\n').filter(Boolean));
      const down = [...running].filter((id) => !up.has(id));
      if (down.length) {
        log(`  ${down.length} of this run's containers are not running (engine restarted?): starting them again`);
        for (let i = 0; i < down.length; i += 50) await docker(['start', ...down.slice(i, i + 50)]);
      }
      return listProcesses().filter((p) => p.comm === 'dockerd').map((p) => p.pid).join(',');
    },
    async addProbe() {
      const id = await docker(argsFor('busy', 9000 + probeNo++));
      probes.add(id);
      return id;
    },
    async removeProbe(id) {
      await docker(['rm', '-f', id]);
      probes.delete(id);
    },
    cleanup,
  };
}

async function simTarget(n: number, runId: string): Promise<Target> {
  const socketPath = path.join(os.tmpdir(), `docker-exporter-bench-${runId}-${n}.sock`);
  // On a tmpfs where there is one: the tree is in memory, as a cgroup filesystem is.
  const rootfs = path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), `docker-exporter-bench-${runId}-${n}-root`);
  const proc = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'bench/fake-engine.ts'), '--socket', socketPath, '--containers', String(n), '--health-interval', '30000', '--rootfs', rootfs], {
    cwd: REPO_ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(proc);
  proc.on('exit', () => children.delete(proc));
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    proc.stdout!.setEncoding('utf8');
    proc.stdout!.on('data', (c: string) => {
      buf += c;
      if (buf.includes('"listening"')) resolve();
    });
    proc.on('exit', (code) => reject(new Error(`fake engine exited with ${code}`)));
  });
  const control = (method: string, p: string): Promise<string> =>
    new Promise((resolve, reject) => {
      const req = http.request({ socketPath, path: p, method }, (res) => {
        let body = '';
        res.on('data', (c: Buffer) => (body += c.toString()));
        res.on('end', () => (res.statusCode! < 300 ? resolve(body) : reject(new Error(`${method} ${p}: HTTP ${res.statusCode}: ${body}`))));
      });
      req.on('error', reject);
      req.end();
    });
  const list = JSON.parse((await socketGet(socketPath, '/containers/json')).body) as Array<{ Id: string }>;
  const running = list.map((c) => c.Id);
  const cleanup = async (): Promise<void> => {
    if (proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGTERM');
    await exited;
    fs.rmSync(rootfs, { recursive: true, force: true });
  };
  cleanups.push(cleanup);
  return {
    kind: 'sim',
    n,
    dockerHost: `unix://${socketPath}`,
    rootfs,
    engineProcesses: () => ({ fakeEngine: [proc.pid!] }),
    ensureUp: async () => String(proc.pid),
    runningIds: () => running,
    async addProbe() {
      return (JSON.parse(await control('POST', '/_fake/containers?kind=busy')) as { Id: string }).Id;
    },
    async removeProbe(id) {
      await control('DELETE', `/_fake/containers/${id}`);
    },
    async counters() {
      const s = JSON.parse((await socketGet(socketPath, '/_fake/status')).body) as { statsSamples: number; statsStreams: number; requests: Record<string, number> };
      return { statsSamples: s.statsSamples, statsStreams: s.statsStreams, statsRequests: s.requests['/containers/{id}/stats'] ?? 0, inspects: s.requests['/containers/{id}/json'] ?? 0 };
    },
    cleanup,
  };
}

const cleanups: Array<() => Promise<void>> = [];

// ---------------------------------------------------------------- measurement

interface CpuSnapshot {
  at: number;
  seconds: Map<number, number>;
}

function snapshot(pids: number[]): CpuSnapshot {
  const seconds = new Map<number, number>();
  for (const pid of pids) {
    const s = cpuSecondsOf(pid);
    if (s !== undefined) seconds.set(pid, s);
  }
  return { at: performance.now(), seconds };
}

/** CPU of `pids` between two snapshots, in % of one core (processes present in both only). */
function cpuPercent(a: CpuSnapshot, b: CpuSnapshot, pids: number[]): number {
  let sec = 0;
  for (const pid of pids) {
    const x = a.seconds.get(pid);
    const y = b.seconds.get(pid);
    if (x !== undefined && y !== undefined) sec += y - x;
  }
  return (sec / ((b.at - a.at) / 1000)) * 100;
}

/** Whole-host CPU busy time from /proc/stat, for the noise column. */
function hostBusy(): { busy: number; total: number } {
  const line = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
  const v = line.split(/\s+/).slice(1).map(Number);
  const idle = (v[3] ?? 0) + (v[4] ?? 0);
  const total = v.reduce((s, x) => s + x, 0);
  return { busy: total - idle, total };
}

interface WindowResult {
  mode: string;
  round: number;
  seconds: number;
  /** % of one core, raw (not yet minus the baseline). */
  cpu: Record<string, number>;
  /** Busy share of all host cores during the window, %: how noisy the machine was. */
  hostBusyPct: number;
  rssMedianMB?: number;
  rssMaxMB?: number;
  heapUsedMedianMB?: number;
  /** Running containers with a container_cpu_usage_seconds_total series at the window's end. */
  statsCoverage?: number;
  /** Engine stats requests per second (from the exporter's own request counter). */
  statsRequestsPerS?: number;
  fake?: Record<string, number>;
  collectorSeconds?: Record<string, number>;
  /** Median over the window's scrapes of the stats collector's run (with cgroupfs: the reads), ms. */
  statsCollectorMs?: number;
  /** docker_exporter_stats_fallbacks_total at the window's end. */
  fallbacks?: number;
  /** The engine restarted during the window: left out of every median. */
  disturbed?: boolean;
}

interface LatencyResult {
  plainMs: number[];
  gzipMs: number[];
  plainBytes: number;
  gzipBytes: number;
  series: number;
  missing: string[];
  missingConditional: string[];
}

interface ProbeResult {
  /** From `docker run` returning to the first scrape with the container's docker_container_info. */
  firstInfoMs?: number;
  /** … to the first scrape with its container_cpu_usage_seconds_total. */
  firstStatsMs?: number;
  /** From `docker rm -f` returning to the first scrape without any series of it. */
  goneMs?: number;
  /** Whether the first scrape that started after `docker rm` returned had none of its series. */
  goneByNextScrape?: boolean;
}

/** `poll@patched` → `poll`. */
function baseMode(mode: string): string {
  return mode.split('@')[0]!;
}

/** The exporter a mode runs: ours, or the --alt one it names. */
function distFor(o: Options, mode: string): string {
  const name = mode.split('@')[1];
  return name ? o.alt[name]! : path.join(REPO_ROOT, 'dist/cli.js');
}

function exporterArgs(o: Options, target: Target, mode: string): string[] {
  // An older build (MODE@NAME) may not know --stats.source; before it, every build read the engine.
  const base = baseMode(mode);
  const source = base === 'cgroupfs' ? ['--stats.source', 'cgroupfs'] : mode.includes('@') ? ['--stats.mode', base] : ['--stats.source', 'engine', '--stats.mode', base];
  const args = [...source, '--stats.interval', `${o.intervalMs}ms`, '--log.level', 'info'];
  if (target.dockerHost) args.push('--docker.host', target.dockerHost);
  if (base === 'cgroupfs' && target.rootfs) args.push('--path.rootfs', target.rootfs);
  return [...args, ...o.exporterArgs];
}

async function idleWindow(o: Options, target: Target, round: number, ms: number): Promise<WindowResult> {
  const groups = target.engineProcesses();
  const pids = Object.values(groups).flat();
  const h0 = hostBusy();
  const a = snapshot(pids);
  await sleep(ms);
  const b = snapshot(pids);
  const h1 = hostBusy();
  const cpu: Record<string, number> = {};
  for (const [g, p] of Object.entries(groups)) cpu[g] = cpuPercent(a, b, p);
  return { mode: 'baseline', round, seconds: (b.at - a.at) / 1000, cpu, hostBusyPct: ((h1.busy - h0.busy) / (h1.total - h0.total)) * 100 };
}

/** Waits until the exporter has stats for (nearly) every running container, or gives up after `maxMs`. */
async function warmUp(exporter: Exporter, target: Target, maxMs: number): Promise<number> {
  const deadline = performance.now() + maxMs;
  const want = target.runningIds();
  for (;;) {
    const body = (await exporter.scrape()).body;
    const hasStats = body.includes('collector="stats"');
    let have = 0;
    if (hasStats) {
      const withCpu = new Set<string>();
      for (const m of body.matchAll(/^container_cpu_usage_seconds_total\{[^}]*id="([0-9a-f]{64})"/gm)) withCpu.add(m[1]!);
      for (const id of want) if (withCpu.has(id)) have++;
    }
    const coverage = want.length ? have / want.length : 1;
    if (!hasStats || coverage >= 0.99 || performance.now() > deadline) return coverage;
    await sleep(1000);
  }
}

/**
 * Start-up work settles before a window: the first df run, stream set-up, and the JIT on the
 * scrape path. Measured at 100 real containers with cgroupfs, one scrape per 15 s from start: the
 * 1st scrape cost 340 ms of CPU (cgroup locates, cold code), the 2nd 90 ms, from the 3rd on 30-40
 * ms; a 60 s window begun 5 s after warm-up read 0.5-1.2 % of a core where the same exporter's later
 * windows read 0.35-0.40 %. So two more scrapes, an interval apart, as Prometheus would make them,
 * before measuring the running cost.
 */
async function settle(exporter: Exporter, intervalMs: number): Promise<void> {
  for (let i = 0; i < 2; i++) {
    await sleep(intervalMs);
    await exporter.scrape(true);
  }
  await sleep(Math.min(intervalMs, 5000));
}

async function exporterWindow(o: Options, target: Target, exporter: Exporter, mode: string, round: number, ms: number): Promise<WindowResult> {
  const groups = target.engineProcesses();
  const pids = [exporter.pid, ...Object.values(groups).flat()];
  const rss: number[] = [];
  const heap: number[] = [];
  const statsMs: number[] = [];
  const c0 = await target.counters?.();
  const h0 = hostBusy();
  const a = snapshot(pids);
  const end = a.at + ms;
  let nextScrape = a.at;
  let nextRss = a.at;
  let first: string | undefined;
  let last: string | undefined;
  let lastAt = a.at;
  // Prometheus-like: one gzip-accepting scrape per interval; RSS read from /proc every 2 s.
  while (performance.now() < end) {
    const now = performance.now();
    if (now >= nextRss) {
      const r = rssBytesOf(exporter.pid);
      if (r !== undefined) rss.push(r);
      nextRss += 2000;
    }
    if (now >= nextScrape) {
      nextScrape += o.scrapeEveryMs;
      // Scraped plain so the values can be read; the cost difference to gzip is in the latency burst.
      const s = await exporter.scrape(false);
      first ??= s.body;
      last = s.body;
      lastAt = performance.now();
      const h = sampleValue(s.body, 'nodejs_heap_size_used_bytes');
      if (h !== undefined) heap.push(h);
      const d = sampleValue(s.body, 'docker_exporter_collector_duration_seconds', 'collector="stats"');
      if (d !== undefined) statsMs.push(d * 1000);
    }
    await sleep(Math.max(0, Math.min(nextRss, nextScrape, end) - performance.now()));
  }
  const b = snapshot(pids);
  const h1 = hostBusy();
  const c1 = await target.counters?.();
  const cpu: Record<string, number> = { exporter: cpuPercent(a, b, [exporter.pid]) };
  for (const [g, p] of Object.entries(groups)) cpu[g] = cpuPercent(a, b, p);
  const result: WindowResult = {
    mode,
    round,
    seconds: (b.at - a.at) / 1000,
    cpu,
    hostBusyPct: ((h1.busy - h0.busy) / (h1.total - h0.total)) * 100,
    rssMedianMB: median(rss) / 2 ** 20,
    rssMaxMB: Math.max(...rss) / 2 ** 20,
    heapUsedMedianMB: median(heap) / 2 ** 20,
    statsCollectorMs: statsMs.length ? median(statsMs) : undefined,
  };
  if (last) {
    const want = target.runningIds();
    const withCpu = new Set<string>();
    for (const m of last.matchAll(/^container_cpu_usage_seconds_total\{[^}]*id="([0-9a-f]{64})"/gm)) withCpu.add(m[1]!);
    result.statsCoverage = want.length ? want.filter((id) => withCpu.has(id)).length / want.length : 1;
    const req0 = sampleValue(first ?? '', 'docker_exporter_docker_requests_total', 'endpoint="/containers/{id}/stats"') ?? 0;
    const req1 = sampleValue(last, 'docker_exporter_docker_requests_total', 'endpoint="/containers/{id}/stats"') ?? 0;
    if (first !== last) result.statsRequestsPerS = (req1 - req0) / ((lastAt - a.at) / 1000 || 1);
    result.fallbacks = sampleValue(last, 'docker_exporter_stats_fallbacks_total');
    result.collectorSeconds = {};
    for (const m of last.matchAll(/^docker_exporter_collector_duration_seconds\{collector="(\w+)"\} (\S+)/gm)) result.collectorSeconds[m[1]!] = Number(m[2]);
  }
  if (c0 && c1) {
    result.fake = {};
    for (const k of Object.keys(c1)) result.fake[`${k}PerS`] = (c1[k]! - (c0[k] ?? 0)) / result.seconds;
    result.fake.statsStreams = c1.statsStreams ?? 0;
  }
  return result;
}

/** Scrapes per format, unless they take longer than this in all (at 5,000 containers a scrape takes seconds). */
const BURST_MAX_MS = 90_000;
const BURST_MIN_SCRAPES = 10;

async function latencyBurst(exporter: Exporter, scrapes: number): Promise<LatencyResult> {
  const plainMs: number[] = [];
  const gzipMs: number[] = [];
  let body = '';
  let gzipBytes = 0;
  const enough = (done: number, started: number): boolean => done >= scrapes || (done >= BURST_MIN_SCRAPES && performance.now() - started > BURST_MAX_MS);
  for (let started = performance.now(); !enough(plainMs.length, started); ) {
    const s = await exporter.scrape(false);
    plainMs.push(s.ms);
    body = s.body;
  }
  for (let started = performance.now(); !enough(gzipMs.length, started); ) {
    const s = await exporter.scrape(true);
    gzipMs.push(s.ms);
    gzipBytes = s.bytes;
  }
  const { series, names } = summarise(body);
  const missing: string[] = [];
  const missingConditional: string[] = [];
  for (const [name, kind] of Object.entries(CATALOGUE)) {
    if (names.has(name)) continue;
    (kind === 'always' ? missing : missingConditional).push(name);
  }
  return { plainMs, gzipMs, plainBytes: Buffer.byteLength(body), gzipBytes, series, missing, missingConditional };
}

async function probe(exporter: Exporter, target: Target, timeoutMs: number): Promise<ProbeResult> {
  const out: ProbeResult = {};
  const id = await target.addProbe();
  const t0 = performance.now();
  const statsOn = (await exporter.scrape()).body.includes('collector="stats"');
  while (performance.now() - t0 < timeoutMs) {
    const body = (await exporter.scrape()).body;
    const at = performance.now() - t0;
    if (out.firstInfoMs === undefined && new RegExp(`^docker_container_info\\{[^}]*id="${id}"`, 'm').test(body)) out.firstInfoMs = at;
    if (out.firstStatsMs === undefined && new RegExp(`^container_cpu_usage_seconds_total\\{[^}]*id="${id}"`, 'm').test(body)) out.firstStatsMs = at;
    if (out.firstInfoMs !== undefined && (out.firstStatsMs !== undefined || !statsOn)) break;
    await sleep(100);
  }
  await target.removeProbe(id);
  const t1 = performance.now();
  let firstScrape = true;
  while (performance.now() - t1 < 30_000) {
    const body = (await exporter.scrape()).body;
    const gone = !body.includes(`id="${id}"`);
    if (firstScrape) out.goneByNextScrape = gone;
    firstScrape = false;
    if (gone) {
      out.goneMs = performance.now() - t1;
      break;
    }
    await sleep(100);
  }
  return out;
}

interface ModeRun {
  windows: WindowResult[];
  latency: LatencyResult[];
  probes: ProbeResult[];
}

interface TargetRun {
  kind: 'real' | 'sim';
  n: number;
  baseline: WindowResult[];
  modes: Partial<Record<string, ModeRun>>;
}

async function runTarget(o: Options, target: Target, rounds: number, windowMs: number, withBaseline: boolean): Promise<TargetRun> {
  const run: TargetRun = { kind: target.kind, n: target.n, baseline: [], modes: {} };
  const profDir = o.cpuProf ? path.join(o.out, 'profiles') : undefined;
  if (profDir) fs.mkdirSync(profDir, { recursive: true });
  for (let r = 0; r < rounds; r++) {
    if (withBaseline) {
      log(`  round ${r + 1}/${rounds}: baseline (no exporter) ${windowMs / 1000} s`);
      const engine = await target.ensureUp();
      const b = await idleWindow(o, target, r, windowMs);
      b.disturbed = engine !== (await target.ensureUp());
      run.baseline.push(b);
    }
    // Alternate the order of the modes so that drift over the run affects each alike.
    const order = r % 2 === 0 ? o.modes : [...o.modes].reverse();
    for (const mode of order) {
      const m = (run.modes[mode] ??= { windows: [], latency: [], probes: [] });
      const engine = await target.ensureUp();
      const exporter = await Exporter.start(distFor(o, mode), exporterArgs(o, target, mode), { cpuProfDir: profDir });
      try {
        const warm = Math.max(30_000, 2 * o.intervalMs + 15_000);
        const t = performance.now();
        const coverage = await warmUp(exporter, target, warm);
        await settle(exporter, o.intervalMs);
        log(`  round ${r + 1}/${rounds}: ${mode}: warm after ${((performance.now() - t) / 1000).toFixed(0)} s (stats for ${(coverage * 100).toFixed(0)}% of containers), measuring ${windowMs / 1000} s`);
        const w = await exporterWindow(o, target, exporter, mode, r, windowMs);
        w.disturbed = engine !== (await target.ensureUp());
        if (w.disturbed) log('    the engine restarted during this window: it is left out of the medians');
        m.windows.push(w);
        log(`    exporter ${w.cpu.exporter!.toFixed(2)}% of a core, RSS ${w.rssMedianMB!.toFixed(1)} MB; ${Object.entries(w.cpu).filter(([k]) => k !== 'exporter').map(([k, v]) => `${k} ${v.toFixed(2)}%`).join(', ')}; host busy ${w.hostBusyPct.toFixed(0)}%${w.fallbacks ? `; ${w.fallbacks} container(s) fell back to the engine` : ''}; stats collector ${fmt(w.statsCollectorMs)} ms a scrape`);
        const l = await latencyBurst(exporter, o.scrapes);
        m.latency.push(l);
        log(`    /metrics p50 ${percentile(l.plainMs, 50).toFixed(1)} ms (gzip ${percentile(l.gzipMs, 50).toFixed(1)} ms), ${l.series} series, ${(l.plainBytes / 1024).toFixed(0)} KiB${l.missing.length ? `; missing: ${l.missing.join(', ')}` : ''}`);
        const p = await probe(exporter, target, 2 * o.intervalMs + 10_000);
        m.probes.push(p);
        log(`    new container: info after ${fmtMs(p.firstInfoMs)}, stats after ${fmtMs(p.firstStatsMs)}; removed: gone after ${fmtMs(p.goneMs)}`);
      } finally {
        await exporter.stop();
        // What the exporter said, for reading after the run (a scrape too while it is small).
        const tag = `${target.kind}-${target.n}-${mode}-round${r + 1}`;
        fs.mkdirSync(path.join(o.out, 'logs'), { recursive: true });
        fs.writeFileSync(path.join(o.out, 'logs', `${tag}.log`), exporter.logs.join('\n') + '\n');
        if (exporter.lastBody && target.kind === 'real') fs.writeFileSync(path.join(o.out, 'logs', `${tag}.prom`), exporter.lastBody);
      }
    }
  }
  return run;
}

interface SoakResult {
  mode: string;
  minutes: number;
  /** [seconds since start, RSS MB, heap used MB] every 10 s. */
  samples: Array<[number, number, number]>;
  firstRssMB: number;
  lastRssMB: number;
  firstHeapMB: number;
  lastHeapMB: number;
  cpuPct: number;
}

async function soak(o: Options, target: Target, mode: string): Promise<SoakResult> {
  const exporter = await Exporter.start(distFor(o, mode), exporterArgs(o, target, mode), {});
  try {
    await warmUp(exporter, target, Math.max(30_000, 2 * o.intervalMs + 15_000));
    const samples: Array<[number, number, number]> = [];
    const t0 = performance.now();
    const a = snapshot([exporter.pid]);
    let nextScrape = t0;
    let heap = NaN;
    while (performance.now() - t0 < o.soakMs) {
      if (performance.now() >= nextScrape) {
        nextScrape += o.scrapeEveryMs;
        heap = (sampleValue((await exporter.scrape()).body, 'nodejs_heap_size_used_bytes') ?? NaN) / 2 ** 20;
      }
      samples.push([(performance.now() - t0) / 1000, (rssBytesOf(exporter.pid) ?? NaN) / 2 ** 20, heap]);
      await sleep(10_000);
    }
    const b = snapshot([exporter.pid]);
    // First and last two minutes (or fifth of the run), as medians.
    const span = Math.min(120, o.soakMs / 1000 / 5);
    const head = samples.filter(([s]) => s <= span);
    const tail = samples.filter(([s]) => s >= o.soakMs / 1000 - span);
    return {
      mode,
      minutes: o.soakMs / 60_000,
      samples,
      firstRssMB: median(head.map((x) => x[1])),
      lastRssMB: median(tail.map((x) => x[1])),
      firstHeapMB: median(head.map((x) => x[2])),
      lastHeapMB: median(tail.map((x) => x[2])),
      cpuPct: cpuPercent(a, b, [exporter.pid]),
    };
  } finally {
    await exporter.stop();
  }
}

// ---------------------------------------------------------------- summary

interface ModeSummary {
  exporterCpuPct: number;
  /** dockerd + containerd above the baseline of the same round (real engine only). */
  engineCpuPct?: number;
  shimsCpuPct?: number;
  /** exporter + engine + shims above baseline. */
  totalCpuPct?: number;
  rssMedianMB: number;
  rssMaxMB: number;
  heapUsedMB: number;
  /** Scrapes per format the latency figures come from. */
  scrapes: number;
  p50Ms: number;
  p99Ms: number;
  gzipP50Ms: number;
  gzipP99Ms: number;
  bytes: number;
  gzipBytes: number;
  series: number;
  statsCoverage?: number;
  statsRequestsPerS?: number;
  firstInfoMs?: number;
  firstStatsMs?: number;
  goneMs?: number;
  goneByNextScrape: boolean;
  missing: string[];
  missingConditional: string[];
  hostBusyPct: number;
  fakeSamplesPerS?: number;
  statsCollectorMs?: number;
  fallbacks?: number;
}

function summariseMode(run: TargetRun, mode: string): ModeSummary | undefined {
  const all = run.modes[mode];
  if (!all) return undefined;
  const m = { ...all, windows: all.windows.filter((w) => !w.disturbed) };
  if (m.windows.length === 0) return undefined;
  const base = new Map(run.baseline.filter((b) => !b.disturbed).map((b) => [b.round, b]));
  // Each window against the baseline of its own round; a round without one uses the median baseline.
  const medianBase = (group: string): number => median([...base.values()].map((b) => b.cpu[group]!));
  const above = (w: WindowResult, group: string): number => w.cpu[group]! - (base.get(w.round)?.cpu[group] ?? medianBase(group));
  const real = run.kind === 'real' && base.size > 0;
  const engine = real ? median(m.windows.map((w) => above(w, 'dockerd') + above(w, 'containerd'))) : undefined;
  const shims = real ? median(m.windows.map((w) => above(w, 'shims'))) : undefined;
  const total = real ? median(m.windows.map((w) => w.cpu.exporter! + above(w, 'dockerd') + above(w, 'containerd') + above(w, 'shims'))) : undefined;
  const plain = m.latency.flatMap((l) => l.plainMs);
  const gz = m.latency.flatMap((l) => l.gzipMs);
  const probes = m.probes;
  const opt = (xs: Array<number | undefined>): number | undefined => {
    const v = xs.filter((x): x is number => x !== undefined);
    return v.length ? median(v) : undefined;
  };
  const lastLatency = m.latency.at(-1);
  return {
    exporterCpuPct: median(m.windows.map((w) => w.cpu.exporter!)),
    engineCpuPct: engine,
    shimsCpuPct: shims,
    totalCpuPct: total,
    rssMedianMB: median(m.windows.map((w) => w.rssMedianMB!)),
    rssMaxMB: Math.max(...m.windows.map((w) => w.rssMaxMB!)),
    heapUsedMB: median(m.windows.map((w) => w.heapUsedMedianMB!)),
    scrapes: plain.length,
    p50Ms: percentile(plain, 50),
    p99Ms: percentile(plain, 99),
    gzipP50Ms: percentile(gz, 50),
    gzipP99Ms: percentile(gz, 99),
    bytes: median(m.latency.map((l) => l.plainBytes)),
    gzipBytes: median(m.latency.map((l) => l.gzipBytes)),
    series: median(m.latency.map((l) => l.series)),
    statsCoverage: opt(m.windows.map((w) => w.statsCoverage)),
    statsRequestsPerS: opt(m.windows.map((w) => w.statsRequestsPerS)),
    firstInfoMs: opt(probes.map((p) => p.firstInfoMs)),
    firstStatsMs: opt(probes.map((p) => p.firstStatsMs)),
    goneMs: opt(probes.map((p) => p.goneMs)),
    goneByNextScrape: probes.every((p) => p.goneByNextScrape === true),
    missing: lastLatency?.missing ?? [],
    missingConditional: lastLatency?.missingConditional ?? [],
    hostBusyPct: median(m.windows.map((w) => w.hostBusyPct)),
    fakeSamplesPerS: opt(m.windows.map((w) => w.fake?.statsSamplesPerS)),
    statsCollectorMs: opt(m.windows.map((w) => w.statsCollectorMs)),
    fallbacks: opt(m.windows.map((w) => w.fallbacks)),
  };
}

interface Budget {
  what: string;
  limit: string;
  measured: string;
  pass: boolean | undefined;
}

function budgets(o: Options, real: TargetRun | undefined, sims: TargetRun[], soaked: SoakResult | undefined): Budget[] {
  const out: Budget[] = [];
  const b = (what: string, limit: string, value: number | undefined, ok: (v: number) => boolean, unit: string): void => {
    out.push({ what, limit, measured: value === undefined || Number.isNaN(value) ? 'not measured' : `${fmt(value)} ${unit}`, pass: value === undefined || Number.isNaN(value) ? undefined : ok(value) });
  };
  const poll = real ? summariseMode(real, 'poll') : undefined;
  const stream = real ? summariseMode(real, 'stream') : undefined;
  const n = real?.n ?? o.containers;
  if (poll) {
    b(`poll, ${n} containers, ${o.intervalMs / 1000} s: host cost (exporter + engine + shims above idle)`, '≤ 3.25 % of a core', poll.totalCpuPct, (v) => v <= 3.25, '%');
    b(`poll, ${n} containers: exporter process alone`, '≤ 0.3 % of a core', poll.exporterCpuPct, (v) => v <= 0.3, '%');
    b(`RSS at ${n} containers (max over windows, poll)`, '≤ 60 MB', poll.rssMaxMB, (v) => v <= 60, 'MB');
    b(`/metrics p50 at ${n} containers (poll)`, '≤ 10 ms', poll.p50Ms, (v) => v <= 10, 'ms');
    b(`new container's stats series (poll)`, `≤ one interval (${o.intervalMs / 1000} s)`, poll.firstStatsMs, (v) => v <= o.intervalMs, 'ms');
    out.push({ what: 'removed container gone by the next scrape (poll)', limit: 'yes', measured: poll.goneByNextScrape ? 'yes' : 'no', pass: poll.goneByNextScrape });
  }
  if (stream) {
    b(`RSS at ${n} containers (max over windows, stream)`, '≤ 60 MB', stream.rssMaxMB, (v) => v <= 60, 'MB');
    b(`/metrics p50 at ${n} containers (stream)`, '≤ 10 ms', stream.p50Ms, (v) => v <= 10, 'ms');
    b(`new container's stats series (stream)`, '≤ 2 s', stream.firstStatsMs, (v) => v <= 2000, 'ms');
    out.push({ what: 'removed container gone by the next scrape (stream)', limit: 'yes', measured: stream.goneByNextScrape ? 'yes' : 'no', pass: stream.goneByNextScrape });
  }
  const cg = real ? summariseMode(real, 'cgroupfs') : undefined;
  if (cg) {
    b(`cgroupfs, ${n} containers: host cost (exporter + engine + shims above idle)`, '≤ 0.65 % of a core', cg.totalCpuPct, (v) => v <= 0.65, '%');
    if (poll?.totalCpuPct !== undefined && cg.totalCpuPct !== undefined) {
      b(`cgroupfs host cost ÷ poll host cost (${n} containers, one run)`, '≤ 0.1', cg.totalCpuPct / poll.totalCpuPct, (v) => v <= 0.1, '');
    }
    b(`cgroupfs, ${n} containers: exporter process alone`, '≤ 0.5 % of a core', cg.exporterCpuPct, (v) => v <= 0.5, '%');
    b(`/metrics p50 at ${n} containers (cgroupfs, reads included)`, '≤ 25 ms', cg.p50Ms, (v) => v <= 25, 'ms');
  }
  for (const mode of ['poll', 'stream', 'cgroupfs'] as const) {
    const s = real ? summariseMode(real, mode) : undefined;
    if (s) out.push({ what: `every series of the catalogue present (${mode}, real engine)`, limit: 'none missing', measured: s.missing.length ? `missing ${s.missing.join(', ')}` : 'all present', pass: s.missing.length === 0 });
  }
  const sim1000 = sims.find((s) => s.n === 1000);
  for (const mode of ['poll', 'stream', 'cgroupfs'] as const) {
    const s = sim1000 ? summariseMode(sim1000, mode) : undefined;
    if (!s) continue;
    b(`RSS at 1,000 simulated containers (${mode})`, '≤ 150 MB', s.rssMaxMB, (v) => v <= 150, 'MB');
    b(`/metrics p50 at 1,000 simulated containers (${mode})`, '≤ 150 ms', s.p50Ms, (v) => v <= 150, 'ms');
    out.push({ what: `every series of the catalogue present (${mode}, 1,000 simulated)`, limit: 'none missing', measured: s.missing.length ? `missing ${s.missing.join(', ')}` : 'all present', pass: s.missing.length === 0 });
  }
  if (soaked) {
    const growth = soaked.lastRssMB - soaked.firstRssMB;
    b(`RSS flat over ${soaked.minutes} min (${soaked.mode}, ${n} containers): last − first 2 min`, '≤ 5 MB', growth, (v) => v <= 5, 'MB');
  }
  return out;
}

// ---------------------------------------------------------------- report

function fmt(v: number | undefined, digits?: number): string {
  if (v === undefined || Number.isNaN(v)) return '–';
  const d = digits ?? (Math.abs(v) >= 100 ? 0 : Math.abs(v) >= 10 ? 1 : 2);
  return v.toFixed(d);
}

function fmtMs(v: number | undefined): string {
  return v === undefined ? 'never' : v >= 1000 ? `${(v / 1000).toFixed(1)} s` : `${v.toFixed(0)} ms`;
}

function ratio(a: number | undefined, b: number | undefined): string {
  if (a === undefined || b === undefined || Number.isNaN(a) || Number.isNaN(b) || b === 0) return '–';
  return `${(a / b).toFixed(2)}×`;
}

interface Meta {
  date: string;
  machine: { cpuModel: string; cores: number; memoryGB: number; kernel: string };
  engine?: { version: string; apiVersion: string; cgroupVersion: string; storageDriver: string; otherContainers: number };
  exporter: { version: string; node: string; collectors: string };
  options: Omit<Options, 'out'>;
  loadAvgStart: number[];
  loadAvgEnd?: number[];
}

function markdown(meta: Meta, real: TargetRun | undefined, sims: TargetRun[], soaked: SoakResult | undefined, budgetRows: Budget[]): string {
  const o = meta.options;
  const lines: string[] = [];
  lines.push(`# docker-exporter benchmark`);
  lines.push('');
  lines.push(`- date: ${meta.date}`);
  lines.push(`- machine: ${meta.machine.cpuModel}, ${meta.machine.cores} cores, ${meta.machine.memoryGB.toFixed(0)} GB, Linux ${meta.machine.kernel}`);
  if (meta.engine) lines.push(`- engine: Docker ${meta.engine.version} (API ${meta.engine.apiVersion}), cgroup v${meta.engine.cgroupVersion}, ${meta.engine.storageDriver}; ${meta.engine.otherContainers} containers of other users on it during the run`);
  lines.push(`- exporter: ${meta.exporter.version} on Node.js ${meta.exporter.node}; collectors: ${meta.exporter.collectors}`);
  lines.push(`- N = ${o.containers} real containers (half idle, 30 % lightly busy on a user network, 15 % limited + health-checked, 5 % exited); --stats.interval ${o.intervalMs / 1000} s, one scrape per interval; ${o.rounds} × ${o.windowMs / 1000} s windows per mode, modes alternating, idle baseline (no exporter) in every round; ${o.scrapes} scrapes per format for latency (at least 10, fewer where they take over 90 s)`);
  lines.push(`- load average at start ${meta.loadAvgStart.map((x) => x.toFixed(2)).join(' ')}${meta.loadAvgEnd ? `, at end ${meta.loadAvgEnd.map((x) => x.toFixed(2)).join(' ')}` : ''} (the machine is shared: read the ratios and medians, not single digits)`);
  lines.push('');
  const modes = o.modes;
  if (real) {
    const s = Object.fromEntries(modes.map((m) => [m, summariseMode(real, m)])) as Record<string, ModeSummary | undefined>;
    // Every other mode side by side with the first (poll by default), as ratios.
    const others = modes.slice(1);
    const ratios = (vals: Array<number | undefined>): string => others.map((_, i) => ` | ${ratio(vals[i + 1], vals[0])}`).join('');
    lines.push(`## Real engine, ${real.n} containers`);
    lines.push('');
    lines.push(`| | ${modes.join(' | ')}${others.map((m) => ` | ${m} / ${modes[0]}`).join('')} |`);
    lines.push(`|---|${modes.map(() => '---:').join('|')}${others.map(() => '|---:').join('')}|`);
    const row = (label: string, get: (x: ModeSummary) => number | undefined, f: (v: number | undefined) => string = (v) => fmt(v)): void => {
      const vals = modes.map((m) => (s[m] ? get(s[m]!) : undefined));
      lines.push(`| ${label} | ${vals.map(f).join(' | ')}${ratios(vals)} |`);
    };
    row('exporter CPU, % of a core', (x) => x.exporterCpuPct);
    row('dockerd + containerd above idle, %', (x) => x.engineCpuPct);
    row('shims above idle, %', (x) => x.shimsCpuPct);
    row('**host total above idle, %**', (x) => x.totalCpuPct);
    row('exporter RSS median / MB', (x) => x.rssMedianMB);
    row('exporter RSS max / MB', (x) => x.rssMaxMB);
    row('exporter heap used / MB', (x) => x.heapUsedMB);
    row('/metrics p50 / ms', (x) => x.p50Ms);
    row('/metrics p99 / ms', (x) => x.p99Ms);
    row('of which the stats collector (median) / ms', (x) => x.statsCollectorMs);
    row('/metrics gzip p50 / ms', (x) => x.gzipP50Ms);
    row('/metrics gzip p99 / ms', (x) => x.gzipP99Ms);
    row('payload / KiB', (x) => x.bytes / 1024);
    row('payload gzip / KiB', (x) => x.gzipBytes / 1024);
    row('series', (x) => x.series, (v) => fmt(v, 0));
    row('engine stats requests / s', (x) => x.statsRequestsPerS);
    row('containers with stats at window end, %', (x) => (x.statsCoverage === undefined ? undefined : x.statsCoverage * 100), (v) => fmt(v, 0));
    row('new container → first series (info)', (x) => x.firstInfoMs, fmtMs);
    row('new container → first stats series', (x) => x.firstStatsMs, fmtMs);
    row('removed container → series gone', (x) => x.goneMs, fmtMs);
    lines.push(`| removed container gone by the next scrape | ${modes.map((m) => (s[m]?.goneByNextScrape ? 'yes' : 'no')).join(' | ')}${others.map(() => ' | ').join('')} |`);
    row('host busy during windows, % of all cores', (x) => x.hostBusyPct, (v) => fmt(v, 0));
    lines.push('');
    lines.push('Idle baseline (no exporter), % of a core, per round: ' + real.baseline.map((b) => Object.entries(b.cpu).map(([k, v]) => `${k} ${fmt(v)}`).join(', ')).join(' | '));
    lines.push('');
    lines.push('Per window (raw % of a core, not minus the baseline):');
    lines.push('');
    lines.push('| round | mode | exporter | dockerd | containerd | shims | RSS MB | host busy % |');
    lines.push('|---:|---|---:|---:|---:|---:|---:|---:|');
    const all = [...real.baseline, ...modes.flatMap((m) => real.modes[m]?.windows ?? [])].sort((a, b) => a.round - b.round);
    for (const w of all) lines.push(`| ${w.round + 1} | ${w.mode}${w.disturbed ? ' (engine restarted: left out)' : ''} | ${fmt(w.cpu.exporter)} | ${fmt(w.cpu.dockerd)} | ${fmt(w.cpu.containerd)} | ${fmt(w.cpu.shims)} | ${fmt(w.rssMedianMB)} | ${fmt(w.hostBusyPct, 0)} |`);
    lines.push('');
    const missing = modes.flatMap((m) => s[m]?.missingConditional ?? []);
    if (missing.length) lines.push(`Not present on this engine (conditional series): ${[...new Set(missing)].join(', ')}.`, '');
  }
  if (sims.length) {
    lines.push(`## Simulated (fake engine), the exporter's own cost`);
    lines.push('');
    lines.push('| containers | mode | exporter CPU % | RSS median / max MB | heap MB | p50 / p99 ms (scrapes) | stats collector ms | gzip p50 / p99 ms | payload KiB (gzip) | series | stats at end % | engine samples / s |');
    lines.push('|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|');
    for (const sim of sims) {
      for (const m of modes) {
        const x = summariseMode(sim, m);
        if (!x) continue;
        lines.push(`| ${sim.n} | ${m} | ${fmt(x.exporterCpuPct)} | ${fmt(x.rssMedianMB)} / ${fmt(x.rssMaxMB)} | ${fmt(x.heapUsedMB)} | ${fmt(x.p50Ms)} / ${fmt(x.p99Ms)} (${x.scrapes}) | ${fmt(x.statsCollectorMs)} | ${fmt(x.gzipP50Ms)} / ${fmt(x.gzipP99Ms)} | ${fmt(x.bytes / 1024, 0)} (${fmt(x.gzipBytes / 1024, 0)}) | ${fmt(x.series, 0)} | ${x.statsCoverage === undefined ? '–' : fmt(x.statsCoverage * 100, 0)} | ${fmt(x.fakeSamplesPerS)} |`);
      }
    }
    for (const sim of sims) {
      const first = summariseMode(sim, modes[0]!);
      for (const m of modes.slice(1)) {
        const x = summariseMode(sim, m);
        if (!first || !x) continue;
        lines.push(`- ${sim.n} simulated, ${m} / ${modes[0]}: exporter CPU ${ratio(x.exporterCpuPct, first.exporterCpuPct)}, /metrics p50 ${ratio(x.p50Ms, first.p50Ms)}, RSS max ${ratio(x.rssMaxMB, first.rssMaxMB)}${baseMode(m) === 'cgroupfs' ? `; containers fallen back to the engine: ${fmt(x.fallbacks, 0)}` : ''}`);
      }
    }
    lines.push('');
    lines.push('The simulation\'s cgroupfs reads a cgroup v2 tree of regular files on a tmpfs (bench/cgroup-tree.ts), not the kernel\'s: a read there costs about what a kept-open cgroup file costs, but no kernel formats the figures.');
    lines.push('');
  }
  if (soaked) {
    lines.push(`## Soak: ${soaked.mode}, ${soaked.minutes} min, ${real?.n ?? o.containers} containers`);
    lines.push('');
    lines.push(`RSS ${fmt(soaked.firstRssMB)} MB (first 2 min) → ${fmt(soaked.lastRssMB)} MB (last 2 min); heap used ${fmt(soaked.firstHeapMB)} → ${fmt(soaked.lastHeapMB)} MB; exporter CPU ${fmt(soaked.cpuPct)} % of a core over the run.`);
    lines.push('');
  }
  if (budgetRows.length) {
    lines.push('## Budgets (issue 9; issue 16 for cgroupfs)');
    lines.push('');
    lines.push('| budget | limit | measured | |');
    lines.push('|---|---|---|---|');
    for (const r of budgetRows) lines.push(`| ${r.what} | ${r.limit} | ${r.measured} | ${r.pass === undefined ? '–' : r.pass ? 'met' : '**missed**'} |`);
    lines.push('');
  }
  return lines.join('\n');
}

// ---------------------------------------------------------------- main

function log(msg: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${msg}\n`);
}

async function machine(): Promise<Meta['machine']> {
  const cpus = os.cpus();
  return { cpuModel: cpus[0]?.model.trim() ?? 'unknown', cores: cpus.length, memoryGB: os.totalmem() / 2 ** 30, kernel: os.release() };
}

async function engineFacts(label: string): Promise<Meta['engine']> {
  const info = JSON.parse(await docker(['info', '--format', '{{json .}}'])) as Record<string, unknown>;
  const api = await docker(['version', '--format', '{{.Server.APIVersion}}']);
  const all = (await docker(['ps', '-aq', '--no-trunc'])).split('\n').filter(Boolean);
  const mine = (await docker(['ps', '-aq', '--no-trunc', '--filter', `label=${label}`])).split('\n').filter(Boolean);
  return {
    version: String(info.ServerVersion),
    apiVersion: api,
    cgroupVersion: String(info.CgroupVersion ?? '1'),
    storageDriver: String(info.Driver),
    otherContainers: all.length - mine.length,
  };
}

async function main(): Promise<void> {
  const o = parseOptions(process.argv.slice(2));
  if (!fs.existsSync(path.join(REPO_ROOT, 'dist/cli.js'))) throw new Error('dist/cli.js is missing: run `npm run build` (npm run bench does)');
  const runId = `${process.pid}`;
  let stopping = false;
  const onSignal = (sig: string): void => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: removing this run's containers and processes`);
    for (const c of children) c.kill('SIGTERM');
    void Promise.all(cleanups.map((c) => c().catch(() => undefined))).then(() => process.exit(130));
  };
  process.on('SIGINT', () => onSignal('SIGINT'));
  process.on('SIGTERM', () => onSignal('SIGTERM'));

  const version = (JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
  const collectors = (fs.readFileSync(path.join(REPO_ROOT, 'src/collectors/index.ts'), 'utf8').match(/COLLECTORS[^=]*=\s*\[([^\]]*)\]/)?.[1] ?? '').replace(/Collector/g, '').replace(/\s+/g, ' ').trim();
  const { out: _out, ...shownOptions } = o;
  const meta: Meta = {
    date: new Date().toISOString(),
    machine: await machine(),
    exporter: { version, node: process.versions.node, collectors },
    options: shownOptions,
    loadAvgStart: os.loadavg(),
  };
  let real: TargetRun | undefined;
  let soaked: SoakResult | undefined;
  const sims: TargetRun[] = [];
  try {
    if (o.only !== 'sim') {
      const target = await realTarget(o, runId);
      try {
        meta.engine = await engineFacts(`docker-exporter-bench=${runId}`);
        log(`real engine: ${o.containers} containers, modes ${o.modes.join(', ')}, ${o.rounds} round(s) of ${o.windowMs / 1000} s windows`);
        real = await runTarget(o, target, o.rounds, o.windowMs, true);
        if (o.soakMs > 0) {
          log(`soak: poll for ${o.soakMs / 60_000} min`);
          soaked = await soak(o, target, 'poll');
        }
      } finally {
        await target.cleanup();
      }
    }
    if (o.only !== 'real') {
      for (const n of o.simulate) {
        log(`simulation: ${n} containers on the fake engine`);
        const target = await simTarget(n, runId);
        try {
          sims.push(await runTarget(o, target, o.simRounds, o.simWindowMs, false));
        } finally {
          await target.cleanup();
        }
      }
    }
  } finally {
    for (const c of cleanups) await c().catch(() => undefined);
  }
  meta.loadAvgEnd = os.loadavg();
  const budgetRows = budgets(o, real, sims, soaked);
  const md = markdown(meta, real, sims, soaked, budgetRows);
  fs.mkdirSync(o.out, { recursive: true });
  const summaries = {
    real: real ? Object.fromEntries(o.modes.map((m) => [m, summariseMode(real!, m)])) : undefined,
    simulation: sims.map((s) => ({ n: s.n, ...Object.fromEntries(o.modes.map((m) => [m, summariseMode(s, m)])) })),
  };
  fs.writeFileSync(path.join(o.out, 'results.json'), JSON.stringify({ meta, summaries, budgets: budgetRows, real, simulation: sims, soak: soaked }, null, 2) + '\n');
  fs.writeFileSync(path.join(o.out, 'results.md'), md + '\n');
  process.stdout.write(md + '\n');
  log(`wrote ${path.relative(process.cwd(), path.join(o.out, 'results.json'))} and results.md`);
}

main().catch(async (err: Error) => {
  log(`failed: ${err.stack ?? err.message}`);
  for (const c of children) c.kill('SIGTERM');
  for (const c of cleanups) await c().catch(() => undefined);
  process.exit(1);
});
