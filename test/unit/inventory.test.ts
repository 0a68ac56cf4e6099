import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { Backoff } from '../../src/backoff.js';
import { createExporterMetrics } from '../../src/exporter-metrics.js';
import { Inventory, labelNameFor } from '../../src/inventory/inventory.js';
import { buildConfig } from '../helpers/config.js';
import { FakeEngine, hexId, until } from './fake-docker.js';
import type { RequestOptions } from '../../src/docker/client.js';
import type { RouteName } from '../../src/docker/routes.js';

const logger = pino({ level: 'silent' });
const inventories: Inventory[] = [];
afterEach(async () => {
  for (const i of inventories.splice(0)) await i.stop();
});

function rig(args: string[] = [], engine = new FakeEngine()) {
  const registry = new Registry();
  const metrics = createExporterMetrics(registry);
  const inventory = new Inventory({ config: buildConfig(args, {}), docker: engine, logger, metrics, backoff: () => new Backoff(1, 5) });
  inventories.push(inventory);
  const log: string[] = [];
  inventory.on('upsert', (r, prev) => log.push(`${prev ? 'update' : 'add'} ${r.name}`));
  inventory.on('remove', (r) => log.push(`remove ${r.name}`));
  inventory.on('synced', () => log.push('synced'));
  return { engine, inventory, log, registry };
}

const names = (i: Inventory): string[] => i.list().map((r) => r.name).sort();

