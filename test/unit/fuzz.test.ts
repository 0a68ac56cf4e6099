import fs from 'node:fs';
import path from 'node:path';
import { PassThrough } from 'node:stream';
import pino from 'pino';
import { Counter, Gauge, Registry, type RegistryContentType } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { ROUTES, routePath, type RouteName } from '../../src/docker/routes.js';
import { EventStream } from '../../src/docker/event-stream.js';
import { MAX_LINE_BYTES, readNdjson, SKIP_LIMIT_FACTOR } from '../../src/docker/ndjson.js';
import { createExporterMetrics } from '../../src/exporter-metrics.js';
import { Inventory } from '../../src/inventory/inventory.js';
import { parseContainerInspect } from '../../src/parse/container.js';
import { parseDiskUsage } from '../../src/parse/df.js';
import { parseEvent } from '../../src/parse/event.js';
import { PayloadError } from '../../src/parse/guards.js';
import { parseStats } from '../../src/parse/stats.js';
import { renderRegistry } from '../../src/exposition.js';
import { Orchestrator } from '../../src/orchestrator.js';
import type { CollectorDeps } from '../../src/collectors/collector.js';
import { LoopHealth } from '../../src/loop-health.js';
import { buildConfig } from '../helpers/config.js';
import { FakeEngine } from './fake-docker.js';

/**
 * Whatever the engine (or something between it and us) sends, the stream reader and the parsers
 * neither crash nor throw anything but PayloadError, and what they drop is counted. Random inputs
 * come from a seeded generator: a failure names its seed, and FUZZ_SEED=<n> replays it.
 */
const SEED = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));

/** mulberry32: small, fast, good enough to pick mutations. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FIXTURES = new URL('../fixtures/', import.meta.url).pathname;
const jsonFixtures = (dir: string): unknown[] =>
  fs
    .readdirSync(path.join(FIXTURES, dir))
    .filter((f) => f.endsWith('.json') && !/\.(expected|golden|cli)\.json$/.test(f))
    .map((f) => JSON.parse(fs.readFileSync(path.join(FIXTURES, dir, f), 'utf8')) as unknown);
const eventLines = fs.readFileSync(path.join(FIXTURES, 'events/engine-20.10.ndjson'), 'utf8').split('\n').filter(Boolean);

/** Every parser of src/parse, each with real payloads to mutate. */
const PARSERS: Array<{ name: string; parse: (payload: unknown) => unknown; seeds: unknown[] }> = [
  { name: 'parseEvent', parse: (p) => parseEvent(p, JSON.stringify(p)), seeds: eventLines.map((l) => JSON.parse(l) as unknown) },
  { name: 'parseContainerInspect', parse: parseContainerInspect, seeds: jsonFixtures('inspect') },
  { name: 'parseStats', parse: parseStats, seeds: jsonFixtures('stats') },
  { name: 'parseDiskUsage', parse: parseDiskUsage, seeds: jsonFixtures('df') },
];

/** A label value far beyond anything sane (1 MiB), and a big one cheap enough to use often (64 KiB). */
const HUGE = 'x'.repeat(1 << 20);
const BIG = 'y'.repeat(1 << 16);
const NASTY_STRINGS = ['', ' ', '"', '\\', '\n', '\u0000', '☃', '😀', '\ud800', '{"a":', '0001-01-01T00:00:00Z', '2024-13-45T99:99:99Z', 'NaN', '-1'];

function randomValue(r: () => number, depth = 0): unknown {
  const pick = Math.floor(r() * (depth > 3 ? 9 : 12));
  switch (pick) {
    case 0: return null;
    case 1: return r() < 0.5;
    case 2: return Math.floor(r() * 1e6);
    case 3: return -Math.floor(r() * 1e6) - 1;
    case 4: return [1e308, -1e308, Number.MAX_SAFE_INTEGER, 2 ** 64, 0.5, -0][Math.floor(r() * 6)];
    case 5: return r() < 0.05 ? BIG : NASTY_STRINGS[Math.floor(r() * NASTY_STRINGS.length)];
    case 6: return String.fromCharCode(...Array.from({ length: Math.floor(r() * 20) }, () => Math.floor(r() * 0xffff)));
    case 7: return {};
    case 8: return [];
    case 9: return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
    case 10:
    case 11: {
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(r() * 4); i > 0; i--) o[NASTY_STRINGS[Math.floor(r() * 6)] + String(i)] = randomValue(r, depth + 1);
      return o;
    }
  }
  return undefined;
}

