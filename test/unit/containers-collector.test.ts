import fs from 'node:fs';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { CollectorDeps } from '../../src/collectors/collector.js';
import { containersCollector } from '../../src/collectors/containers.js';
import { labelNameFor, type ContainerRecord, type Inventory } from '../../src/inventory/inventory.js';
import { parseContainerInspect } from '../../src/parse/container.js';
import { parseMetrics, value } from '../helpers/prom.js';

const DIR = new URL('../fixtures/inspect/', import.meta.url);
const FIXTURES = fs.readdirSync(DIR).filter((f) => f.endsWith('.json')).sort();
const GOLDEN = new URL('containers.golden.prom', DIR);
const ALLOWLIST = ['com.docker.compose.project', 'com.docker.compose.service'];
const LABEL_NAMES = ['id', 'name', 'image', ...ALLOWLIST.map(labelNameFor)];

function record(payload: unknown, oomEvents = 0): ContainerRecord {
  const info = parseContainerInspect(payload);
  const promLabels: Record<string, string> = { id: info.id, name: info.name, image: info.image };
  for (const key of ALLOWLIST) promLabels[labelNameFor(key)] = info.labels[key] ?? '';
  return { ...info, promLabels, oomEvents };
}

const fixtureRecords = (): ContainerRecord[] =>
  FIXTURES.map((f) => record(JSON.parse(fs.readFileSync(new URL(f, DIR), 'utf8')), f === 'oom-killed.json' ? 1 : 0));

/** Just what the collector reads of the inventory. */
function fakeInventory(records: ContainerRecord[], current = true, lastError?: string) {
  return { labelNames: LABEL_NAMES, list: () => records, current, lastError };
}

function collector(inventory: ReturnType<typeof fakeInventory>) {
  const registry = new Registry();
  const deps = { registry, inventory: inventory as unknown as Inventory, logger: pino({ level: 'silent' }) } as unknown as CollectorDeps;
  return { registry, collector: containersCollector.create(deps) };
}

