import fs from 'node:fs';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it, onTestFinished } from 'vitest';
import { cliFor, ENGINES, PODMAN, TestContainers, waitFor, type Engine } from '../helpers/docker.js';
import { startExporter, type RunningExporter } from '../helpers/exporter.js';
import { findAll, parseMetrics, value, type Sample } from '../helpers/prom.js';

// Only this file's containers are exported, so counts are not disturbed by colleagues' test runs.
const PREFIX = `stx${process.pid}-`;
// The engine's stats API, as these tests measure its stream and poll modes (cgroupfs has its own file).
const INCLUDE = ['--container.include', `^${PREFIX}`, '--no-collector.df', '--stats.source', 'engine'];

/** The real exporter process on `engine`, exporting only this file's containers (df is slow and unrelated). */
function exporterWith(engine: Engine, args: string[]): Promise<RunningExporter> {
  return startExporter([...engine.exporterArgs, ...INCLUDE, ...args]);
}

/** The cgroup v1 cpuacct counter (cgroupfs or systemd driver) or the v2 cpu.stat usage, in ns; Docker's or Podman's layout. */
function cgroupCpuReader(id: string): () => number {
  const v1 = [`/sys/fs/cgroup/cpuacct/docker/${id}/cpuacct.usage`, `/sys/fs/cgroup/cpuacct/system.slice/docker-${id}.scope/cpuacct.usage`, `/sys/fs/cgroup/cpu,cpuacct/docker/${id}/cpuacct.usage`];
  // Podman's cgroupfs manager puts a container under libpod_parent, its systemd manager under machine.slice.
  v1.push(`/sys/fs/cgroup/cpuacct/libpod_parent/libpod-${id}/cpuacct.usage`, `/sys/fs/cgroup/cpu,cpuacct/libpod_parent/libpod-${id}/cpuacct.usage`, `/sys/fs/cgroup/cpuacct/machine.slice/libpod-${id}.scope/cpuacct.usage`);
  for (const p of v1) if (fs.existsSync(p)) return () => Number(fs.readFileSync(p, 'utf8'));
  for (const p of [`/sys/fs/cgroup/system.slice/docker-${id}.scope/cpu.stat`, `/sys/fs/cgroup/docker/${id}/cpu.stat`, `/sys/fs/cgroup/machine.slice/libpod-${id}.scope/container/cpu.stat`, `/sys/fs/cgroup/machine.slice/libpod-${id}.scope/cpu.stat`]) {
    if (fs.existsSync(p)) return () => Number(/usage_usec (\d+)/.exec(fs.readFileSync(p, 'utf8'))![1]) * 1000;
  }
  throw new Error(`no cgroup CPU counter found for ${id}`);
}

const name = (what: string): string => `${PREFIX}${what}-${Math.random().toString(36).slice(2, 7)}`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function scrapeSamples(exporter: RunningExporter): Promise<Sample[]> {
  return parseMetrics(await exporter.scrape());
}

function seriesOf(samples: Sample[], id: string): Sample[] {
  return samples.filter((s) => s.name.startsWith('container_') && !s.name.startsWith('container_spec_') && s.labels.id === id && s.name !== 'container_start_time_seconds' && s.name !== 'container_health_state');
}

/** Waits for a sample newer than `after` (unix seconds) and returns that scrape. */
async function freshScrape(exporter: RunningExporter, id: string, after: number, timeoutMs = 10_000): Promise<Sample[]> {
  return waitFor(`a stats sample of ${id.slice(0, 12)} newer than ${after}`, async () => {
    const s = await scrapeSamples(exporter);
    const seen = value(s, 'container_last_seen', { id });
    return seen !== undefined && seen > after ? s : undefined;
  }, timeoutMs, 50);
}

/** Parses docker's human sizes ("19.23MiB", "6.01MB", "0B"). */
function bytesOf(text: string): number {
  const m = /^([\d.]+)\s*([kKMGT]?i?B)$/.exec(text.trim());
  if (!m) throw new Error(`not a size: ${text}`);
  const units: Record<string, number> = { B: 1, kB: 1e3, KB: 1e3, MB: 1e6, GB: 1e9, TB: 1e12, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4 };
  return Number(m[1]) * units[m[2]!]!;
}

