import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { CollectorDeps } from '../../src/collectors/collector.js';
import { engineCollector } from '../../src/collectors/engine.js';
import { createExporterMetrics } from '../../src/exporter-metrics.js';
import { renderRegistry } from '../../src/exposition.js';
import { LoopHealth } from '../../src/loop-health.js';
import { parseContainerInspect, parseContainerList } from '../../src/parse/container.js';
import { parseDiskUsage } from '../../src/parse/df.js';
import { parseEvent } from '../../src/parse/event.js';
import { parseStats } from '../../src/parse/stats.js';
import { buildConfig } from '../helpers/config.js';
import { FakeEngine } from './fake-docker.js';

/**
 * The payloads of Docker 25, 27 and 29 (API 1.44, 1.47, 1.52; test/fixtures/api-1.4x/README.md says
 * where each shape comes from), each parsed to the golden file beside it: `<name>.golden.json` for
 * the parsers, `engine.golden.prom` for what the engine collector makes of /version and /info.
 * UPDATE_GOLDEN=1 rewrites them; review the diff. The exact figures a user would see are also
 * asserted by hand below, so a golden file rewritten wrongly does not pass unnoticed.
 */
const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'fixtures');
const DIRS = ['api-1.44', 'api-1.47', 'api-1.52'];
const UPDATE = process.env.UPDATE_GOLDEN === '1';

const read = (dir: string, name: string): string => fs.readFileSync(path.join(ROOT, dir, name), 'utf8');
const json = (dir: string, name: string): unknown => JSON.parse(read(dir, name));
const lines = (dir: string, name: string): string[] => read(dir, name).split('\n').filter((l) => l.trim() !== '');

/** Compares `text` with the golden file (rewritten under UPDATE_GOLDEN=1); a missing golden file fails. */
function golden(dir: string, name: string, text: string): void {
  const file = path.join(ROOT, dir, name);
  if (UPDATE) fs.writeFileSync(file, text);
  expect(text).toBe(fs.readFileSync(file, 'utf8'));
}

const asJson = (value: unknown): string => `${JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? v.toString() : v), 2)}\n`;

/** What the engine collector exports from this /version (its ApiVersion as the negotiated maximum) and /info. */
async function engineSeries(dir: string): Promise<string> {
  const version = json(dir, 'version.json') as { ApiVersion: string };
  const registry = new Registry();
  const engine = new FakeEngine().on('ping', () => 'OK').on('info', () => json(dir, 'info.json'));
  engine.engineApiVersion = version.ApiVersion;
  engine.apiVersion = version.ApiVersion;
  const deps = { registry, docker: engine, config: buildConfig([]), health: new LoopHealth(), metrics: createExporterMetrics(registry), logger: pino({ level: 'silent' }), inventory: undefined as never } as CollectorDeps;
  await engineCollector.create(deps).update();
  const text = (await renderRegistry(registry, 'text')).toString();
  // Only the collector's own families: the exporter's request and parse counters are not the payload's.
  return `${text.split(/\n(?=# HELP )/).filter((b) => /^# HELP (docker_up|docker_engine_|machine_)/.test(b)).join('\n').trimEnd()}\n`;
}