describe('Inventory', () => {
  it('lists and inspects every container once the events stream is up, then reports current', async () => {
    const engine = new FakeEngine();
    engine.put(hexId(1), 'web', { labels: { 'com.docker.compose.project': 'shop', 'other.label': 'x' } });
    engine.put(hexId(2), 'db', { status: 'exited' });
    const { inventory, log } = rig([], engine);
    expect(inventory.current).toBe(false);
    expect(inventory.lastError).toBe('not synchronised with the engine yet');
    inventory.start();
    await until(() => inventory.current);
    expect(names(inventory)).toEqual(['db', 'web']);
    expect(log.at(-1)).toBe('synced');
    expect(inventory.lastError).toBeUndefined();
    expect(inventory.get(hexId(1))!.promLabels).toEqual({
      id: hexId(1),
      name: 'web',
      image: 'busybox',
      container_label_com_docker_compose_project: 'shop',
      container_label_com_docker_compose_service: '',
      container_label_com_docker_swarm_service_name: '',
      container_label_com_docker_stack_namespace: '',
    });
    expect(inventory.get(hexId(2))!.state).toBe('exited');
  });

  it('follows create, state changes, rename and destroy events', async () => {
    const { engine, inventory, log } = rig();
    inventory.start();
    await until(() => inventory.current);
    const id = hexId(7);
    engine.put(id, 'app', { status: 'created' });
    engine.send({ type: 'container', action: 'create', id });
    await until(() => inventory.get(id)?.state === 'created');
    engine.put(id, 'app', { status: 'paused' });
    engine.send({ type: 'container', action: 'pause', id });
    await until(() => inventory.get(id)?.state === 'paused');
    engine.put(id, 'renamed', { status: 'paused' });
    engine.send({ type: 'container', action: 'rename', id });
    await until(() => inventory.get(id)?.name === 'renamed');
    expect(inventory.get(id)!.promLabels.name).toBe('renamed');
    engine.put(id, 'renamed', { status: 'running', memory: 64 << 20 });
    engine.send({ type: 'container', action: 'update', id });
    await until(() => inventory.get(id)?.spec.memory === 64 << 20);
    engine.containers.delete(id);
    engine.send({ type: 'container', action: 'destroy', id });
    expect(inventory.get(id)).toBeUndefined();
    expect(log.slice(1)).toEqual(['add app', 'update app', 'update renamed', 'update renamed', 'remove renamed']);
  });

  it('ignores events that cannot change what inspect says', async () => {
    const engine = new FakeEngine();
    engine.put(hexId(1), 'web');
    const { inventory } = rig([], engine);
    inventory.start();
    await until(() => inventory.current);
    const before = engine.inspects.length;
    for (const action of ['exec_create: sh', 'exec_start: sh', 'exec_die', 'attach', 'resize', 'top', 'commit']) {
      engine.send({ type: 'container', action, id: hexId(1) });
    }
    engine.send({ type: 'container', action: 'start', id: hexId(2) }); // a container it never saw: inspected, 404, nothing
    await until(() => engine.inspects.length === before + 1);
    await new Promise((r) => setTimeout(r, 300));
    expect(engine.inspects.slice(before)).toEqual([hexId(2)]);
    expect(names(inventory)).toEqual(['web']);
  });

  it('re-reads a health-checked container after each probe (exec_die), as the failing streak changes without a health_status event', async () => {
    const engine = new FakeEngine();
    const id = hexId(3);
    engine.put(id, 'hc', { health: 'unhealthy', failingStreak: 3 });
    const { inventory } = rig([], engine);
    inventory.start();
    await until(() => inventory.current);
    engine.put(id, 'hc', { health: 'unhealthy', failingStreak: 4 });
    engine.send({ type: 'container', action: 'exec_create: /bin/sh -c exit 1', id });
    engine.send({ type: 'container', action: 'exec_start: /bin/sh -c exit 1', id });
    engine.send({ type: 'container', action: 'exec_die', id });
    await until(() => inventory.get(id)?.failingStreak === 4);
  });

  it('does not re-read a health-checked container after a passing probe while its streak is 0, and does after a failing one or the first pass after failures', async () => {
    const engine = new FakeEngine();
    const id = hexId(4);
    engine.put(id, 'hc', { health: 'healthy', failingStreak: 0 });
    const { inventory } = rig([], engine);
    inventory.start();
    await until(() => inventory.current);
    const probe = (exitCode: string): void => void engine.send({ type: 'container', action: 'exec_die', id, attributes: { execID: 'e', exitCode } });
    const before = engine.inspects.length;
    probe('0');
    probe('0');
    // Past the settle delay (250 ms): a re-read would have been sent by now.
    await new Promise((r) => setTimeout(r, 400));
    expect(engine.inspects.length).toBe(before);
    engine.put(id, 'hc', { health: 'healthy', failingStreak: 1 });
    probe('1');
    await until(() => inventory.get(id)?.failingStreak === 1);
    expect(engine.inspects.length).toBe(before + 1);
    engine.put(id, 'hc', { health: 'healthy', failingStreak: 0 });
    probe('0');
    await until(() => inventory.get(id)?.failingStreak === 0);
    expect(engine.inspects.length).toBe(before + 2);
  });

  it('does not bring back a container whose inspect answer arrives after its destroy event', async () => {
    const engine = new FakeEngine();
    const { inventory } = rig([], engine);
    inventory.start();
    await until(() => inventory.current);
    const id = hexId(9);
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    engine.beforeInspect = (i) => (i === id ? held : undefined);
    engine.put(id, 'short-lived');
    engine.send({ type: 'container', action: 'create', id });
    await until(() => engine.inspects.includes(id));
    // The engine answered from a container that existed; it is destroyed before the answer lands.
    engine.containers.delete(id);
    engine.send({ type: 'container', action: 'destroy', id });
    release();
    await new Promise((r) => setTimeout(r, 20));
    expect(inventory.get(id)).toBeUndefined();
    // Later events about it (there are none from a real engine) change nothing either.
    engine.send({ type: 'container', action: 'die', id });
    await new Promise((r) => setTimeout(r, 20));
    expect(inventory.size).toBe(0);
  });

  it('leaves nothing behind after 200 containers are created and destroyed in a burst', async () => {
    const { engine, inventory } = rig();
    inventory.start();
    await until(() => inventory.current);
    let maxInFlight = 0;
    let inFlight = 0;
    engine.beforeInspect = async () => {
      inFlight++;
      maxInFlight = Math.max(maxInFlight, inFlight);
      await new Promise((r) => setTimeout(r, 1));
      inFlight--;
    };
    for (let n = 100; n < 300; n++) {
      engine.put(hexId(n), `burst-${n}`);
      engine.send({ type: 'container', action: 'create', id: hexId(n) });
      engine.send({ type: 'container', action: 'start', id: hexId(n) });
    }
    for (let n = 100; n < 300; n++) {
      engine.containers.delete(hexId(n));
      engine.send({ type: 'container', action: 'die', id: hexId(n) });
      engine.send({ type: 'container', action: 'destroy', id: hexId(n) });
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(inventory.size).toBe(0);
    expect(maxInFlight).toBeLessThanOrEqual(8);
  });

  it('counts oom events per container, including those that arrive before its first inspect', async () => {
    const { engine, inventory } = rig();
    inventory.start();
    await until(() => inventory.current);
    const id = hexId(4);
    engine.put(id, 'hog');
    engine.send({ type: 'container', action: 'oom', id });
    engine.send({ type: 'container', action: 'oom', id });
    await until(() => inventory.get(id) !== undefined);
    engine.send({ type: 'container', action: 'oom', id });
    await until(() => inventory.get(id)?.oomEvents === 3);
  });

  it('after a reconnect, resyncs: drops what vanished while it was away and picks up what appeared', async () => {
    const engine = new FakeEngine();
    engine.put(hexId(1), 'stays');
    engine.put(hexId(2), 'goes');
    const { inventory, log } = rig([], engine);
    inventory.start();
    await until(() => inventory.current);
    engine.refuseConnections = Infinity;
    engine.dropStreams();
    await until(() => !inventory.current);
    expect(inventory.lastError).toMatch(/events stream/);
    // Changes the inventory cannot hear about (and the engine's buffer does not hold).
    engine.containers.delete(hexId(2));
    engine.put(hexId(3), 'new');
    engine.refuseConnections = 0;
    await until(() => inventory.current);
    expect(names(inventory)).toEqual(['new', 'stays']);
    expect(log.filter((l) => l === 'synced')).toHaveLength(2);
  });

  it('keeps a container created while a sync was listing', async () => {
    const engine = new FakeEngine();
    const { inventory } = rig([], engine);
    const id = hexId(5);
    // The list is answered before the container exists; its create event is handled (and its
    // inspect answered) before the sync compares the list with what it holds.
    let firstList = true;
    const get = engine.get.bind(engine);
    engine.get = async <T>(route: RouteName, opts?: RequestOptions): Promise<T> => {
      if (route !== 'containers' || !firstList) return get(route, opts);
      firstList = false;
      const listed = await get<T>(route, opts);
      engine.put(id, 'racer');
      engine.send({ type: 'container', action: 'create', id });
      await until(() => inventory.get(id) !== undefined);
      return listed;
    };
    inventory.start();
    await until(() => inventory.current);
    expect(names(inventory)).toEqual(['racer']);
  });

  it('retries a failed sync while the stream is up, and is not current until one succeeds', async () => {
    const engine = new FakeEngine();
    engine.put(hexId(1), 'web');
    engine.failLists = Infinity;
    const { inventory } = rig([], engine);
    inventory.start();
    await until(() => engine.lists >= 3);
    expect(inventory.current).toBe(false);
    expect(inventory.lastError).toMatch(/^container list failed: connect ECONNREFUSED/);
    engine.failLists = 0;
    await until(() => inventory.current);
    expect(names(inventory)).toEqual(['web']);
  });

  it('holds only containers that pass --container.include and --container.exclude, following renames', async () => {
    const engine = new FakeEngine();
    engine.put(hexId(1), 'app-web');
    engine.put(hexId(2), 'app-web-debug');
    engine.put(hexId(3), 'other');
    const { inventory } = rig(['--container.include', '^app-', '--container.exclude', '-debug$'], engine);
    inventory.start();
    await until(() => inventory.current);
    expect(names(inventory)).toEqual(['app-web']);
    engine.put(hexId(1), 'retired-web');
    engine.send({ type: 'container', action: 'rename', id: hexId(1) });
    engine.put(hexId(3), 'app-other');
    engine.send({ type: 'container', action: 'rename', id: hexId(3) });
    await until(() => names(inventory).join() === 'app-other');
    expect(inventory.exported('app-x')).toBe(true);
    expect(inventory.exported('app-x-debug')).toBe(false);

    // An excluded container's events cost no inspect, except a rename, which may let it in.
    const before = engine.inspects.length;
    for (const action of ['start', 'die', 'pause', 'health_status: healthy']) engine.send({ type: 'container', action, id: hexId(2) });
    await new Promise((r) => setTimeout(r, 50));
    expect(engine.inspects.length).toBe(before);
    engine.put(hexId(2), 'app-web-2');
    engine.send({ type: 'container', action: 'rename', id: hexId(2) });
    await until(() => names(inventory).join() === 'app-other,app-web-2');
  });

  it('takes the container\'s own name from a list entry that also holds link aliases', async () => {
    const engine = new FakeEngine();
    engine.put(hexId(1), 'db');
    engine.on('containers', () => [{ Id: hexId(1), Names: ['/web/db-alias', '/db'] }]);
    const { inventory } = rig(['--container.include', '^db$'], engine);
    inventory.start();
    await until(() => inventory.current);
    expect(names(inventory)).toEqual(['db']);
  });

  it('sanitises allowlisted label keys (two keys that become one label are refused by config)', () => {
    expect(labelNameFor('com.example/team-name')).toBe('container_label_com_example_team_name');
    const { inventory } = rig(['--container.label-allowlist', 'com.example/team-name,com.example/team-name,a.b']);
    expect(inventory.labelNames).toEqual(['id', 'name', 'image', 'container_label_com_example_team_name', 'container_label_a_b']);
  });

  it('counts an unusable inspect payload and keeps going, not current until the container is read or gone', async () => {
    const engine = new FakeEngine();
    engine.put(hexId(1), 'web');
    engine.containers.set(hexId(2), { Id: 'not-an-id', Name: '/broken' });
    const { inventory, registry } = rig([], engine);
    inventory.start();
    // Read again with backoff, each unusable answer counted.
    await until(() => engine.inspects.filter((id) => id === hexId(2)).length >= 3);
    expect(names(inventory)).toEqual(['web']);
    expect(inventory.current).toBe(false);
    expect(inventory.lastError).toBe('container 000000000000 could not be read: inspect payload without a 64-hex Id');
    const errors = await registry.getSingleMetric('docker_exporter_parse_errors_total')!.get();
    expect(errors.values.find((v) => v.labels.source === 'inspect')?.value).toBeGreaterThanOrEqual(3);
    engine.containers.delete(hexId(2));
    await until(() => inventory.current);
    expect(names(inventory)).toEqual(['web']);
  });

  it('stays alive when a listener throws', async () => {
    const engine = new FakeEngine();
    const { inventory } = rig([], engine);
    inventory.on('upsert', () => {
      throw new Error('collector bug');
    });
    inventory.start();
    await until(() => inventory.current);
    engine.put(hexId(1), 'web');
    engine.send({ type: 'container', action: 'create', id: hexId(1) });
    engine.put(hexId(2), 'db');
    engine.send({ type: 'container', action: 'create', id: hexId(2) });
    await until(() => inventory.size === 2);
    expect(inventory.current).toBe(true);
  });
});
