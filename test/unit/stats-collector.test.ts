import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { StatsCollector, statsCollector } from '../../src/collectors/stats.js';
import type { CollectorDeps } from '../../src/collectors/collector.js';
import type { Config } from '../../src/config.js';
import { buildConfig } from '../helpers/config.js';
import type { RequestOptions } from '../../src/docker/client.js';
import { EngineStatus } from '../../src/docker/errors.js';
import { createExporterMetrics } from '../../src/exporter-metrics.js';
import type { ContainerRecord } from '../../src/inventory/inventory.js';
import { LoopHealth } from '../../src/loop-health.js';
import { FakeEngine } from './fake-docker.js';

const DIR = new URL('../fixtures/stats/', import.meta.url).pathname;
const fixture = (name: string): unknown => JSON.parse(fs.readFileSync(path.join(DIR, name), 'utf8'));

const LABEL_NAMES = ['id', 'name', 'image', 'container_label_com_docker_compose_project'];

function record(n: number, over: Partial<ContainerRecord> = {}): ContainerRecord {
  const id = String(n).repeat(64).slice(0, 64);
  return {
    id,
    name: `c${n}`,
    image: 'busybox',
    imageId: 'sha256:x',
    labels: {},
    state: 'running',
    health: 'none',
    failingStreak: 0,
    restartCount: 0,
    exitCode: 0,
    oomKilled: false,
    startedAtSeconds: 1000,
    pid: 4242,
    networkMode: 'bridge',
    restartPolicy: 'no',
    ports: '',
    logDriver: 'json-file',
    logPath: '',
    gpus: [],
    spec: { memory: 0, memoryReservation: 0, memorySwap: 0, cpuQuota: 0, cpuPeriod: 0, cpuShares: 0 },
    promLabels: { id, name: `c${n}`, image: 'busybox', container_label_com_docker_compose_project: '' },
    oomEvents: 0,
    ...over,
  };
}

/** Just what the collector uses of the Inventory. */
class FakeInventory extends EventEmitter {
  readonly labelNames = LABEL_NAMES;
  /** Whether the inventory is in step with the engine; the collector fails while it is not. */
  current = true;
  lastError: string | undefined = undefined;
  readonly records = new Map<string, ContainerRecord>();
  list(): ContainerRecord[] {
    return [...this.records.values()];
  }
  get(id: string): ContainerRecord | undefined {
    return this.records.get(id);
  }
  upsert(r: ContainerRecord): void {
    const previous = this.records.get(r.id);
    this.records.set(r.id, r);
    this.emit('upsert', r, previous);
  }
  remove(id: string): void {
    const r = this.records.get(id);
    this.records.delete(id);
    if (r) this.emit('remove', r);
  }
}

interface OpenStream {
  id: string;
  body: PassThrough;
  signal: AbortSignal;
}

/**
 * The stats side of the fake engine: one-shot samples and streams per container, with what the
 * tests look at (calls, requests in flight at once, open streams).
 */
class StatsAnswers {
  payloads = new Map<string, unknown>();
  delayMs = 0;
  getCalls: string[] = [];
  inFlight = 0;
  maxInFlight = 0;
  perIdInFlight = new Map<string, number>();
  maxPerId = 0;
  streams: OpenStream[] = [];
  streamCalls = 0;
  notFound = new Set<string>();

  constructor(readonly engine: FakeEngine) {
    engine.on('stats', (opts) => this.sample(opts));
    engine.onStream('stats', (opts) => this.open$(opts));
  }

  private async sample(opts: RequestOptions): Promise<unknown> {
    const id = opts.id!;
    expect(opts.query).toEqual({ stream: false, 'one-shot': true });
    this.getCalls.push(id);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    const mine = (this.perIdInFlight.get(id) ?? 0) + 1;
    this.perIdInFlight.set(id, mine);
    this.maxPerId = Math.max(this.maxPerId, mine);
    try {
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
      if (this.notFound.has(id)) throw new EngineStatus('no such container', 404, '/containers/{id}/stats');
      return this.payloads.get(id);
    } finally {
      this.inFlight--;
      this.perIdInFlight.set(id, (this.perIdInFlight.get(id) ?? 1) - 1);
    }
  }

