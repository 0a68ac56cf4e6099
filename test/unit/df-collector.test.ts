import fs from 'node:fs';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { CollectorDeps } from '../../src/collectors/collector.js';
import { dfCollector } from '../../src/collectors/df.js';
import { createExporterMetrics } from '../../src/exporter-metrics.js';
import type { Inventory } from '../../src/inventory/inventory.js';
import { Orchestrator } from '../../src/orchestrator.js';
import { buildConfig } from '../helpers/config.js';
import { parseMetrics, value } from '../helpers/prom.js';
import { FakeEngine, until } from './fake-docker.js';
import { LoopHealth } from '../../src/loop-health.js';

const logger = pino({ level: 'silent' });
const fixture = (name: string): unknown => JSON.parse(fs.readFileSync(new URL(`../fixtures/df/${name}`, import.meta.url), 'utf8'));
const stops: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const s of stops.splice(0)) await s();
});

/** The df collector behind the orchestrator, on an engine whose `/system/df` answers only when the test says. */
function rig() {
  const asking: Array<(payload: unknown) => void> = [];
  const docker = new FakeEngine().on('df', (opts) =>
    new Promise((resolve, reject) => {
      asking.push(resolve);
      opts.signal?.addEventListener('abort', () => reject(new Error('aborted')), { once: true });
    }),
  );
  const registry = new Registry();
  const metrics = createExporterMetrics(registry);
  const inventory = { labelNames: ['id', 'name', 'image'], get: () => undefined } as unknown as Inventory;
  const config = buildConfig(['--df.interval', '10ms'], {});
  const deps = { config, docker, inventory, registry, logger, metrics, health: new LoopHealth() } as CollectorDeps;
  const orchestrator = new Orchestrator([dfCollector], { df: true }, deps, logger);
  stops.push(() => orchestrator.stop());
  orchestrator.start();
  return {
    /** Answers the run waiting for `/system/df`, and waits until that run has ended (the next one asks). */
    async answer(payload: unknown): Promise<void> {
      await until(() => asking.length > 0);
      asking.shift()!(payload);
      await until(() => asking.length > 0);
    },
    async scrape() {
      const s = parseMetrics((await orchestrator.render('text')).body.toString());
      return {
        success: value(s, 'docker_exporter_collector_success', { collector: 'df' }),
        images: value(s, 'docker_disk_usage_objects', { kind: 'images' }),
        volumeBytes: value(s, 'docker_volume_size_bytes', { volume: 'dfrec-vol-used' }),
        lastSuccess: value(s, 'docker_exporter_df_last_success_timestamp_seconds'),
        parseErrors: value(s, 'docker_exporter_parse_errors_total', { source: 'df' }) ?? 0,
      };
    },
  };
}

const GARBAGE: Array<[string, unknown]> = [
  ['an array', [fixture('engine-20.10-classic.json')]],
  ['a string', 'garbage'],
  ['a number', 7],
  ['null', null],
  ['bytes docker-modem could not parse', Buffer.from('<html>504 Gateway Timeout</html>')],
  ['an object of neither shape', { Message: 'hello' }],
  ['Images a string', { LayersSize: 0, Images: 'x' }],
  ['Volumes an object', { LayersSize: 0, Volumes: {} }],
  ['a BuildCache entry that is not an object', { LayersSize: 0, BuildCache: [1] }],
  ['LayersSize a string', { LayersSize: '2414264' }],
  ['ImageUsage a string (API 1.52)', { ImageUsage: 'x' }],
  ['ContainerUsage.Items an object (API 1.52)', { ContainerUsage: { TotalCount: 1, Items: {} } }],
  ['VolumeUsage.TotalSize a string (API 1.52)', { VolumeUsage: { TotalSize: '1' } }],
];

describe('df collector on answers of the wrong shape', () => {
  it.each(GARBAGE)('%s: counted once, run failed, last good figures kept; the next good answer recovers', async (_, garbage) => {
    const r = rig();
    await r.answer(fixture('engine-20.10-classic.json'));
    const good = await r.scrape();
    expect(good).toMatchObject({ success: 1, images: 5, volumeBytes: 71680, parseErrors: 0 });
    expect(good.lastSuccess).toBeGreaterThan(0);

    await r.answer(garbage);
    expect(await r.scrape()).toEqual({ ...good, success: 0, parseErrors: 1 });

    await r.answer(fixture('v1.52-type-volume.json'));
    const recovered = await r.scrape();
    // The new answer replaces the old one whole: it has volumes only.
    expect(recovered).toMatchObject({ success: 1, images: undefined, volumeBytes: 71680, parseErrors: 1 });
    expect(recovered.lastSuccess).toBeGreaterThanOrEqual(good.lastSuccess!);
  });

  it('takes the null lists of old engines (no objects of a kind) as empty, not as garbage', async () => {
    const r = rig();
    await r.answer({ LayersSize: 0, Images: null, Containers: null, Volumes: null, BuildCache: null });
    expect(await r.scrape()).toMatchObject({ success: 1, images: 0, parseErrors: 0 });
  });
});