/** Paths to every value inside a JSON tree. */
function paths(value: unknown, prefix: Array<string | number> = [], out: Array<Array<string | number>> = []): Array<Array<string | number>> {
  if (value !== null && typeof value === 'object') {
    for (const [k, v] of Object.entries(value)) {
      const p = [...prefix, Array.isArray(value) ? Number(k) : k];
      out.push(p);
      paths(v, p, out);
    }
  }
  return out;
}

/** A deep copy with a few values deleted, retyped or made huge. */
function mutate(seed: unknown, r: () => number): unknown {
  const copy = structuredClone(seed) as Record<string, unknown>;
  const all = paths(copy);
  const times = 1 + Math.floor(r() * 4);
  for (let i = 0; i < times && all.length > 0; i++) {
    const p = all[Math.floor(r() * all.length)]!;
    let parent: any = copy;
    for (const key of p.slice(0, -1)) parent = parent?.[key];
    if (parent === null || typeof parent !== 'object') continue;
    const last = p[p.length - 1]!;
    const how = r();
    if (how < 0.3) {
      if (Array.isArray(parent)) parent.splice(Number(last), 1);
      else delete parent[last];
    } else if (how < 0.9) {
      parent[last] = randomValue(r);
    } else {
      parent[last] = typeof parent[last] === 'string' ? BIG : { [BIG.slice(0, 1000)]: BIG };
    }
  }
  return copy;
}

/** Calls a parser; only PayloadError may come out, and what it returns holds no NaN. */
function expectContained(name: string, parse: (p: unknown) => unknown, payload: unknown, note: string): void {
  let result: unknown;
  try {
    result = parse(payload);
  } catch (err) {
    if (!(err instanceof PayloadError)) {
      throw new Error(`${name} threw ${(err as Error).name}: ${(err as Error).message} (${note}, seed ${SEED}; FUZZ_SEED=${SEED} replays it)`);
    }
    return;
  }
  const nan = paths(result).find((p) => {
    let v: any = result;
    for (const k of p) v = v?.[k];
    return typeof v === 'number' && Number.isNaN(v);
  });
  if (nan) throw new Error(`${name} returned NaN at ${nan.join('.')} (${note}, seed ${SEED})`);
}

/** Mutated payloads per parser in all (spread over its recorded payloads). */
const MUTATIONS = Number(process.env.FUZZ_MUTATIONS ?? 1000);

describe(`parsers under random input (seed ${SEED})`, () => {
  it('notices a parser that throws anything but PayloadError, or returns NaN', () => {
    expect(() => expectContained('broken', (p) => (p as any).x.y, {}, 'self-test')).toThrow(/broken threw TypeError/);
    expect(() => expectContained('broken', () => ({ a: [NaN] }), {}, 'self-test')).toThrow(/returned NaN at a.0/);
    expect(() => expectContained('fine', () => { throw new PayloadError('bad'); }, {}, 'self-test')).not.toThrow();
  });

  for (const { name, parse, seeds } of PARSERS) {
    it(`${name}: only PayloadError, never a crash, on ${MUTATIONS} mutations of ${seeds.length} recorded payloads`, () => {
      expect(seeds.length).toBeGreaterThan(0);
      const r = rng(SEED);
      const each = Math.ceil(MUTATIONS / seeds.length);
      for (const [i, seed] of seeds.entries()) {
        expectContained(name, parse, seed, `fixture ${i} as recorded`);
        for (let n = 0; n < each; n++) expectContained(name, parse, mutate(seed, r), `fixture ${i}, mutation ${n}`);
      }
    });

    it(`${name}: only PayloadError on values of every JSON type`, () => {
      const r = rng(SEED + 1);
      const inputs: unknown[] = [undefined, null, 0, -1, 'x', HUGE, true, [], {}, [{}], { Id: HUGE, Type: HUGE, Action: HUGE, read: HUGE }, JSON.parse('{"__proto__":{"polluted":1}}')];
      for (let n = 0; n < 300; n++) inputs.push(randomValue(r));
      for (const [i, input] of inputs.entries()) expectContained(name, parse, input, `input ${i}`);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    });
  }

  it('parseContainerInspect keeps huge and odd names and labels exactly', () => {
    const base = jsonFixtures('inspect')[0] as Record<string, any>;
    const odd = `q"uo\\te\nnew☃😀${HUGE}`;
    const info = parseContainerInspect({ ...base, Name: `/${odd}`, Config: { ...base.Config, Labels: { 'com.docker.compose.project': odd, n: 1 } } });
    expect(info.name).toBe(odd);
    // The number is not a label value Docker could hold: dropped, the rest kept.
    expect(info.labels).toEqual({ 'com.docker.compose.project': odd });
  });
});