async function dockerStats(engine: Engine, id: string): Promise<{ mem: number; netRx: number; netTx: number }> {
  const line = await cliFor(engine)(['stats', '--no-stream', '--format', '{{.MemUsage}}|{{.NetIO}}', id]);
  const [mem, net] = line.split('|');
  const [rx, tx] = net!.split('/');
  return { mem: bytesOf(mem!.split('/')[0]!), netRx: bytesOf(rx!), netTx: bytesOf(tx!) };
}

/** One `stream=false` sample straight from the engine (the docker CLI has no raw output). */
function rawStats(engine: Engine, id: string): Promise<any> {
  return new Promise((resolve, reject) => {
    http
      .get({ socketPath: engine.socket, path: `/containers/${id}/stats?stream=false` }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => {
          try {
            resolve(JSON.parse(body));
          } catch (err) {
            reject(err);
          }
        });
      })
      .on('error', reject);
  });
}

/** Unix sockets the process holds (engine connections, the listener, pino's pipes are not sockets). */
function socketCount(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).filter((fd) => {
    try {
      return fs.readlinkSync(`/proc/${pid}/fd/${fd}`).startsWith('socket:');
    } catch {
      return false;
    }
  }).length;
}

// The same tests on both engines (helpers/docker.ts ENGINES), through the engine's stats API;
// where Podman 4.3's payload lacks a figure the test says so and asserts its absence.
describe.each(ENGINES)('stats collector against the real engine: $name', (engine: Engine) => {
  const docker = cliFor(engine);
  const onPodman = engine.name === 'podman';
  const containers = new TestContainers(engine);
  afterAll(() => containers.removeAll());

  /**
   * Docker sends destroy before `docker rm` returns, so the next scrape has no series of it. Podman
   * sends remove after: its service tails an event log file, so the series go up to ~0.5 s later.
   */
  async function goneOnNextScrape(exporter: RunningExporter, id: string): Promise<void> {
    if (!onPodman) {
      expect(seriesOf(await scrapeSamples(exporter), id)).toHaveLength(0);
      return;
    }
    const t0 = Date.now();
    await waitFor('the removed container\'s series to go', async () => seriesOf(await scrapeSamples(exporter), id).length === 0, 2000, 20);
    console.log(`podman: series gone ${Date.now() - t0} ms after docker rm returned`);
  }

  describe('stats collector, stream mode, against the real engine', () => {
    let exporter: RunningExporter;
    beforeAll(async () => {
      exporter = await exporterWith(engine, ['--stats.mode', 'stream']);
    });
    afterAll(async () => {
      expect(await exporter.stop()).toBe(0);
    });

    it('CPU counter agrees with the cgroup counter read at the sample moment, and rate is ~1 core', async () => {
      const id = await containers.run(['--name', name('cpu')], ['sh', '-c', 'while :; do :; done']);
      const readCgroup = cgroupCpuReader(id);
      // Trace the cgroup counter every ~10 ms so it can be read "at the moment" of each engine sample.
      const trace: Array<[t: number, ns: number]> = [];
      const tracer = setInterval(() => trace.push([Date.now() / 1000, readCgroup()]), 10);
      const at = (t: number): number => {
        for (let i = 1; i < trace.length; i++) {
          const [t1, v1] = trace[i]!;
          const [t0, v0] = trace[i - 1]!;
          if (t0 <= t && t <= t1) return v0 + ((v1 - v0) * (t - t0)) / (t1 - t0);
        }
        throw new Error(`no cgroup reading around ${t}`);
      };
      try {
        // Enough CPU time that a few ms of trace granularity on a loaded host stay well under 2%.
        await sleep(5000);
        const first = await freshScrape(exporter, id, Date.now() / 1000);
        const t1 = value(first, 'container_last_seen', { id })!;
        const c1 = value(first, 'container_cpu_usage_seconds_total', { id })!;
        await sleep(10_000);
        const second = await freshScrape(exporter, id, Date.now() / 1000);
        const t2 = value(second, 'container_last_seen', { id })!;
        const c2 = value(second, 'container_cpu_usage_seconds_total', { id })!;
        clearInterval(tracer);

        for (const [t, c] of [[t1, c1], [t2, c2]] as const) {
          const cg = at(t) / 1e9;
          console.log(`cpu: exporter ${c.toFixed(4)} s, cgroup at sample time ${cg.toFixed(4)} s, diff ${((100 * (c - cg)) / cg).toFixed(3)}%`);
          expect(Math.abs(c - cg) / cg).toBeLessThan(0.02);
        }
        const rate = (c2 - c1) / (t2 - t1);
        const cgroupRate = (at(t2) - at(t1)) / 1e9 / (t2 - t1);
        console.log(`cpu rate over ${(t2 - t1).toFixed(2)} s: exporter ${rate.toFixed(4)} cores, cgroup ${cgroupRate.toFixed(4)} cores`);
        expect(Math.abs(rate - cgroupRate) / cgroupRate).toBeLessThan(0.02);
        // The loop burns one core only if the host has one to spare: on a loaded machine (colleagues'
        // builds) the cgroup itself shows less, and the comparison above is what proves the exporter.
        if (cgroupRate >= 0.9) expect(Math.abs(rate - 1)).toBeLessThan(0.1);
        else console.warn(`host too busy for a full core (load ${fs.readFileSync('/proc/loadavg', 'utf8').trim()}): rate checked against the cgroup only`);
        expect(value(second, 'container_cpu_user_seconds_total', { id })).toBeGreaterThan(0);
        expect(value(second, 'container_cpu_system_seconds_total', { id })).toBeGreaterThanOrEqual(0);
        // No quota: cAdvisor exports no CFS series for it, and neither do we.
        expect(findAll(second, 'container_cpu_cfs_periods_total', { id })).toHaveLength(0);
      } finally {
        clearInterval(tracer);
        await docker(['rm', '-f', id]);
      }
    });

    it('working set equals docker stats MEM USAGE; the memory limit is --memory; throttling shows for --cpus', async () => {
      const id = await containers.run(['--name', name('mem'), '--memory', '64m', '--cpus', '0.5', '--pids-limit', '50'], [
        // The shell keeps 20 MB in a variable; it must not exec its last command (that would free it).
        // The 8 MiB file is page cache (working set < usage); `sync` writes it back at once: else the
        // kernel's flusher does ~30 s after the write, and pages under writeback leave the inactive
        // list for a few seconds (seen: exactly 1 MiB, the working set 5 % off between two samples).
        'sh', '-c', 'dd if=/dev/zero of=/tmp/f bs=1M count=8 2>/dev/null; sync; x=$(head -c 20000000 /dev/zero | tr "\\0" a); i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; while :; do sleep 3600; done',
      ]);
      // Removed even when an expectation fails: a container left running would be counted by the
      // start/stop test below, which counts this file's running containers.
      onTestFinished(() => docker(['rm', '-f', id]).then(() => undefined));
      // Let the busy loop finish so memory and CPU are still while comparing.
      // Podman's stream=false sample has an empty precpu_stats: two samples a second apart instead.
      // Memory too: a CPU counter that did not move over one sample is not proof the shell has
      // finished filling its variable (on Podman the exporter once saw 22.7 of the final 31.3 MB).
      let last = '';
      await waitFor('the container to settle', async () => {
        const a = await rawStats(engine, id);
        const prev = onPodman ? last : `${a.precpu_stats.cpu_usage.total_usage} ${last.split(' ')[1] ?? ''}`;
        last = `${a.cpu_stats.cpu_usage.total_usage} ${a.memory_stats.usage}`;
        return last === prev;
      }, 60_000, onPodman ? 1000 : 500);
      const raw = await rawStats(engine, id);
      const cli = await dockerStats(engine, id);
      // Podman streams a record every 5 s: one up to 2 s older than `raw` may predate the settling.
      const samples = await freshScrape(exporter, id, Date.parse(raw.read) / 1000 - (onPodman ? 0 : 2));
      const ws = value(samples, 'container_memory_working_set_bytes', { id })!;
      // Podman 4.3 sends only memory_stats.usage and .limit: nothing to subtract, so its working set
      // is the usage, page cache (the 8 MiB file) included, and the breakdown series are absent.
      const fromFields = raw.memory_stats.usage - (onPodman ? 0 : raw.memory_stats.stats.total_inactive_file);
      if (onPodman) expect(Object.keys(raw.memory_stats).sort()).toEqual(['limit', 'usage']);
      console.log(`${engine.name}: memory: exporter working set ${ws}, usage - total_inactive_file ${fromFields}, docker stats MEM USAGE ${cli.mem}`);
      expect(Math.abs(ws - fromFields) / fromFields).toBeLessThan(0.01);
      expect(Math.abs(ws - cli.mem) / cli.mem).toBeLessThan(0.01);
      expect(ws).toBeGreaterThan(19_000_000);
      expect(ws).toBeLessThan(40_000_000);
      if (onPodman) {
        expect(value(samples, 'container_memory_usage_bytes', { id })).toBe(ws);
        for (const m of ['container_memory_cache', 'container_memory_rss', 'container_memory_max_usage_bytes', 'container_memory_failures_total']) {
          expect(findAll(samples, m, { id }), m).toHaveLength(0);
        }
      } else {
        expect(value(samples, 'container_memory_usage_bytes', { id })).toBeGreaterThan(ws);
        expect(value(samples, 'container_memory_cache', { id })).toBeGreaterThan(0);
        expect(value(samples, 'container_memory_rss', { id })).toBeGreaterThan(19_000_000);
        expect(value(samples, 'container_memory_max_usage_bytes', { id })).toBeGreaterThan(0);
        expect(value(samples, 'container_memory_failures_total', { id, failure_type: 'pgfault', scope: 'container' })).toBeGreaterThan(0);
      }
      // sh and its sleep.
      expect(value(samples, 'container_threads', { id })).toBe(raw.pids_stats.current);
      expect(raw.pids_stats.current).toBe(2);
      // Podman sends no pids_stats.limit, though --pids-limit applies.
      expect(value(samples, 'container_threads_max', { id })).toBe(onPodman ? undefined : 50);
      if (onPodman) {
        // Podman 4.3 sends throttling_data, all zeros here though the loop runs under --cpus 0.5:
        // the exporter says what the engine says.
        const t = raw.cpu_stats.throttling_data;
        expect([t.periods, t.throttled_periods, t.throttled_time]).toEqual([0, 0, 0]);
        expect(value(samples, 'container_cpu_cfs_periods_total', { id })).toBe(0);
        expect(value(samples, 'container_cpu_cfs_throttled_periods_total', { id })).toBe(0);
      } else {
        expect(value(samples, 'container_cpu_cfs_periods_total', { id })).toBeGreaterThan(0);
        expect(value(samples, 'container_cpu_cfs_throttled_periods_total', { id })).toBeGreaterThan(0);
        expect(value(samples, 'container_cpu_cfs_throttled_seconds_total', { id })).toBeGreaterThan(0);
      }
      // The containers collector's series; the stats collector relies on the same spec for CFS.
      expect(value(samples, 'container_spec_memory_limit_bytes', { id })).toBe(64 * 1024 * 1024);
    });

    // Podman 4.3 sums every interface into one pseudo-interface "network", bytes only (packets,
    // drops and errors are 0), and swaps the directions (containers/podman#16618, fixed in 4.4):
    // the exporter says what the engine says. The cgroupfs source (auto's choice there, below)
    // reads the real ones.
    const IFACE = onPodman ? 'network' : 'eth0';
    const [UP, DOWN] = onPodman ? (['receive', 'transmit'] as const) : (['transmit', 'receive'] as const);
    const [UP_KEY, DOWN_KEY] = onPodman ? (['rx_bytes', 'tx_bytes'] as const) : (['tx_bytes', 'rx_bytes'] as const);
    it('network bytes between two containers on a user network match docker stats', async () => {
      const net = await containers.network(name('net'));
      const srvName = name('srv');
      const srv = await containers.run(['--name', srvName, '--network', net], ['sh', '-c', 'mkdir /www && head -c 3000000 /dev/zero > /www/blob && httpd -f -p 8080 -h /www']);
      await sleep(500);
      const cli = await containers.run(['--name', name('cli'), '--network', net], ['sh', '-c', `until wget -q -O /dev/null http://${srvName}:8080/blob; do sleep 0.2; done; sleep 3600`]);
      await waitFor('the download', async () => (await rawStats(engine, cli)).networks[IFACE][DOWN_KEY] > 3_000_000, 30_000, 500);
      await sleep(1500);
      const [srvCli, cliCli, srvRaw, cliRaw] = await Promise.all([dockerStats(engine, srv), dockerStats(engine, cli), rawStats(engine, srv), rawStats(engine, cli)]);
      // Podman's stream sends a record every 5 s (Docker's every second): both must be that fresh.
      const since = Math.min(Date.parse(cliRaw.read), Date.parse(srvRaw.read)) / 1000 - (onPodman ? 0 : 2);
      await freshScrape(exporter, srv, since, onPodman ? 12_000 : 10_000);
      const samples = await freshScrape(exporter, cli, since, onPodman ? 12_000 : 10_000);
      // The server's 3 MB sent, the client's 3 MB received (each under its engine's direction).
      const tx = value(samples, `container_network_${UP}_bytes_total`, { id: srv, interface: IFACE })!;
      const rx = value(samples, `container_network_${DOWN}_bytes_total`, { id: cli, interface: IFACE })!;
      const [srvCliUp, cliCliDown] = onPodman ? [srvCli.netRx, cliCli.netTx] : [srvCli.netTx, cliCli.netRx];
      console.log(`${engine.name}: network: server ${UP} ${tx} (docker stats ${srvCliUp}), client ${DOWN} ${rx} (docker stats ${cliCliDown})`);
      expect(tx).toBeGreaterThan(3_000_000);
      expect(rx).toBeGreaterThan(3_000_000);
      expect(Math.abs(tx - srvCliUp) / srvCliUp).toBeLessThan(0.01);
      expect(Math.abs(rx - cliCliDown) / cliCliDown).toBeLessThan(0.01);
      expect(Math.abs(tx - srvRaw.networks[IFACE][UP_KEY]) / tx).toBeLessThan(0.01);
      // Both directions of both containers are there, with packet counts.
      for (const id of [srv, cli]) {
        for (const m of ['receive_bytes', 'transmit_bytes', 'receive_packets', 'transmit_packets', 'receive_packets_dropped', 'transmit_packets_dropped', 'receive_errors', 'transmit_errors']) {
          expect(value(samples, `container_network_${m}_total`, { id, interface: IFACE }), `${m} of ${id}`).toBeGreaterThanOrEqual(0);
        }
      }
      // This engine reports no block I/O per container, so there is no fs series (never a made-up 0).
      expect(findAll(samples, 'container_fs_reads_bytes_total', { id: cli })).toHaveLength(0);
      await docker(['rm', '-f', srv, cli]);
    });

    it('a new container has series within 2 s; a removed one has none on the next scrape', async () => {
      const started = Date.now();
      const id = await containers.run(['--name', name('new')]);
      const ranAt = Date.now();
      await waitFor('series of the new container', async () => seriesOf(await scrapeSamples(exporter), id).length > 0, 5000, 50);
      const took = Date.now() - ranAt;
      console.log(`stream: series ${took} ms after docker run returned (${Date.now() - started} ms after it was called)`);
      expect(took).toBeLessThan(2000);
      await docker(['rm', '-f', id]);
      await goneOnNextScrape(exporter, id);
    });

    // Podman starts a container in ~0.3 s of CPU where dockerd takes ~0.1 s: 20 cycles there keep the run short.
    const CYCLES = onPodman ? 20 : 100;
    it(`after ${CYCLES} start/stop cycles the open streams equal the running containers, and no socket is left over`, { timeout: 400_000 }, async () => {
      const steady = await Promise.all([1, 2].map((n) => containers.run(['--name', name(`steady${n}`)])));
      const cycled = await Promise.all([1, 2, 3].map((n) => containers.create(['--name', name(`cyc${n}`)])));
      const running = async (): Promise<number> => (await docker(['ps', '-q', '--filter', `name=^${PREFIX}`])).split('\n').filter(Boolean).length;
      const streamsNow = async (): Promise<number | undefined> => value(await scrapeSamples(exporter), 'docker_exporter_stats_streams');
      await waitFor('streams of the steady containers', async () => (await streamsNow()) === (await running()), 10_000);
      const socketsBefore = socketCount(exporter.pid);
      for (let i = 0; i < CYCLES; i++) {
        const id = cycled[i % cycled.length]!;
        await docker(['start', id]);
        // Every other cycle stops at once, before the stream can have delivered anything.
        if (i % 2 === 0) await sleep(300);
        await docker(['stop', '-t', '0', id]);
        if (i % 10 === 9) await exporter.scrape();
      }
      // And once more with the containers left running, so "running" is not just the steady ones.
      await docker(['start', cycled[0]!]);
      const expected = await running();
      expect(expected).toBe(steady.length + 1);
      await waitFor('open streams to equal running containers', async () => (await streamsNow()) === expected, 10_000);
      // An open stream is not yet a sample: the engine sends a stream's first record about a second
      // after it opens, later on a loaded host.
      const withSeries = [...steady, cycled[0]!];
      await waitFor('series of every running container', async () => {
        const now = await scrapeSamples(exporter);
        return withSeries.every((id) => seriesOf(now, id).length > 0);
      }, 10_000);
      const samples = await scrapeSamples(exporter);
      expect(value(samples, 'docker_exporter_stats_streams')).toBe(expected);
      for (const id of withSeries) expect(seriesOf(samples, id).length, id).toBeGreaterThan(0);
      for (const id of cycled.slice(1)) expect(seriesOf(samples, id), id).toHaveLength(0);
      await sleep(1000);
      const socketsAfter = socketCount(exporter.pid);
      console.log(`${engine.name}: ${CYCLES} cycles: ${expected} running, ${value(samples, 'docker_exporter_stats_streams')} streams; sockets before ${socketsBefore} (${expected - 1} streams), after ${socketsAfter}`);
      // One more stream than before, plus at most an idle keep-alive connection or two.
      expect(socketsAfter).toBeLessThanOrEqual(socketsBefore + 1 + 2);
      await docker(['rm', '-f', ...steady, ...cycled]);
      await waitFor('no streams left', async () => (await streamsNow()) === 0, 10_000);
    });
  });

  describe('stats collector, poll mode, against the real engine', () => {
    let exporter: RunningExporter;
    const INTERVAL_S = 4;
    beforeAll(async () => {
      exporter = await exporterWith(engine, ['--stats.mode', 'poll', '--stats.interval', `${INTERVAL_S}s`]);
    });
    afterAll(async () => {
      expect(await exporter.stop()).toBe(0);
    });

    it('a new container has series within one interval (at once, in fact); a removed one has none on the next scrape', async () => {
      const id = await containers.run(['--name', name('pnew')]);
      const ranAt = Date.now();
      await waitFor('series of the new container', async () => seriesOf(await scrapeSamples(exporter), id).length > 0, INTERVAL_S * 1000 + 2000, 50);
      const took = Date.now() - ranAt;
      console.log(`poll: series ${took} ms after docker run returned (interval ${INTERVAL_S} s)`);
      expect(took).toBeLessThan(INTERVAL_S * 1000);
      const samples = await scrapeSamples(exporter);
      expect(value(samples, 'docker_exporter_stats_streams')).toBe(0);
      await docker(['rm', '-f', id]);
      await goneOnNextScrape(exporter, id);
    });

    it('CPU counter in poll mode matches the cgroup counter of a paused (frozen) container exactly', async () => {
      const id = await containers.run(['--name', name('pcpu')], ['sh', '-c', 'while :; do :; done']);
      await sleep(2000);
      await docker(['pause', id]);
      const frozen = cgroupCpuReader(id)() / 1e9;
      const pausedAt = Date.now() / 1000;
      // Paused containers keep their series (their memory is still held); the next round samples it.
      const samples = await freshScrape(exporter, id, pausedAt, INTERVAL_S * 1000 + 3000);
      const c = value(samples, 'container_cpu_usage_seconds_total', { id })!;
      console.log(`poll cpu (paused): exporter ${c} s, cgroup ${frozen} s`);
      expect(Math.abs(c - frozen) / frozen).toBeLessThan(0.001);
      await docker(['rm', '-f', id]);
    });

    it('samples a round of more containers than Node allows listeners per signal, and writes no Node warning', async () => {
      // 12 requests in flight at once (--stats.concurrency is 32) under one stop signal: a listener
      // each once printed MaxListenersExceededWarning on stderr, a leak warning to every operator.
      const ids = await Promise.all(Array.from({ length: 12 }, (_, i) => containers.run(['--name', name(`pmany${i}`)])));
      await waitFor('series of all 12', async () => {
        const samples = await scrapeSamples(exporter);
        return ids.every((id) => seriesOf(samples, id).length > 0);
      }, INTERVAL_S * 1000 * 2 + 5000, 200);
      // A full round more, all 12 due together.
      await sleep(INTERVAL_S * 1000 + 1500);
      expect(exporter.logs.filter((line) => /Warning/.test(line))).toEqual([]);
      await docker(['rm', '-f', ...ids]);
    });

    it('stopped containers lose their series; restarted ones get them back at once', async () => {
      const id = await containers.run(['--name', name('pcyc')]);
      await waitFor('series', async () => seriesOf(await scrapeSamples(exporter), id).length > 0, INTERVAL_S * 1000 + 2000, 50);
      for (let i = 0; i < 5; i++) {
        await docker(['stop', '-t', '0', id]);
        await waitFor('series gone', async () => seriesOf(await scrapeSamples(exporter), id).length === 0, 2000, 20);
        await docker(['start', id]);
        const ranAt = Date.now();
        await waitFor('series back', async () => seriesOf(await scrapeSamples(exporter), id).length > 0, INTERVAL_S * 1000 + 2000, 50);
        expect(Date.now() - ranAt).toBeLessThan(INTERVAL_S * 1000);
      }
      await docker(['rm', '-f', id]);
    });
  });
});