  private open$(opts: RequestOptions): PassThrough {
    const id = opts.id!;
    expect(opts.query).toEqual({ stream: true });
    this.streamCalls++;
    if (this.notFound.has(id)) throw new EngineStatus('no such container', 404, '/containers/{id}/stats');
    const body = new PassThrough();
    const entry = { id, body, signal: opts.signal! };
    this.streams.push(entry);
    body.on('close', () => (this.streams = this.streams.filter((s) => s !== entry)));
    return body;
  }

  open(id: string): OpenStream[] {
    return this.streams.filter((s) => s.id === id && !s.body.destroyed);
  }
}

interface Rig {
  collector: StatsCollector;
  inventory: FakeInventory;
  docker: StatsAnswers;
  registry: Registry;
  deps: CollectorDeps;
  text(): Promise<string>;
}

const rigs: Rig[] = [];
afterEach(async () => {
  for (const r of rigs.splice(0)) await r.collector.stop();
});

function rig(stats: Partial<Config['stats']> = {}): Rig {
  const registry = new Registry();
  const inventory = new FakeInventory();
  const engine = new FakeEngine();
  const docker = new StatsAnswers(engine);
  const base = buildConfig([], {});
  const config: Config = { ...base, stats: { ...base.stats, source: 'engine', mode: 'poll', intervalMs: 60_000, concurrency: 8, ...stats } };
  const deps = {
    config,
    docker: engine,
    inventory,
    registry,
    logger: pino({ level: 'silent' }),
    metrics: createExporterMetrics(registry),
    health: new LoopHealth(),
  } as unknown as CollectorDeps;
  const collector = statsCollector.create(deps) as StatsCollector;
  const r: Rig = {
    collector,
    inventory,
    docker,
    registry,
    deps,
    async text() {
      await collector.update();
      return registry.metrics();
    },
  };
  rigs.push(r);
  return r;
}

const tick = (ms = 0): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await tick(5);
  }
}

/** A rig following one running container, with that container's first sample (`payload`) in. */
async function withOneSampled(payload: unknown): Promise<{ r: Rig; c: ContainerRecord }> {
  const r = rig();
  const c = record(1);
  r.docker.payloads.set(c.id, payload);
  r.collector.start();
  r.inventory.upsert(c);
  await until('sample', () => r.docker.getCalls.length === 1);
  await tick(5);
  return { r, c };
}

/** The exposition lines of this collector's series, sorted, for golden comparison. */
function seriesLines(text: string): string {
  return text
    .split('\n')
    .filter((l) => /^(container_|docker_exporter_stats_streams|docker_exporter_parse_errors_total)/.test(l))
    .sort()
    .join('\n');
}

function hasSeriesOf(text: string, id: string): boolean {
  return text.split('\n').some((l) => l.startsWith('container_') && l.includes(`id="${id}"`));
}

describe('stats collector: series from samples (golden)', () => {
  it('renders every catalogue metric for v1 (with a quota), v2 and Windows samples exactly', async () => {
    const r = rig();
    const v1 = record(1, { spec: { memory: 67108864, memoryReservation: 0, memorySwap: 134217728, cpuQuota: 50000, cpuPeriod: 100000, cpuShares: 0 } });
    const v2 = record(2);
    const win = record(3);
    const blk = record(4);
    r.docker.payloads.set(v1.id, fixture('v1-limits.json'));
    r.docker.payloads.set(v2.id, fixture('v2-docs.json'));
    r.docker.payloads.set(win.id, fixture('windows.json'));
    r.docker.payloads.set(blk.id, fixture('v1-blkio.json'));
    r.collector.start();
    for (const c of [v1, v2, win, blk]) r.inventory.upsert(c);
    await until('four samples', () => r.docker.getCalls.length === 4);
    await tick(5);
    const got = `${seriesLines(await r.text())}\n`;
    const golden = path.join(DIR, 'collector.expected.prom');
    if (process.env.UPDATE_GOLDEN === '1') fs.writeFileSync(golden, got);
    expect(got).toBe(fs.readFileSync(golden, 'utf8'));
  });

  it('exports CFS throttling only for a container with a CPU quota', async () => {
    const { r, c: noQuota } = await withOneSampled(fixture('v1-limits.json'));
    const text = await r.text();
    expect(text).toContain('container_cpu_usage_seconds_total{');
    expect(text).not.toMatch(/^container_cpu_cfs_/m);
  });

  it('sets counters from absolute values: a new sample replaces, never adds', async () => {
    const { r, c } = await withOneSampled(fixture('v1-busy.json'));
    const line = (t: string) => t.split('\n').find((l) => l.startsWith('container_cpu_usage_seconds_total{'));
    const first = line(await r.text());
    expect(line(await r.text())).toBe(first);
    expect(first).toMatch(/ 16\.154186149$/);
  });
});

