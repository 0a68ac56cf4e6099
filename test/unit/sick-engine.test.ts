import pino from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { createApp, type App } from '../../src/app.js';
import { LoopHealth } from '../../src/loop-health.js';
import { createWebApp } from '../../src/web/server.js';
import { buildConfig } from '../helpers/config.js';
import { parseMetrics, value } from '../helpers/prom.js';
import { startHostileEngine, type HostileEngine } from '../helpers/hostile-engine.js';

/**
 * A scrape never waits on a sick engine: the whole app, in process, in front of an engine that
 * accepts every connection and never answers (a wedged dockerd, a stalled socket proxy). Prometheus
 * gives up on a scrape after 10 s by default; the exporter must answer long before, saying the
 * engine is down, or the target flaps instead of reporting it.
 */
let engine: HostileEngine | undefined;
let app: App | undefined;
afterEach(async () => {
  await app?.stop();
  await engine?.close();
  app = engine = undefined;
});

async function timed(url: string): Promise<{ ms: number; status: number; body: string }> {
  const started = performance.now();
  const res = await fetch(url, { signal: AbortSignal.timeout(15_000) });
  const body = await res.text();
  return { ms: performance.now() - started, status: res.status, body };
}

describe('a scrape never waits on a sick engine', () => {
  it('answers /metrics, / and /readyz within 2 s with docker_up 0 while the engine accepts and never answers', async () => {
    engine = await startHostileEngine();
    engine.faults.set(/.*/, { kind: 'hang' });
    const config = buildConfig(['--docker.host', `unix://${engine.socketPath}`, '--docker.timeout', '10s', '--web.listen-address', '127.0.0.1:0'], {});
    app = createApp(config, pino({ level: 'silent' }));
    const { port } = await app.start();
    const base = `http://127.0.0.1:${port}`;
    for (let round = 0; round < 2; round++) {
      const metrics = await timed(`${base}/metrics`);
      expect(metrics.status).toBe(200);
      expect(metrics.ms, `round ${round}: /metrics took ${Math.round(metrics.ms)} ms`).toBeLessThan(2000);
      const s = parseMetrics(metrics.body);
      expect(value(s, 'docker_up')).toBe(0);
      expect(value(s, 'docker_exporter_collector_success', { collector: 'engine' })).toBe(0);
      const ready = await timed(`${base}/readyz`);
      expect(ready.status).toBe(503);
      expect(ready.ms).toBeLessThan(2000);
      const landing = await timed(`${base}/`);
      expect(landing.status).toBe(200);
      expect(landing.body).toContain('unreachable');
      expect(landing.ms).toBeLessThan(2000);
    }
    // Nothing is stuck: every request the loops sent ends within its deadline.
    expect((await timed(`${base}/healthz`)).status).toBe(200);
  });

  it('reports the engine again once it answers', async () => {
    engine = await startHostileEngine();
    engine.faults.set('/_ping', { kind: 'hang' });
    const config = buildConfig(['--docker.host', `unix://${engine.socketPath}`, '--web.listen-address', '127.0.0.1:0'], {});
    app = createApp(config, pino({ level: 'silent' }));
    const { port } = await app.start();
    expect(value(parseMetrics((await timed(`http://127.0.0.1:${port}/metrics`)).body), 'docker_up')).toBe(0);
    engine.faults.clear();
    expect(value(parseMetrics((await timed(`http://127.0.0.1:${port}/metrics`)).body), 'docker_up')).toBe(1);
  });
});

describe('/healthz', () => {
  it('turns 503, naming the loop, once a pass shows no progress past its bound', async () => {
    let now = 0;
    const health = new LoopHealth(() => now);
    const web = createWebApp(
      { listenHost: '127.0.0.1', listenPort: 0, telemetryPath: '/metrics', version: 'test', logger: pino({ level: 'silent' }) },
      {
        metrics: async () => ({ contentType: 'text/plain', body: Buffer.from('') }),
        ready: async () => ({ ready: true, detail: 'ok' }),
        live: () => health.report(),
      },
    );
    const server = web.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const url = `http://127.0.0.1:${(server.address() as { port: number }).port}/healthz`;
    try {
      const pass = health.begin('inventory sync', 20_000);
      now = 19_000;
      expect((await timed(url)).status).toBe(200);
      pass.beat();
      now = 38_000;
      expect((await timed(url)).status).toBe(200);
      now = 40_000;
      const stuck = await timed(url);
      expect(stuck.status).toBe(503);
      expect(stuck.body).toBe('stuck: inventory sync: no progress for 21 s, bound 20 s\n');
      pass.end();
      expect((await timed(url)).status).toBe(200);
    } finally {
      server.close();
    }
  });
});