describe.each(DIRS)('%s payloads', (dir) => {
  it('container list', () => golden(dir, 'containers.golden.json', asJson(parseContainerList(json(dir, 'containers.json')))));
  it('inspect of a running, health-checked container', () => golden(dir, 'inspect-running.golden.json', asJson(parseContainerInspect(json(dir, 'inspect-running.json')))));
  it('inspect of an exited container', () => golden(dir, 'inspect-exited.golden.json', asJson(parseContainerInspect(json(dir, 'inspect-exited.json')))));
  it('one-shot stats', () => golden(dir, 'stats-one-shot.golden.json', asJson(parseStats(json(dir, 'stats-one-shot.json')))));
  it('a stats stream line', () => golden(dir, 'stats-stream.golden.json', asJson(lines(dir, 'stats-stream.ndjson').map((l) => parseStats(JSON.parse(l))))));
  it('events', () => golden(dir, 'events.golden.json', asJson(lines(dir, 'events.ndjson').map((l) => parseEvent(JSON.parse(l), l)))));
  it('system df', () => golden(dir, 'system-df.golden.json', asJson(parseDiskUsage(json(dir, 'system-df.json')))));
  it('version and info, through the engine collector', async () => golden(dir, 'engine.golden.prom', await engineSeries(dir)));

  it('lose nothing to the fields added or removed since 1.41', () => {
    const running = parseContainerInspect(json(dir, 'inspect-running.json'));
    expect(running).toMatchObject({ name: 'bench-record-limited', image: 'docker-exporter-test/busybox:latest', state: 'running', health: 'healthy', failingStreak: 0, networkMode: 'default', pid: 30445 });
    expect(running.labels['org.label-schema.name']).toBe('web');
    expect(parseContainerInspect(json(dir, 'inspect-exited.json'))).toMatchObject({ state: 'exited', exitCode: 3, health: 'none' });
    expect(parseContainerList(json(dir, 'containers.json')).map((c) => c.names)).toEqual([['/bench-record-limited'], ['/bench-record-exited']]);
    const stats = parseStats(json(dir, 'stats-one-shot.json'))!;
    // `os_type` (1.52) is not a field of a wrong type: nothing is counted malformed.
    expect(stats.malformed).toBe(0);
    expect(stats.memoryUsageBytes).toBe(2240512);
    const events = lines(dir, 'events.ndjson').map((l) => parseEvent(JSON.parse(l), l)!);
    // 1.52 dropped `status`, `id` and `from`: the type, action and actor still come from Type, Action and Actor.
    expect(events.every((e) => e.type !== '' && e.action !== '' && e.actorId !== '')).toBe(true);
    expect(events.filter((e) => e.type === 'container').every((e) => /^[0-9a-f]{64}$/.test(e.actorId))).toBe(true);
    expect(events.filter((e) => e.action === 'health_status: healthy')).toHaveLength(lines(dir, 'events.ndjson').filter((l) => l.includes('"Action":"health_status: healthy"')).length);
  });
});

describe('the containerd image store (Docker 27 opted in, 29 by default)', () => {
  it('image ids are the index digest; the container keeps the reference it was created with', () => {
    for (const dir of ['api-1.47', 'api-1.52']) {
      const info = parseContainerInspect(json(dir, 'inspect-running.json'));
      expect(info.imageId).toBe('sha256:2919d0172f7524b2d8df9e50066a682669e6d170ac0f6a49676d54358fe970b5');
      expect(info.image).toBe('docker-exporter-test/busybox:latest');
    }
  });

  it('df: an image with Containers and SharedSize -1 (no platform of this host) counts, as neither active nor shared', () => {
    const legacy = parseDiskUsage(json('api-1.47', 'system-df.json'));
    const classic = parseDiskUsage(JSON.parse(fs.readFileSync(path.join(ROOT, 'df', 'engine-20.10-classic.json'), 'utf8')));
    expect(legacy.kinds.images!.total).toBe(classic.kinds.images!.total + 1);
    expect(legacy.kinds.images!.active).toBe(classic.kinds.images!.active);
    // SIZE is the engine's LayersSize; an image not in use (-1 is "not counted", taken as in use by
    // the CLI's rule, but its SharedSize -1 leaves its size out of "used") is reclaimable.
    expect(legacy.kinds.images!.size).toBe(classic.kinds.images!.size + 3842);
    expect(legacy.kinds.images!.reclaimable).toBe(classic.kinds.images!.reclaimable + 3842);
    // The 1.52 verbose answer carries the engine's own totals, -1 images included.
    const verbose = parseDiskUsage(json('api-1.52', 'system-df.json'));
    const raw = json('api-1.52', 'system-df.json') as { ImageUsage: { TotalCount: number; ActiveCount: number; TotalSize: number; Reclaimable: number } };
    expect(verbose.kinds.images).toEqual({ total: raw.ImageUsage.TotalCount, active: raw.ImageUsage.ActiveCount, size: raw.ImageUsage.TotalSize, reclaimable: raw.ImageUsage.Reclaimable });
    expect(verbose.containers['ca6bef11d97fa7a63a66784da91a204634e834a13f2d429a8675d9f95e7bd10a']).toEqual({ sizeRw: 33792, sizeRootFs: 2325164 });
  });

  it('engine facts: machine_* are NCPU and MemTotal; the storage driver is the snapshotter', async () => {
    const text = await engineSeries('api-1.52');
    expect(text).toContain('\nmachine_cpu_cores 8\n');
    expect(text).toContain('\nmachine_memory_bytes 33364770816\n');
    expect(text).toMatch(/docker_engine_info\{version="29\.0\.0",api_version="1\.52",[^}]*storage_driver="overlayfs",[^}]*cgroup_version="2"\} 1/);
  });
});
