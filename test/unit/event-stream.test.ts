import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { Backoff } from '../../src/backoff.js';
import { EventStream, REPLAY_MARGIN_NS, sinceParam } from '../../src/docker/event-stream.js';
import { createExporterMetrics, type ExporterMetrics } from '../../src/exporter-metrics.js';
import type { EngineEvent } from '../../src/parse/event.js';
import { FakeEngine, hexId, until } from './fake-docker.js';

const logger = pino({ level: 'silent' });
const streams: EventStream[] = [];
afterEach(async () => {
  for (const s of streams.splice(0)) await s.stop();
});

interface Rig {
  engine: FakeEngine;
  stream: EventStream;
  metrics: ExporterMetrics;
  registry: Registry;
  got: EngineEvent[];
  connects: boolean[];
}

function rig(opts: { since?: bigint; filters?: Record<string, string[]> } = {}): Rig {
  const engine = new FakeEngine();
  const registry = new Registry();
  const metrics = createExporterMetrics(registry);
  const stream = new EventStream(engine, {
    filters: opts.filters ?? {},
    since: opts.since,
    source: 'test_events',
    metrics,
    logger,
    backoff: new Backoff(1, 5),
  });
  streams.push(stream);
  const got: EngineEvent[] = [];
  const connects: boolean[] = [];
  stream.on('event', (e) => got.push(e));
  stream.on('connected', (reconnect) => connects.push(reconnect));
  stream.start();
  return { engine, stream, metrics, registry, got, connects };
}

async function counter(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = await registry.getSingleMetric(name)!.get();
  return metric.values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value ?? 0;
}

const T0 = 1_700_000_000_000_000_000n;
const ID = hexId(1);

describe('sinceParam', () => {
  it('writes seconds and a 9-digit nanosecond fraction exactly', () => {
    expect(sinceParam(1795828981213451352n)).toBe('1795828981.213451352');
    expect(sinceParam(1700000000000000007n)).toBe('1700000000.000000007');
    expect(sinceParam(1700000000n * 1_000_000_000n)).toBe('1700000000.000000000');
  });
});