describe('stats collector: poll mode', () => {
  it('samples a container that just started at once, and drops it when it stops or is removed', async () => {
    const r = rig({ intervalMs: 60_000 });
    const a = record(1);
    const b = record(2);
    r.docker.payloads.set(a.id, fixture('v1-busy.json'));
    r.docker.payloads.set(b.id, fixture('v1-busy.json'));
    r.collector.start();
    r.inventory.upsert(a);
    r.inventory.upsert(b);
    await until('both sampled', () => r.docker.getCalls.length === 2);
    await tick(5);
    let text = await r.text();
    expect(hasSeriesOf(text, a.id)).toBe(true);
    expect(hasSeriesOf(text, b.id)).toBe(true);
    expect(text).toMatch(/^docker_exporter_stats_streams 0$/m);

    r.inventory.upsert({ ...a, state: 'exited' });
    r.inventory.remove(b.id);
    text = await r.text();
    expect(hasSeriesOf(text, a.id)).toBe(false);
    expect(hasSeriesOf(text, b.id)).toBe(false);
    // Health refreshes and other upserts of a running container do not cost another request.
    r.inventory.upsert({ ...a, state: 'running', startedAtSeconds: 2000 });
    r.inventory.upsert({ ...a, state: 'running', startedAtSeconds: 2000, health: 'healthy' });
    await until('restart sampled', () => r.docker.getCalls.length === 3);
    await tick(20);
    expect(r.docker.getCalls).toHaveLength(3);
  });

  it('bounds concurrency, never overlaps rounds nor two requests for one container', async () => {
    const r = rig({ intervalMs: 30, concurrency: 2 });
    r.docker.delayMs = 25;
    const all = [1, 2, 3, 4, 5].map((n) => record(n));
    for (const c of all) {
      r.docker.payloads.set(c.id, fixture('v1-busy.json'));
      r.inventory.records.set(c.id, c);
    }
    r.collector.start();
    await tick(400);
    expect(r.docker.maxInFlight).toBe(2);
    expect(r.docker.maxPerId).toBe(1);
    // Five containers, two at a time, 25 ms each: a round takes >= 75 ms, so rounds are
    // back to back (no pause), and each container is asked about once per round.
    const counts = all.map((c) => r.docker.getCalls.filter((id) => id === c.id).length);
    expect(Math.max(...counts) - Math.min(...counts)).toBeLessThanOrEqual(1);
    expect(Math.max(...counts)).toBeLessThanOrEqual(Math.ceil(400 / 75) + 1);
  });

  it('samples a container that just started ahead of the round\'s queue; those found running wait their turn', async () => {
    const r = rig({ intervalMs: 60_000, concurrency: 1 });
    r.docker.delayMs = 20;
    const old = [1, 2, 3, 4, 5, 6].map((n) => record(n));
    for (const c of old) {
      r.docker.payloads.set(c.id, fixture('v1-busy.json'));
      r.inventory.records.set(c.id, c);
    }
    r.collector.start();
    await until('the round under way', () => r.docker.getCalls.length >= 1);
    const fresh = record(7, { startedAtSeconds: Date.now() / 1000 });
    r.docker.payloads.set(fresh.id, fixture('v1-busy.json'));
    r.inventory.upsert(fresh);
    await until('the new container sampled', () => r.docker.getCalls.includes(fresh.id));
    // Asked at once: at most one old container's request finished meanwhile, the rest still queued.
    expect(r.docker.getCalls.indexOf(fresh.id)).toBeLessThanOrEqual(2);
    expect(r.docker.maxInFlight).toBe(2);
    await until('the round done', () => old.every((c) => r.docker.getCalls.includes(c.id)));
  });

  it('keeps the last good sample over an empty (zero read) one and ignores answers for removed containers', async () => {
    const r = rig({ intervalMs: 40 });
    const c = record(1);
    r.docker.payloads.set(c.id, fixture('v1-busy.json'));
    r.collector.start();
    r.inventory.upsert(c);
    await until('sample', () => r.docker.getCalls.length >= 1);
    await tick(5);
    r.docker.payloads.set(c.id, fixture('zero-read.json'));
    const before = r.docker.getCalls.length;
    await until('next round', () => r.docker.getCalls.length > before);
    await tick(5);
    expect(hasSeriesOf(await r.text(), c.id)).toBe(true);

    r.docker.delayMs = 30;
    r.docker.payloads.set(c.id, fixture('v1-limits.json'));
    const n = r.docker.getCalls.length;
    await until('a request in flight', () => r.docker.getCalls.length > n);
    r.inventory.remove(c.id);
    await tick(50);
    expect(hasSeriesOf(await r.text(), c.id)).toBe(false);
  });

  it('counts an unusable payload once, not at every scrape', async () => {
    const { r, c } = await withOneSampled(['not', 'stats']);
    await r.text();
    const text = await r.text();
    expect(text).toMatch(/^docker_exporter_parse_errors_total\{source="stats"\} 1$/m);
    expect(hasSeriesOf(text, c.id)).toBe(false);
  });

  it('fails while the inventory is not in step with the engine, and still shows the last samples', async () => {
    const { r, c } = await withOneSampled(fixture('v1-busy.json'));
    expect(hasSeriesOf(await r.text(), c.id)).toBe(true);
    r.inventory.current = false;
    r.inventory.lastError = 'events stream down';
    await expect(r.collector.update()).rejects.toThrow('events stream down');
    expect(hasSeriesOf(await r.registry.metrics(), c.id)).toBe(true);
  });

  it('follows the inventory after a full sync: drops what is gone, samples what is new', async () => {
    const r = rig();
    const a = record(1);
    const b = record(2);
    r.docker.payloads.set(a.id, fixture('v1-busy.json'));
    r.docker.payloads.set(b.id, fixture('v1-busy.json'));
    r.inventory.records.set(a.id, a);
    r.collector.start();
    await until('a sampled', () => r.docker.getCalls.includes(a.id));
    r.inventory.records.delete(a.id);
    r.inventory.records.set(b.id, b);
    r.inventory.emit('synced');
    await until('b sampled', () => r.docker.getCalls.includes(b.id));
    await tick(5);
    const text = await r.text();
    expect(hasSeriesOf(text, a.id)).toBe(false);
    expect(hasSeriesOf(text, b.id)).toBe(true);
  });
});

