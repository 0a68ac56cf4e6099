import pino from 'pino';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { DockerClient } from '../../src/docker/client.js';
import { EngineReplyError, EngineTimeout } from '../../src/docker/errors.js';
import { ROUTES as ENGINE_ROUTES, type RouteName } from '../../src/docker/routes.js';
import { createExporterMetrics } from '../../src/exporter-metrics.js';
import { startHostileEngine, type Fault, type HostileEngine } from '../helpers/hostile-engine.js';

/**
 * Every engine request ends, whatever the engine does to its reply: within --docker.timeout, as a
 * counted failure, with its socket closed, and the next request goes through. docker-modem alone
 * never called back for a body cut off mid-way, so one such reply hung its caller for good.
 */
const TIMEOUT_MS = 400;
const LIMIT = 1 << 20;

let engine: HostileEngine;
beforeAll(async () => {
  engine = await startHostileEngine();
});
afterAll(() => engine.close());
afterEach(() => engine.faults.clear());

function client(timeoutMs = TIMEOUT_MS) {
  const registry = new Registry();
  const docker = new DockerClient(
    { host: `unix://${engine.socketPath}`, tlsVerify: false, certPath: '', timeoutMs, maxResponseBytes: LIMIT },
    createExporterMetrics(registry),
    pino({ level: 'silent' }),
  );
  const counter = async (name: string, labels: Record<string, string>): Promise<number> => {
    const m = await registry.getSingleMetric(name)!.get();
    return m.values.find((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x))?.value ?? 0;
  };
  return { docker, counter };
}

async function settle<T>(p: Promise<T>): Promise<{ ms: number; err?: Error; value?: T }> {
  const started = performance.now();
  try {
    const value = await p;
    return { ms: performance.now() - started, value };
  } catch (err) {
    return { ms: performance.now() - started, err: err as Error };
  }
}

