import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { Backoff } from '../../src/backoff.js';
import type { CollectorDeps } from '../../src/collectors/collector.js';
import { containersCollector } from '../../src/collectors/containers.js';
import { createExporterMetrics } from '../../src/exporter-metrics.js';
import { Inventory } from '../../src/inventory/inventory.js';
import { Orchestrator } from '../../src/orchestrator.js';
import { buildConfig } from '../helpers/config.js';
import { parseMetrics, value } from '../helpers/prom.js';
import { FakeEngine, hexId, until } from './fake-docker.js';
import { LoopHealth } from '../../src/loop-health.js';

/**
 * Valid JSON of the wrong shape (or a body docker-modem handed over unparsed) from the container
 * list or an inspect is a failure of the containers collector, counted once per answer, and the
 * series already rendered stay as they were until the engine answers sensibly again.
 */

const logger = pino({ level: 'silent' });
const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

const WEB = 'a1'.repeat(32);
const DB = 'b2'.repeat(32);

/** An inventory on a fake engine holding web (running) and db, behind the orchestrator, once current. */
async function rig() {
  const engine = new FakeEngine();
  engine.put(WEB, 'web');
  engine.put(DB, 'db');
  const registry = new Registry();
  const metrics = createExporterMetrics(registry);
  const config = buildConfig([], {});
  const inventory = new Inventory({ config, docker: engine, logger, metrics, backoff: () => new Backoff(1, 5) });
  const deps = { config, docker: engine, inventory, registry, logger, metrics, health: new LoopHealth() } as CollectorDeps;
  const orchestrator = new Orchestrator([containersCollector], { containers: true }, deps, logger);
  cleanups.push(() => inventory.stop());
  inventory.start();
  await until(() => inventory.current);
  /** What a scrape shows of the containers collector. */
  const scrape = async () => {
    const s = parseMetrics((await orchestrator.render('text')).body.toString());
    return {
      success: value(s, 'docker_exporter_collector_success', { collector: 'containers' }),
      names: s.filter((x) => x.name === 'docker_container_info').map((x) => x.labels.name).sort(),
      webRunning: value(s, 'docker_container_state', { name: 'web', state: 'running' }),
      listErrors: value(s, 'docker_exporter_parse_errors_total', { source: 'containers' }) ?? 0,
      inspectErrors: value(s, 'docker_exporter_parse_errors_total', { source: 'inspect' }) ?? 0,
    };
  };
  return { engine, inventory, scrape };
}

/** A promise the test opens when it has looked. */
function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void;
  const wait = new Promise<void>((r) => (open = r));
  return { wait, open };
}

const GOOD_ENTRIES = [{ Id: WEB, Names: ['/web'] }, { Id: DB, Names: ['/db'] }];

const LISTS: Array<[string, unknown]> = [
  ['an object', { Id: WEB, Names: ['/web'] }],
  ['a string', 'garbage'],
  ['a number', 42],
  // The engine lists no containers as [], never null (daemon/list.go, reduceContainers).
  ['null', null],
  ['bytes docker-modem could not parse', Buffer.from('<html>502 Bad Gateway</html>')],
  ['an array with a non-object entry', [GOOD_ENTRIES[0], 'junk', GOOD_ENTRIES[1]]],
  ['an array with a null entry', [...GOOD_ENTRIES, null]],
  ['an array with an entry without Id', [GOOD_ENTRIES[0], { Names: ['/db'] }]],
  ['an array with an entry whose Id is a number', [GOOD_ENTRIES[0], { Id: 2, Names: ['/db'] }]],
  ['an array with an entry whose Id is not 64-hex', [GOOD_ENTRIES[0], { Id: '../../info', Names: ['/db'] }]],
  ['an array with an entry whose Names is a string', [GOOD_ENTRIES[0], { Id: DB, Names: '/db' }]],
];

describe('container list of the wrong shape', () => {
  it.each(LISTS)('%s: counted once, collector failed, last good containers kept; the next good list recovers', async (_, garbage) => {
    const r = await rig();
    expect(await r.scrape()).toEqual({ success: 1, names: ['db', 'web'], webRunning: 1, listErrors: 0, inspectErrors: 0 });

    // After a reconnect the engine sends garbage, and the retry is held until the test has looked.
    const held = gate();
    const listed = r.engine.lists;
    r.engine.listReplies = [garbage];
    r.engine.beforeList = () => (r.engine.lists > listed + 1 ? held.wait : undefined);
    r.engine.dropStreams();
    try {
      await until(() => r.engine.lists === listed + 2);
      expect(r.inventory.current).toBe(false);
      expect(r.inventory.lastError).toMatch(/^container list failed: container list/);
      expect(await r.scrape()).toEqual({ success: 0, names: ['db', 'web'], webRunning: 1, listErrors: 1, inspectErrors: 0 });
      // What happened meanwhile is picked up by the good list.
      r.engine.containers.delete(DB);
    } finally {
      held.open();
    }
    await until(() => r.inventory.current);
    expect(await r.scrape()).toEqual({ success: 1, names: ['web'], webRunning: 1, listErrors: 1, inspectErrors: 0 });
  });

  it('takes a list entry with Names null as nameless, not as garbage', async () => {
    // The engine sends [] for a dead container without a name; null can only mean the same.
    const r = await rig();
    const listed = r.engine.lists;
    r.engine.listReplies = [[GOOD_ENTRIES[0], { Id: DB, Names: null }]];
    r.engine.dropStreams();
    await until(() => r.engine.lists > listed && r.inventory.current);
    expect(await r.scrape()).toEqual({ success: 1, names: ['db', 'web'], webRunning: 1, listErrors: 0, inspectErrors: 0 });
  });
});