describe('EventStream', () => {
  it('asks for history from the given start and passes the filters as JSON', async () => {
    const r = rig({ since: T0, filters: { label: ['a=b'], type: ['container'] } });
    await until(() => r.stream.connected);
    expect(r.engine.streamQueries).toEqual([{ filters: '{"label":["a=b"],"type":["container"]}', since: '1700000000.000000000' }]);
    expect(r.connects).toEqual([false]);
  });

  it('without a start, the first connection asks for live events only', async () => {
    const r = rig();
    await until(() => r.stream.connected);
    expect(r.engine.streamQueries).toEqual([{}]);
  });

  it('delivers events buffered since the start, then live ones, with exact nanosecond times', async () => {
    const engine = new FakeEngine();
    engine.send({ type: 'container', action: 'create', id: ID, timeNano: T0 - 1n });
    engine.send({ type: 'container', action: 'start', id: ID, timeNano: T0 });
    const registry = new Registry();
    const stream = new EventStream(engine, { filters: {}, since: T0, source: 's', metrics: createExporterMetrics(registry), logger, backoff: new Backoff(1, 5) });
    streams.push(stream);
    const got: EngineEvent[] = [];
    stream.on('event', (e) => got.push(e));
    stream.start();
    await until(() => got.length === 1);
    engine.send({ type: 'container', action: 'die', id: ID, timeNano: T0 + 123_456_789n });
    await until(() => got.length === 2);
    expect(got.map((e) => [e.action, e.timeNano])).toEqual([
      ['start', T0],
      ['die', T0 + 123_456_789n],
    ]);
  });

  it('reconnects after a drop with since just before the last event, and delivers each event exactly once', async () => {
    const r = rig({ since: T0 });
    await until(() => r.stream.connected);
    const times = [T0 + 5_000_000_000n, T0 + 5_200_000_000n, T0 + 5_400_000_000n];
    for (const [i, t] of times.entries()) r.engine.send({ type: 'container', action: `a${i}`, id: ID, timeNano: t });
    await until(() => r.got.length === 3);

    r.engine.refuseConnections = 2;
    r.engine.dropStreams();
    // While it is down, the engine goes on stamping events; they must arrive after the reconnect.
    await until(() => !r.stream.connected);
    expect(r.stream.lastError).toMatch(/events stream/);
    r.engine.send({ type: 'container', action: 'during-outage', id: ID, timeNano: T0 + 6_000_000_000n });
    await until(() => r.connects.length === 2);
    r.engine.send({ type: 'container', action: 'after', id: ID, timeNano: T0 + 7_000_000_000n });
    await until(() => r.got.length === 5);
    await new Promise((res) => setTimeout(res, 20));

    expect(r.got.map((e) => e.action)).toEqual(['a0', 'a1', 'a2', 'during-outage', 'after']);
    const last = r.engine.streamQueries.at(-1)!;
    expect(last.since).toBe(sinceParam(times[2]! - REPLAY_MARGIN_NS));
    expect(r.engine.streamQueries).toHaveLength(4); // first, two refused, the reconnect
    expect(r.connects).toEqual([false, true]);
    expect(await counter(r.registry, 'docker_exporter_events_reconnects_total')).toBe(1);
  });

  it('delivers an event stamped before the newest one (published out of order) live and after a replay', async () => {
    const r = rig({ since: T0 });
    await until(() => r.stream.connected);
    r.engine.send({ type: 'container', action: 'newer', id: ID, timeNano: T0 + 2_000_000_000n });
    r.engine.send({ type: 'container', action: 'older', id: ID, timeNano: T0 + 1_900_000_000n });
    await until(() => r.got.length === 2);
    r.engine.dropStreams();
    await until(() => r.connects.length === 2);
    // The engine replays both from since; neither is delivered twice.
    await new Promise((res) => setTimeout(res, 20));
    expect(r.got.map((e) => e.action)).toEqual(['newer', 'older']);
  });

  it('never replays history from before its start', async () => {
    const r = rig({ since: T0 });
    await until(() => r.stream.connected);
    r.engine.send({ type: 'container', action: 'x', id: ID, timeNano: T0 + 10n });
    await until(() => r.got.length === 1);
    r.engine.dropStreams();
    await until(() => r.connects.length === 2);
    // high - margin would reach before the start: the start wins.
    expect(r.engine.streamQueries.at(-1)!.since).toBe(sinceParam(T0));
  });

  it('after a drop with no event yet, replays from its first connection', async () => {
    const r = rig();
    await until(() => r.stream.connected);
    const before = BigInt(Date.now()) * 1_000_000n;
    r.engine.dropStreams();
    await until(() => r.connects.length === 2);
    const since = String(r.engine.streamQueries.at(-1)!.since);
    const [s, ns] = since.split('.');
    const nano = BigInt(s!) * 1_000_000_000n + BigInt(ns!);
    expect(nano <= before).toBe(true);
    expect(before - nano < 5_000_000_000n).toBe(true);
  });

  it('counts and skips malformed records and records without type or action, and goes on', async () => {
    const r = rig();
    await until(() => r.stream.connected);
    r.engine.sendRaw('{not json\n');
    r.engine.sendRaw('{"Type":"container"}\n');
    r.engine.sendRaw('[1,2]\n');
    r.engine.send({ type: 'image', action: 'tag', id: 'sha256:abc' });
    await until(() => r.got.length === 1);
    expect(r.got[0]!.type).toBe('image');
    expect(await counter(r.registry, 'docker_exporter_parse_errors_total', { source: 'test_events' })).toBe(3);
    expect(r.connects).toEqual([false]);
  });

  it('keeps streaming when a listener throws', async () => {
    const r = rig();
    let calls = 0;
    r.stream.on('event', () => {
      calls++;
      throw new Error('listener bug');
    });
    await until(() => r.stream.connected);
    r.engine.send({ type: 'container', action: 'one', id: ID });
    r.engine.send({ type: 'container', action: 'two', id: ID });
    await until(() => r.got.length === 2);
    expect(calls).toBe(2);
    expect(r.connects).toEqual([false]);
  });

  it('retries a refused first connection and reports it down meanwhile', async () => {
    const engine = new FakeEngine();
    engine.refuseConnections = 3;
    const stream = new EventStream(engine, { filters: {}, source: 's', metrics: createExporterMetrics(new Registry()), logger, backoff: new Backoff(1, 5) });
    streams.push(stream);
    expect(stream.connected).toBe(false);
    expect(stream.lastError).toBe('events stream not connected yet');
    stream.start();
    await until(() => stream.connected);
    expect(engine.streamQueries).toHaveLength(4);
  });

  it('stops promptly while connected and while waiting to reconnect', async () => {
    const r = rig();
    await until(() => r.stream.connected);
    const started = Date.now();
    await r.stream.stop();
    expect(Date.now() - started).toBeLessThan(500);
    expect(r.engine.openStreams).toBe(0);
    expect(r.stream.connected).toBe(false);

    const engine = new FakeEngine();
    engine.refuseConnections = 1000;
    const slow = new EventStream(engine, { filters: {}, source: 's', metrics: createExporterMetrics(new Registry()), logger, backoff: new Backoff(60_000, 60_000) });
    slow.start();
    await until(() => engine.streamQueries.length === 1);
    const t = Date.now();
    await slow.stop();
    expect(Date.now() - t).toBeLessThan(500);
  });
});
