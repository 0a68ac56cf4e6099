import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { Backoff } from '../../src/backoff.js';
import { ContainerMetrics } from '../../src/collectors/containers.js';
import { createExporterMetrics } from '../../src/exporter-metrics.js';
import { renderRegistry } from '../../src/exposition.js';
import { Inventory, labelGlob } from '../../src/inventory/inventory.js';
import { buildConfig } from '../helpers/config.js';
import { findAll, parseMetrics, value } from '../helpers/prom.js';
import { FakeEngine, hexId, until } from './fake-docker.js';

const logger = pino({ level: 'silent' });
const inventories: Inventory[] = [];
afterEach(async () => {
  for (const i of inventories.splice(0)) await i.stop();
});

function rig(allowlist: string, extra: string[] = []) {
  const engine = new FakeEngine();
  const registry = new Registry();
  const metrics = createExporterMetrics(registry);
  const inventory = new Inventory({ config: buildConfig(['--container.label-allowlist', allowlist, ...extra], {}), docker: engine, logger, metrics, backoff: () => new Backoff(1, 5) });
  inventories.push(inventory);
  const containers = new ContainerMetrics(registry, inventory.labelNames);
  const scrape = async () => {
    containers.render(inventory.list());
    return parseMetrics((await renderRegistry(registry, 'text')).toString());
  };
  return { engine, inventory, scrape };
}

const SCHEMA = { 'org.label-schema.name': 'web', 'org.label-schema.vcs-ref': 'abc123' };

