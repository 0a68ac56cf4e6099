import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { startFakeEngine, type FakeEngine } from '../../bench/fake-engine.js';
import { createApp, type App } from '../../src/app.js';
import { DockerClient } from '../../src/docker/client.js';
import { createExporterMetrics } from '../../src/exporter-metrics.js';
import { buildConfig } from '../helpers/config.js';
import { findAll, parseMetrics, value } from '../helpers/prom.js';

/**
 * The API version negotiation against engines that refuse old clients, as Docker 29 does: the bench's
 * fake engine on a unix socket, its recorded payloads, and the `/version` of the engine under test
 * (its ApiVersion and MinAPIVersion); below MinAPIVersion it answers moby's own 400. The whole app
 * runs against it, every collector included.
 */

/** `GET /version` of Docker 29.0 (API 1.52, minimum 1.44), as in test/fixtures/api-1.52/version.json. */
const DOCKER_29_VERSION = JSON.parse(fs.readFileSync(new URL('../fixtures/api-1.52/version.json', import.meta.url), 'utf8')) as Record<string, unknown>;
const BENCH_FIXTURES = new URL('../../bench/fixtures/', import.meta.url);

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A fake engine whose /version says `ApiVersion` and `MinAPIVersion` (the rest as Docker 29's). */
async function engineWith(apiVersion: string, minApiVersion: string): Promise<FakeEngine> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'negotiation-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const fixturesDir = path.join(dir, 'fixtures');
  fs.cpSync(BENCH_FIXTURES, fixturesDir, { recursive: true });
  fs.writeFileSync(path.join(fixturesDir, 'version.json'), JSON.stringify({ ...DOCKER_29_VERSION, ApiVersion: apiVersion, MinAPIVersion: minApiVersion }));
  const engine = await startFakeEngine({ socketPath: path.join(dir, 'docker.sock'), containers: 4, tickMs: 50, fixturesDir });
  cleanups.push(() => engine.close());
  return engine;
}

/** The app against `engine`, with its log lines kept. */
async function appOn(engine: FakeEngine): Promise<{ app: App; scrape: () => Promise<ReturnType<typeof parseMetrics>>; logs: Array<Record<string, unknown>> }> {
  const logs: Array<Record<string, unknown>> = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  const config = buildConfig(['--docker.host', `unix://${engine.socketPath}`, '--web.listen-address', '127.0.0.1:0', '--stats.source', 'engine', '--stats.mode', 'poll', '--stats.interval', '1s']);
  const app = createApp(config, pino({ level: 'info' }, sink));
  const base = `http://127.0.0.1:${(await app.start()).port}`;
  cleanups.push(() => app.stop());
  return { app, logs, scrape: async () => parseMetrics(await (await fetch(`${base}/metrics`)).text()) };
}

async function until(check: () => boolean | Promise<boolean>, ms = 5000): Promise<void> {
  const deadline = performance.now() + ms;
  while (!(await check())) {
    if (performance.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 25));
  }
}

const successes = (s: ReturnType<typeof parseMetrics>) => Object.fromEntries(findAll(s, 'docker_exporter_collector_success').map((x) => [x.labels.collector, x.value]));

describe('an engine that refuses API versions below 1.44 (Docker 29)', () => {
  it('answers 1.41 with moby\'s 400, so the fake is what the exporter is tested against', async () => {
    const engine = await engineWith('1.52', '1.44');
    const client = new DockerClient({ host: `unix://${engine.socketPath}`, tlsVerify: false, certPath: '', timeoutMs: 2000, maxResponseBytes: 1 << 20 }, createExporterMetrics(new Registry()), pino({ level: 'silent' }));
    const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      http.get({ socketPath: engine.socketPath, path: '/v1.41/containers/json' }, (r) => {
        let body = '';
        r.on('data', (c: Buffer) => (body += c.toString()));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body }));
      }).on('error', reject);
    });
    expect(answer).toEqual({ status: 400, body: '{"message":"client version 1.41 is too old. Minimum supported API version is 1.44, please upgrade your client to a newer version"}\n' });
    // The client asks the unversioned /version first and pins 1.52.
    await client.get('info');
    expect(client.apiVersion).toBe('1.52');
    expect(engine.status().apiVersions).toEqual({ '1.41': 1, unversioned: 1, '1.52': 1 });
  });

  it.each([
    ['1.52', '1.52'],
    ['1.51', '1.51'],
    ['1.53', '1.52'],
  ])('engine API %s: every collector works, pinned at %s, no request below 1.44', async (engineMax, pinned) => {
    const engine = await engineWith(engineMax, '1.44');
    const { scrape } = await appOn(engine);
    // The first scrape starts the engine facts; the stats poll, df and both event streams run meanwhile.
    await until(async () => {
      const s = await scrape();
      return Object.values(successes(s)).every((v) => v === 1) && findAll(s, 'container_last_seen').length === engine.status().running && value(s, 'machine_cpu_cores') !== undefined;
    });
    const s = await scrape();
    expect(successes(s)).toEqual({ containers: 1, df: 1, engine: 1, events: 1, stats: 1, swarm: 1 });
    expect(value(s, 'docker_up')).toBe(1);
    // api_version is the engine's own maximum, newer than the pinned one for a 1.53 engine.
    expect(findAll(s, 'docker_engine_info')[0]!.labels.api_version).toBe(engineMax);
    const versions = engine.status().apiVersions;
    // Only the negotiation is unversioned; every other request carries the pinned version.
    expect(Object.keys(versions).sort()).toEqual([pinned, 'unversioned']);
    expect(versions.unversioned).toBe(1);
    expect(value(s, 'docker_exporter_docker_request_failures_total', { endpoint: '/version' }) ?? 0).toBe(0);
  });
});