async function waitFor(check: () => boolean, ms = 2000): Promise<void> {
  const until = Date.now() + ms;
  while (!check()) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The route kinds of the exporter: the negotiation, the facts, the list, an inspect, a one-shot stats sample and df. */
const ROUTES: Array<[RouteName, string]> = [
  ['info', '/info'],
  ['containers', '/containers/json'],
  ['inspect', '/containers/abc/json'],
  ['stats', '/containers/abc/stats'],
  ['df', '/system/df'],
];
/** The request options of each route: the container of those that take one. */
const opts = (route: RouteName) => (route === 'inspect' || route === 'stats' ? { id: 'abc' } : {});
const endpoint = (route: RouteName) => ({ endpoint: ENGINE_ROUTES[route].template });

const ENDING_FAULTS: Array<[string, Fault, RegExp]> = [
  ['a body cut off mid-way (Content-Length)', { kind: 'truncate' }, /connection closed after \d+ bytes/],
  ['a chunked body cut off mid-way', { kind: 'truncate-chunked' }, /connection closed after \d+ bytes/],
  ['a connection accepted and never answered', { kind: 'hang' }, /timed out after 400 ms/],
  ['a body that never ends', { kind: 'endless' }, /timed out after 400 ms/],
];

describe('every engine request ends', () => {
  for (const [what, fault, message] of ENDING_FAULTS) {
    it.each(ROUTES)(`${what}: %s fails within --docker.timeout, is counted, frees its socket, and the next request succeeds`, async (route, p) => {
      const { docker, counter } = client();
      await docker.get('ping');
      engine.faults.set(p, fault);
      const r = await settle(docker.get(route, opts(route)));
      expect(r.err?.message).toMatch(message);
      expect(r.ms).toBeLessThan(TIMEOUT_MS + 300);
      expect(await counter('docker_exporter_docker_request_failures_total', endpoint(route))).toBe(1);
      // The socket is gone: neither the exporter nor the engine holds it.
      await waitFor(() => engine.openFaulted() === 0);
      engine.faults.clear();
      if (route === 'info' || route === 'containers' || route === 'df') expect((await settle(docker.get(route, opts(route)))).err).toBeUndefined();
      else await docker.get('ping');
      expect(await counter('docker_exporter_docker_request_failures_total', endpoint(route))).toBe(1);
    });
  }

  it('the version negotiation itself: a /version cut off mid-body fails the request that needed it, and the next negotiates again', async () => {
    const { docker } = client();
    engine.faults.set('/version', { kind: 'truncate' });
    const r = await settle(docker.get('info'));
    expect(r.err?.message).toMatch(/^\/version: the connection closed after/);
    engine.faults.clear();
    await docker.get('info');
    expect(docker.apiVersion).toBe('1.41');
  });

  it('a stream whose headers never come fails within --docker.timeout; one that opened lasts past it', async () => {
    const { docker } = client();
    engine.faults.set('/events', { kind: 'hang' });
    const hung = await settle(docker.stream('events'));
    expect(hung.err).toBeInstanceOf(EngineTimeout);
    expect(hung.ms).toBeLessThan(TIMEOUT_MS + 300);
    engine.faults.clear();
    const stop = new AbortController();
    const res = await docker.stream('events', { signal: stop.signal });
    await new Promise((r) => setTimeout(r, TIMEOUT_MS + 200));
    expect(res.destroyed).toBe(false);
    stop.abort();
    await waitFor(() => res.destroyed);
  });

  it('a caller with a shorter deadline than --docker.timeout does not wait for a negotiation past it', async () => {
    const { docker } = client(1500);
    engine.faults.set('/version', { kind: 'hang' });
    const r = await settle(docker.get('ping', { timeoutMs: 300 }));
    expect(r.err).toBeInstanceOf(EngineTimeout);
    expect(r.ms).toBeLessThan(800);
    // The negotiation goes on for others, and ends within its own deadline.
    await waitFor(() => engine.openFaulted() === 0, 2500);
  });

  it('200 hung requests in a row leave nothing behind: no socket, no pending timer', async () => {
    const { docker } = client(50);
    await docker.get('ping');
    engine.faults.set('/info', { kind: 'hang' });
    const results = await Promise.all(Array.from({ length: 200 }, () => settle(docker.get('info'))));
    expect(results.every((r) => r.err instanceof EngineTimeout)).toBe(true);
    await waitFor(() => engine.openFaulted() === 0);
  });
});

describe('bounded replies', () => {
  it.each([
    ['announced by Content-Length', { kind: 'huge-announced', bytes: 400 * 1024 * 1024 } as Fault],
    ['sent without a length, past the bound', { kind: 'huge', bytes: 64 * 1024 * 1024 } as Fault],
  ])('a reply larger than --docker.max-response-size (%s) fails its request without being kept', async (_what, fault) => {
    const { docker, counter } = client(5000);
    await docker.get('ping');
    engine.faults.set('/info', fault);
    const heap = process.memoryUsage().heapUsed;
    const r = await settle(docker.get('info'));
    expect(r.err).toBeInstanceOf(EngineReplyError);
    expect((r.err as EngineReplyError).kind).toBe('too-large');
    expect(r.err!.message).toContain('--docker.max-response-size');
    expect(await counter('docker_exporter_docker_request_failures_total', endpoint('info'))).toBe(1);
    // Far less than the reply: reading stopped at the bound.
    expect(process.memoryUsage().heapUsed - heap).toBeLessThan(16 * LIMIT);
    await waitFor(() => engine.openFaulted() === 0, 5000);
    engine.faults.clear();
    await docker.get('info');
  });
});

describe('garbage is a failure', () => {
  it.each(ROUTES)('a body that is not JSON on %s is a counted parse error, not a value', async (route, p) => {
    const { docker, counter } = client();
    engine.faults.set(p, { kind: 'garbage' });
    const r = await settle(docker.get(route, opts(route)));
    expect(r.err).toBeInstanceOf(EngineReplyError);
    expect((r.err as EngineReplyError).kind).toBe('malformed');
    expect(await counter('docker_exporter_parse_errors_total', { source: ENGINE_ROUTES[route].source })).toBe(1);
    expect(await counter('docker_exporter_docker_request_failures_total', endpoint(route))).toBe(1);
  });

  it('an error status keeps the engine\'s message, however the body is cut', async () => {
    const { docker } = client();
    const r = await settle(docker.get('inspect', { id: 'nosuch' }));
    expect(r.err?.message).toBe('/containers/{id}/json: HTTP 404: no such route /containers/nosuch/json');
    expect((r.err as { statusCode?: number }).statusCode).toBe(404);
  });
});