describe('stats collector: stream mode', () => {
  const line = (name: string): string => `${JSON.stringify(fixture(name))}\n`;

  it('opens one stream per running container and closes it when the container stops or goes', async () => {
    const r = rig({ mode: 'stream' });
    const a = record(1);
    const b = record(2);
    r.collector.start();
    r.inventory.upsert(a);
    r.inventory.upsert(b);
    r.inventory.upsert({ ...a, health: 'healthy' });
    await until('two streams', () => r.collector.streams === 2);
    expect(r.docker.streamCalls).toBe(2);
    expect(await r.text()).toMatch(/^docker_exporter_stats_streams 2$/m);

    r.docker.open(a.id)[0]!.body.write(line('v1-stream-first.json'));
    r.docker.open(b.id)[0]!.body.write(line('v1-busy.json'));
    await tick(5);
    let text = await r.text();
    expect(hasSeriesOf(text, a.id)).toBe(true);
    expect(hasSeriesOf(text, b.id)).toBe(true);

    // After a stop the engine keeps the stream open and sends empty samples: those are skipped.
    r.docker.open(a.id)[0]!.body.write(line('zero-read.json'));
    await tick(5);
    expect(hasSeriesOf(await r.text(), a.id)).toBe(true);

    const streamA = r.docker.open(a.id)[0]!;
    r.inventory.upsert({ ...a, state: 'exited' });
    r.inventory.remove(b.id);
    await until('streams closed', () => r.collector.streams === 0);
    expect(streamA.signal.aborted).toBe(true);
    expect(r.docker.streams).toHaveLength(0);
    text = await r.text();
    expect(hasSeriesOf(text, a.id)).toBe(false);
    expect(hasSeriesOf(text, b.id)).toBe(false);
    expect(text).toMatch(/^docker_exporter_stats_streams 0$/m);
  });

  it('reopens a stream that drops while the container still runs (engine restart)', async () => {
    const r = rig({ mode: 'stream' });
    const a = record(1);
    r.collector.start();
    r.inventory.upsert(a);
    await until('stream', () => r.collector.streams === 1);
    r.docker.open(a.id)[0]!.body.write(line('v1-busy.json'));
    await tick(5);
    r.docker.open(a.id)[0]!.body.end();
    await until('reopened', () => r.docker.streamCalls === 2 && r.collector.streams === 1, 3000);
    // The last sample stays until a new one comes or the container stops.
    expect(hasSeriesOf(await r.text(), a.id)).toBe(true);
  });

  it('reopens the stream for a new run after a restart', async () => {
    const r = rig({ mode: 'stream' });
    const a = record(1);
    r.collector.start();
    r.inventory.upsert(a);
    await until('stream', () => r.collector.streams === 1);
    const first = r.docker.open(a.id)[0]!;
    first.body.write(line('v1-busy.json'));
    await tick(5);
    r.inventory.upsert({ ...a, startedAtSeconds: 5000 });
    await until('new stream', () => r.docker.streamCalls === 2 && r.collector.streams === 1);
    expect(first.signal.aborted).toBe(true);
    expect(hasSeriesOf(await r.text(), a.id)).toBe(false);
  });

  it('counts malformed lines and goes on reading', async () => {
    const r = rig({ mode: 'stream' });
    const a = record(1);
    r.collector.start();
    r.inventory.upsert(a);
    await until('stream', () => r.collector.streams === 1);
    const s = r.docker.open(a.id)[0]!;
    s.body.write('{"read": "2026-\n');
    s.body.write(line('v1-busy.json'));
    await tick(5);
    const text = await r.text();
    expect(text).toMatch(/^docker_exporter_parse_errors_total\{source="stats"\} 1$/m);
    expect(hasSeriesOf(text, a.id)).toBe(true);
  });

  it('gives up on a container the engine does not know, until the inventory says otherwise', async () => {
    const r = rig({ mode: 'stream' });
    const a = record(1);
    r.docker.notFound.add(a.id);
    r.collector.start();
    r.inventory.upsert(a);
    await tick(600);
    expect(r.docker.streamCalls).toBe(1);
    r.docker.notFound.delete(a.id);
    r.inventory.emit('synced');
    await until('stream', () => r.collector.streams === 1);
  });

  it('stop() closes every stream at once', async () => {
    const r = rig({ mode: 'stream' });
    for (const n of [1, 2, 3]) r.inventory.upsert(record(n));
    r.collector.start();
    await until('three streams', () => r.collector.streams === 3);
    const started = Date.now();
    await r.collector.stop();
    expect(Date.now() - started).toBeLessThan(500);
    expect(r.collector.streams).toBe(0);
    expect(r.docker.streams).toHaveLength(0);
  });
});
