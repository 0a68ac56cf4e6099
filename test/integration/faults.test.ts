import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { baseAction } from '../../src/parse/event.js';
import { docker, TEST_IMAGE, TEST_LABEL, TestContainers, waitFor } from '../helpers/docker.js';
import { startExporter, type RunningExporter } from '../helpers/exporter.js';
import { findAll, value, type Sample } from '../helpers/prom.js';
import { REPO_ROOT } from '../helpers/tools.js';

const run = promisify(execFile);
const SOCKET = '/var/run/docker.sock';
const RUN = `${process.pid}`;
/** SOAK=1: the full 1,000 lifecycles; by default a shorter run of the same test (FAULTS_LIFECYCLES=n to choose). */
const LIFECYCLES = Number(process.env.FAULTS_LIFECYCLES ?? (process.env.SOAK === '1' ? 1000 : 60));
/** Lifecycles before the memory baseline: compiled code and first-use allocations are not a leak. */
const WARM_UP = process.env.SOAK === '1' ? 50 : 12;
const sleepMs = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The engine API straight over its socket, for the many quick container operations (the CLI is slow to start). */
function engineApi<T = unknown>(method: string, path: string, body?: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request({ socketPath: SOCKET, method, path, headers: data ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) } : {} }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        if ((res.statusCode ?? 500) >= 300 && res.statusCode !== 304) return reject(new Error(`${method} ${path}: HTTP ${res.statusCode}: ${text}`));
        resolve((text ? JSON.parse(text) : undefined) as T);
      });
    });
    req.on('error', reject);
    req.end(data);
  });
}

/** Socket counts of a process: its fds matched against the kernel's unix and TCP socket tables. */
function socketsOf(pid: number): { unix: number; tcp: number } {
  const inodes = new Set<string>();
  for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      if (m) inodes.add(m[1]!);
    } catch {
      /* closed meanwhile */
    }
  }
  const table = (file: string, column: number): Set<string> =>
    new Set(
      fs
        .readFileSync(file, 'utf8')
        .split('\n')
        .slice(1)
        .map((l) => l.trim().split(/\s+/)[column])
        .filter((x): x is string => Boolean(x)),
    );
  const unix = table('/proc/net/unix', 6);
  const tcp = new Set([...table('/proc/net/tcp', 9), ...(fs.existsSync('/proc/net/tcp6') ? table('/proc/net/tcp6', 9) : [])]);
  return { unix: [...inodes].filter((i) => unix.has(i)).length, tcp: [...inodes].filter((i) => tcp.has(i)).length };
}

function engineScript(command: 'start' | 'stop'): Promise<unknown> {
  return run('bash', [`${REPO_ROOT}/scripts/test-engine.sh`, command], { timeout: 90_000 });
}

/** Labels every per-container series of one container must carry the same set of. */
function seriesKeys(samples: Sample[]): string[] {
  return samples.filter((s) => /^(docker|container)_/.test(s.name)).map((s) => `${s.name}${JSON.stringify(s.labels)}`);
}

/** A TCP → unix socket proxy to the engine whose connections the test can cut, or refuse for a while. */
class CuttableProxy {
  private readonly server: net.Server;
  private readonly pairs = new Set<[net.Socket, net.Socket]>();
  refusing = false;
  port = 0;

