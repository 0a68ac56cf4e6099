import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { cliFor, DOCKER, ENGINES, podman, TEST_IMAGE, TEST_LABEL, TestContainers, waitFor, type Engine } from '../helpers/docker.js';
import { startExporter, type RunningExporter } from '../helpers/exporter.js';
import { findAll, value, type Sample } from '../helpers/prom.js';

const SOCKET = '/var/run/docker.sock';
const MARK = `dfit${process.pid}`;
const KINDS: Record<string, string> = { Images: 'images', Containers: 'containers', 'Local Volumes': 'volumes', 'Build Cache': 'build_cache' };
/** Only what this file is about: the inventory still runs (df needs it for container labels). */
const QUIET = ['--no-collector.stats', '--no-collector.events'];

/** One request straight to an engine's socket (the CLI cannot build with BuildKit without buildx). */
function engine(method: string, url: string, body?: Buffer, headers: Record<string, string> = {}, target: Engine = DOCKER): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath: target.socket, method, path: url, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Builds an image with BuildKit through the API: it leaves build cache records, as real hosts have. */
async function buildImage(target: Engine, tag: string, dockerfile: string): Promise<void> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dfit-'));
  try {
    fs.writeFileSync(path.join(dir, 'Dockerfile'), dockerfile);
    const tar = execFileSync('tar', ['-cf', '-', '-C', dir, 'Dockerfile']);
    const q = new URLSearchParams({ version: '2', t: tag, labels: JSON.stringify({ 'docker-exporter-test': '1' }) });
    const res = await engine('POST', `/v1.41/build?${q}`, tar, { 'content-type': 'application/x-tar' }, target);
    if (res.status !== 200 || /"error"/.test(res.text)) throw new Error(`build ${tag}: HTTP ${res.status}: ${res.text.slice(-500)}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

interface EngineDf {
  Volumes: Array<{ Name: string; Driver: string; UsageData: { Size: number; RefCount: number } }>;
  BuildCache: Array<{ ID: string }> | null;
}

/** `GET /system/df`, retried while an engine before 23.0 refuses it because another df runs. */
async function engineDf(target: Engine): Promise<EngineDf> {
  return waitFor('GET /system/df', async () => {
    const res = await engine('GET', '/v1.41/system/df', undefined, {}, target);
    if (res.status === 200) return JSON.parse(res.text) as EngineDf;
    if (!/already running/.test(res.text)) throw new Error(`GET /system/df: HTTP ${res.status}: ${res.text}`);
    return undefined;
  }, 30_000, 100);
}

async function buildCacheIds(target: Engine): Promise<Set<string>> {
  return new Set(((await engineDf(target)).BuildCache ?? []).map((r) => r.ID));
}

type CliRow = Record<'Type' | 'TotalCount' | 'Active' | 'Size' | 'Reclaimable', string>;

/** `docker system df`; an engine before 23.0 refuses one while another df (the exporter's) runs. */
async function cliDf(target: Engine): Promise<CliRow[]> {
  const out = await waitFor('docker system df', () =>
    cliFor(target)(['system', 'df', '--format', '{{json .}}']).catch((err: Error) => {
      if (/already running/.test(err.message)) return undefined;
      throw err;
    }), 30_000, 100);
  return out.split('\n').map((l) => JSON.parse(l) as CliRow);
}

/** `podman system df` in its JSON: the rows Podman computes itself, in bytes. */
async function podmanDf(): Promise<Array<{ Type: string; Total: number; Active: number; Size: number; Reclaimable: number }>> {
  return (await podman(['system', 'df', '--format', '{{json .}}'])).split('\n').map((l) => JSON.parse(l) as { Type: string; Total: number; Active: number; Size: number; Reclaimable: number });
}

/**
 * [low, high] bytes of a go-units size string: `docker system df` prints 4 significant digits
 * ("%.4g" in decimal units), `docker ps --size` 3; %g drops trailing zeros, so "55.3kB" is 55.30.
 */
function humanBounds(text: string, digits = 4): [number, number] {
  const m = /^(-?[\d.]+)(B|kB|MB|GB|TB|PB)$/.exec(text);
  if (!m) throw new Error(`not a CLI size: ${text}`);
  const mantissa = Number(m[1]);
  const unit = 1000 ** ['B', 'kB', 'MB', 'GB', 'TB', 'PB'].indexOf(m[2]!);
  if (mantissa === 0) return [0, 0];
  const half = 10 ** (Math.floor(Math.log10(Math.abs(mantissa))) - (digits - 1)) / 2;
  return [(mantissa - half) * unit, (mantissa + half) * unit];
}

function within(actual: number | undefined, text: string, what: string, digits = 4): void {
  const [lo, hi] = humanBounds(text, digits);
  expect(actual, `${what}: ${actual} vs CLI ${text}`).toBeGreaterThanOrEqual(lo);
  expect(actual, `${what}: ${actual} vs CLI ${text}`).toBeLessThanOrEqual(hi);
}

function diskUsage(samples: Sample[]): Record<string, number | undefined> {
  const out: Record<string, number | undefined> = {};
  for (const s of samples) if (s.name.startsWith('docker_disk_usage_')) out[`${s.name}{${s.labels.kind}}`] = s.value;
  return out;
}

/**
 * A loopback HTTP proxy in front of the engine's socket that can hold `/system/df` answers (a
 * slow engine on demand), fail them, and pretend to be a newer API version (rewriting the path
 * prefix back to what the engine speaks), while recording every df request it sees.
 */
class EngineProxy {
  hold = false;
  fail = false;
  fakeApi: string | undefined;
  readonly dfQueries: string[] = [];
  pendingDf = 0;
  maxConcurrentDf = 0;
  private readonly waiting = new Set<() => void>();
  private readonly server = http.createServer((req, res) => this.handle(req, res));

  async listen(): Promise<string> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    return `tcp://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** df requests waiting for release(). */
  get held(): number {
    return this.waiting.size;
  }

  release(): void {
    this.hold = false;
    for (const go of this.waiting) go();
    this.waiting.clear();
  }

  async close(): Promise<void> {
    this.release();
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse): void {
    let url = req.url ?? '/';
    const fake = this.fakeApi;
    if (fake) url = url.replace(`/v${fake}/`, '/v1.41/');
    const forward = (): void => {
      const up = http.request({ socketPath: SOCKET, method: req.method, path: url, headers: req.headers }, (ur) => {
        if (fake && /^\/(v[\d.]+\/)?version$/.test(url)) {
          let text = '';
          ur.setEncoding('utf8');
          ur.on('data', (c: string) => (text += c));
          ur.on('end', () => {
            const body = JSON.stringify({ ...(JSON.parse(text) as object), ApiVersion: fake });
            res.writeHead(ur.statusCode ?? 200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
            res.end(body);
          });
          return;
        }
        res.writeHead(ur.statusCode ?? 502, ur.headers);
        // The events stream sends its headers at once and then nothing until an event happens.
        res.flushHeaders();
        ur.pipe(res);
      });
      up.on('error', () => res.destroy());
      res.on('close', () => up.destroy());
      req.pipe(up);
    };
    if (!/\/system\/df(\?|$)/.test(url)) return forward();
    this.dfQueries.push(url.split('?')[1] ?? '');
    this.pendingDf++;
    this.maxConcurrentDf = Math.max(this.maxConcurrentDf, this.pendingDf);
    res.on('close', () => this.pendingDf--);
    // What an old engine answers while another df is still being computed.
    const refuse = (): void => {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ message: 'a disk usage operation is already running' }));
    };
    if (this.fail) return refuse();
    if (!this.hold) return forward();
    const go = (): void => {
      this.waiting.delete(go);
      if (res.destroyed) return;
      if (this.fail) refuse();
      else forward();
    };
    this.waiting.add(go);
    res.on('close', () => this.waiting.delete(go));
  }
}

