import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it, vi } from 'vitest';
import { engineCollector, PING_TIMEOUT_MS } from '../../src/collectors/engine.js';
import type { CollectorDeps } from '../../src/collectors/collector.js';
import { createExporterMetrics } from '../../src/exporter-metrics.js';
import { renderRegistry } from '../../src/exposition.js';
import { LoopHealth } from '../../src/loop-health.js';
import { buildConfig } from '../helpers/config.js';
import { parseMetrics, value } from '../helpers/prom.js';
import { FakeEngine } from './fake-docker.js';

const INFO = { ServerVersion: '20.10.24', NCPU: 2, MemTotal: 25_000_000_000, Images: 3, ContainersRunning: 4, ContainersPaused: 0, ContainersStopped: 1 };

/** What the engine answers to /_ping and /info, as a test sets it. */
interface Answers {
  pingFails?: Error;
  infoFails?: Error;
  /** Answers that never come, as from an engine that accepts and never answers. */
  hang: Set<string>;
  info: unknown;
}

function setup() {
  const registry = new Registry();
  const engine = new FakeEngine();
  const answers: Answers = { hang: new Set(), info: INFO };
  const answer = (route: 'ping' | 'info', value: () => unknown) => () => (answers.hang.has(route) ? new Promise(() => {}) : value());
  engine.on('ping', answer('ping', () => {
    if (answers.pingFails) throw answers.pingFails;
    return 'OK';
  }));
  engine.on('info', answer('info', () => {
    if (answers.infoFails) throw answers.infoFails;
    return answers.info;
  }));
  const metrics = createExporterMetrics(registry);
  const deps: CollectorDeps = { registry, docker: engine, config: buildConfig([], {}), health: new LoopHealth(), metrics, logger: pino({ level: 'silent' }), inventory: undefined as never };
  const collector = engineCollector.create(deps);
  const asked = () => engine.requests.map((r) => r.route);
  const scrape = async () => parseMetrics((await renderRegistry(registry, 'text')).toString());
  return { engine: answers, asked, timeouts: () => engine.requests.map((r) => r.opts.timeoutMs), collector, scrape };
}

describe('engine collector', () => {
  it('pings on every scrape and asks /info only when its facts are older than 30 s', async () => {
    const { asked, collector, scrape } = setup();
    for (let i = 0; i < 5; i++) await collector.update();
    expect(asked().filter((r) => r === 'ping')).toHaveLength(5);
    expect(asked().filter((r) => r === 'info')).toHaveLength(1);
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
    const { engine, asked, collector, scrape } = setup();
    await collector.update();
    engine.pingFails = new Error('/_ping: connection refused');
    await expect(collector.update()).rejects.toThrow('refused');
    let s = await scrape();
    expect(value(s, 'docker_up')).toBe(0);
    expect(value(s, 'docker_engine_cpus')).toBeUndefined();
    expect(s.some((x) => x.name === 'docker_engine_info')).toBe(false);
    engine.pingFails = undefined;
    engine.info = { ...INFO, Images: 7 };
    await collector.update();
    s = await scrape();
    expect(value(s, 'docker_up')).toBe(1);
    expect(value(s, 'docker_engine_images')).toBe(7);
    expect(asked().filter((r) => r === 'info')).toHaveLength(2);
  });

  it('pings with a deadline of its own, not --docker.timeout: a scrape of a sick engine says docker_up 0 at once', async () => {
    const { timeouts, collector } = setup();
    await collector.update();
    expect(timeouts()[0]).toBe(PING_TIMEOUT_MS);
    expect(PING_TIMEOUT_MS).toBeLessThanOrEqual(1000);
  });

  it('waits at most about a second for the first facts, and fails meanwhile with docker_up 1', async () => {
    const { engine, collector, scrape } = setup();
    engine.hang.add('info');
    const started = performance.now();
    await expect(collector.update()).rejects.toThrow('has not answered within');
    expect(performance.now() - started).toBeLessThan(1500);
    expect(value(await scrape(), 'docker_up')).toBe(1);
  });

  it.each([
    ['an array', [1, 2]],
    ['a string', 'OK'],
    ['null', null],
    ['an object without ServerVersion', { Containers: 3 }],
  ])('takes /info of the wrong shape (%s) as a counted failure and keeps the last good facts', async (_what, payload) => {
    const { engine, asked, collector, scrape } = setup();
    await collector.update();
    engine.info = payload;
    // Facts older than their 30 s are asked for again: make them old.
    const now = performance.now();
    const spy = vi.spyOn(performance, 'now').mockReturnValue(now + 31_000);
    let s: Awaited<ReturnType<typeof scrape>>;
    try {
      // This scrape asks for new facts in the background; the next one reports what came of it.
      await collector.update();
      await new Promise((r) => setImmediate(r));
      s = await scrape();
      expect(value(s, 'docker_exporter_parse_errors_total', { source: 'info' })).toBe(1);
      await expect(collector.update()).rejects.toThrow('expected an object with a ServerVersion');
    } finally {
      spy.mockRestore();
    }
    s = await scrape();
    expect(value(s, 'docker_engine_info', { version: '20.10.24' })).toBe(1);
    expect(s.filter((x) => x.name === 'docker_engine_info')).toHaveLength(1);
    expect(value(s, 'docker_engine_images')).toBe(3);
  });
});
