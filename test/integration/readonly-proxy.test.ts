import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import YAML from 'yaml';
import { docker, TestContainers, waitFor } from '../helpers/docker.js';
import { startExporter, type RunningExporter } from '../helpers/exporter.js';
import { findAll, value, type Sample } from '../helpers/prom.js';
import { REPO_ROOT, requireTool } from '../helpers/tools.js';
import { freePort } from './prometheus-server.js';
import { ROUTES } from '../../src/docker/routes.js';

/** One request as haproxy logged it. */
interface Logged {
  status: number;
  method: string;
  uri: string;
}

/**
 * A GET/HEAD-only proxy in front of the engine socket, as Tecnativa's docker-socket-proxy with
 * POST=0 is one (that image is haproxy with a similar rule). `option logasap` logs each request
 * when its answer starts, so the never-ending streams (events, stats) are logged too.
 */
function haproxyConfig(port: number): string {
  return `global
  log stdout format raw local0 info
  maxconn 512

defaults
  mode http
  log global
  option logasap
  log-format "req %ST %HM %HU"
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout http-request 10s

frontend docker
  bind 127.0.0.1:${port}
  http-request deny deny_status 403 unless { method GET HEAD }
  default_backend engine

backend engine
  server engine /var/run/docker.sock
`;
}