describe('an engine whose minimum API version is above the newest this exporter knows', () => {
  it('gets no versioned request; docker_up 0, one clear error logged, the exporter keeps serving and asking again', async () => {
    const engine = await engineWith('1.60', '1.55');
    const { scrape, logs } = await appOn(engine);
    const first = await scrape();
    expect(value(first, 'docker_up')).toBe(0);
    expect(value(first, 'docker_exporter_collector_success', { collector: 'engine' })).toBe(0);
    await new Promise((r) => setTimeout(r, 1500));
    const later = await scrape();
    expect(value(later, 'docker_up')).toBe(0);
    expect(findAll(later, 'machine_cpu_cores')).toEqual([]);
    expect(Object.keys(engine.status().apiVersions)).toEqual(['unversioned']);
    // Asked again (an engine can be replaced), but at the pace of scrapes and backoffs, not in a loop.
    const asked = engine.status().apiVersions.unversioned!;
    expect(asked).toBeGreaterThanOrEqual(2);
    expect(asked).toBeLessThan(30);
    const errors = logs.filter((l) => l.level === 50);
    expect(errors.map((l) => l.msg)).toEqual([
      'cannot reach the Docker Engine: the engine accepts API 1.55 to 1.60, and the newest this exporter knows is 1.52: upgrade docker-exporter (or lower the engine\'s minimum with DOCKER_MIN_API_VERSION)',
    ]);
    expect(logs.some((l) => l.msg === 'the Docker Engine answers again')).toBe(false);
  });
});

describe('an engine replaced behind the same connection', () => {
  it('refusing the pinned version with moby\'s 400: the next request negotiates again', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'negotiation-'));
    cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const socketPath = path.join(dir, 'docker.sock');
    let engine = { max: '1.52', min: '1.44' };
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      seen.push(req.url ?? '');
      const v = /^\/v(\d+\.\d+)\//.exec(req.url ?? '')?.[1];
      res.setHeader('content-type', 'application/json');
      if (req.url === '/version') return res.end(JSON.stringify({ ApiVersion: engine.max, MinAPIVersion: engine.min, Version: 'x' }));
      if (v && Number(v.split('.')[1]) < Number(engine.min.split('.')[1])) {
        res.statusCode = 400;
        return res.end(JSON.stringify({ message: `client version ${v} is too old. Minimum supported API version is ${engine.min}, please upgrade your client to a newer version` }));
      }
      res.end(JSON.stringify({ ServerVersion: 'x' }));
    });
    await new Promise<void>((resolve) => server.listen(socketPath, resolve));
    cleanups.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    const client = new DockerClient({ host: `unix://${socketPath}`, tlsVerify: false, certPath: '', timeoutMs: 2000, maxResponseBytes: 1 << 20 }, createExporterMetrics(new Registry()), pino({ level: 'silent' }));
    await client.get('info');
    expect(client.apiVersion).toBe('1.52');
    engine = { max: '1.60', min: '1.55' };
    await expect(client.get('info')).rejects.toThrow('is too old');
    // Not pinned at 1.52 any more: it asks /version again, and says why it cannot go on.
    await expect(client.get('info')).rejects.toThrow('the engine accepts API 1.55 to 1.60');
    expect(seen).toEqual(['/version', '/v1.52/info', '/v1.52/info', '/version']);
    engine = { max: '1.52', min: '1.44' };
    await client.get('info');
    expect(seen.slice(4)).toEqual(['/version', '/v1.52/info']);
  });
});
