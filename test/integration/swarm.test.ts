import { execFile } from 'node:child_process';
import fs from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, waitFor } from '../helpers/docker.js';
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

describe('on a one-node swarm: the stack runs one exporter per node, found by dockerswarm_sd_configs', () => {
  const stack = `dxswarm${process.pid}`;
  const service = `${stack}_docker-exporter`;
  let createdSwarm = false;
  let gwbridgeExisted = true;
  let deployed = false;
  let port = 0;
  let prometheus: RunningPrometheus | undefined;

  beforeAll(async () => {
    requireTool('prometheus', 'prometheus');
    await buildExporterImage();
    const state = await docker(['info', '--format', '{{.Swarm.LocalNodeState}} {{.Swarm.ControlAvailable}}']);
    if (state.startsWith('active')) {
      // Someone's swarm: use it as it is, and leave it as it was.
      if (!state.endsWith('true')) throw new Error('the test engine is a swarm worker; the stack test needs a manager');
    } else {
      gwbridgeExisted = (await docker(['network', 'ls', '-q', '--filter', 'name=^docker_gwbridge$'])) !== '';
      await docker(['swarm', 'init', '--advertise-addr', '127.0.0.1']);
      createdSwarm = true;
    }
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
    if (createdSwarm) {
      await docker(['swarm', 'leave', '--force']);
      if (!gwbridgeExisted) await docker(['network', 'rm', 'docker_gwbridge']).catch(() => undefined);
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
