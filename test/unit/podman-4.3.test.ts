import fs from 'node:fs';
import path from 'node:path';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { Backoff } from '../../src/backoff.js';
import type { CollectorDeps } from '../../src/collectors/collector.js';
import { engineCollector } from '../../src/collectors/engine.js';
import { createExporterMetrics } from '../../src/exporter-metrics.js';
import { renderRegistry } from '../../src/exposition.js';
import { Inventory } from '../../src/inventory/inventory.js';
import { LoopHealth } from '../../src/loop-health.js';
import { parseContainerInspect, parseContainerList } from '../../src/parse/container.js';
import { parseDiskUsage } from '../../src/parse/df.js';
import { baseAction, dockerAction, parseEvent } from '../../src/parse/event.js';
import { parseStats } from '../../src/parse/stats.js';
import { buildConfig } from '../helpers/config.js';
import { findAll, parseMetrics, value } from '../helpers/prom.js';
import { FakeEngine, until } from './fake-docker.js';

// Payloads recorded from Podman 4.3.1's Docker-compatible API (see test/fixtures/podman-4.3/README.md).
const DIR = new URL('../fixtures/podman-4.3/', import.meta.url).pathname;
const UPDATE = process.env.UPDATE_GOLDEN === '1';
const load = (name: string): any => JSON.parse(fs.readFileSync(path.join(DIR, name), 'utf8'));
const LINES = fs.readFileSync(path.join(DIR, 'events.ndjson'), 'utf8').split('\n').filter((l) => l !== '');
const INSPECTS = fs.readdirSync(DIR).filter((f) => f.startsWith('inspect-') && f.endsWith('.json')).sort();

/** Compares `got` with `name` (written instead under UPDATE_GOLDEN=1: review the diff). */
function golden(name: string, got: unknown): void {
  const text = `${JSON.stringify(got, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`;
  const file = path.join(DIR, name);
  if (UPDATE) fs.writeFileSync(file, text);
  expect(text).toBe(fs.readFileSync(file, 'utf8'));
}

describe('Podman 4.3 payloads: golden outputs', () => {
  it('inspect of every recorded container', () => {
    expect(INSPECTS).toHaveLength(9);
    golden('inspect.golden.json', Object.fromEntries(INSPECTS.map((f) => [f, parseContainerInspect(load(f))])));
  });
  it('the container list', () => golden('containers.golden.json', parseContainerList(load('containers.json'))));
  it('stats, one-shot and not', () => golden('stats.golden.json', { 'stats-one-shot.json': parseStats(load('stats-one-shot.json')), 'stats.json': parseStats(load('stats.json')) }));
  it('/system/df', () => golden('df.golden.json', parseDiskUsage(load('df.json'))));
  it('the events stream', () => golden('events.golden.json', LINES.map((l) => parseEvent(JSON.parse(l), l))));
});

