import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, TestContainers, waitFor } from '../helpers/docker.js';
import { startExporter, type RunningExporter } from '../helpers/exporter.js';
import { value, type Sample } from '../helpers/prom.js';

/**
 * A proxy in front of the real engine that cuts replies mid-body: it sends the engine's status,
 * headers and the first half of the body, then closes the connection. That is what a socket proxy
 * that times out, or an engine that crashes while answering, does. With docker-modem alone the
 * first such reply hung its caller for good: the inventory stayed empty, polling stopped, every
 * later scrape waited on /info. Here the first replies of every route kind are cut, and the
 * exporter must count each failure and end up complete, with the real engine's exact values.
 */
const ENGINE = '/var/run/docker.sock';
const CUTS_PER_ROUTE = 2;

/** Route template of an engine path, as the exporter's request metrics name it. */
function routeOf(p: string): string | undefined {
  const bare = p.replace(/^\/v\d+\.\d+/, '').replace(/\?.*$/, '');
  if (bare === '/info' || bare === '/containers/json' || bare === '/system/df') return bare;
  if (/^\/containers\/[0-9a-f]{64}\/json$/.test(bare)) return '/containers/{id}/json';
  if (/^\/containers\/[0-9a-f]{64}\/stats$/.test(bare) && /stream=false/.test(p)) return '/containers/{id}/stats';
  return undefined;
}

class CuttingProxy {
  readonly socketPath: string;
  private readonly dir: string;
  private readonly server: http.Server;
  /** Replies cut so far, by route template. */
  readonly cut = new Map<string, number>();

  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cutting-proxy-'));
    this.socketPath = path.join(this.dir, 'docker.sock');
    this.server = http.createServer((req, res) => {
      const route = routeOf(req.url ?? '');
      const cutThis = route !== undefined && (this.cut.get(route) ?? 0) < CUTS_PER_ROUTE;
      // Counted when decided: requests of one route run concurrently (stats samples).
      if (cutThis) this.cut.set(route, (this.cut.get(route) ?? 0) + 1);
      const upstream = http.request({ socketPath: ENGINE, method: req.method, path: req.url, headers: req.headers }, (up) => {
        if (!cutThis) {
          res.writeHead(up.statusCode ?? 502, up.headers);
          // As the engine does for a stream (events): the headers go out before any record.
          res.flushHeaders();
          up.pipe(res);
          return;
        }
        const chunks: Buffer[] = [];
        up.on('data', (c: Buffer) => chunks.push(c));
        up.on('end', () => {
          const body = Buffer.concat(chunks);
          const headers = { ...up.headers, 'content-length': String(body.length) };
          delete headers['transfer-encoding'];
          res.writeHead(up.statusCode ?? 502, headers);
          res.write(body.subarray(0, Math.floor(body.length / 2)), () => res.socket?.destroy());
        });
      });
      upstream.on('error', () => res.socket?.destroy());
      res.on('close', () => upstream.destroy());
      req.pipe(upstream);
    });
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(this.socketPath, resolve));
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

describe('replies cut off mid-body by a proxy in front of the real engine', () => {
  const containers = new TestContainers();
  const proxy = new CuttingProxy();
  let exporter: RunningExporter;
  let ids: string[];

  beforeAll(async () => {
    ids = [await containers.run(['--name', `cut-a-${process.pid}`]), await containers.run(['--name', `cut-b-${process.pid}`])];
    await proxy.start();
    exporter = await startExporter([
      '--docker.host', `unix://${proxy.socketPath}`,
      '--docker.timeout', '3s',
      // The engine's stats route is one of those cut.
      '--stats.source', 'engine',
      '--stats.interval', '1s',
      '--df.interval', '2s',
    ]);
  });

  afterAll(async () => {
    await exporter?.stop();
    await proxy.stop();
    await containers.removeAll();
  });

  it('counts every cut reply as a failed request, retries, and ends up with the engine\'s exact values', async () => {
    const version = await docker(['version', '--format', '{{.Server.Version}}']);
    /** What a complete scrape still lacks (empty once complete). */
    const missing = (s: Sample[]): string[] => [
      ...(value(s, 'docker_up') === 1 ? [] : ['docker_up 1']),
      ...(value(s, 'docker_engine_info', { version }) === 1 ? [] : [`docker_engine_info{version="${version}"}`]),
      ...ids.flatMap((id) => [
        ...(value(s, 'docker_container_state', { id, state: 'running' }) === 1 ? [] : [`running state of ${id.slice(0, 12)}`]),
        ...(value(s, 'container_cpu_usage_seconds_total', { id }) !== undefined ? [] : [`CPU of ${id.slice(0, 12)}`]),
        ...(value(s, 'docker_container_rw_size_bytes', { id }) !== undefined ? [] : [`rw size of ${id.slice(0, 12)}`]),
      ]),
      ...['engine', 'containers', 'stats', 'df'].filter((c) => value(s, 'docker_exporter_collector_success', { collector: c }) !== 1).map((c) => `${c} success`),
    ];
    let lacking: string[] = [];
    const s = await waitFor('a complete scrape after the cut replies', async () => {
      const samples = await exporter.samples();
      lacking = missing(samples);
      return lacking.length === 0 && samples;
    }, 60_000, 500).catch((err: Error) => {
      throw new Error(`${err.message}; still lacking: ${lacking.join(', ')}; cut so far: ${JSON.stringify([...proxy.cut])}\n${exporter.logs.slice(-20).join('\n')}`);
    });
    for (const route of ['/info', '/containers/json', '/containers/{id}/json', '/containers/{id}/stats', '/system/df']) {
      expect(proxy.cut.get(route), `replies cut on ${route}`).toBe(CUTS_PER_ROUTE);
      expect(value(s, 'docker_exporter_docker_request_failures_total', { endpoint: route }), `failures counted on ${route}`).toBeGreaterThanOrEqual(CUTS_PER_ROUTE);
    }
    // Exact values where the engine knows them: the engine's container count, the running state.
    const info = JSON.parse(await docker(['info', '--format', '{{json .}}'])) as { ContainersRunning: number; NCPU: number };
    expect(value(s, 'docker_engine_cpus')).toBe(info.NCPU);
    for (const id of ids) expect(value(s, 'docker_container_state', { id, state: 'exited' })).toBe(0);
    const health = await fetch(`${exporter.url.replace(/\/metrics$/, '')}/healthz`);
    expect(health.status).toBe(200);
    expect(exporter.proc.exitCode).toBeNull();
  });
});