/** Feeds bytes in random chunk sizes (1 byte up to 4 KiB), yielding between chunks like a socket. */
async function feed(bytes: Buffer, r: () => number, maxLine?: number) {
  const source = new PassThrough();
  const records: unknown[] = [];
  const bad: string[] = [];
  // The handler is attached at once: a rejection seen only after the writes would count as unhandled.
  const done = readNdjson(source, { onRecord: (v) => records.push(v), onBadRecord: (reason) => bad.push(reason) }, maxLine).then(
    () => undefined,
    (err: Error) => err,
  );
  let offset = 0;
  while (offset < bytes.length) {
    const size = 1 + Math.floor(r() ** 3 * 4096);
    source.write(bytes.subarray(offset, offset + size));
    offset += size;
    if (r() < 0.3) await new Promise((res) => setImmediate(res));
  }
  source.end();
  const error = await done;
  return { records, bad, error };
}

describe(`readNdjson under random chunkings and corruption (seed ${SEED})`, () => {
  it('delivers every good record in order and reports each corrupted line, however the bytes are cut', async () => {
    const r = rng(SEED + 2);
    for (let run = 0; run < 40; run++) {
      const good: unknown[] = [];
      const lines: string[] = [];
      let corrupted = 0;
      for (let i = 0; i < 60; i++) {
        const roll = r();
        if (roll < 0.6) {
          const value = { n: i, s: NASTY_STRINGS[Math.floor(r() * NASTY_STRINGS.length)], v: randomValue(r) };
          good.push(JSON.parse(JSON.stringify(value)));
          lines.push(JSON.stringify(value));
        } else if (roll < 0.75) {
          // A strict prefix of a JSON object is never JSON: the closing brace is missing.
          const text = JSON.stringify({ n: i, v: randomValue(r) });
          lines.push(text.slice(0, Math.floor(r() * (text.length - 1)) + 1).replace(/\s+$/, '') || '{');
          corrupted++;
        } else if (roll < 0.85) {
          // A raw control character is invalid both inside and outside a JSON string.
          const text = JSON.stringify({ n: i, s: 'abc' });
          const at = Math.floor(r() * text.length);
          lines.push(`${text.slice(0, at)}\u0001${text.slice(at)}`);
          corrupted++;
        } else if (roll < 0.95) {
          lines.push(r() < 0.5 ? '' : '   ');
        } else {
          lines.push(eventLines[Math.floor(r() * eventLines.length)]!);
          good.push(JSON.parse(lines[lines.length - 1]!));
        }
      }
      const eol = r() < 0.5 ? '\n' : '\r\n';
      const { records, bad, error } = await feed(Buffer.from(lines.join(eol) + eol), r);
      const note = `run ${run}, seed ${SEED}`;
      expect(error, note).toBeUndefined();
      expect(records, note).toEqual(good);
      expect(bad, note).toEqual(Array(corrupted).fill('malformed'));
    }
  });

  it('keeps multi-byte characters whole when a chunk ends inside one', async () => {
    const r = rng(SEED + 3);
    const value = { name: '☃😀ü'.repeat(500), label: '日本語'.repeat(500) };
    const bytes = Buffer.from(`${JSON.stringify(value)}\n`.repeat(20));
    for (let run = 0; run < 20; run++) {
      const { records, bad } = await feed(bytes, r);
      expect(bad).toEqual([]);
      expect(records).toEqual(Array(20).fill(value));
    }
  });

  it('skips a huge line, reporting it once, and delivers the records before and after it', async () => {
    const r = rng(SEED + 4);
    const before = [{ a: 1 }, { b: 'x'.repeat(30_000) }];
    const text = `${before.map((v) => JSON.stringify(v)).join('\n')}\n{"huge":"${'y'.repeat(300_000)}"}\n{"after":1}\n`;
    const { records, bad, error } = await feed(Buffer.from(text), r, 100_000);
    expect(error).toBeUndefined();
    expect(records).toEqual([...before, { after: 1 }]);
    expect(bad).toEqual(['oversized']);
  });

  it('reads past a 9 MiB line in socket-sized pieces without holding it, and goes on', async () => {
    const source = new PassThrough();
    const records: unknown[] = [];
    const bad: string[] = [];
    const done = readNdjson(source, { onRecord: (v) => records.push(v), onBadRecord: (reason) => bad.push(reason) }).then(() => undefined, (err: Error) => err);
    const huge = Buffer.from(`{"x":"${'z'.repeat(9 * 1024 * 1024)}"}\n{"after":1}\n`);
    const heapBefore = process.memoryUsage().heapUsed;
    let heapPeak = heapBefore;
    for (let o = 0; o < huge.length; o += 65536) {
      source.write(huge.subarray(o, o + 65536));
      await new Promise((r) => setImmediate(r));
      heapPeak = Math.max(heapPeak, process.memoryUsage().heapUsed);
    }
    source.end();
    expect(await done).toBeUndefined();
    expect(records).toEqual([{ after: 1 }]);
    expect(bad).toEqual(['oversized']);
    // What is held is at most one line bound, not the 9 MiB (the buffers live outside the heap, so
    // this bounds the strings and arrays the reader keeps).
    expect(heapPeak - heapBefore).toBeLessThan(4 * MAX_LINE_BYTES);
  });

  it('gives up on an endless line once it passes the skip limit, and closes the source', async () => {
    const source = new PassThrough();
    const bad: string[] = [];
    const done = readNdjson(source, { onRecord: () => {}, onBadRecord: (reason) => bad.push(reason) }, 4096).then(() => undefined, (err: Error) => err);
    const piece = Buffer.alloc(65536, 'z');
    let written = 0;
    while (!source.destroyed && written < 100 * 4096 * SKIP_LIMIT_FACTOR) {
      source.write(piece);
      written += piece.length;
      await new Promise((r) => setImmediate(r));
    }
    expect(await done).toBeInstanceOf(Error);
    expect(bad).toEqual(['oversized']);
    expect(source.destroyed).toBe(true);
    expect(written).toBeLessThanOrEqual(4096 * SKIP_LIMIT_FACTOR + 2 * 65536);
  });

  it('reads a deeply nested line and a truncated stream without throwing', async () => {
    const r = rng(SEED + 5);
    const deep = `${'['.repeat(50_000)}${']'.repeat(50_000)}`;
    const { records, bad, error } = await feed(Buffer.from(`${deep}\n{"a":1}\n{"cut":`), r);
    expect(error).toBeUndefined();
    expect(records).toHaveLength(2);
    expect(bad).toEqual(['malformed']);
  });
});

