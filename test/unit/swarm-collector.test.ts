import fs from 'node:fs';
import pino from 'pino';
import { Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import type { CollectorDeps } from '../../src/collectors/collector.js';
import { engineCollector } from '../../src/collectors/engine.js';
import { swarmCollector } from '../../src/collectors/swarm.js';
import { EngineStatus, EngineTimeout } from '../../src/docker/errors.js';
import type { RouteName } from '../../src/docker/routes.js';
import { createExporterMetrics } from '../../src/exporter-metrics.js';
import { renderRegistry } from '../../src/exposition.js';
import { LoopHealth } from '../../src/loop-health.js';
import { ConfigError } from '../../src/config.js';
import { buildConfig } from '../helpers/config.js';
import { FakeEngine } from './fake-docker.js';

const FIXTURES = new URL('../fixtures/swarm/', import.meta.url);
const fixture = (name: string): unknown => JSON.parse(fs.readFileSync(new URL(name, FIXTURES), 'utf8'));

/** The engine's own answer to a swarm route on an engine that is not a manager (recorded, API 1.41). */
const NOT_MANAGER = (route: string) =>
  new EngineStatus(`${route}: HTTP 503: This node is not a swarm manager. Use "docker swarm init" or "docker swarm join" to connect this node to swarm and try again.`, 503, route as never);

type Payloads = Partial<Record<'info' | 'nodes' | 'services' | 'tasks', unknown>>;

/** The collector against a fake engine answering `payloads` (a function answer is called per request; an Error is thrown). */
function setup(payloads: Payloads, argv: string[] = []) {
  const registry = new Registry();
  const engine = new FakeEngine();
  const answers: Payloads = { ...payloads };
  for (const route of ['info', 'nodes', 'services', 'tasks'] as const) {
    engine.on(route, () => {
      const a = answers[route];
      if (a instanceof Error) throw a;
      if (a === undefined) throw new Error(`test: no ${route} payload`);
      return structuredClone(a);
    });
  }
  const metrics = createExporterMetrics(registry);
  const deps: CollectorDeps = { registry, docker: engine, config: buildConfig(argv, {}), health: new LoopHealth(), metrics, logger: pino({ level: 'silent' }), inventory: undefined as never };
  const collector = swarmCollector.create(deps);
  const asked = (route: RouteName) => engine.requests.filter((r) => r.route === route);
  /** The swarm series and the parse error counts: the lines the collector writes. */
  const lines = async () =>
    (await renderRegistry(registry, 'text'))
      .toString()
      .split('\n')
      .filter((l) => /^(docker_swarm_|docker_exporter_parse_errors_total)/.test(l))
      .join('\n') + '\n';
  return { answers, engine, asked, collector, lines, deps };
}

const RECORDED: Payloads = { info: fixture('info-1.41.json'), nodes: fixture('nodes-1.41.json'), services: fixture('services-1.41.json'), tasks: fixture('tasks-1.41.json') };
const HANDMADE: Payloads = { info: fixture('info-1.44.json'), nodes: fixture('nodes-1.44.json'), services: fixture('services-1.44.json'), tasks: fixture('tasks-1.44.json') };

/** Compares with test/fixtures/swarm/<name>; UPDATE_GOLDEN=1 rewrites it. */
function golden(name: string, got: string): void {
  const file = new URL(name, FIXTURES);
  if (process.env.UPDATE_GOLDEN === '1') fs.writeFileSync(file, got);
  expect(got).toBe(fs.readFileSync(file, 'utf8'));
}

describe('swarm collector', () => {
  it('on a one-node swarm (recorded, API 1.41): every service, its current tasks by state, the node, and the leader gauge', async () => {
    const { collector, lines } = setup(RECORDED);
    await collector.update();
    const out = await lines();
    golden('recorded-1.41.prom', out);
    // What `docker service ls` showed at recording, by hand: web 3/3, glob 1/1, fail 0/2.
    expect(out).toContain('docker_swarm_service_replicas_desired{service_id="t9ons057anhis0kwyixgvzlm2",service_name="dxrec_web",mode="replicated",stack="dxrec"} 3');
    expect(out).toContain('docker_swarm_service_replicas_running{service_id="t9ons057anhis0kwyixgvzlm2",service_name="dxrec_web",mode="replicated",stack="dxrec"} 3');
    expect(out).toContain('docker_swarm_service_replicas_running{service_id="w0vdk30qd9o74oc33wm7ngk1k",service_name="dxrec_fail",mode="replicated",stack=""} 0');
    // The finished job: the engine says DesiredTasks 1 (REPLICAS "0/1 (2/2 completed)"); nothing is left to run.
    expect(out).toContain('docker_swarm_service_replicas_desired{service_id="bzqdra3a7v68awmalsen9qrq3",service_name="dxrec_job",mode="replicated-job",stack=""} 0');
    expect(out).toContain('docker_swarm_service_tasks{service_id="bzqdra3a7v68awmalsen9qrq3",service_name="dxrec_job",mode="replicated-job",stack="",state="complete"} 2');
    // The failing service's 8 retired failed tasks are history, not state: only its 2 current ones count.
    expect(out).not.toMatch(/service_name="dxrec_fail".*state="failed"/);
    expect(out).toContain('docker_swarm_node_info{node_id="xe36p67uq944e8kq92j38l0j1",hostname="vm",role="manager",availability="active",state="ready",leader="true"} 1');
    expect(out).toMatch(/^docker_swarm_leader 1$/m);
  });

  it('on a follower manager of a five-node swarm (API 1.44+ shape): only docker_swarm_leader 0, and no service, task or node request', async () => {
    const { collector, lines, asked } = setup(HANDMADE);
    await collector.update();
    golden('follower-1.44.prom', await lines());
    expect(asked('services')).toHaveLength(0);
    expect(asked('tasks')).toHaveLength(0);
  });

  it('with --swarm.all-managers the follower exports everything', async () => {
    const { collector, lines } = setup(HANDMADE, ['--swarm.all-managers']);
    await collector.update();
    const out = await lines();
    golden('all-managers-1.44.prom', out);
    expect(out).toMatch(/^docker_swarm_leader 0$/m);
    // 3 wanted, 2 running, 1 pending (no suitable node): the alert's case.
    expect(out).toContain('docker_swarm_service_tasks{service_id="svcapiaaaaaaaaaaaaaaaaaaa",service_name="shop_api",mode="replicated",stack="shop",state="pending"} 1');
    // min(MaxConcurrent 2, 5 − 2 completed) = 2; the global job's one task still running.
    expect(out).toContain('docker_swarm_service_replicas_desired{service_id="svcmigrateaaaaaaaaaaaaaaa",service_name="migrate",mode="replicated-job",stack=""} 2');
    expect(out).toContain('docker_swarm_service_replicas_desired{service_id="svcpruneaaaaaaaaaaaaaaaaa",service_name="prune",mode="global-job",stack=""} 1');
    expect(out).toContain('node_id="wrk2aaaaaaaaaaaaaaaaaaaaa",hostname="worker-2",role="worker",availability="active",state="down",leader="false"} 1');
    expect(out).not.toContain('svcgone');
  });

  it('without ServiceStatus (an engine that ignored status=true) counts from the tasks, as the CLI did before API 1.41', async () => {
    const services = (HANDMADE.services as Array<Record<string, unknown>>).map(({ ServiceStatus: _, ...s }) => s);
    const { collector, lines } = setup({ ...HANDMADE, services }, ['--swarm.all-managers']);
    await collector.update();
    const out = await lines();
    // shop_api: of its two running tasks one is on a node that is down.
    expect(out).toContain('docker_swarm_service_replicas_running{service_id="svcapiaaaaaaaaaaaaaaaaaaa",service_name="shop_api",mode="replicated",stack="shop"} 1');
    expect(out).toContain('docker_swarm_service_replicas_desired{service_id="svcapiaaaaaaaaaaaaaaaaaaa",service_name="shop_api",mode="replicated",stack="shop"} 3');
    // The global service's current tasks: 4 (the orphaned one on the down node is retired).
    expect(out).toContain('docker_swarm_service_replicas_desired{service_id="svcagentaaaaaaaaaaaaaaaaa",service_name="monitoring_agent",mode="global",stack="monitoring"} 4');
    // The replicated job's completed count from its tasks: 2, so min(2, 5 − 2).
    expect(out).toContain('docker_swarm_service_replicas_desired{service_id="svcmigrateaaaaaaaaaaaaaaa",service_name="migrate",mode="replicated-job",stack=""} 2');
  });

  it('is silent on an engine outside a swarm: no series, no error, no swarm request', async () => {
    const { collector, lines, asked } = setup({ info: fixture('info-inactive-1.41.json') });
    await collector.update();
    await collector.update();
    expect(await lines()).toBe('\n');
    expect(asked('info')).toHaveLength(1);
    expect(asked('nodes')).toHaveLength(0);
  });

  it.each(['1.44', '1.47', '1.52'])('is silent on the API %s engine of test/fixtures/api-*/info.json (outside a swarm)', async (v) => {
    const info = JSON.parse(fs.readFileSync(new URL(`../fixtures/api-${v}/info.json`, import.meta.url), 'utf8')) as unknown;
    const { collector, lines, asked } = setup({ info });
    await collector.update();
    expect(await lines()).toBe('\n');
    expect(asked('nodes')).toHaveLength(0);
  });

  it('is silent on a worker, and on an engine whose /info has no Swarm member (Podman)', async () => {
    const worker = structuredClone(RECORDED.info) as { Swarm: Record<string, unknown> };
    worker.Swarm.ControlAvailable = false;
    for (const info of [worker, { ServerVersion: '4.9.3' }]) {
      const { collector, lines, asked } = setup({ info });
      await collector.update();
      expect(await lines()).toBe('\n');
      expect(asked('nodes')).toHaveLength(0);
    }
  });

  it('a 503 "not a swarm manager" mid-run (demoted, left) clears its series without failing, and asks /info again', async () => {
    const { collector, lines, answers, asked } = setup(RECORDED);
    await collector.update();
    expect(await lines()).toContain('docker_swarm_leader 1');
    answers.nodes = NOT_MANAGER('/nodes');
    await collector.update();
    expect(await lines()).toBe('\n');
    answers.info = fixture('info-inactive-1.41.json');
    await collector.update();
    expect(asked('info')).toHaveLength(2);
    expect(asked('nodes')).toHaveLength(2);
    expect(await lines()).toBe('\n');
  });

  it('a malformed payload is a counted parse error that fails the collector and keeps the last good series', async () => {
    const { collector, lines, answers } = setup(RECORDED);
    await collector.update();
    const good = await lines();
    for (const [route, bad] of [['services', { message: 'not a list' }], ['tasks', [{ ID: 'x', ServiceID: 7 }, 'garbage']], ['nodes', [null]]] as const) {
      const saved = answers[route];
      answers[route] = bad;
      await expect(collector.update()).rejects.toThrow(/payload|item/);
      answers[route] = saved;
    }
    const after = await lines();
    expect(after).toContain('docker_exporter_parse_errors_total{source="services"} 1');
    expect(after).toContain('docker_exporter_parse_errors_total{source="tasks"} 1');
    expect(after).toContain('docker_exporter_parse_errors_total{source="nodes"} 1');
    const swarmOnly = (s: string) => s.split('\n').filter((l) => l.startsWith('docker_swarm_')).join('\n');
    expect(swarmOnly(after)).toBe(swarmOnly(good));
    // And once the engine answers well again, so does the collector.
    await collector.update();
  });

  it('a Swarm member of the wrong shape is a parse error of info, not "not a manager"', async () => {
    const info = { ServerVersion: '20.10.24', Swarm: { LocalNodeState: 'active', ControlAvailable: 'yes', NodeID: 'x' } };
    const { collector, lines } = setup({ info });
    await expect(collector.update()).rejects.toThrow(/ControlAvailable/);
    expect(await lines()).toContain('docker_exporter_parse_errors_total{source="info"} 1');
  });

  it('other engine failures fail the collector (a timeout of /tasks), keeping the last good series', async () => {
    const { collector, lines, answers } = setup(RECORDED);
    await collector.update();
    answers.tasks = new EngineTimeout('/tasks', 10_000);
    await expect(collector.update()).rejects.toThrow(/timed out/);
    expect(await lines()).toContain('docker_swarm_service_replicas_running{service_id="t9ons057anhis0kwyixgvzlm2",service_name="dxrec_web",mode="replicated",stack="dxrec"} 3');
  });

  it('asks /services with status=true, and /info at most every 30 s', async () => {
    const { collector, asked } = setup(RECORDED);
    for (let i = 0; i < 3; i++) await collector.update();
    expect(asked('info')).toHaveLength(1);
    expect(asked('services').map((r) => r.opts.query)).toEqual([{ status: true }, { status: true }, { status: true }]);
  });

  it('shares the engine collector\'s /info: one request for both in a scrape, whichever asks first', async () => {
    const { collector, asked, engine, deps } = setup(RECORDED);
    engine.on('ping', () => 'OK');
    const engineFacts = engineCollector.create(deps);
    // As the orchestrator runs them: together, the engine collector pinging first.
    await Promise.all([engineFacts.update(), collector.update()]);
    await Promise.all([engineFacts.update(), collector.update()]);
    expect(asked('info')).toHaveLength(1);
  });

  it('--swarm.all-managers takes booleans and refuses anything else', () => {
    expect(buildConfig([]).swarm.allManagers).toBe(false);
    expect(buildConfig(['--swarm.all-managers']).swarm.allManagers).toBe(true);
    expect(buildConfig(['--swarm.all-managers=false']).swarm.allManagers).toBe(false);
    expect(buildConfig([], { DOCKER_EXPORTER_SWARM_ALL_MANAGERS: 'true' }).swarm.allManagers).toBe(true);
    expect(() => buildConfig(['--swarm.all-managers=maybe'])).toThrow(ConfigError);
    expect(() => buildConfig(['--swarm.all-managers=maybe'])).toThrow('--swarm.all-managers: "maybe" is not a boolean');
  });
});