// What --stats.source auto (the default) chooses on Podman: the cgroupfs source, which finds
// Podman's cgroups (libpod_parent/libpod-<id> here) and each container's /proc/<pid>/net/dev, so
// the figures Podman's stats API lacks or gets wrong are there.
describe.runIf(ENGINES.includes(PODMAN))('stats source auto on Podman', () => {
  const containers = new TestContainers(PODMAN);
  const docker = cliFor(PODMAN);
  let exporter: RunningExporter;
  beforeAll(async () => {
    exporter = await startExporter([...PODMAN.exporterArgs, '--container.include', `^${PREFIX}`, '--no-collector.df']);
  });
  afterAll(async () => {
    await containers.removeAll();
    expect(await exporter.stop()).toBe(0);
  });

  it('chooses cgroupfs, and reads real interfaces, directions, packets and the page cache', async () => {
    const net = await containers.network(name('anet'));
    const srvName = name('asrv');
    const srv = await containers.run(['--name', srvName, '--network', net], ['sh', '-c', 'mkdir /www && head -c 3000000 /dev/zero > /www/blob && httpd -f -p 8080 -h /www']);
    await sleep(500);
    const cli = await containers.run(['--name', name('acli'), '--network', net], ['sh', '-c', `dd if=/dev/zero of=/tmp/f bs=1M count=8 2>/dev/null; sync; until wget -q -O /dev/null http://${srvName}:8080/blob; do sleep 0.2; done; sleep 3600`]);
    const pid = Number(await docker(['inspect', '--format', '{{.State.Pid}}', cli]));
    const eth0 = (): number[] => fs.readFileSync(`/proc/${pid}/net/dev`, 'utf8').split('\n').find((l) => l.trim().startsWith('eth0:'))!.split(':')[1]!.trim().split(/\s+/).map(Number);
    await waitFor('the download', () => eth0()[0]! > 3_000_000, 30_000, 200);
    await sleep(1000);
    // The kernel's counters read just before and just after the scrape: the exporter's lie between
    // (equal to both unless a stray packet came: once 110 bytes, an ARP or neighbour message).
    const [rxBytes, rxPackets] = eth0();
    const samples = await freshScrape(exporter, cli, Date.now() / 1000);
    const [rxBytesAfter, rxPacketsAfter] = eth0();
    expect(value(samples, 'docker_exporter_stats_source', { source: 'cgroupfs' })).toBe(1);
    const rx = value(samples, 'container_network_receive_bytes_total', { id: cli, interface: 'eth0' })!;
    const rxP = value(samples, 'container_network_receive_packets_total', { id: cli, interface: 'eth0' })!;
    expect([rx >= rxBytes!, rx <= rxBytesAfter!], `rx bytes ${rx}, kernel ${rxBytes} before, ${rxBytesAfter} after`).toEqual([true, true]);
    expect([rxP >= rxPackets!, rxP <= rxPacketsAfter!], `rx packets ${rxP}, kernel ${rxPackets} before, ${rxPacketsAfter} after`).toEqual([true, true]);
    expect(value(samples, 'container_network_transmit_bytes_total', { id: srv, interface: 'eth0' })).toBeGreaterThan(3_000_000);
    expect(findAll(samples, 'container_network_receive_bytes_total', { id: cli, interface: 'network' })).toHaveLength(0);
    // The 8 MiB file is page cache, which the cgroup's memory.stat shows and the working set leaves
    // out (written back by `sync` at once: pages under writeback leave the inactive list a while).
    expect(value(samples, 'container_memory_cache', { id: cli })).toBeGreaterThanOrEqual(8 << 20);
    expect(value(samples, 'container_memory_working_set_bytes', { id: cli })).toBeLessThan(value(samples, 'container_memory_usage_bytes', { id: cli })! - (7 << 20));
    await docker(['rm', '-f', srv, cli]);
  });
});
