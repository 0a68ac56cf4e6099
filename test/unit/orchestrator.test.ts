import pino from 'pino';
import { Gauge, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { CollectorDeps, CollectorModule } from '../../src/collectors/collector.js';
import { COLLECTOR_BUDGET_MS, Orchestrator } from '../../src/orchestrator.js';
import { parseMetrics, value } from '../helpers/prom.js';
import { LoopHealth } from '../../src/loop-health.js';

const logger = pino({ level: 'silent' });

function deps(registry: Registry): CollectorDeps {
  return { registry, logger, health: new LoopHealth() } as unknown as CollectorDeps;
}

describe('Orchestrator', () => {
  it('reports each collector\'s success and duration, and a failing one never fails the scrape', async () => {
    const registry = new Registry();
    let calls = 0;
    const modules: CollectorModule[] = [
      {
        name: 'engine',
        defaultEnabled: true,
        help: '',
        create: ({ registry: r }) => {
          const g = new Gauge({ name: 'test_good', help: 'h', registers: [r] });
          return { update: () => void g.set(++calls) };
        },
      },
      { name: 'stats', defaultEnabled: true, help: '', create: () => ({ update: async () => Promise.reject(new Error('engine said no')) }) },
      { name: 'df', defaultEnabled: true, help: '', create: () => ({ update: () => ({ success: false, durationSeconds: 12.5 }) }) },
      { name: 'events', defaultEnabled: false, help: '', create: () => ({ update: () => { throw new Error('must not run'); } }) },
    ];
    const o = new Orchestrator(modules, { engine: true, stats: true, df: true, events: false }, deps(registry), logger);
    expect(o.names).toEqual(['engine', 'stats', 'df']);
    const samples = parseMetrics((await o.render('text')).body.toString());
    expect(value(samples, 'test_good')).toBe(1);
    expect(value(samples, 'docker_exporter_collector_success', { collector: 'engine' })).toBe(1);
    expect(value(samples, 'docker_exporter_collector_success', { collector: 'stats' })).toBe(0);
    expect(value(samples, 'docker_exporter_collector_success', { collector: 'df' })).toBe(0);
    expect(value(samples, 'docker_exporter_collector_duration_seconds', { collector: 'df' })).toBe(12.5);
    expect(value(samples, 'docker_exporter_collector_success', { collector: 'events' })).toBeUndefined();
  });

  it('shares one render among concurrent scrapes and serves both formats', async () => {
    const registry = new Registry();
    let updates = 0;
    const modules: CollectorModule[] = [
      {
        name: 'engine',
        defaultEnabled: true,
        help: '',
        create: ({ registry: r }) => {
          const g = new Gauge({ name: 'test_updates', help: 'h', registers: [r] });
          return {
            update: async () => {
              await new Promise((res) => setTimeout(res, 20));
              g.set(++updates);
            },
          };
        },
      },
    ];
    const o = new Orchestrator(modules, { engine: true }, deps(registry), logger);
    const texts = await Promise.all(Array.from({ length: 100 }, () => o.render('text')));
    // The first render starts at once; every scrape arriving meanwhile shares the next one.
    expect(updates).toBeLessThanOrEqual(2);
    expect(new Set(texts.slice(1).map((t) => t.body.toString())).size).toBe(1);
    const om = await o.render('openmetrics');
    expect(om.contentType).toContain('application/openmetrics-text');
    expect(om.body.toString().trimEnd().endsWith('# EOF')).toBe(true);
    expect((await o.render('text')).contentType).toContain('text/plain');
  });

  it('answers a scrape within the budget while a collector hangs, reports it failed, and never runs two of its updates at once', async () => {
    const registry = new Registry();
    let updates = 0;
    let release: () => void = () => {};
    const modules: CollectorModule[] = [
      { name: 'engine', defaultEnabled: true, help: '', create: () => ({ update: () => void 0 }) },
      {
        name: 'stats',
        defaultEnabled: true,
        help: '',
        create: () => ({
          update: () => {
            updates++;
            return new Promise<void>((resolve) => (release = resolve));
          },
        }),
      },
    ];
    const o = new Orchestrator(modules, { engine: true, stats: true }, deps(registry), logger);
    for (let i = 0; i < 2; i++) {
      const started = performance.now();
      const s = parseMetrics((await o.render('text')).body.toString());
      const ms = performance.now() - started;
      expect(ms).toBeGreaterThanOrEqual(COLLECTOR_BUDGET_MS - 50);
      expect(ms).toBeLessThan(COLLECTOR_BUDGET_MS + 1000);
      expect(value(s, 'docker_exporter_collector_success', { collector: 'stats' })).toBe(0);
      expect(value(s, 'docker_exporter_collector_success', { collector: 'engine' })).toBe(1);
    }
    // The second scrape waited on the first update, still running, rather than start another.
    expect(updates).toBe(1);
    release();
    await new Promise((r) => setImmediate(r));
    const s = parseMetrics((await o.render('text')).body.toString());
    expect(updates).toBe(2);
    expect(value(s, 'docker_exporter_collector_success', { collector: 'stats' })).toBe(0);
  });
});