const silent = pino({ level: 'silent' });

/** The fake engine serving prepared streams (events) and documents (every GET, by path), as a test gives them. */
function fakeDocker(handlers: { stream?: () => PassThrough; get?: (path: string) => unknown }): FakeEngine {
  const engine = new FakeEngine();
  if (handlers.stream) engine.onStream('events', handlers.stream);
  if (handlers.get) {
    for (const route of Object.keys(ROUTES) as RouteName[]) {
      if (route === 'events') continue;
      engine.on(route, (opts) => {
        const v = handlers.get!(routePath(route, opts.id));
        if (v instanceof Error) throw v;
        return v;
      });
    }
  }
  return engine;
}

async function counterValue(registry: Registry, source: string): Promise<number> {
  const metric = await registry.getSingleMetric('docker_exporter_parse_errors_total')!.get();
  return metric.values.find((v) => v.labels.source === source)?.value ?? 0;
}

describe('bad records are counted in docker_exporter_parse_errors_total', () => {
  it('events stream: malformed lines, records without type or action, and an oversized line', async () => {
    const registry = new Registry();
    const metrics = createExporterMetrics(registry);
    const streams: PassThrough[] = [];
    const docker = fakeDocker({
      stream: () => {
        const s = new PassThrough();
        streams.push(s);
        return s;
      },
    });
    const events: string[] = [];
    const stream = new EventStream(docker, { filters: {}, source: 'fuzz_events', metrics, logger: silent });
    stream.on('event', (e) => events.push(`${e.action}@${e.timeNano}`));
    stream.start();
    await waitUntil(() => streams.length === 1);
    const good = eventLines.slice(0, 5);
    streams[0]!.write(`${good[0]}\n{"Type":"container",\n${good[1]}\n{}\n{"Type":1,"Action":2}\n[1,2]\n"text"\n${good[2]}\n`);
    await waitUntil(() => events.length === 3);
    // A line longer than the reader takes is skipped and counted; the connection goes on (it used to
    // end it, and the reconnect's replay brought the same line back). In pieces, as from a socket.
    const huge = Buffer.from(`{"x":"${'z'.repeat(9 * 1024 * 1024)}"}\n`);
    for (let o = 0; o < huge.length; o += 1 << 20) streams[0]!.write(huge.subarray(o, o + (1 << 20)));
    streams[0]!.write(`${good[3]}\n${good[4]}\n`);
    await waitUntil(() => events.length === 5);
    expect(streams).toHaveLength(1);
    // 1 truncated + 4 without type/action ({}, wrong types, an array, a string) + 1 oversized.
    expect(await counterValue(registry, 'fuzz_events')).toBe(6);
    expect(await registry.getSingleMetric('docker_exporter_events_reconnects_total')!.get().then((m) => m.values[0]?.value ?? 0)).toBe(0);
    await stream.stop();
  });

  it('inventory: a list with entries without a usable Id fails whole; inspect payloads without a usable Id are counted', async () => {
    const registry = new Registry();
    const metrics = createExporterMetrics(registry);
    const goodInspect = jsonFixtures('inspect')[0] as Record<string, any>;
    const ids = ['a'.repeat(64), 'b'.repeat(64), 'c'.repeat(64)];
    let list: unknown = [{ Id: ids[0], Names: ['/one'] }, { Names: ['/no-id'] }, { Id: 5 }, 'junk', { Id: ids[1], Names: 'not-a-list' }, { Id: ids[2], Names: ['/three'] }];
    const docker = fakeDocker({
      get: (p) => {
        if (p === '/containers/json') return list;
        if (p.includes(ids[0]!)) return { ...goodInspect, Id: ids[0] };
        if (p.includes(ids[1]!)) return { Id: 'short' };
        return '<html>not json</html>';
      },
    });
    const inventory = new Inventory({ config: buildConfig([], {}), docker, logger: silent, metrics });
    await inventory.resync();
    // Skipping the bad entries would have taken the good ones for the whole truth.
    expect(inventory.list()).toEqual([]);
    expect(await counterValue(registry, 'containers')).toBe(1);
    list = ids.map((Id, i) => ({ Id, Names: [`/c${i}`] }));
    await inventory.resync();
    expect(inventory.list().map((c) => c.id)).toEqual([ids[0]]);
    expect(await counterValue(registry, 'inspect')).toBe(2);
    await inventory.stop();
  });

  it('df: a payload of the wrong shape is counted and the last good figures stay', async () => {
    const { dfCollector } = await import('../../src/collectors/df.js');
    const registry = new Registry();
    const metrics = createExporterMetrics(registry);
    const payloads: unknown[] = [jsonFixtures('df')[0], { Images: 'not a list' }, 'text', null];
    let served = 0;
    const docker = fakeDocker({ get: () => payloads[Math.min(served++, payloads.length - 1)] });
    const inventory = { labelNames: ['id', 'name', 'image'], get: () => undefined } as unknown as Inventory;
    const config = buildConfig(['--df.interval', '10ms'], {});
    const collector = dfCollector.create({ config, docker, inventory, registry, logger: silent, metrics, health: new LoopHealth() });
    collector.start?.();
    await waitUntil(() => served >= 5, 10_000);
    await collector.stop?.();
    expect(await counterValue(registry, 'df')).toBeGreaterThanOrEqual(3);
    await collector.update();
    const objects = await registry.getSingleMetric('docker_disk_usage_objects')!.get();
    expect(objects.values.length).toBe(4);
  });
});