/** Starts an exporter and waits for its first successful df run. */
async function startWithDf(args: string[], target: Engine = DOCKER): Promise<RunningExporter> {
  const exporter = await startExporter([...target.exporterArgs, ...QUIET, ...args]);
  await waitFor('a successful df run', async () => ((await exporter.samples()).some((s) => s.name === 'docker_exporter_df_last_success_timestamp_seconds' && s.value > 0) ? true : undefined), 30_000);
  return exporter;
}

const lastSuccess = (samples: Sample[]): number | undefined => value(samples, 'docker_exporter_df_last_success_timestamp_seconds');
const dfOk = (samples: Sample[]): number | undefined => value(samples, 'docker_exporter_collector_success', { collector: 'df' });
const dfLogLines = (exporter: RunningExporter, level: number): string[] =>
  exporter.logs.filter((l) => l.includes('"collector":"df"') && l.includes(`"level":${level}`));

// The figures on both engines (helpers/docker.ts ENGINES), each against what that engine says.
describe.each(ENGINES)('df collector against the real engine: $name', (target: Engine) => {
  const docker = cliFor(target);
  const onPodman = target.name === 'podman';
  const objects = new TestContainers(target);
  const images: string[] = [];
  const ids: Record<string, string> = {};
  let cacheBefore = new Set<string>();
  let cacheMine: string[] = [];

  beforeAll(async () => {
    cacheBefore = await buildCacheIds(target);
    // Images sharing layers: base ← a ← b, and c beside a (same base); b and c stay unused.
    const a = `${MARK}-a:1`;
    const b = `${MARK}-b:1`;
    const c = `${MARK}-c:1`;
    await buildImage(target, a, `FROM ${TEST_IMAGE}\nRUN dd if=/dev/zero of=/a-${MARK} bs=1k count=300 2>/dev/null\n`);
    images.push(a);
    await buildImage(target, b, `FROM ${a}\nRUN dd if=/dev/zero of=/b-${MARK} bs=1k count=120 2>/dev/null\n`);
    images.push(b);
    await buildImage(target, c, `FROM ${TEST_IMAGE}\nRUN echo ${MARK} > /c\n`);
    images.push(c);
    const after = await buildCacheIds(target);
    cacheMine = [...after].filter((id) => !cacheBefore.has(id));

    const used = await objects.volume(`${MARK}-used`);
    const idle = await objects.volume(`${MARK}-idle`);
    await objects.volume(`${MARK}-empty`);
    await docker(['run', '--rm', '--label', TEST_LABEL, '-v', `${idle}:/d`, TEST_IMAGE, 'sh', '-c', 'dd if=/dev/zero of=/d/f bs=1k count=50 2>/dev/null']);

    // Containers on image a: a running one that wrote once (so its size holds still) and a paused one.
    const run = (name: string, image: string, args: string[], cmd: string): Promise<string> =>
      docker(['run', '-d', '--name', name, '--label', TEST_LABEL, ...args, image, 'sh', '-c', cmd]).then((id) => objects.track(id));
    ids.running = await run(`${MARK}-running`, a, ['-v', `${used}:/d`], 'dd if=/dev/zero of=/d/f bs=1k count=70 2>/dev/null; dd if=/dev/zero of=/rw bs=1k count=33 2>/dev/null; touch /ready; sleep 3600');
    ids.paused = await run(`${MARK}-paused`, a, [], 'echo x > /p; touch /ready; sleep 3600');
    for (const id of [ids.running, ids.paused]) await waitFor('container setup', () => docker(['exec', id, 'test', '-f', '/ready']).then(() => true));
    await docker(['pause', ids.paused]);
    ids.exited = await objects.create(['--name', `${MARK}-exited`], ['sh', '-c', 'dd if=/dev/zero of=/rw bs=1k count=21 2>/dev/null']);
    await docker(['start', '--attach', ids.exited]);
    ids.created = await objects.create(['--name', `${MARK}-created`]);
  });

  afterAll(async () => {
    await docker(['unpause', ids.paused ?? 'none']).catch(() => undefined);
    await objects.removeAll();
    for (const image of images.reverse()) await docker(['rmi', image]).catch(() => undefined);
    // Only the cache records this file's builds made; a parent goes after its children.
    for (let pass = 0; pass < 3; pass++) {
      for (const id of cacheMine) await engine('POST', `/v1.41/build/prune?filters=${encodeURIComponent(JSON.stringify({ id: [id] }))}`, undefined, {}, target).catch(() => undefined);
    }
  });

  it('every docker_disk_usage_* equals `docker system df`, and container and volume sizes equal the API', async () => {
    const exporter = await startWithDf(['--df.interval', '2s'], target);
    try {
      // Colleagues' tests change the engine at any time: compare only when the CLI saw the same
      // state before and after the exporter's run.
      let compared = false;
      for (let attempt = 0; attempt < 10 && !compared; attempt++) {
        const since = Date.now() / 1000;
        const before = await cliDf(target);
        // A run that started after the first CLI call began, and ended before the second one.
        const ranSince = (x: Sample[]): boolean => (lastSuccess(x) ?? 0) - (value(x, 'docker_exporter_collector_duration_seconds', { collector: 'df' }) ?? 0) > since;
        const samples = await waitFor('a df run after the CLI', async () => {
          const x = await exporter.samples();
          return ranSince(x) ? x : undefined;
        }, 15_000, 100);
        const after = await cliDf(target);
        // Podman's own figures, for its images row (below); raw numbers in its JSON.
        const own = onPodman ? await podmanDf() : undefined;
        if (JSON.stringify(before) !== JSON.stringify(after)) continue;
        compared = true;
        expect(before.map((r) => KINDS[r.Type])).toEqual(['images', 'containers', 'volumes', 'build_cache']);
        for (const row of before) {
          const kind = { kind: KINDS[row.Type]! };
          if (onPodman && row.Type === 'Images') {
            // Podman sends LayersSize 0, from which the CLI prints SIZE 0B and a negative
            // (or 0B) RECLAIMABLE; the exporter reports what `podman system df` reports instead.
            expect(row.Size).toBe('0B');
            expect(row.Reclaimable).toMatch(/^(-\S+B|0B)$/);
            const images = own!.find((r) => r.Type === 'Images')!;
            expect(value(samples, 'docker_disk_usage_objects', kind)).toBe(images.Total);
            expect(value(samples, 'docker_disk_usage_active_objects', kind)).toBe(images.Active);
            expect(value(samples, 'docker_disk_usage_bytes', kind)).toBe(images.Size);
            expect(value(samples, 'docker_disk_usage_reclaimable_bytes', kind)).toBe(images.Reclaimable);
            continue;
          }
          expect(value(samples, 'docker_disk_usage_objects', kind), row.Type).toBe(Number(row.TotalCount));
          expect(value(samples, 'docker_disk_usage_active_objects', kind), row.Type).toBe(Number(row.Active));
          const size = value(samples, 'docker_disk_usage_bytes', kind);
          within(size, row.Size, `${row.Type} size`);
          const [, rec, pct] = /^(\S+)(?: \((\d+)%\))?$/.exec(row.Reclaimable)!;
          const reclaimable = value(samples, 'docker_disk_usage_reclaimable_bytes', kind);
          within(reclaimable, rec!, `${row.Type} reclaimable`);
          if (pct !== undefined) expect(Math.trunc((reclaimable! * 100) / size!), `${row.Type} %`).toBe(Number(pct));
        }
        // The state built above makes every row non-trivial; Podman keeps no build cache records
        // (buildah's intermediate layers are images), so its row is 0 there.
        for (const k of ['images', 'containers', 'volumes', 'build_cache']) {
          if (onPodman && k === 'build_cache') expect(value(samples, 'docker_disk_usage_objects', { kind: k }), k).toBe(0);
          else expect(value(samples, 'docker_disk_usage_bytes', { kind: k }), k).toBeGreaterThan(0);
        }
        expect(value(samples, 'docker_disk_usage_reclaimable_bytes', { kind: 'volumes' })).toBeGreaterThan(0);
      }
      expect(compared, 'the engine never held still for a comparison').toBe(true);

      const samples = await exporter.samples();
      for (const [role, id] of Object.entries(ids)) {
        const inspect = JSON.parse(await docker(['inspect', '--size', '--format', '{{json .}}', id!])) as { SizeRw?: number; SizeRootFs?: number; Name: string };
        const series = findAll(samples, 'docker_container_rw_size_bytes', { id: id! });
        expect(series, role).toHaveLength(1);
        expect(series[0]!.labels).toMatchObject({ name: inspect.Name.slice(1), image: expect.any(String) });
        expect(series[0]!.value, `${role} SizeRw`).toBe(inspect.SizeRw ?? 0);
        expect(value(samples, 'docker_container_rootfs_size_bytes', { id: id! }), `${role} SizeRootFs`).toBe(inspect.SizeRootFs ?? 0);
      }
      expect(value(samples, 'docker_container_rw_size_bytes', { id: ids.running! })).toBeGreaterThanOrEqual(33 * 1024);
      expect(value(samples, 'docker_container_rw_size_bytes', { id: ids.exited! })).toBeGreaterThanOrEqual(21 * 1024);
      expect(value(samples, 'docker_container_rw_size_bytes', { id: ids.created! })).toBe(0);
      // And what `docker ps --size` prints for them, within its rounding.
      for (const line of (await docker(['ps', '-a', '--size', '--filter', `name=${MARK}`, '--format', '{{json .}}'])).split('\n')) {
        const ps = JSON.parse(line) as { ID: string; Size: string };
        const id = Object.values(ids).find((full) => full!.startsWith(ps.ID))!;
        within(value(samples, 'docker_container_rw_size_bytes', { id }), ps.Size.replace(/ \(virtual .*\)$/, ''), `ps --size ${ps.ID}`, 3);
      }

      const { Volumes } = await engineDf(target);
      for (const suffix of ['used', 'idle', 'empty']) {
        const name = `${MARK}-${suffix}`;
        const v = Volumes.find((x) => x.Name === name)!;
        // Podman's /system/df names no volume driver.
        const labels = { volume: name, driver: onPodman ? '' : 'local' };
        expect(value(samples, 'docker_volume_size_bytes', labels), name).toBe(v.UsageData.Size);
        expect(value(samples, 'docker_volume_refcount', labels), name).toBe(v.UsageData.RefCount);
      }
      expect(value(samples, 'docker_volume_size_bytes', { volume: `${MARK}-used` })).toBeGreaterThanOrEqual(70 * 1024);
      expect(value(samples, 'docker_volume_refcount', { volume: `${MARK}-used` })).toBe(1);
      expect(value(samples, 'docker_volume_refcount', { volume: `${MARK}-idle` })).toBe(0);
      expect(dfOk(samples)).toBe(1);
      expect(value(samples, 'docker_exporter_collector_duration_seconds', { collector: 'df' })).toBeGreaterThan(0);
      // The only failure allowed: the engine refusing a df while the CLI's own runs (engines < 23).
      expect(dfLogLines(exporter, 40).filter((l) => !l.includes('already running'))).toEqual([]);
    } finally {
      expect(await exporter.stop()).toBe(0);
    }
  });

});

