import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, TEST_LABEL, TestContainers, waitFor } from '../helpers/docker.js';
import { findAll, parseMetrics, value, type Sample } from '../helpers/prom.js';
import { NODE_FLAGS } from '../../bench/lib.js';
import { REPO_ROOT } from '../helpers/tools.js';
import { buildExporterImage, EXPORTER_IMAGE } from './image-build.js';
import { startPrometheus } from './prometheus-server.js';

const SOCKET = '/var/run/docker.sock';
const suffix = `${process.pid}`;

/** /proc/1/status of the exporter container, read by node inside it (the image has no shell tools for sure). */
async function pid1Status(container: string): Promise<Record<string, string>> {
  const out = await docker(['exec', container, 'node', '-e', 'process.stdout.write(require("fs").readFileSync("/proc/1/status","utf8"))']);
  return Object.fromEntries(out.split('\n').map((l) => l.split(/:\s*/, 2) as [string, string]));
}

describe('the container image, built from the Dockerfile and run least-privileged', () => {
  const tc = new TestContainers();
  let exporter = '';
  let url = '';
  let buildSeconds = 0;
  const names = { a: `dx-image-${suffix}-a`, b: `dx-image-${suffix}-b` };
  const exporterName = `dx-image-${suffix}-exporter`;
  const ids: Record<string, string> = {};

  beforeAll(async () => {
    ({ seconds: buildSeconds } = await buildExporterImage());
    ids.a = await tc.run(['--name', names.a]);
    ids.b = await tc.create(['--name', names.b]);
    const gid = fs.statSync(SOCKET).gid;
    // The README's run line, plus a short health interval so the test need not wait 30 s.
    exporter = tc.track(
      await docker([
        'run', '-d', '--label', TEST_LABEL, '--label', 'prometheus.job=docker-exporter', '--name', exporterName,
        '-p', '127.0.0.1::9764',
        '-v', `${SOCKET}:${SOCKET}:ro`,
        '-v', '/proc:/host/proc:ro', '-v', '/sys/fs/cgroup:/host/sys/fs/cgroup:ro', '--cgroupns', 'host',
        '--group-add', String(gid),
        '--read-only', '--cap-drop', 'ALL', '--security-opt', 'no-new-privileges',
        '--health-interval', '1s',
        EXPORTER_IMAGE, '--path.rootfs', '/host', '--stats.interval', '2s', '--df.interval', '5s',
      ]),
    );
    const port = (await docker(['port', exporter, '9764/tcp'])).split('\n')[0]!.split(':').pop();
    url = `http://127.0.0.1:${port}`;
  }, 900_000);

  afterAll(async () => {
    await tc.removeAll();
  });

  it(`builds without a registry (measured: see the log) and declares port, health check, user and entrypoint`, async () => {
    console.log(`image build (base image + docker build) took ${buildSeconds.toFixed(1)} s`);
    const config = JSON.parse(await docker(['image', 'inspect', '--format', '{{json .Config}}', EXPORTER_IMAGE])) as {
      User: string; ExposedPorts: Record<string, unknown>; Entrypoint: string[]; Healthcheck: { Test: string[] };
    };
    expect(config.User).toBe('65534:65534');
    expect(Object.keys(config.ExposedPorts)).toEqual(['9764/tcp']);
    expect(config.Entrypoint).toEqual(['node', NODE_FLAGS, 'dist/cli.js']);
    expect(config.Healthcheck.Test).toEqual(['CMD', 'node', '/app/healthcheck.mjs']);
    // Exactly the lockfile's production dependencies, and no sources.
    const listing = await docker(['run', '--rm', '--entrypoint', 'node', EXPORTER_IMAGE, '-e',
      'const fs=require("fs");const top=fs.readdirSync("/app/node_modules").filter((n)=>!n.startsWith("."));' +
      'console.log(JSON.stringify({app:fs.readdirSync("/app").sort(),mods:top.flatMap((n)=>n.startsWith("@")?fs.readdirSync("/app/node_modules/"+n).map((m)=>n+"/"+m):[n])}))']);
    const { app, mods } = JSON.parse(listing) as { app: string[]; mods: string[] };
    expect(app).toEqual(['dist', 'healthcheck.mjs', 'node_modules', 'package.json']);
    const lock = JSON.parse(fs.readFileSync(`${REPO_ROOT}/package-lock.json`, 'utf8')) as { packages: Record<string, { dev?: boolean }> };
    const production = Object.entries(lock.packages)
      .filter(([path, meta]) => /^node_modules\/(@[^/]+\/)?[^/]+$/.test(path) && !meta.dev)
      .map(([path]) => path.slice('node_modules/'.length));
    expect(mods.sort()).toEqual(production.sort());
    expect(mods).not.toContain('typescript');
  });

  it('runs as nobody with the socket group only, no capabilities, no new privileges, read-only root', async () => {
    const status = await pid1Status(exporter);
    expect(status.Uid!.split(/\s+/)).toEqual(['65534', '65534', '65534', '65534']);
    expect(status.Gid!.split(/\s+/)).toEqual(['65534', '65534', '65534', '65534']);
    expect(status.Groups!.trim().split(/\s+/).map(Number).sort()).toEqual([fs.statSync(SOCKET).gid, 65534].sort());
    expect(status.CapEff).toBe('0000000000000000');
    expect(status.CapBnd).toBe('0000000000000000');
    expect(status.NoNewPrivs).toBe('1');
    const write = await docker(['exec', exporter, 'node', '-e', 'try{require("fs").writeFileSync("/app/x","")}catch(e){console.log(e.code)}']);
    expect(write).toBe('EROFS');
  });

  it('reports healthy through the image\'s own HEALTHCHECK', async () => {
    let last = '';
    const health = await waitFor('the container to be healthy', async () => {
      last = await docker(['inspect', '--format', '{{json .State.Health}}', exporter]);
      const h = JSON.parse(last) as { Status: string; Log: { ExitCode: number }[] };
      return h.Status === 'healthy' ? h : undefined;
    }, 90_000, 500).catch((err: Error) => {
      throw new Error(`${err.message}: ${last}`);
    });
    expect(health.Log.at(-1)!.ExitCode).toBe(0);
  });

  it('serves docker_up 1, every collector succeeding, and series for the host\'s other containers', async () => {
    const logs = await docker(['logs', exporter]);
    const started = JSON.parse(logs.split('\n').find((l) => l.includes('"starting docker-exporter"'))!) as { collectors: string[] };
    expect(started.collectors).toContain('engine');
    let samples: Sample[] = [];
    await waitFor('every collector to report success', async () => {
      samples = parseMetrics(await (await fetch(`${url}/metrics`)).text());
      const success = findAll(samples, 'docker_exporter_collector_success');
      return success.length === started.collectors.length && success.every((s) => s.value === 1);
    }, 60_000, 500).catch((err: Error) => {
      throw new Error(`${err.message}\n${findAll(samples, 'docker_exporter_collector_success').map((s) => `${s.labels.collector}=${s.value}`).join(' ')}`);
    });
    expect(findAll(samples, 'docker_exporter_collector_success').map((s) => s.labels.collector).sort()).toEqual([...started.collectors].sort());
    expect(value(samples, 'docker_up')).toBe(1);
    for (const [key, name] of Object.entries(names)) {
      const own = samples.filter((s) => s.labels.name === name);
      expect(own.length, `series for ${name}`).toBeGreaterThan(0);
      expect(new Set(own.map((s) => s.labels.id))).toEqual(new Set([ids[key]]));
    }
    // The run line's mounts: as nobody, without a capability, it reads the containers' cgroups itself.
    expect(value(samples, 'docker_exporter_stats_source', { source: 'cgroupfs' })).toBe(1);
    expect(value(samples, 'container_cpu_usage_seconds_total', { name: names.a })).toBeGreaterThan(0);
    expect(value(samples, 'docker_exporter_docker_requests_total', { endpoint: '/containers/{id}/stats' }) ?? 0).toBe(0);
    if (started.collectors.includes('containers')) {
      expect(value(samples, 'docker_container_state', { name: names.a, state: 'running' })).toBe(1);
      expect(value(samples, 'docker_container_state', { name: names.b, state: 'created' })).toBe(1);
    }
  });

  it('is found and scraped by Prometheus with deploy/prometheus/docker_sd.yml', async () => {
    const prometheus = await startPrometheus(`${REPO_ROOT}/deploy/prometheus/docker_sd.yml`);
    try {
      const target = await waitFor('Prometheus to scrape the exporter container', async () => {
        const t = (await prometheus.activeTargets()).find((x) => x.labels.container === exporterName);
        return t?.health === 'up' ? t : undefined;
      }, 60_000, 500);
      const ip = await docker(['inspect', '--format', '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}', exporter]);
      expect(target.scrapeUrl).toBe(`http://${ip}:9764/metrics`);
      const up = await prometheus.query(`docker_up{container="${exporterName}"}`);
      expect(up.map((r) => r.value[1])).toEqual(['1']);
    } finally {
      await prometheus.stop();
    }
  });

  it('stops on docker stop (SIGTERM to PID 1) with status 0 within 5 s', async () => {
    const t0 = Date.now();
    await docker(['stop', '-t', '10', exporter]);
    const elapsed = Date.now() - t0;
    const state = JSON.parse(await docker(['inspect', '--format', '{{json .State}}', exporter])) as { ExitCode: number; OOMKilled: boolean };
    expect(state.ExitCode).toBe(0);
    expect(elapsed).toBeLessThan(5000);
  });
});