  constructor() {
    this.server = net.createServer((client) => {
      if (this.refusing) return void client.destroy();
      const upstream = net.connect(SOCKET);
      const pair: [net.Socket, net.Socket] = [client, upstream];
      this.pairs.add(pair);
      const end = (): void => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('error', end).on('close', end);
      upstream.on('error', end).on('close', end);
      client.pipe(upstream).pipe(client);
    });
  }

  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as net.AddressInfo).port;
  }

  /** Drops every connection in the middle of whatever it carries; returns how many there were. */
  cut(): number {
    const n = this.pairs.size;
    for (const [a, b] of [...this.pairs]) {
      a.destroy();
      b.destroy();
    }
    return n;
  }

  close(): Promise<void> {
    this.cut();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

/** create, start, stop, remove through the engine API; labelled so that only this file counts them. */
async function lifecycle(name: string, labels: Record<string, string>): Promise<void> {
  const [key, val] = TEST_LABEL.split('=') as [string, string];
  const { Id } = await engineApi<{ Id: string }>('POST', `/containers/create?name=${name}`, { Image: TEST_IMAGE, Cmd: ['sleep', '3600'], Labels: { [key]: val, ...labels } });
  await engineApi('POST', `/containers/${Id}/start`);
  await engineApi('POST', `/containers/${Id}/stop?t=0`);
  await engineApi('DELETE', `/containers/${Id}?force=1`);
}

describe('the events stream cut mid-way by a proxy', () => {
  const containers = new TestContainers();
  const proxy = new CuttableProxy();
  const label = `docker-exporter-faults-events=${RUN}`;
  let exporter: RunningExporter;
  let keep: string;

  beforeAll(async () => {
    await proxy.listen();
    keep = await containers.run(['--name', `faults-ev-${RUN}-keep`, '--label', label]);
    exporter = await startExporter([
      '--docker.host', `tcp://127.0.0.1:${proxy.port}`,
      '--events.filter', `label=${label}`,
      '--container.include', `^faults-ev-${RUN}-`,
      '--no-collector.stats', '--no-collector.df',
    ]);
    await waitFor('the events collector to connect', async () => value(await exporter.samples(), 'docker_exporter_collector_success', { collector: 'events' }) === 1, 20_000, 200);
  });
  afterAll(async () => {
    const code = await exporter?.stop();
    await proxy.close();
    await containers.removeAll();
    expect(code).toBe(0);
  });

  it('reconnects and counts every event the engine holds exactly once', async () => {
    // The truth is a live `docker events` on the engine's own socket, started before anything
    // happens: a replay with --since/--until afterwards reads the engine's 256-event buffer, which
    // concurrent work on a shared engine can overrun.
    const watcher = spawn('docker', ['events', '--filter', `label=${label}`, '--format', '{{json .}}'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let watched = '';
    watcher.stdout.setEncoding('utf8').on('data', (chunk: string) => (watched += chunk));
    await sleepMs(1000);
    let cuts = 0;
    for (let round = 0; round < 6; round++) {
      const busy = lifecycle(`faults-ev-${RUN}-${round}`, { [label.split('=')[0]!]: RUN });
      // Cut while the engine is sending this lifecycle's events.
      await sleepMs(30 + round * 40);
      if (proxy.cut() > 0) cuts++;
      await busy;
      if (round === 3) {
        // Down for a while: these events happen with no stream open, and must come by replay.
        proxy.refusing = true;
        proxy.cut();
        await lifecycle(`faults-ev-${RUN}-gap`, { [label.split('=')[0]!]: RUN });
        await sleepMs(1500);
        proxy.refusing = false;
      }
    }
    await sleepMs(1500);
    watcher.kill();
    const truthLines = watched.split('\n').filter(Boolean);
    const truth = new Map<string, number>();
    for (const line of truthLines) {
      const e = JSON.parse(line) as { Type: string; Action: string };
      const key = `${e.Type}/${baseAction(e.Action)}`;
      truth.set(key, (truth.get(key) ?? 0) + 1);
    }
    // 7 lifecycles of create, start, kill, die, stop, destroy at least.
    expect(truthLines.length).toBeGreaterThanOrEqual(7 * 6);
    const counted = (s: Sample[]): Map<string, number> => new Map(findAll(s, 'docker_events_total').map((x) => [`${x.labels.type}/${x.labels.action}`, x.value]));
    const samples = await waitFor('the counts to catch up', async () => {
      const s = await exporter.samples();
      return value(s, 'docker_exporter_collector_success', { collector: 'events' }) === 1 && [...truth].every(([k, v]) => counted(s).get(k) === v) && s;
    }, 15_000, 250);
    expect(Object.fromEntries(counted(samples))).toEqual(Object.fromEntries(truth));
    // And nothing arrives twice later.
    await sleepMs(1500);
    expect(Object.fromEntries(counted(await exporter.samples()))).toEqual(Object.fromEntries(truth));
    expect(cuts).toBeGreaterThanOrEqual(5);
    expect(value(samples, 'docker_exporter_events_reconnects_total')).toBeGreaterThanOrEqual(cuts);
    // The inventory, rebuilt after each reconnect, holds exactly the one container left.
    expect(findAll(samples, 'docker_container_info').map((s) => s.labels.id)).toEqual([keep]);
    expect(exporter.proc.exitCode).toBeNull();
  });
});

describe(`${LIFECYCLES} container lifecycles while scraping`, () => {
  const containers = new TestContainers();
  const prefix = `faults-lc-${RUN}-`;
  const made = new Set<string>();
  let exporter: RunningExporter;
  let steady: string[];

  beforeAll(async () => {
    steady = [await containers.run(['--name', `${prefix}steady-0`]), await containers.run(['--name', `${prefix}steady-1`])];
    // --expose-gc and a SIGUSR2 hook that collects and logs the heap: the honest measure of retained
    // memory (V8 rarely gives pages back, so RSS says little). Compiled code is counted apart: the
    // JIT keeps optimising hot functions for a while (about 1 MB here), which is not data retained.
    const hook = encodeURIComponent(
      'import v8 from "node:v8";process.on("SIGUSR2",()=>{globalThis.gc();' +
        'const code=v8.getHeapSpaceStatistics().filter((s)=>s.space_name.startsWith("code")).reduce((n,s)=>n+s.space_used_size,0);' +
        'const m=process.memoryUsage();process.stdout.write(JSON.stringify({msg:"heap after gc",heapUsed:m.heapUsed-code,code,rss:m.rss})+"\\n")})',
    );
    exporter = await startExporter(['--container.include', `^${prefix}`, '--stats.source', 'engine', '--stats.mode', 'stream', '--df.interval', '10m'], {
      command: [process.execPath, '--expose-gc', '--import', `data:text/javascript,${hook}`, '--import', 'tsx', 'src/cli.ts'],
    });
  });
  afterAll(async () => {
    const code = await exporter?.stop();
    await containers.removeAll();
    for (const name of made) await engineApi('DELETE', `/containers/${name}?force=1`).catch(() => undefined);
    expect(code).toBe(0);
  });

  /** Heap in use after a full GC, without compiled code; and the code and RSS beside it. */
  async function heapAfterGc(): Promise<{ heapUsed: number; code: number; rss: number }> {
    const before = exporter.logs.length;
    exporter.proc.kill('SIGUSR2');
    const line = await waitFor('the heap line', () => exporter.logs.slice(before).find((l) => l.includes('"msg":"heap after gc"')), 5000, 20);
    return JSON.parse(line) as { heapUsed: number; code: number; rss: number };
  }

  /** Runs n lifecycles, 4 at a time, numbered from `from`. */
  async function lifecycles(from: number, n: number): Promise<void> {
    let next = from;
    await Promise.all(
      Array.from({ length: 4 }, async () => {
        while (next < from + n) {
          const name = `${prefix}${next++}`;
          made.add(name);
          await lifecycle(name, {});
          made.delete(name);
        }
      }),
    );
  }

  it('ends with streams = running containers, the inventory = existing containers, and memory back', async () => {
    // Warm up (first-use allocations and compiled code are not a leak), then take the baseline.
    await lifecycles(0, WARM_UP);
    await waitFor('two open stats streams', async () => value(await exporter.samples(), 'docker_exporter_stats_streams') === 2, 20_000, 250);
    const baseline = [await heapAfterGc(), await heapAfterGc()].sort((a, b) => a.heapUsed - b.heapUsed)[0]!;

    let scrapes = 0;
    let scraping = true;
    const failures: string[] = [];
    const scraper = (async () => {
      while (scraping) {
        try {
          const s = await exporter.samples();
          const keys = seriesKeys(s);
          if (new Set(keys).size !== keys.length) failures.push('a scrape with duplicate series');
          scrapes++;
        } catch (err) {
          failures.push((err as Error).message);
        }
        await sleepMs(200);
      }
    })();
    const started = performance.now();
    await lifecycles(WARM_UP, LIFECYCLES);
    const seconds = (performance.now() - started) / 1000;
    scraping = false;
    await scraper;
    expect(failures).toEqual([]);
    expect(scrapes).toBeGreaterThan(5);

    const truth = async (): Promise<{ all: string[]; running: string[] }> => {
      const list = await engineApi<Array<{ Id: string; Names: string[]; State: string }>>('GET', `/containers/json?all=1&filters=${encodeURIComponent(JSON.stringify({ name: [prefix] }))}`);
      const ours = list.filter((c) => c.Names.some((n) => n.startsWith(`/${prefix}`)));
      return { all: ours.map((c) => c.Id).sort(), running: ours.filter((c) => c.State === 'running').map((c) => c.Id).sort() };
    };
    const samples = await waitFor('streams and inventory to settle', async () => {
      const s = await exporter.samples();
      const t = await truth();
      const inventory = findAll(s, 'docker_container_info').map((x) => x.labels.id).sort();
      return value(s, 'docker_exporter_stats_streams') === t.running.length && JSON.stringify(inventory) === JSON.stringify(t.all) && s;
    }, 20_000, 250);
    const t = await truth();
    expect(t.running).toEqual([...steady].sort());
    expect(value(samples, 'docker_exporter_stats_streams')).toBe(2);
    expect(findAll(samples, 'docker_container_info').map((x) => x.labels.id).sort()).toEqual(t.all);
    expect(findAll(samples, 'container_last_seen').map((x) => x.labels.id).sort()).toEqual(t.running);
    const sockets = socketsOf(exporter.pid);

    // Idle keep-alive connections and stream buffers are released over a few seconds.
    let after = await heapAfterGc();
    for (let i = 0; i < 10 && after.heapUsed > baseline.heapUsed * 1.1; i++) {
      await sleepMs(1000);
      after = await heapAfterGc();
    }
    console.log(
      `${LIFECYCLES} lifecycles in ${seconds.toFixed(1)} s with ${scrapes} scrapes; heap after GC (without code) ${(baseline.heapUsed / 1e6).toFixed(2)} → ${(after.heapUsed / 1e6).toFixed(2)} MB, ` +
        `code ${(baseline.code / 1e6).toFixed(2)} → ${(after.code / 1e6).toFixed(2)} MB, ` +
        `RSS ${(baseline.rss / 1e6).toFixed(1)} → ${(after.rss / 1e6).toFixed(1)} MB; unix sockets ${sockets.unix}`,
    );
    expect(after.heapUsed).toBeLessThanOrEqual(baseline.heapUsed * 1.1);
    expect(exporter.proc.exitCode).toBeNull();
  }, 120_000 + LIFECYCLES * 3_000);
});

describe('the engine stopped for 10 s and started again, 5 times', () => {
  const containers = new TestContainers();
  const prefix = `faults-rs-${RUN}-`;
  let exporter: RunningExporter;

  beforeAll(async () => {
    for (let i = 0; i < 3; i++) await containers.run(['--name', `${prefix}${i}`, '--restart', 'always', '--stop-timeout', '1']);
    exporter = await startExporter(['--container.include', `^${prefix}`, '--stats.source', 'engine', '--stats.mode', 'stream', '--df.interval', '10m']);
  });
  afterAll(async () => {
    // Whatever happened, the engine runs again for the tests after this one.
    await engineScript('start');
    const code = await exporter?.stop();
    await containers.removeAll();
    expect(code).toBe(0);
  });

  async function running(): Promise<Map<string, number>> {
    const list = await engineApi<Array<{ Id: string; Names: string[] }>>('GET', `/containers/json?filters=${encodeURIComponent(JSON.stringify({ name: [prefix] }))}`);
    return new Map(list.filter((c) => c.Names.some((n) => n.startsWith(`/${prefix}`))).map((c) => [c.Id, 0]));
  }

  /** Every running container with state, a stats sample newer than `sinceSec`, exactly one stream each, and no duplicate series. */
  function complete(s: Sample[], ids: string[], sinceSec: number): boolean {
    const keys = seriesKeys(s);
    return (
      value(s, 'docker_up') === 1 &&
      ids.length === 3 &&
      ids.every((id) => value(s, 'docker_container_state', { id, state: 'running' }) === 1 && (value(s, 'container_last_seen', { id }) ?? 0) >= sinceSec) &&
      value(s, 'docker_exporter_stats_streams') === ids.length &&
      new Set(keys).size === keys.length
    );
  }

  it('never exits, shows docker_up 0 while down, and is complete again within 5 s of the return without leaking sockets', async () => {
    const first = await waitFor('the first complete scrape', async () => {
      const ids = [...(await running()).keys()];
      const s = await exporter.samples();
      return complete(s, ids, 0) && s;
    }, 30_000, 250);
    expect(first).toBeTruthy();
    await sleepMs(6000); // let idle keep-alive connections close
    const baseline = socketsOf(exporter.pid);
    const recoveries: number[] = [];
    const unixAfter: number[] = [];

    for (let cycle = 1; cycle <= 5; cycle++) {
      await engineScript('stop');
      const downSince = performance.now();
      while (performance.now() - downSince < 10_000) {
        const s = await exporter.samples();
        expect(value(s, 'docker_up'), `cycle ${cycle}: docker_up while the engine is stopped`).toBe(0);
        expect(exporter.proc.exitCode).toBeNull();
        await sleepMs(1000);
      }
      await engineScript('start');
      const back = Date.now();
      const backAt = performance.now();
      await waitFor(`cycle ${cycle}: every running container again with fresh samples`, async () => {
        const ids = [...(await running()).keys()];
        return complete(await exporter.samples(), ids, back / 1000 - 1);
      }, 5_000, 100);
      recoveries.push(Math.round(performance.now() - backAt));
      unixAfter.push(socketsOf(exporter.pid).unix);
    }

    const settled = await waitFor('sockets back to where they were', () => {
      const now = socketsOf(exporter.pid);
      return now.unix <= baseline.unix && now.tcp <= baseline.tcp + 1 && now;
    }, 15_000, 500);
    console.log(`recovery after each return: ${recoveries.join(', ')} ms; engine sockets after each: ${unixAfter.join(', ')}; baseline ${JSON.stringify(baseline)}, settled ${JSON.stringify(settled)}`);
    // Three stats streams and two events streams (inventory, events collector), at least.
    expect(settled.unix).toBeGreaterThanOrEqual(5);
    expect(exporter.proc.exitCode).toBeNull();
    expect(exporter.logs.filter((l) => l.includes('"msg":"cannot reach the Docker Engine')).length).toBeLessThanOrEqual(5 * 3);
  }, 400_000);
});