/** Route template of an engine request path: what the exporter's endpoint label would say. */
function routeOf(uri: string): string {
  const p = uri.split('?')[0]!.replace(/^\/v\d+\.\d+/, '');
  return p.replace(/^\/containers\/[0-9a-f]{64}\//, '/containers/{id}/');
}

describe('behind a proxy that refuses everything but GET and HEAD', () => {
  const tc = new TestContainers();
  const suffix = `${process.pid}`;
  const logged: Logged[] = [];
  const haproxyOutput: string[] = [];
  let haproxy: ChildProcess;
  let dir = '';
  let proxyUrl = '';
  const exporters: Record<'poll' | 'stream', RunningExporter | undefined> = { poll: undefined, stream: undefined };
  let running = '';

  beforeAll(async () => {
    const bin = requireTool('haproxy', 'haproxy');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dx-haproxy-'));
    const port = await freePort();
    fs.writeFileSync(path.join(dir, 'haproxy.cfg'), haproxyConfig(port));
    haproxy = spawn(bin, ['-db', '-f', path.join(dir, 'haproxy.cfg')], { stdio: ['ignore', 'pipe', 'pipe'] });
    for (const stream of [haproxy.stdout!, haproxy.stderr!]) {
      let buf = '';
      stream.setEncoding('utf8');
      stream.on('data', (chunk: string) => {
        buf += chunk;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          haproxyOutput.push(line);
          const m = /^req (-?\d+) (\S+) (\S+)$/.exec(line);
          if (m) logged.push({ status: Number(m[1]), method: m[2]!, uri: m[3]! });
        }
      });
    }
    proxyUrl = `http://127.0.0.1:${port}`;
    await waitFor('haproxy to forward /_ping', async () => (await fetch(`${proxyUrl}/_ping`)).status === 200, 10_000).catch((err: Error) => {
      throw new Error(`${err.message}\nhaproxy said:\n${haproxyOutput.join('\n')}`);
    });

    running = await tc.run(['--name', `dx-proxy-${suffix}-running`]);
    await tc.create(['--name', `dx-proxy-${suffix}-created`]);
    const common = ['--docker.host', `tcp://127.0.0.1:${port}`, '--docker.tls-verify', 'false', '--df.interval', '2s', '--stats.interval', '2s'];
    exporters.poll = await startExporter([...common, '--stats.source', 'engine', '--stats.mode', 'poll']);
    exporters.stream = await startExporter([...common, '--stats.source', 'engine', '--stats.mode', 'stream']);
  });

  afterAll(async () => {
    for (const e of Object.values(exporters)) if (e) expect(await e.stop()).toBe(0);
    await tc.removeAll();
    haproxy?.kill('SIGTERM');
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('deploy/socket-proxy/docker-compose.yml opens exactly the API sections the client\'s routes need, GET only', () => {
    const compose = YAML.parse(fs.readFileSync(`${REPO_ROOT}/deploy/socket-proxy/docker-compose.yml`, 'utf8')) as {
      services: Record<string, { environment?: Record<string, number>; command?: string[]; volumes?: string[]; read_only?: boolean; cap_drop?: string[] }>;
    };
    const proxy = compose.services['socket-proxy']!;
    const exporter = compose.services['docker-exporter']!;
    // Every route the client may call (its route table), as Tecnativa's section variables name them.
    const routes: string[] = Object.values(ROUTES).map((r) => r.template);
    expect(routes).toContain('/system/df');
    const onByDefault = new Set(['PING', 'VERSION', 'EVENTS']);
    const needed = new Set(routes.map((r) => r.split('/')[1]!.replace(/^_/, '').toUpperCase()).filter((v) => !onByDefault.has(v)));
    const granted = Object.entries(proxy.environment!).filter(([k, v]) => v === 1 && k !== 'POST').map(([k]) => k);
    expect(granted.filter((k) => !onByDefault.has(k)).sort()).toEqual([...needed].sort());
    expect(proxy.environment!.POST).toBe(0);
    expect(exporter.command).toEqual(['--docker.host=tcp://socket-proxy:2375']);
    expect(exporter.volumes).toBeUndefined();
    expect(exporter.read_only).toBe(true);
    expect(exporter.cap_drop).toEqual(['ALL']);
  });

  it('is a real barrier: it refuses POST and DELETE with 403 and passes GET and HEAD', async () => {
    const post = await fetch(`${proxyUrl}/containers/create?name=dx-proxy-${suffix}-refused`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ Image: 'docker-exporter-test/busybox:latest' }),
    });
    expect(post.status).toBe(403);
    expect((await fetch(`${proxyUrl}/containers/${running}?force=1`, { method: 'DELETE' })).status).toBe(403);
    expect((await fetch(`${proxyUrl}/_ping`, { method: 'HEAD' })).status).toBe(200);
    expect((await fetch(`${proxyUrl}/containers/${running}/json`)).status).toBe(200);
    // Neither refused request reached the engine.
    await expect(docker(['inspect', '--format', '{{.State.Running}}', running])).resolves.toBe('true');
    await expect(docker(['inspect', `dx-proxy-${suffix}-refused`])).rejects.toThrow(/No such object/);
    await waitFor('haproxy to log the refusals', () => logged.filter((l) => l.status === 403).length === 2, 5000);
    expect(logged.filter((l) => l.status === 403).map((l) => l.method).sort()).toEqual(['DELETE', 'POST']);
  });

  for (const mode of ['poll', 'stream'] as const) {
    it(`every collector reports success through it (stats mode ${mode}), with data`, async () => {
      const exporter = exporters[mode]!;
      const started = JSON.parse(exporter.logs.find((l) => l.includes('"starting docker-exporter"'))!) as { collectors: string[] };
      expect(started.collectors).toContain('engine');
      // An event the engine reports while the exporter watches.
      const extra = await tc.run(['--name', `dx-proxy-${suffix}-${mode}-event`], ['true']);
      let samples: Sample[] = [];
      const ok = (): boolean => {
        const success = findAll(samples, 'docker_exporter_collector_success');
        if (success.length !== started.collectors.length || success.some((s) => s.value !== 1)) return false;
        if (started.collectors.includes('stats') && !findAll(samples, 'container_cpu_usage_seconds_total', { id: running }).length) return false;
        if (started.collectors.includes('df') && !findAll(samples, 'docker_disk_usage_objects', { kind: 'containers' }).length) return false;
        if (started.collectors.includes('events') && !value(samples, 'docker_events_total', { type: 'container', action: 'die' })) return false;
        if (started.collectors.includes('containers') && value(samples, 'docker_container_state', { id: extra, state: 'exited' }) !== 1) return false;
        return true;
      };
      await waitFor('every collector to succeed with data', async () => {
        samples = await exporter.samples();
        return ok();
      }, 60_000, 500).catch((err: Error) => {
        throw new Error(`${err.message}\n${findAll(samples, 'docker_exporter_collector_success').map((s) => `${s.labels.collector}=${s.value}`).join(' ')}\n${exporter.logs.slice(-20).join('\n')}`);
      });
      expect(findAll(samples, 'docker_exporter_collector_success').map((s) => s.labels.collector).sort()).toEqual([...started.collectors].sort());
      expect(value(samples, 'docker_up')).toBe(1);
    });
  }

  it('nothing the exporters sent was refused: haproxy logged GET/HEAD only, and no 403 but the test\'s own', async () => {
    const fromExporters = logged.filter((l) => !l.uri.includes(`dx-proxy-${suffix}-refused`) && !(l.method === 'DELETE'));
    expect(fromExporters.length).toBeGreaterThan(10);
    expect(fromExporters.filter((l) => l.status === 403)).toEqual([]);
    expect(new Set(fromExporters.map((l) => l.method))).toSatisfy((s: Set<string>) => [...s].every((m) => m === 'GET' || m === 'HEAD'));
    const routes = new Set(fromExporters.map((l) => routeOf(l.uri)));
    // What every run needs, whatever else a collector adds.
    for (const route of ['/_ping', '/info', '/containers/json', '/containers/{id}/json', '/events']) expect(routes).toContain(route);
    const started = JSON.parse(exporters.poll!.logs.find((l) => l.includes('"starting docker-exporter"'))!) as { collectors: string[] };
    if (started.collectors.includes('stats')) expect(routes).toContain('/containers/{id}/stats');
    if (started.collectors.includes('df')) expect(routes).toContain('/system/df');
    console.log(`engine routes seen through the proxy: ${[...routes].sort().join(', ')}`);
  });
});