async function waitUntil(check: () => boolean, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * Label values exactly as the exposition formats define them: `\\`, `\"` and `\n` are the only
 * escapes (text format 0.0.4 and OpenMetrics 1.0 agree), everything else is literal UTF-8.
 */
function parseExposition(text: string): Array<{ name: string; labels: Record<string, string>; value: string }> {
  const out: Array<{ name: string; labels: Record<string, string>; value: string }> = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    // `s`: a raw carriage return (legal in a label value) must not end the match.
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{.*\})? (\S+)$/s.exec(line);
    if (!m) throw new Error(`not an exposition line: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    let rest = m[2] ? m[2].slice(1, -1) : '';
    while (rest.length > 0) {
      const lm = /^([a-zA-Z_][a-zA-Z0-9_]*)="/.exec(rest);
      if (!lm) throw new Error(`bad label syntax in ${JSON.stringify(line)}`);
      let i = lm[0].length;
      let v = '';
      for (;;) {
        const c = rest[i];
        if (c === undefined) throw new Error(`unterminated label value in ${JSON.stringify(line)}`);
        if (c === '"') break;
        if (c === '\\') {
          const e = rest[i + 1];
          if (e === '\\') v += '\\';
          else if (e === '"') v += '"';
          else if (e === 'n') v += '\n';
          else throw new Error(`invalid escape \\${e} in ${JSON.stringify(line)}`);
          i += 2;
        } else {
          v += c;
          i++;
        }
      }
      labels[lm[1]!] = v;
      rest = rest.slice(i + 1);
      if (rest.startsWith(',')) rest = rest.slice(1);
      else if (rest.length > 0) throw new Error(`expected , after label in ${JSON.stringify(line)}`);
    }
    out.push({ name: m[1]!, labels, value: m[3]! });
  }
  return out;
}

describe('label values from containers are escaped correctly in both exposition formats', () => {
  const ODD = [
    'plain',
    'with "double quotes"',
    'back\\slash and \\n (a backslash then n, not a newline)',
    'line one\nline two',
    'trailing backslash\\',
    '\\"',
    'carriage\rreturn and\ttab',
    'unicode ☃ 😀 日本語 é',
    "single ' quote, comma, } brace = equals",
    '',
  ];

  it('renders every odd value so that it parses back to exactly the same string', async () => {
    const base = jsonFixtures('inspect')[0] as Record<string, any>;
    const registry = new Registry<RegistryContentType>();
    const gauge = new Gauge({ name: 'escaping_test', help: 'label escaping', labelNames: ['name', 'container_label_com_docker_compose_project', 'n'], registers: [registry] });
    for (const [n, odd] of ODD.entries()) {
      // Names and labels travel from inspect through the parser into labels, as in the exporter.
      const info = parseContainerInspect({ ...base, Name: `/${odd}`, Config: { ...base.Config, Labels: { 'com.docker.compose.project': odd } } });
      gauge.set({ name: info.name, container_label_com_docker_compose_project: info.labels['com.docker.compose.project']!, n: String(n) }, n);
    }
    for (const format of ['text', 'openmetrics'] as const) {
      // What the exporter serves (its own renderer), checked against prom-client's for the same registry.
      const text = (await renderRegistry(registry as unknown as Registry, format)).toString();
      registry.setContentType(format === 'openmetrics' ? Registry.OPENMETRICS_CONTENT_TYPE : Registry.PROMETHEUS_CONTENT_TYPE);
      expect(text, format).toBe(await registry.metrics());
      if (format === 'openmetrics') expect(text.endsWith('# EOF\n')).toBe(true);
      const samples = parseExposition(text).filter((s) => s.name === 'escaping_test');
      expect(samples).toHaveLength(ODD.length);
      for (const s of samples) {
        const odd = ODD[Number(s.labels.n)]!;
        expect(s.labels.name, format).toBe(odd);
        expect(s.labels.container_label_com_docker_compose_project, format).toBe(odd);
      }
      // No raw newline inside a sample line: each sample is exactly one line.
      expect(text.split('\n').filter((l) => l.startsWith('escaping_test{'))).toHaveLength(ODD.length);
    }
  });
});

describe('one registry serving both exposition formats', () => {
  it('keeps counter names (`_total`) in the text format after an OpenMetrics render', async () => {
    const registry = new Registry();
    const orchestrator = new Orchestrator(
      [{ name: 'events', defaultEnabled: true, help: '', create: ({ registry: r }) => {
        const c = new Counter({ name: 'escaping_events_total', help: 'h', labelNames: ['name'], registers: [r] });
        return { update: () => void c.inc({ name: 'a"b' }) };
      } }],
      { events: true },
      { registry, logger: silent, health: new LoopHealth() } as unknown as CollectorDeps,
      silent,
    );
    const text1 = (await orchestrator.render('text')).body.toString();
    const om = (await orchestrator.render('openmetrics')).body.toString();
    const text2 = (await orchestrator.render('text')).body.toString();
    expect(text1).toMatch(/^escaping_events_total\{name="a\\"b"\} 1$/m);
    // OpenMetrics names the family without the suffix and its samples with it.
    expect(om).toContain('# TYPE escaping_events counter');
    expect(om).toMatch(/^escaping_events_total\{name="a\\"b"\} 2$/m);
    // prom-client 15.1.3 renames the counter in place for OpenMetrics (Registry.metrics() sets
    // metric.name); a text scrape after that must still say escaping_events_total.
    expect(text2).toContain('# TYPE escaping_events_total counter');
    expect(text2).toMatch(/^escaping_events_total\{name="a\\"b"\} 3$/m);
  });
});