// How the collector schedules its runs, times them out and stops them: the exporter's own
// behaviour, driven through a proxy in front of dockerd (not a property of the engine).
describe('df collector runs, through a proxy in front of dockerd', () => {
  const objects = new TestContainers();
  beforeAll(async () => {
    // A container of this file's own, so that per-container sizes exist whatever else runs.
    await objects.create(['--name', `${MARK}-sched`]);
  });
  afterAll(() => objects.removeAll());

  it('a scrape during a slow df run returns in < 100 ms with the previous values; runs never overlap', async () => {
    const proxy = new EngineProxy();
    const host = await proxy.listen();
    // The engine collector pings the engine on every scrape; without it a scrape only reads memory,
    // which is what this test is about.
    const exporter = await startWithDf(['--no-collector.engine', '--docker.host', host, '--df.interval', '1s', '--df.timeout', '1m']);
    try {
      const baseline: number[] = [];
      for (let i = 0; i < 10; i++) {
        const t0 = performance.now();
        await exporter.scrape();
        baseline.push(performance.now() - t0);
      }
      proxy.hold = true;
      await waitFor('a df run held by the proxy', () => proxy.held === 1, 10_000, 20);
      // No run can land from here on: these are the previous values.
      const before = await exporter.samples();
      const previous = diskUsage(before);
      expect(Object.keys(previous)).toHaveLength(16);
      const timings: number[] = [];
      let held: Sample[] = [];
      // Several intervals go by while one run hangs: the scrapes must neither wait nor start another.
      for (let i = 0; i < 15; i++) {
        const t0 = performance.now();
        held = await exporter.samples();
        timings.push(performance.now() - t0);
        expect(proxy.pendingDf).toBe(1);
        expect(diskUsage(held)).toEqual(previous);
        await new Promise((r) => setTimeout(r, 200));
      }
      const median = (xs: number[]): string => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!.toFixed(1);
      console.info(`df: scrape while a df run is held: max ${Math.max(...timings).toFixed(1)} ms, median ${median(timings)} ms; idle: max ${Math.max(...baseline).toFixed(1)} ms, median ${median(baseline)} ms`);
      // Typical scrapes take ~15 ms; on two cores shared with other test runs one can be delayed by
      // the scheduler, so the bound is on the median, and no scrape may come near the held run.
      expect(Number(median(timings))).toBeLessThan(100);
      expect(Math.max(...timings)).toBeLessThan(1000);
      expect(dfOk(held)).toBe(1);
      expect(lastSuccess(held)).toBe(lastSuccess(before));
      expect(proxy.maxConcurrentDf).toBe(1);
      const runsBefore = proxy.dfQueries.length;
      proxy.release();
      await waitFor('the held run to land', async () => ((lastSuccess(await exporter.samples()) ?? 0) > lastSuccess(before)! ? true : undefined), 10_000, 50);
      await waitFor('another run', () => proxy.dfQueries.length > runsBefore, 10_000, 50);
      expect(proxy.maxConcurrentDf).toBe(1);
      // API 1.41 engine: no type parameter (it would be ignored anyway).
      expect(proxy.dfQueries.every((q) => q === '')).toBe(true);
    } finally {
      expect(await exporter.stop()).toBe(0);
      await proxy.close();
    }
  });

  it('a df that times out or fails keeps the previous values, sets success 0 and logs one line', async () => {
    const proxy = new EngineProxy();
    const host = await proxy.listen();
    const exporter = await startWithDf(['--docker.host', host, '--df.interval', '500ms', '--df.timeout', '1s']);
    try {
      await waitFor('the inventory', async () => findAll(await exporter.samples(), 'docker_container_rw_size_bytes').length > 0, 15_000, 100);
      proxy.hold = true;
      await waitFor('a df run held by the proxy', () => proxy.held === 1, 10_000, 20);
      const good = await exporter.samples();
      const previous = diskUsage(good);
      expect(dfOk(good)).toBe(1);
      const held = proxy.dfQueries.length;
      // Three runs time out one after another.
      await waitFor('three timed-out runs', () => proxy.dfQueries.length >= held + 3, 15_000, 50);
      let samples = await exporter.samples();
      expect(dfOk(samples)).toBe(0);
      expect(value(samples, 'docker_exporter_collector_duration_seconds', { collector: 'df' })).toBeGreaterThanOrEqual(0.99);
      expect(diskUsage(samples)).toEqual(previous);
      expect(lastSuccess(samples)).toBe(lastSuccess(good));
      expect(findAll(samples, 'docker_container_rw_size_bytes').length).toBeGreaterThan(0);
      const warned = dfLogLines(exporter, 40);
      expect(warned, warned.join('\n')).toHaveLength(1);
      expect(warned[0]).toContain('timed out');
      expect(warned[0]).toContain('"keeping":"previous values"');

      // The run held now gets refused, as an old engine still computing the abandoned one would.
      proxy.fail = true;
      proxy.release();
      await waitFor('a failed run', () => exporter.logs.some((l) => l.includes('disk usage run failed')), 15_000, 50);
      samples = await exporter.samples();
      expect(dfOk(samples)).toBe(0);
      expect(diskUsage(samples)).toEqual(previous);
      expect(dfLogLines(exporter, 40)).toHaveLength(2);
      expect(dfLogLines(exporter, 40)[1]).toContain('already running');

      proxy.fail = false;
      await waitFor('recovery', async () => (dfOk(await exporter.samples()) === 1 ? true : undefined), 80_000, 100);
      samples = await exporter.samples();
      expect(lastSuccess(samples)!).toBeGreaterThan(lastSuccess(good)!);
      expect(dfLogLines(exporter, 30).some((l) => l.includes('succeeded again'))).toBe(true);
      expect(proxy.maxConcurrentDf).toBe(1);
    } finally {
      expect(await exporter.stop()).toBe(0);
      await proxy.close();
    }
  });

  it('with --df.timeout 1ms nothing is ever exported, success is 0, and one line is logged', async () => {
    const exporter = await startExporter([...QUIET, '--df.interval', '300ms', '--df.timeout', '1ms']);
    try {
      await waitFor('a timed-out run', () => exporter.logs.some((l) => l.includes('disk usage run timed out')), 15_000, 50);
      await new Promise((r) => setTimeout(r, 1500));
      const samples = await exporter.samples();
      expect(dfOk(samples)).toBe(0);
      expect(Object.keys(diskUsage(samples))).toEqual([]);
      expect(findAll(samples, 'docker_container_rw_size_bytes')).toEqual([]);
      expect(findAll(samples, 'docker_volume_size_bytes')).toEqual([]);
      expect(lastSuccess(samples)).toBeUndefined();
      const warned = dfLogLines(exporter, 40);
      expect(warned, warned.join('\n')).toHaveLength(1);
      expect(warned[0]).toContain('"keeping":"no values yet"');
    } finally {
      expect(await exporter.stop()).toBe(0);
    }
  });

  it('asks for every type from API 1.42, and verbose from 1.52', async () => {
    for (const [api, query] of [
      ['1.43', 'type=container&type=image&type=volume&type=build-cache'],
      ['1.52', 'type=container&type=image&type=volume&type=build-cache&verbose=1'],
    ] as const) {
      const proxy = new EngineProxy();
      proxy.fakeApi = api;
      const exporter = await startWithDf(['--docker.host', await proxy.listen(), '--df.interval', '1h']);
      try {
        // More than one when an old engine still computes an earlier test's abandoned df and refuses.
        expect(proxy.dfQueries.length, api).toBeGreaterThanOrEqual(1);
        for (const q of proxy.dfQueries) expect(q, api).toBe(query);
        const samples = await exporter.samples();
        expect(dfOk(samples)).toBe(1);
        expect(Object.keys(diskUsage(samples))).toHaveLength(16);
      } finally {
        expect(await exporter.stop()).toBe(0);
        await proxy.close();
      }
    }
  });

  it('stopping the exporter aborts a df run in flight', async () => {
    const proxy = new EngineProxy();
    // debug: the client logs each failed request, so the abort shows in the log before the exit.
    const exporter = await startWithDf(['--docker.host', await proxy.listen(), '--df.interval', '200ms', '--df.timeout', '10m', '--log.level', 'debug']);
    try {
      proxy.hold = true;
      await waitFor('a held run', () => proxy.held === 1, 10_000, 20);
      const warned = dfLogLines(exporter, 40).length;
      const logged = exporter.logs.length;
      const t0 = performance.now();
      expect(await exporter.stop()).toBe(0);
      console.info(`df: exit with a df run in flight took ${(performance.now() - t0).toFixed(0)} ms`);
      const after = exporter.logs.slice(logged);
      expect(after.some((l) => l.includes('"route":"/system/df"') && l.includes('engine request failed')), after.join('\n')).toBe(true);
      await waitFor('the proxy to see the request go', () => proxy.pendingDf === 0, 5_000, 20);
      // The aborted run is not a failure to report, and nothing waited for the shutdown deadline.
      expect(dfLogLines(exporter, 40)).toHaveLength(warned);
      expect(after.some((l) => l.includes('did not stop cleanly') || l.includes('shutdown deadline'))).toBe(false);
    } finally {
      await exporter.stop();
      await proxy.close();
    }
  });
});