describe('Podman 4.3 payloads: what the exporter reads from them', () => {
  const inspect = (n: string) => parseContainerInspect(load(`inspect-${n}.json`));

  it('reads health, exit codes, limits and states from inspect as from Docker', () => {
    expect([inspect('healthy'), inspect('unhealthy'), inspect('starting'), inspect('renamed')].map((c) => [c.name, c.health, c.failingStreak])).toEqual([
      ['prec-healthy', 'healthy', 0],
      ['prec-unhealthy', 'unhealthy', 1],
      ['prec-starting', 'starting', 0],
      ['prec-renamed', 'none', 0],
    ]);
    expect(inspect('exited-7')).toMatchObject({ state: 'exited', exitCode: 7 });
    expect(inspect('created')).toMatchObject({ state: 'created', startedAtSeconds: undefined });
    expect(inspect('paused').state).toBe('paused');
    // --cpus 0.5 arrives as a quota on the default period (Podman does not send NanoCpus), and
    // Podman sends the period it applied, where Docker sends 0.
    expect(inspect('limits').spec).toEqual({ memory: 64 << 20, memoryReservation: 32 << 20, memorySwap: 128 << 20, cpuQuota: 50000, cpuPeriod: 100000, cpuShares: 512 });
    // Killed over its 8 MiB (exit 137), but Podman 4.3 on cgroup v1 does not record the OOM kill.
    expect(inspect('oom')).toMatchObject({ state: 'exited', exitCode: 137, oomKilled: false });
    // The image is the name Podman stores, with its localhost/ registry.
    expect(inspect('renamed')).toMatchObject({ image: 'localhost/docker-exporter-test/busybox:latest', labels: { 'com.example.team': 'blue' } });
  });

  it('stats: one pseudo-interface "network" with bytes only, no block I/O, no pids limit', () => {
    const s = parseStats(load('stats.json'))!;
    expect(s.networks.map((n) => n.name)).toEqual(['network']);
    expect(s.networks[0]).toMatchObject({ rxPackets: 0, txPackets: 0 });
    expect(s.networks[0]!.rxBytes).toBeGreaterThan(0);
    expect(s.blkio).toEqual([]);
    expect(s.threads).toBe(1);
    expect(s.threadsMax).toBeUndefined();
    // 8 MiB written to /tmp is page cache; Podman sends no memory_stats.stats, so nothing to subtract.
    expect(s.memoryWorkingSetBytes).toBe(s.memoryUsageBytes);
  });

  it('df: LayersSize 0 is not taken for the images total, and nothing reclaimable is negative', () => {
    const raw = load('df.json');
    expect(raw.LayersSize).toBe(0);
    const df = parseDiskUsage(raw);
    const sizes = (raw.Images as Array<{ Size: number }>).reduce((a, i) => a + i.Size, 0);
    expect(df.kinds.images).toEqual({ total: 1, active: 1, size: sizes, reclaimable: 0 });
    // The CLI prints what it derives from LayersSize 0: SIZE 0B, RECLAIMABLE -2.132e+06B.
    const cli = fs.readFileSync(path.join(DIR, 'df.cli.ndjson'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, string>);
    expect(cli[0]).toMatchObject({ Type: 'Images', Size: '0B', Reclaimable: '-2.132e+06B' });
    for (const kind of Object.values(df.kinds)) expect(kind!.reclaimable).toBeGreaterThanOrEqual(0);
    // As `podman system df` counts: reclaimable is the size of the images no container uses.
    const unused = structuredClone(raw);
    unused.Images[0].Containers = 0;
    expect(parseDiskUsage(unused).kinds.images).toEqual({ total: 1, active: 0, size: sizes, reclaimable: sizes });
    expect(df.kinds.containers).toMatchObject({ total: 10, active: 7 });
    // Podman's df names no volume driver.
    expect(df.volumes).toEqual([{ name: 'prec-data', driver: '', size: 3, refCount: 1 }]);
  });

  it('events: Podman names the actions its own way; dockerAction maps the two the inventory acts on', () => {
    const events = LINES.map((l) => parseEvent(JSON.parse(l), l)!);
    const actions = new Set(events.filter((e) => e.type === 'container').map((e) => baseAction(e.action)));
    // `docker rm -f` of a running container: die and remove, no kill, no stop (Docker sends kill, die, destroy).
    const healthyId = load('inspect-healthy.json').Id as string;
    expect(events.filter((e) => e.actorId === healthyId).map((e) => e.action).slice(-2)).toEqual(['die', 'remove']);
    expect([...actions].sort()).toEqual(['attach', 'cleanup', 'create', 'die', 'exec', 'exec_died', 'health_status', 'init', 'kill', 'pause', 'remove', 'rename', 'restart', 'start']);
    // The health status is not in the action, and it is the one before the probe ran.
    const health = LINES.filter((l) => l.includes('"health_status"')).map((l) => JSON.parse(l) as { Action: string; HealthStatus: string });
    expect(health.map((h) => [h.Action, h.HealthStatus])).toEqual([['health_status', 'starting'], ['health_status', 'starting']]);
    expect(['remove', 'exec_died', 'exec_died: x', 'destroy', 'exec_die', 'health_status', 'cleanup'].map(dockerAction)).toEqual(['destroy', 'exec_die', 'exec_die', 'destroy', 'exec_die', 'health_status', 'cleanup']);
  });
});

describe('the inventory on Podman 4.3 events', () => {
  const inventories: Inventory[] = [];
  afterEach(async () => {
    for (const i of inventories.splice(0)) await i.stop();
  });

  function rig(engine: FakeEngine): Inventory {
    const registry = new Registry();
    const inventory = new Inventory({ config: buildConfig([], {}), docker: engine, logger: pino({ level: 'silent' }), metrics: createExporterMetrics(registry), backoff: () => new Backoff(1, 5) });
    inventories.push(inventory);
    return inventory;
  }

  /** The recorded line of Podman's `action` event for container `id`, as Podman sent it. */
  function podmanEvent(id: string, action: string): string {
    const line = LINES.find((l) => l.includes(`"Action":"${action}"`) && l.includes(`"ID":"${id}"`));
    if (!line) throw new Error(`no recorded ${action} event of ${id}`);
    return line;
  }

  it('drops a container on Podman\'s "remove" (it sends no "destroy")', async () => {
    const engine = new FakeEngine();
    const healthy = load('inspect-healthy.json');
    engine.containers.set(healthy.Id, healthy);
    const inventory = rig(engine);
    inventory.start();
    await until(() => inventory.current);
    expect(inventory.get(healthy.Id)?.name).toBe('prec-healthy');
    engine.containers.delete(healthy.Id);
    engine.sendRaw(`${podmanEvent(healthy.Id, 'remove')}\n`);
    await until(() => inventory.get(healthy.Id) === undefined);
  });

  it('reads the result of a probe after Podman\'s "exec_died", whatever its health_status event said', async () => {
    const engine = new FakeEngine();
    const starting = load('inspect-starting.json');
    engine.containers.set(starting.Id, starting);
    const inventory = rig(engine);
    inventory.start();
    await until(() => inventory.current);
    expect(inventory.get(starting.Id)?.health).toBe('starting');
    // The probe failed once more: only exec_died tells, Podman sends no health_status for no change.
    const failing = structuredClone(starting);
    // (The recorded exec_died is the one of prec-renamed's `docker exec`: the same line for this id.)
    failing.State.Health = { Status: 'starting', FailingStreak: 2, Log: [] };
    engine.containers.set(starting.Id, failing);
    engine.sendRaw(`${podmanEvent(load('inspect-renamed.json').Id, 'exec_died').replaceAll(load('inspect-renamed.json').Id, starting.Id)}\n`);
    await until(() => inventory.get(starting.Id)?.failingStreak === 2);
  });
});

describe('the engine collector on Podman 4.3\'s /info', () => {
  it('exports Podman\'s version, drivers and capacity as docker_engine_*', async () => {
    const registry = new Registry();
    const engine = new FakeEngine();
    engine.on('ping', () => 'OK').on('info', () => load('info.json'));
    const deps: CollectorDeps = { registry, docker: engine, config: buildConfig([], {}), health: new LoopHealth(), metrics: createExporterMetrics(registry), logger: pino({ level: 'silent' }), inventory: undefined as never };
    await engineCollector.create(deps).update();
    const s = parseMetrics((await renderRegistry(registry, 'text')).toString());
    // The API version is the negotiated one (1.41, as Podman's /version says), not Podman's own 4.3.1.
    expect(load('version.json')).toMatchObject({ Version: '4.3.1', ApiVersion: '1.41' });
    expect(findAll(s, 'docker_engine_info').map((x) => x.labels)).toEqual([
      { version: '4.3.1', api_version: '1.41', os: 'debian', os_type: 'linux', architecture: 'amd64', kernel_version: load('info.json').KernelVersion, storage_driver: 'overlay', logging_driver: '', cgroup_driver: 'cgroupfs', cgroup_version: '1' },
    ]);
    expect(value(s, 'docker_engine_cpus')).toBe(2);
    expect(value(s, 'docker_engine_memory_bytes')).toBe(load('info.json').MemTotal);
  });
});
