import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { Collector, CollectorDeps } from '../../src/collectors/collector.js';
import { checkEventFilters, eventsCollector } from '../../src/collectors/events.js';
import { ConfigError } from '../../src/config.js';
import { createExporterMetrics } from '../../src/exporter-metrics.js';
import { buildConfig } from '../helpers/config.js';
import { parseMetrics } from '../helpers/prom.js';
import { FakeEngine, hexId, until } from './fake-docker.js';

const running: Collector[] = [];
afterEach(async () => {
  for (const c of running.splice(0)) await c.stop?.();
});

function rig(args: string[] = []) {
  const engine = new FakeEngine();
  const registry = new Registry();
  const deps = {
    config: buildConfig(args, {}),
    docker: engine,
    registry,
    logger: pino({ level: 'silent' }),
    metrics: createExporterMetrics(registry),
  } as unknown as CollectorDeps;
  const collector = eventsCollector.create(deps);
  running.push(collector);
  const counts = async () =>
    Object.fromEntries(parseMetrics(await registry.metrics()).filter((s) => s.name === 'docker_events_total').map((s) => [`${s.labels.type} ${s.labels.action}`, s.value]));
  return { engine, collector, registry, counts };
}

describe('checkEventFilters', () => {
  it('accepts Docker\'s filter keys', () => {
    expect(() =>
      checkEventFilters({ type: ['container', 'image', 'builder'], event: ['die'], label: ['a=b', 'c'], container: ['web'], scope: ['local', 'swarm'], daemon: ['x'], network: ['n'], volume: ['v'], image: ['i'], plugin: ['p'], node: ['n'], service: ['s'], secret: ['s'], config: ['c'] }),
    ).not.toThrow();
  });

  it.each([
    [{ status: ['die'] }, 'unknown key "status" (use one of config, container, daemon, event, image, label, network, node, plugin, scope, secret, service, type, volume)'],
    [{ type: ['containers'] }, 'unknown type "containers" (use one of builder, config, container, daemon, image, network, node, plugin, secret, service, volume)'],
    [{ scope: ['global'] }, 'unknown scope "global" (use local or swarm)'],
    [{ event: [''] }, '"event=" has no value'],
  ])('refuses %j', (filters, message) => {
    expect(() => checkEventFilters(filters)).toThrow(ConfigError);
    expect(() => checkEventFilters(filters)).toThrow(`--events.filter: ${message}`);
  });
});

describe('events collector', () => {
  it('counts by type and action with the detail cut off, from its own filtered stream starting now', async () => {
    const before = BigInt(Date.now()) * 1_000_000n;
    const { engine, collector, counts } = rig(['--events.filter', 'type=container', '--events.filter', 'type=image', '--events.filter', 'label=app=web']);
    collector.start!();
    await until(() => engine.openStreams === 1);
    const query = engine.streamQueries[0]!;
    expect(query.filters).toBe('{"type":["container","image"],"label":["app=web"]}');
    const [s, ns] = String(query.since).split('.');
    const since = BigInt(s!) * 1_000_000_000n + BigInt(ns!);
    expect(since >= before && since - before < 5_000_000_000n).toBe(true);

    engine.send({ type: 'container', action: 'health_status: healthy', id: hexId(1) });
    engine.send({ type: 'container', action: 'health_status: unhealthy', id: hexId(1) });
    engine.send({ type: 'container', action: 'exec_start: sh -c echo a: b', id: hexId(1) });
    engine.send({ type: 'image', action: 'tag', id: 'sha256:1' });
    await until(() => engine.buffer.length === 4);
    await new Promise((r) => setTimeout(r, 20));
    await collector.update();
    expect(await counts()).toEqual({ 'container health_status': 2, 'container exec_start': 1, 'image tag': 1 });
  });

  it('fails while its stream is down and keeps the counts it has', async () => {
    const { engine, collector, counts } = rig();
    expect(() => collector.update()).toThrow('events collector not started');
    collector.start!();
    await until(() => engine.openStreams === 1);
    engine.send({ type: 'network', action: 'connect', id: 'n1' });
    await new Promise((r) => setTimeout(r, 20));
    engine.refuseConnections = Infinity;
    engine.dropStreams();
    await until(() => {
      try {
        collector.update();
        return false;
      } catch {
        return true;
      }
    });
    expect(() => collector.update()).toThrow(/^events stream: /);
    expect(await counts()).toEqual({ 'network connect': 1 });
  });
});
