import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { docker, TEST_IMAGE, TEST_LABEL, waitFor } from '../helpers/docker.js';
import { startExporter, type RunningExporter } from '../helpers/exporter.js';
import { value } from '../helpers/prom.js';
import { REPO_ROOT, requireTool } from '../helpers/tools.js';
import { buildExporterImage, EXPORTER_IMAGE } from './image-build.js';
import { freePort, startPrometheus, type RunningPrometheus } from './prometheus-server.js';

const run = promisify(execFile);
const STACK_FILE = `${REPO_ROOT}/deploy/swarm/docker-exporter-stack.yml`;
const SOCKET = '/var/run/docker.sock';

/** `docker <args>` with extra environment (the stack file's variables). */
async function dockerEnv(args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  try {
    const { stdout } = await run('docker', args, { env: { ...process.env, ...env }, timeout: 120_000 });
    return stdout.trim();
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`docker ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

describe('the deployment files', () => {
  it('stack files resolve with docker stack config, and fail clearly without DOCKER_GID', async () => {
    const env = { DOCKER_GID: '4242', DOCKER_EXPORTER_PORT: '19764', DOCKER_EXPORTER_IMAGE: 'example/docker-exporter:1' };
    const exporter = await dockerEnv(['stack', 'config', '-c', STACK_FILE], env);
    expect(exporter).toContain('mode: global');
    expect(exporter).toMatch(/- mode: host\n\s+target: 9764\n\s+published: 19764/);
    expect(exporter).toContain('user: 65534:4242');
    expect(exporter).toContain('image: example/docker-exporter:1');
    const prometheus = await dockerEnv(['stack', 'config', '-c', `${REPO_ROOT}/deploy/swarm/prometheus-stack.yml`], env);
    expect(prometheus).toContain('node.role == manager');
    await expect(dockerEnv(['stack', 'config', '-c', STACK_FILE], { DOCKER_GID: '' })).rejects.toThrow(/set DOCKER_GID to the group id/);
  });

  it('every Prometheus example passes promtool check config', async () => {
    const promtool = requireTool('promtool', 'prometheus');
    const files = [`${REPO_ROOT}/deploy/swarm/prometheus.yml`, ...fs.readdirSync(`${REPO_ROOT}/deploy/prometheus`).map((f) => `${REPO_ROOT}/deploy/prometheus/${f}`)];
    expect(files.length).toBeGreaterThanOrEqual(3);
    for (const file of files) {
      const { stdout } = await run(promtool, ['check', 'config', file]);
      expect(stdout).toContain('SUCCESS');
    }
  });
});

/** `docker info`'s view of the engine's swarm membership: "inactive false", "active true", … */
async function swarmState(): Promise<string> {
  return docker(['info', '--format', '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}']);
}

/** The exporter's docker_swarm_ sample lines (no HELP or TYPE). */
function swarmLines(text: string): string[] {
  return text.split('\n').filter((l) => l.startsWith('docker_swarm_'));
}

/** Collectors the swarm tests do not read, left out to spare the shared machine. */
const LEAN = ['--no-collector.stats', '--no-collector.df', '--no-collector.events', '--no-collector.containers'];

describe('the swarm collector on an engine outside a swarm', () => {
  let exporter: RunningExporter | undefined;
  afterAll(async () => {
    await exporter?.stop();
  });

  it('exports no docker_swarm_ series at all, and succeeds', async (ctx) => {
    // Someone else's swarm on the shared engine: this case cannot be had now.
    if ((await swarmState()).startsWith('active')) ctx.skip();
    exporter = await startExporter(LEAN);
    for (let i = 0; i < 3; i++) {
      const text = await exporter.scrape();
      expect(text).toMatch(/^docker_exporter_collector_success\{collector="swarm"\} 1$/m);
      expect(swarmLines(text)).toEqual([]);
    }
    // Told by /info alone: no swarm route was asked.
    const samples = await exporter.samples();
    expect(value(samples, 'docker_exporter_docker_requests_total', { endpoint: '/nodes' })).toBeUndefined();
    expect(exporter.logs.filter((l) => /"level":(40|50)/.test(l))).toEqual([]);
  });
});

describe('on a one-node swarm', () => {
  let createdSwarm = false;
  let gwbridgeExisted = true;

  beforeAll(async () => {
    const state = await swarmState();
    if (state.startsWith('active')) {
      // Someone's swarm: use it as it is, and leave it as it was.
      if (!state.endsWith('true')) throw new Error('the test engine is a swarm worker; the swarm tests need a manager');
    } else {
      gwbridgeExisted = (await docker(['network', 'ls', '-q', '--filter', 'name=^docker_gwbridge$'])) !== '';
      await docker(['swarm', 'init', '--advertise-addr', '127.0.0.1']);
      createdSwarm = true;
    }
  }, 120_000);

  afterAll(async () => {
    if (createdSwarm && (await swarmState()).startsWith('active')) await docker(['swarm', 'leave', '--force']);
    if (createdSwarm && !gwbridgeExisted) await docker(['network', 'rm', 'docker_gwbridge']).catch(() => undefined);
  }, 120_000);

  describe('on a one-node swarm: the stack runs one exporter per node, found by dockerswarm_sd_configs', () => {
    const stack = `dxswarm${process.pid}`;
    const service = `${stack}_docker-exporter`;
    let deployed = false;
    let port = 0;
    let prometheus: RunningPrometheus | undefined;

    beforeAll(async () => {
      requireTool('prometheus', 'prometheus');
      await buildExporterImage();
      port = await freePort();
      await dockerEnv(['stack', 'deploy', '--resolve-image', 'never', '-c', STACK_FILE, stack], {
        DOCKER_GID: String(fs.statSync(SOCKET).gid),
        DOCKER_EXPORTER_PORT: String(port),
        DOCKER_EXPORTER_IMAGE: EXPORTER_IMAGE,
        // A task counts as running once its first health check passed.
        DOCKER_EXPORTER_HEALTH_INTERVAL: '1s',
      });
      deployed = true;
    }, 900_000);

    afterAll(async () => {
      await prometheus?.stop();
      if (deployed) {
        await docker(['stack', 'rm', stack]).catch(() => undefined);
        await waitFor('the stack\'s containers to go', async () => (await docker(['ps', '-aq', '--filter', `label=com.docker.stack.namespace=${stack}`])) === '', 30_000, 500).catch(() => undefined);
        await waitFor('the stack\'s network to go', async () => (await docker(['network', 'ls', '-q', '--filter', `name=^${stack}_default$`])) === '', 30_000, 500).catch(() => undefined);
      }
    }, 120_000);

    it('runs exactly one exporter task per node, and it serves on the node\'s published port', async () => {
      const nodes = (await docker(['node', 'ls', '-q'])).split('\n').filter(Boolean);
      const tasks = await waitFor('every task to be running', async () => {
        const lines = (await docker(['service', 'ps', service, '--filter', 'desired-state=running', '--format', '{{.Node}} {{.CurrentState}} {{.Error}}'])).split('\n').filter(Boolean);
        return lines.length === nodes.length && lines.every((l) => / Running /.test(l)) ? lines : undefined;
      }, 120_000, 500);
      expect(tasks).toHaveLength(nodes.length);
      const spec = JSON.parse(await docker(['service', 'inspect', '--format', '{{json .Spec}}', service])) as {
        Mode: Record<string, unknown>; EndpointSpec: { Ports: { PublishMode: string; TargetPort: number; PublishedPort: number }[] };
      };
      expect(Object.keys(spec.Mode)).toEqual(['Global']);
      expect(spec.EndpointSpec.Ports).toEqual([expect.objectContaining({ PublishMode: 'host', TargetPort: 9764, PublishedPort: port })]);
      const body = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      expect(body).toMatch(/^docker_up 1$/m);
    });

    it('a Prometheus with deploy/swarm/prometheus.yml finds that one task and scrapes it: up == 1', async () => {
      prometheus = await startPrometheus(`${REPO_ROOT}/deploy/swarm/prometheus.yml`);
      const node = await docker(['node', 'inspect', 'self', '--format', '{{.Status.Addr}} {{.Description.Hostname}}']);
      const [addr, hostname] = node.split(' ');
      const targets = await waitFor('the exporter task to be scraped', async () => {
        const t = (await prometheus!.activeTargets()).filter((x) => x.labels.job === 'docker-exporter');
        return t.length > 0 && t.every((x) => x.health === 'up') ? t : undefined;
      }, 60_000, 500);
      // One target: the node address and the host-mode port, not the task's overlay addresses.
      expect(targets.map((t) => t.scrapeUrl)).toEqual([`http://${addr}:${port}/metrics`]);
      expect(targets[0]!.labels.node).toBe(hostname);
      const up = await prometheus.query('up{job="docker-exporter"}');
      expect(up.map((r) => [r.metric.instance, r.value[1]])).toEqual([[`${addr}:${port}`, '1']]);
      // What it scraped is the engine's view, including the exporter's own task container.
      expect((await prometheus.query('docker_up{job="docker-exporter"}')).map((r) => r.value[1])).toEqual(['1']);
      const own = await prometheus.query(`count(docker_container_info{container_label_com_docker_stack_namespace="${stack}"})`);
      const collectors = (await prometheus.query('docker_exporter_collector_success{job="docker-exporter"}')).map((r) => r.metric.collector);
      if (collectors.includes('containers')) expect(own.map((r) => r.value[1])).toEqual(['1']);
    });
  });

  describe('the swarm collector', () => {
    const prefix = `dxsw${process.pid}`;
    const web = `${prefix}_web`;
    const agent = `${prefix}_agent`;
    const job = `${prefix}_job`;
    const services: string[] = [];
    let exporter: RunningExporter | undefined;
    let prometheus: RunningPrometheus | undefined;
    let dir = '';

    /** `docker service create -d` of the test image, removed after the tests. */
    async function service(name: string, args: string[], cmd: string[]): Promise<string> {
      const id = await docker(['service', 'create', '-d', '--quiet', '--name', name, '--label', TEST_LABEL, '--container-label', TEST_LABEL, ...args, TEST_IMAGE, ...cmd]);
      services.push(name);
      return id;
    }

    /** What the exporter says of service `svc` now: desired, running, current tasks by state, and its labels. */
    async function figures(svc: string): Promise<{ desired?: number; running?: number; tasks: Record<string, number>; labels?: Record<string, string> }> {
      const samples = await exporter!.samples();
      const of = (n: string) => samples.filter((s) => s.name === n && s.labels.service_name === svc);
      const tasks: Record<string, number> = {};
      for (const s of of('docker_swarm_service_tasks')) tasks[s.labels.state!] = s.value;
      return { desired: of('docker_swarm_service_replicas_desired')[0]?.value, running: of('docker_swarm_service_replicas_running')[0]?.value, tasks, labels: of('docker_swarm_service_replicas_desired')[0]?.labels };
    }

    beforeAll(async () => {
      exporter = await startExporter(LEAN);
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dxsw-prom-'));
      fs.writeFileSync(path.join(dir, 'prometheus.yml'), `scrape_configs:\n  - job_name: docker-exporter\n    static_configs:\n      - targets: ["127.0.0.1:${exporter.port}"]\n`);
      prometheus = await startPrometheus(path.join(dir, 'prometheus.yml'));
    }, 60_000);

    afterAll(async () => {
      await prometheus?.stop();
      await exporter?.stop();
      if ((await swarmState()).startsWith('active')) {
        for (const s of services) await docker(['service', 'rm', s]).catch(() => undefined);
      }
      // Left or removed, a service's task containers go; wait so that no test after this sees them.
      await waitFor('the services\' containers to go', async () => (await docker(['ps', '-aq', '--filter', `label=com.docker.swarm.service.name`, '--filter', `name=${prefix}_`])) === '', 60_000, 500).catch(() => undefined);
      if (dir) fs.rmSync(dir, { recursive: true, force: true });
    }, 120_000);

    it('a service scaled to 3: desired 3, running 3, 3 running tasks, with its mode and stack; this engine is the leader', async () => {
      const id = await service(web, ['--replicas', '1', '--label', `com.docker.stack.namespace=${prefix}`], ['sleep', '3600']);
      await docker(['service', 'scale', '-d', `${web}=3`]);
      const f = await waitFor(`${web} to run 3 of 3`, async () => {
        const x = await figures(web);
        return x.desired === 3 && x.running === 3 && x.tasks.running === 3 ? x : undefined;
      }, 90_000, 500);
      expect(f.labels).toEqual({ service_id: id, service_name: web, mode: 'replicated', stack: prefix });
      expect(f.tasks).toEqual({ running: 3 });
      const samples = await exporter!.samples();
      expect(value(samples, 'docker_swarm_leader')).toBe(1);
      const self = JSON.parse(await docker(['node', 'inspect', 'self', '--format', '{{json .}}'])) as { ID: string; Description: { Hostname: string } };
      const nodes = samples.filter((s) => s.name === 'docker_swarm_node_info');
      expect(nodes.map((n) => [n.labels, n.value])).toEqual([[{ node_id: self.ID, hostname: self.Description.Hostname, role: 'manager', availability: 'active', state: 'ready', leader: 'true' }, 1]]);
    });

    it('updated to a command that exits (restart-condition any): running falls below desired, which the alert\'s condition sees', async () => {
      await docker(['service', 'update', '-d', '--restart-condition', 'any', '--restart-delay', '1s', '--update-parallelism', '0', '--update-failure-action', 'continue', '--args', 'sh -c \'exit 3\'', web]);
      const f = await waitFor(`${web} to run fewer than 3`, async () => {
        const x = await figures(web);
        return x.desired === 3 && x.running! < 3 ? x : undefined;
      }, 60_000, 500);
      expect(f.desired).toBe(3);
      // The same in a real Prometheus, through the alert's expression (its `for: 5m` aside).
      const rules = YAML.parse(fs.readFileSync(path.join(REPO_ROOT, 'prometheus/rules/docker-exporter.rules.yml'), 'utf8')) as { groups: { rules: { alert?: string; expr: string }[] }[] };
      const expr = rules.groups.flatMap((g) => g.rules).find((r) => r.alert === 'SwarmServiceReplicasMissing')!.expr;
      const firing = await waitFor('the alert condition to hold for the service', async () => {
        const r = await prometheus!.query(expr);
        return r.some((x) => x.metric.service_name === web) ? r : undefined;
      }, 30_000, 500);
      expect(firing.filter((x) => x.metric.service_name === web).map((x) => x.metric.mode)).toEqual(['replicated']);
    });

    it('a global service on one node: desired 1, running 1', async () => {
      await service(agent, ['--mode', 'global'], ['sleep', '3600']);
      const f = await waitFor(`${agent} to run 1 of 1`, async () => {
        const x = await figures(agent);
        return x.desired === 1 && x.running === 1 ? x : undefined;
      }, 60_000, 500);
      expect(f.labels!.mode).toBe('global');
      expect(f.labels!.stack).toBe('');
      expect(f.tasks).toEqual({ running: 1 });
    });

    it('a replicated job that completed 2 of 2: desired 0 whatever the engine\'s DesiredTasks says, running 0, 2 complete tasks', async () => {
      await service(job, ['--mode', 'replicated-job', '--replicas', '2', '--max-concurrent', '1'], ['true']);
      const f = await waitFor(`${job} to complete`, async () => {
        const x = await figures(job);
        return x.tasks.complete === 2 ? x : undefined;
      }, 60_000, 500);
      expect(f).toMatchObject({ desired: 0, running: 0, tasks: { complete: 2 } });
      expect(f.labels!.mode).toBe('replicated-job');
      // What `docker service ls` shows for it, for the record: the engine's own desired count.
      const replicas = await docker(['service', 'ls', '--filter', `name=${job}`, '--format', '{{.Replicas}}']);
      expect(replicas).toMatch(/^0\/\d+ \(2\/2 completed\)$/);
    });

    it('the dashboard\'s Swarm panel returns data from a real Prometheus', async () => {
      const d = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'grafana/dashboards/docker-host-overview.json'), 'utf8')) as { panels: { title?: string; targets?: { expr: string }[] }[] };
      const exprs = d.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr)).filter((e) => e.includes('docker_swarm_'));
      expect(exprs.length).toBeGreaterThanOrEqual(2);
      for (const expr of exprs) {
        const r = await waitFor(`data for ${expr}`, async () => {
          const x = await prometheus!.query(expr);
          return x.some((s) => s.metric.service_name === web) ? x : undefined;
        }, 30_000, 500);
        expect(r.length).toBeGreaterThanOrEqual(3);
      }
    });

    it('once the engine leaves the swarm (a 503 from /nodes mid-run, then /info): no docker_swarm_ series, success 1, no warning', async (ctx) => {
      // Only a swarm this file made is this file's to leave.
      if (!createdSwarm) ctx.skip();
      // The collector has read /info as a manager's, so the first scrape after the leave asks /nodes.
      await waitFor('the exporter to see the swarm', async () => /^docker_swarm_leader 1$/m.test(await exporter!.scrape()), 30_000, 200);
      const before = exporter!.logs.length;
      await docker(['swarm', 'leave', '--force']);
      const text = await waitFor('the swarm series to go', async () => {
        const t = await exporter!.scrape();
        return swarmLines(t).length === 0 ? t : undefined;
      }, 30_000, 200);
      expect(text).toMatch(/^docker_exporter_collector_success\{collector="swarm"\} 1$/m);
      // The /info the collector holds is up to 30 s old: the swarm routes told it first.
      expect(text).toMatch(/^docker_exporter_docker_request_failures_total\{endpoint="\/nodes"\} [1-9]/m);
      for (let i = 0; i < 3; i++) expect(swarmLines(await exporter!.scrape())).toEqual([]);
      expect(exporter!.logs.slice(before).filter((l) => /"level":(40|50)/.test(l))).toEqual([]);
    });
  });
});