const INSPECTS: Array<[string, (good: Record<string, any>) => unknown]> = [
  ['an array', (g) => [g]],
  ['a string', () => 'garbage'],
  ['bytes docker-modem could not parse', () => Buffer.from('{"Id": "truncat')],
  ['null', () => null],
  ['without Id', ({ Id: _, ...g }) => g],
  ['about another container', (g) => ({ ...g, Id: hexId(3) })],
  ['without State', ({ State: _, ...g }) => g],
  ['with State a string', (g) => ({ ...g, State: 'exited' })],
  ['with State.Status a number', (g) => ({ ...g, State: { ...g.State, Status: 2 } })],
  ['with State.ExitCode a string', (g) => ({ ...g, State: { ...g.State, ExitCode: '0' } })],
  ['with Name a number', (g) => ({ ...g, Name: 5 })],
  ['with Config an array', (g) => ({ ...g, Config: [] })],
  ['with RestartCount a string', (g) => ({ ...g, RestartCount: '3' })],
];

describe('inspect answer of the wrong shape', () => {
  it.each(INSPECTS)('%s: counted once, collector failed, the container\'s last good series kept; a good answer recovers', async (_, garble) => {
    const r = await rig();
    // web stops; the engine's answer for it is garbage, and the retry is held until the test has looked.
    r.engine.put(WEB, 'web', { status: 'exited' });
    r.engine.inspectReplies.set(WEB, [garble(structuredClone(r.engine.containers.get(WEB)!))]);
    const held = gate();
    const seen = r.engine.inspects.length;
    r.engine.beforeInspect = (id) => (id === WEB && r.engine.inspects.length > seen + 1 ? held.wait : undefined);
    r.engine.send({ type: 'container', action: 'die', id: WEB });
    try {
      await until(() => r.engine.inspects.length === seen + 2);
      expect(r.inventory.current).toBe(false);
      expect(r.inventory.lastError).toMatch(/^container a1a1a1a1a1a1 could not be read: /);
      expect(await r.scrape()).toEqual({ success: 0, names: ['db', 'web'], webRunning: 1, listErrors: 0, inspectErrors: 1 });
    } finally {
      held.open();
    }
    await until(() => r.inventory.current);
    expect(await r.scrape()).toEqual({ success: 1, names: ['db', 'web'], webRunning: 0, listErrors: 0, inspectErrors: 1 });
  });

  it('a new container whose first answer is garbage is missing and fails the collector until it is read', async () => {
    const r = await rig();
    const id = hexId(3);
    r.engine.put(id, 'new');
    r.engine.inspectReplies.set(id, [['not', 'an', 'object']]);
    const held = gate();
    const seen = r.engine.inspects.length;
    r.engine.beforeInspect = (i) => (i === id && r.engine.inspects.length > seen + 1 ? held.wait : undefined);
    r.engine.send({ type: 'container', action: 'create', id });
    try {
      await until(() => r.engine.inspects.length === seen + 2);
      expect(await r.scrape()).toMatchObject({ success: 0, names: ['db', 'web'], inspectErrors: 1 });
    } finally {
      held.open();
    }
    await until(() => r.inventory.current);
    expect(await r.scrape()).toMatchObject({ success: 1, names: ['db', 'new', 'web'], inspectErrors: 1 });
  });

  it('an inspect that fails (a body the client could not parse, say) also fails the collector until it is read again', async () => {
    const r = await rig();
    r.engine.put(WEB, 'web', { status: 'exited' });
    r.engine.inspectReplies.set(WEB, [new Error('/containers/{id}/json: invalid JSON in the response body')]);
    const held = gate();
    const seen = r.engine.inspects.length;
    r.engine.beforeInspect = (id) => (id === WEB && r.engine.inspects.length > seen + 1 ? held.wait : undefined);
    r.engine.send({ type: 'container', action: 'die', id: WEB });
    try {
      await until(() => r.engine.inspects.length === seen + 2);
      expect(r.inventory.lastError).toBe('container a1a1a1a1a1a1 could not be read: /containers/{id}/json: invalid JSON in the response body');
      // Counted where it was found (the client), not again here.
      expect(await r.scrape()).toEqual({ success: 0, names: ['db', 'web'], webRunning: 1, listErrors: 0, inspectErrors: 0 });
    } finally {
      held.open();
    }
    await until(() => r.inventory.current);
    expect(await r.scrape()).toMatchObject({ success: 1, webRunning: 0 });
  });

  it('a container that never answers sensibly is retried, and forgotten once destroyed', async () => {
    const r = await rig();
    r.engine.containers.set(DB, { Id: DB, Name: '/db', State: 'broken' });
    r.engine.send({ type: 'container', action: 'die', id: DB });
    await until(() => r.engine.inspects.filter((i) => i === DB).length >= 4);
    const failing = await r.scrape();
    expect(failing).toMatchObject({ success: 0, names: ['db', 'web'] });
    expect(failing.inspectErrors).toBeGreaterThanOrEqual(3);
    r.engine.containers.delete(DB);
    r.engine.send({ type: 'container', action: 'destroy', id: DB });
    await until(() => r.inventory.current);
    expect(await r.scrape()).toMatchObject({ success: 1, names: ['web'] });
  });
});
