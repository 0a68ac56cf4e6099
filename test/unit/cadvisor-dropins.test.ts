import fs from 'node:fs';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { CollectorDeps } from '../../src/collectors/collector.js';
import { dfCollector } from '../../src/collectors/df.js';
import { engineCollector } from '../../src/collectors/engine.js';
import { createExporterMetrics } from '../../src/exporter-metrics.js';
import { renderRegistry } from '../../src/exposition.js';
import type { Inventory } from '../../src/inventory/inventory.js';
import { LoopHealth } from '../../src/loop-health.js';
import { Orchestrator } from '../../src/orchestrator.js';
import { buildConfig } from '../helpers/config.js';
import { findAll, parseMetrics, value } from '../helpers/prom.js';
import { FakeEngine, until } from './fake-docker.js';

const logger = pino({ level: 'silent' });
const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

describe('cAdvisor machine_* from the engine collector', () => {
  it('are NCPU and MemTotal of /info, the same figures as docker_engine_*, absent while the engine is away', async () => {
    const registry = new Registry();
    let info: unknown = { ServerVersion: '29.0.0', NCPU: 12, MemTotal: 33_400_000_512 };
    let down = false;
    const engine = new FakeEngine()
      .on('ping', () => {
        if (down) throw new Error('connect ENOENT');
        return 'OK';
      })
      .on('info', () => info);
    const deps = { registry, docker: engine, config: buildConfig([]), health: new LoopHealth(), metrics: createExporterMetrics(registry), logger, inventory: undefined as never } as CollectorDeps;
    const collector = engineCollector.create(deps);
    const scrape = async () => parseMetrics((await renderRegistry(registry, 'text')).toString());
    expect(findAll(await scrape(), 'machine_cpu_cores')).toEqual([]);
    await collector.update();
    const s = await scrape();
    expect(value(s, 'machine_cpu_cores')).toBe(12);
    expect(value(s, 'machine_memory_bytes')).toBe(33_400_000_512);
    expect(value(s, 'docker_engine_cpus')).toBe(12);
    expect(value(s, 'docker_engine_memory_bytes')).toBe(33_400_000_512);
    down = true;
    await expect(collector.update()).rejects.toThrow('ENOENT');
    const away = await scrape();
    expect(findAll(away, 'machine_cpu_cores')).toEqual([]);
    expect(findAll(away, 'machine_memory_bytes')).toEqual([]);
    // An engine that leaves a field out has no such series, never a 0.
    down = false;
    info = { ServerVersion: '29.0.0', NCPU: 4 };
    await collector.update();
    const partial = await scrape();
    expect(value(partial, 'machine_cpu_cores')).toBe(4);
    expect(findAll(partial, 'machine_memory_bytes')).toEqual([]);
  });
});

describe('container_fs_usage_bytes from the df collector', () => {
  it('is SizeRw of each held container, with the same labels and value as docker_container_rw_size_bytes', async () => {
    const payload = JSON.parse(fs.readFileSync(new URL('../fixtures/df/engine-20.10-classic.json', import.meta.url), 'utf8')) as { Containers: Array<{ Id: string; Names: string[]; SizeRw?: number }> };
    const held = new Map(payload.Containers.map((c) => [c.Id, { promLabels: Object.freeze({ id: c.Id, name: c.Names[0]!.slice(1), image: 'img', container_label_x: '' }) }]));
    const registry = new Registry();
    const inventory = { labelNames: ['id', 'name', 'image', 'container_label_x'], get: (id: string) => held.get(id) } as unknown as Inventory;
    let answered = 0;
    const docker = new FakeEngine().on('df', () => {
      answered++;
      return payload;
    });
    const deps = { config: buildConfig(['--df.interval', '1h']), docker, inventory, registry, logger, metrics: createExporterMetrics(registry), health: new LoopHealth() } as CollectorDeps;
    const orchestrator = new Orchestrator([dfCollector], { df: true }, deps, logger);
    stops.push(() => orchestrator.stop());
    orchestrator.start();
    await until(() => answered === 1);
    await new Promise((r) => setTimeout(r, 20));
    const s = parseMetrics((await orchestrator.render('text')).body.toString());
    const usage = findAll(s, 'container_fs_usage_bytes');
    const rw = findAll(s, 'docker_container_rw_size_bytes');
    expect(usage.map(({ labels, value: v }) => ({ labels, v }))).toEqual(rw.map(({ labels, value: v }) => ({ labels, v })));
    // The engine leaves SizeRw out when it is 0 (omitempty: the created container never wrote).
    expect(usage).toHaveLength(payload.Containers.length);
    expect(payload.Containers.map((c) => value(s, 'container_fs_usage_bytes', { id: c.Id }))).toEqual([2, 0, 21504, 33792]);
  });
});