describe('containers collector', () => {
  it('renders the recorded containers as in containers.golden.prom', async () => {
    const { registry, collector: c } = collector(fakeInventory(fixtureRecords()));
    await c.update();
    const text = await registry.metrics();
    // UPDATE_GOLDEN=1 rewrites the golden file; review the diff before committing it.
    if (process.env.UPDATE_GOLDEN) fs.writeFileSync(GOLDEN, text);
    expect(text).toBe(fs.readFileSync(GOLDEN, 'utf8'));
  });

  it('encodes state, health and limits as the catalogue says', async () => {
    const { registry, collector: c } = collector(fakeInventory(fixtureRecords()));
    await c.update();
    const s = parseMetrics(await registry.metrics());
    const of = (name: string) => ({ name });

    // One series per state and per health status, 1 on the current one.
    expect(s.filter((x) => x.name === 'docker_container_state' && x.labels.name === 'c3f-restarting').map((x) => [x.labels.state, x.value])).toEqual([
      ['created', 0], ['running', 0], ['paused', 0], ['restarting', 1], ['removing', 0], ['exited', 0], ['dead', 0],
    ]);
    expect(s.filter((x) => x.name === 'docker_container_health_status' && x.labels.name === 'c3f-unhealthy').map((x) => [x.labels.status, x.value])).toEqual([
      ['none', 0], ['starting', 0], ['healthy', 0], ['unhealthy', 1],
    ]);
    expect(value(s, 'container_health_state', of('c3f-healthy'))).toBe(1);
    expect(value(s, 'container_health_state', of('c3f-unhealthy'))).toBe(0);
    expect(value(s, 'container_health_state', of('c3f-starting'))).toBe(0);
    expect(value(s, 'container_health_state', of('c3f-nohealth'))).toBe(-1);
    expect(value(s, 'docker_container_health_failing_streak', of('c3f-unhealthy'))).toBe(16);
    expect(value(s, 'docker_container_health_failing_streak', of('c3f-nohealth'))).toBeUndefined();

    expect(value(s, 'docker_container_restarts_total', of('c3f-restarting'))).toBe(6);
    expect(value(s, 'docker_container_exit_code', of('c3f-exited7'))).toBe(7);
    expect(value(s, 'docker_container_oom_killed', of('c3f-oom'))).toBe(1);
    expect(value(s, 'docker_container_oom_events_total', of('c3f-oom'))).toBe(1);
    expect(value(s, 'docker_container_oom_killed', of('c3f-exited7'))).toBe(0);

    // Times omitted while the engine says "never".
    expect(value(s, 'docker_container_started_at_seconds', of('c3f-created'))).toBeUndefined();
    expect(value(s, 'container_start_time_seconds', of('c3f-created'))).toBeUndefined();
    expect(value(s, 'docker_container_finished_at_seconds', of('c3f-nohealth'))).toBeUndefined();
    expect(value(s, 'docker_container_created_seconds', of('c3f-created'))).toBeCloseTo(Date.parse('2026-11-28T01:23:15.525Z') / 1000, 2);
    expect(value(s, 'docker_container_finished_at_seconds', of('c3f-exited7'))).toBeCloseTo(Date.parse('2026-11-28T01:23:08.033Z') / 1000, 2);

    // Limits: the period and shares in effect, the quota only when there is one.
    expect(value(s, 'container_spec_cpu_quota', of('c3f-nanocpus'))).toBe(150000);
    expect(value(s, 'container_spec_cpu_period', of('c3f-nanocpus'))).toBe(100000);
    expect(value(s, 'container_spec_cpu_quota', of('c3f-limits'))).toBe(50000);
    expect(value(s, 'container_spec_cpu_period', of('c3f-limits'))).toBe(200000);
    expect(value(s, 'container_spec_cpu_shares', of('c3f-limits'))).toBe(512);
    expect(value(s, 'container_spec_cpu_quota', of('c3f-nohealth'))).toBeUndefined();
    expect(value(s, 'container_spec_cpu_period', of('c3f-nohealth'))).toBe(100000);
    expect(value(s, 'container_spec_cpu_shares', of('c3f-nohealth'))).toBe(1024);
    expect(value(s, 'container_spec_memory_limit_bytes', of('c3f-limits'))).toBe(67108864);
    expect(value(s, 'container_spec_memory_reservation_limit_bytes', of('c3f-limits'))).toBe(33554432);
    expect(value(s, 'container_spec_memory_swap_limit_bytes', of('c3f-limits'))).toBe(134217728);
    expect(value(s, 'container_spec_memory_limit_bytes', of('c3f-nohealth'))).toBe(0);

    const info = s.find((x) => x.name === 'docker_container_info' && x.labels.name === 'c3f-healthy')!;
    expect(info.labels).toEqual({
      id: 'a07d6bed61f3daa0bd6a749a0450f40d128ea846a50038ea65c9578e542b25f7',
      name: 'c3f-healthy',
      image: 'docker-exporter-test/busybox:latest',
      container_label_com_docker_compose_project: 'fixture',
      container_label_com_docker_compose_service: 'web',
      image_id: 'sha256:a175a23584c047a8a050e299eadbeb452bacdbd0ddd531afec153d101be0a4bf',
      restart_policy: 'no',
      ports: '',
    });
    expect(info.value).toBe(1);
  });

  it('drops the series of a container that left the inventory, and sets counters to absolute values', async () => {
    const records = fixtureRecords();
    const inventory = fakeInventory(records);
    const { registry, collector: c } = collector(inventory);
    await c.update();
    await c.update(); // a counter rendered twice must not double
    let s = parseMetrics(await registry.metrics());
    expect(value(s, 'docker_container_restarts_total', { name: 'c3f-restarting' })).toBe(6);
    expect(s.filter((x) => x.name === 'docker_container_info')).toHaveLength(FIXTURES.length);

    records.splice(records.findIndex((r) => r.name === 'c3f-restarting'), 1);
    await c.update();
    s = parseMetrics(await registry.metrics());
    expect(s.filter((x) => x.labels.name === 'c3f-restarting')).toEqual([]);
    expect(s.filter((x) => x.name === 'docker_container_info')).toHaveLength(FIXTURES.length - 1);
  });

  it('replaces a changed container\'s series (a rename, a lost health check) and follows oom events counted in place', async () => {
    const records = fixtureRecords();
    const { registry, collector: c } = collector(fakeInventory(records));
    await c.update();
    const i = records.findIndex((r) => r.name === 'c3f-unhealthy');
    const old = records[i]!;
    records[i] = { ...old, name: 'renamed', health: 'none', promLabels: { ...old.promLabels, name: 'renamed' } };
    const oom = records.find((r) => r.name === 'c3f-oom')!;
    oom.oomEvents++;
    await c.update();
    const s = parseMetrics(await registry.metrics());
    expect(s.filter((x) => x.labels.name === 'c3f-unhealthy')).toEqual([]);
    expect(value(s, 'docker_container_health_status', { name: 'renamed', status: 'none' })).toBe(1);
    expect(value(s, 'docker_container_health_failing_streak', { name: 'renamed' })).toBeUndefined();
    expect(s.filter((x) => x.labels.name === 'renamed')).toHaveLength(s.filter((x) => x.labels.name === 'c3f-nohealth').length);
    expect(value(s, 'docker_container_oom_events_total', { name: 'c3f-oom' })).toBe(2);
    expect(s.filter((x) => x.name === 'docker_container_info')).toHaveLength(FIXTURES.length);
  });

  it('fails with the inventory\'s reason while it is not current, and still renders what it holds', async () => {
    const { registry, collector: c } = collector(fakeInventory(fixtureRecords(), false, 'events stream: connect ECONNREFUSED'));
    await expect(Promise.resolve().then(() => c.update())).rejects.toThrow('events stream: connect ECONNREFUSED');
    const s = parseMetrics(await registry.metrics());
    expect(s.filter((x) => x.name === 'docker_container_info')).toHaveLength(FIXTURES.length);
  });

  it('renders no per-container series for an empty inventory', async () => {
    const { registry, collector: c } = collector(fakeInventory([]));
    await c.update();
    expect(parseMetrics(await registry.metrics())).toEqual([]);
  });
});
