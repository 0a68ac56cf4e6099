import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { engineCollector } from '../../src/collectors/engine.js';
import type { CollectorDeps } from '../../src/collectors/collector.js';
import { renderRegistry } from '../../src/exposition.js';
import { parseMetrics, value } from '../helpers/prom.js';

/** An engine that answers /_ping and /info as told, and counts what it was asked. */
class Engine {
  pingFails: Error | undefined;
  infoFails: Error | undefined;
  asked: string[] = [];
  readonly engineApiVersion = '1.41';
  info = { ServerVersion: '20.10.24', NCPU: 2, MemTotal: 25_000_000_000, Images: 3, ContainersRunning: 4, ContainersPaused: 0, ContainersStopped: 1 };

  async get(route: string): Promise<unknown> {
    this.asked.push(route);
    if (route === '/_ping') {
      if (this.pingFails) throw this.pingFails;
      return 'OK';
    }
    if (this.infoFails) throw this.infoFails;
    return this.info;
  }
}

function setup() {
  const registry = new Registry();
  const engine = new Engine();
  const collector = engineCollector.create({ registry, docker: engine } as unknown as CollectorDeps);
  const scrape = async () => parseMetrics((await renderRegistry(registry, 'text')).toString());
  return { engine, collector, scrape };
}

describe('engine collector', () => {
  it('pings on every scrape and asks /info only when its facts are older than 30 s', async () => {
    const { engine, collector, scrape } = setup();
    for (let i = 0; i < 5; i++) await collector.update();
    expect(engine.asked.filter((r) => r === '/_ping')).toHaveLength(5);
    expect(engine.asked.filter((r) => r === '/info')).toHaveLength(1);
    const s = await scrape();
    expect(value(s, 'docker_up')).toBe(1);
    expect(value(s, 'docker_engine_images')).toBe(3);
    expect(value(s, 'docker_engine_containers', { state: 'stopped' })).toBe(1);
  });

  it('fails, with docker_up 1 and no facts, while the engine answers pings but refuses /info', async () => {
    const { engine, collector, scrape } = setup();
    engine.infoFails = new Error('/info: HTTP 403: forbidden');
    await expect(collector.update()).rejects.toThrow('403');
    let s = await scrape();
    expect(value(s, 'docker_up')).toBe(1);
    expect(value(s, 'docker_engine_images')).toBeUndefined();
    engine.infoFails = undefined;
    await collector.update();
    s = await scrape();
    expect(value(s, 'docker_engine_images')).toBe(3);
  });

  it('drops the facts while the engine is away and asks /info again as soon as it is back', async () => {
    const { engine, collector, scrape } = setup();
    await collector.update();
    engine.pingFails = new Error('/_ping: connection refused');
    await expect(collector.update()).rejects.toThrow('refused');
    let s = await scrape();
    expect(value(s, 'docker_up')).toBe(0);
    expect(value(s, 'docker_engine_cpus')).toBeUndefined();
    expect(s.some((x) => x.name === 'docker_engine_info')).toBe(false);
    engine.pingFails = undefined;
    engine.info = { ...engine.info, Images: 7 };
    await collector.update();
    s = await scrape();
    expect(value(s, 'docker_up')).toBe(1);
    expect(value(s, 'docker_engine_images')).toBe(7);
    expect(engine.asked.filter((r) => r === '/info')).toHaveLength(2);
  });
});