describe('label allowlist globs', () => {
  it('match whole keys: * any run of characters, dots included; ? one; other characters literally', () => {
    const g = labelGlob('org.label-schema.*');
    expect(g.test('org.label-schema.name')).toBe(true);
    expect(g.test('org.label-schema.a.b')).toBe(true);
    expect(g.test('org.label-schemaXname')).toBe(false);
    expect(g.test('x.org.label-schema.name')).toBe(false);
    expect(labelGlob('a?c').test('abc')).toBe(true);
    expect(labelGlob('a?c').test('abbc')).toBe(false);
    expect(labelGlob('a+(b)').test('a+(b)')).toBe(true);
  });

  it('give every container the union of matching keys, empty where it lacks one, after the exact keys', async () => {
    const { engine, inventory, scrape } = rig('com.docker.compose.project,org.label-schema.*');
    engine.put(hexId(1), 'web', { labels: { ...SCHEMA, 'com.docker.compose.project': 'shop', 'other': 'x' } });
    engine.put(hexId(2), 'db', { labels: { 'org.label-schema.version': '2' } });
    inventory.start();
    await until(() => inventory.current);
    expect(inventory.labelNames).toEqual([
      'id', 'name', 'image', 'container_label_com_docker_compose_project',
      'container_label_org_label_schema_name', 'container_label_org_label_schema_vcs_ref', 'container_label_org_label_schema_version',
    ]);
    expect(inventory.get(hexId(1))!.promLabels).toEqual({
      id: hexId(1), name: 'web', image: 'busybox', container_label_com_docker_compose_project: 'shop',
      container_label_org_label_schema_name: 'web', container_label_org_label_schema_vcs_ref: 'abc123', container_label_org_label_schema_version: '',
    });
    expect(Object.keys(inventory.get(hexId(2))!.promLabels)).toEqual(inventory.labelNames);
    const s = await scrape();
    const states = findAll(s, 'docker_container_state');
    expect(states).toHaveLength(2 * 7);
    for (const sample of states) expect(Object.keys(sample.labels).sort()).toEqual([...inventory.labelNames, 'state'].sort());
    expect(value(s, 'docker_exporter_container_label_keys_dropped', { reason: 'limit' })).toBe(0);
  });

  it('re-label every container when a new key arrives, and keep the key after its last container is gone', async () => {
    const { engine, inventory, scrape } = rig('org.label-schema.*');
    engine.put(hexId(1), 'old', { labels: {} });
    inventory.start();
    await until(() => inventory.current);
    expect(inventory.labelNames).toEqual(['id', 'name', 'image']);
    const before = await scrape();
    expect(findAll(before, 'container_health_state').map((x) => x.labels)).toEqual([{ id: hexId(1), name: 'old', image: 'busybox' }]);

    engine.put(hexId(2), 'new', { labels: SCHEMA });
    engine.send({ type: 'container', action: 'create', id: hexId(2) });
    await until(() => inventory.get(hexId(2)) !== undefined);
    // The old container's series now carry the new labels, empty; its label-less series are gone.
    expect(inventory.get(hexId(1))!.promLabels).toEqual({ id: hexId(1), name: 'old', image: 'busybox', container_label_org_label_schema_name: '', container_label_org_label_schema_vcs_ref: '' });
    const after = await scrape();
    expect(findAll(after, 'container_health_state').map((x) => x.labels).sort((a, b) => a.name!.localeCompare(b.name!))).toEqual([
      { id: hexId(2), name: 'new', image: 'busybox', container_label_org_label_schema_name: 'web', container_label_org_label_schema_vcs_ref: 'abc123' },
      { id: hexId(1), name: 'old', image: 'busybox', container_label_org_label_schema_name: '', container_label_org_label_schema_vcs_ref: '' },
    ]);

    engine.containers.delete(hexId(2));
    engine.send({ type: 'container', action: 'destroy', id: hexId(2) });
    await until(() => inventory.get(hexId(2)) === undefined);
    const gone = await scrape();
    expect(findAll(gone, 'container_health_state').map((x) => x.labels)).toEqual([
      { id: hexId(1), name: 'old', image: 'busybox', container_label_org_label_schema_name: '', container_label_org_label_schema_vcs_ref: '' },
    ]);
  });

  it('stop at --container.label-glob-max keys, counting and leaving out the rest', async () => {
    const { engine, inventory, scrape } = rig('x.*', ['--container.label-glob-max', '2']);
    engine.put(hexId(1), 'a', { labels: { 'x.c': '3', 'x.a': '1', 'x.b': '2', 'x.d': '4' } });
    inventory.start();
    await until(() => inventory.current);
    // A container's keys are taken in sorted order, so which ones make it is not left to chance.
    expect(inventory.labelNames).toEqual(['id', 'name', 'image', 'container_label_x_a', 'container_label_x_b']);
    const s = await scrape();
    expect(value(s, 'docker_exporter_container_label_keys_dropped', { reason: 'limit' })).toBe(2);
    expect(value(s, 'docker_exporter_container_label_keys_dropped', { reason: 'clash' })).toBe(0);
    // Seen again (a resync, another container), a left-out key is not counted twice.
    engine.put(hexId(2), 'b', { labels: { 'x.d': '4' } });
    engine.send({ type: 'container', action: 'create', id: hexId(2) });
    await until(() => inventory.get(hexId(2)) !== undefined);
    expect(value(await scrape(), 'docker_exporter_container_label_keys_dropped', { reason: 'limit' })).toBe(2);
  });

  it('leave out a matched key whose label name is already taken, by an exact key or an earlier match', async () => {
    const { engine, inventory, scrape } = rig('a.b,a*');
    engine.put(hexId(1), 'one', { labels: { 'a.b': 'exact', 'a-b': 'clash1', 'a.c': 'ok', 'a_c': 'clash2' } });
    inventory.start();
    await until(() => inventory.current);
    expect(inventory.labelNames).toEqual(['id', 'name', 'image', 'container_label_a_b', 'container_label_a_c']);
    // 'a.c' sorts before 'a_c', so it is the one kept.
    expect(inventory.get(hexId(1))!.promLabels).toMatchObject({ container_label_a_b: 'exact', container_label_a_c: 'ok' });
    expect(value(await scrape(), 'docker_exporter_container_label_keys_dropped', { reason: 'clash' })).toBe(2);
  });

  it('checks the flags: exact keys that clash are refused; the limit is a number', () => {
    expect(() => buildConfig(['--container.label-allowlist', 'a.b,a-b'])).toThrow('both become the label container_label_a_b');
    expect(() => buildConfig(['--container.label-allowlist', 'a.*,a-*'])).not.toThrow();
    expect(() => buildConfig(['--container.label-glob-max', 'many'])).toThrow('--container.label-glob-max');
    expect(buildConfig([]).container.labelGlobMax).toBe(16);
  });

  it('without a glob, exports no dropped-keys gauge', async () => {
    const { engine, inventory, scrape } = rig('com.docker.compose.project');
    engine.put(hexId(1), 'a', { labels: { 'org.label-schema.name': 'x' } });
    inventory.start();
    await until(() => inventory.current);
    expect(findAll(await scrape(), 'docker_exporter_container_label_keys_dropped')).toEqual([]);
  });
});
