import { getEventListeners } from 'node:events';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DockerClient } from '../../src/docker/client.js';
import { createExporterMetrics } from '../../src/exporter-metrics.js';

/**
 * Every way the connection to the engine fails gives one error line that says what to fix, logged
 * once while the reason lasts. Local servers stand in for the engine (certificates from the web
 * config fixtures: server.crt is self-signed for 127.0.0.1).
 */
const FIXTURES = new URL('../fixtures/web-config/', import.meta.url).pathname;
const read = (f: string): Buffer => fs.readFileSync(path.join(FIXTURES, f));

const servers: Array<http.Server | https.Server> = [];
async function listen<T extends http.Server | https.Server>(server: T): Promise<number> {
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}
const engineAnswer = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
  res.setHeader('content-type', 'application/json');
  res.end(JSON.stringify({ ApiVersion: '1.41', ServerVersion: 'fake' }));
};

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'client-errors-'));
  // A cert dir whose CA is the server's own certificate (it is self-signed), without a client certificate.
  fs.mkdirSync(path.join(dir, 'right'));
  fs.writeFileSync(path.join(dir, 'right', 'ca.pem'), read('server.crt'));
  fs.mkdirSync(path.join(dir, 'wrong'));
  fs.writeFileSync(path.join(dir, 'wrong', 'ca.pem'), read('client-ca.crt'));
  // A client certificate the engine's client CA did not sign (the server's own, self-signed).
  fs.mkdirSync(path.join(dir, 'rogue'));
  fs.writeFileSync(path.join(dir, 'rogue', 'ca.pem'), read('server.crt'));
  fs.writeFileSync(path.join(dir, 'rogue', 'cert.pem'), read('server.crt'));
  fs.writeFileSync(path.join(dir, 'rogue', 'key.pem'), read('server.key'));
  fs.mkdirSync(path.join(dir, 'half'));
  fs.writeFileSync(path.join(dir, 'half', 'ca.pem'), read('server.crt'));
  fs.writeFileSync(path.join(dir, 'half', 'cert.pem'), read('server.crt'));
});
afterAll(() => {
  for (const s of servers) s.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

async function attempt(host: string, tlsVerify: boolean, certPath: string) {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
  const registry = new Registry();
  const client = new DockerClient({ host, tlsVerify, certPath, timeoutMs: 5000, maxResponseBytes: 1 << 20 }, createExporterMetrics(registry), logger);
  const errors: string[] = [];
  for (let i = 0; i < 3; i++) {
    try {
      await client.get('ping');
      errors.push('');
    } catch (err) {
      errors.push((err as Error).message);
    }
  }
  const logged = lines.filter((l) => String(l.msg).startsWith('cannot reach the Docker Engine'));
  return { errors, logged, client };
}

describe('connection failures say why, once', () => {
  it('a socket that does not exist', async () => {
    const { errors, logged, client } = await attempt('unix:///nonexistent/docker.sock', false, dir);
    expect(errors[0]).toBe('/version: /nonexistent/docker.sock does not exist: is the Docker Engine running (or is --docker.host wrong)?');
    expect(new Set(errors).size).toBe(1);
    expect(logged).toHaveLength(1);
    expect(logged[0]!.level).toBe(50);
    expect(client.unreachableReason).toContain('does not exist');
  });

  it('a TCP port nobody listens on', async () => {
    const port = await listen(http.createServer());
    servers.pop()!.close();
    await new Promise((r) => setTimeout(r, 50));
    const { errors } = await attempt(`tcp://127.0.0.1:${port}`, false, dir);
    expect(errors[0]).toBe(`/version: connection refused by 127.0.0.1:${port}: is the engine listening there (dockerd -H tcp://…)?`);
  });

  it('an engine certificate from another CA', async () => {
    const port = await listen(https.createServer({ cert: read('server.crt'), key: read('server.key') }, engineAnswer));
    const { errors, logged } = await attempt(`tcp://127.0.0.1:${port}`, true, path.join(dir, 'wrong'));
    expect(errors[0]).toMatch(new RegExp(`^/version: TLS: the engine's certificate at 127.0.0.1:${port} is not signed by the CA in ${path.join(dir, 'wrong', 'ca.pem')} \\((DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_VERIFY_LEAF_SIGNATURE)\\)`));
    expect(logged).toHaveLength(1);
  });

  it('an engine that requires a client certificate we do not have', async () => {
    const port = await listen(https.createServer({ cert: read('server.crt'), key: read('server.key'), ca: read('client-ca.crt'), requestCert: true, rejectUnauthorized: true, maxVersion: 'TLSv1.2' }, engineAnswer));
    const { errors } = await attempt(`tcp://127.0.0.1:${port}`, true, path.join(dir, 'right'));
    expect(errors[0]).toContain(`/version: TLS: the engine at 127.0.0.1:${port} requires a client certificate`);
    expect(errors[0]).toContain(`and ${path.join(dir, 'right')} has no cert.pem and key.pem`);
    const rogue = await attempt(`tcp://127.0.0.1:${port}`, true, path.join(dir, 'rogue'));
    // Go's TLS (dockerd) sends a "bad certificate" alert; Node's server just resets: both say why.
    expect(rogue.errors[0]).toMatch(/refused our client certificate .*rogue\/cert\.pem|closed the connection \(ECONNRESET\); with TLS this can also mean the engine refused the client certificate/);
  });

  it('TLS against a plain HTTP port, and plain HTTP against a TLS port', async () => {
    const plain = await listen(http.createServer(engineAnswer));
    const r1 = await attempt(`tcp://127.0.0.1:${plain}`, true, path.join(dir, 'right'));
    expect(r1.errors[0]).toBe(`/version: TLS: 127.0.0.1:${plain} does not speak TLS: drop --docker.tls-verify, or point --docker.host at the engine's TLS port`);
    // The engine itself answers 400 "Client sent an HTTP request to an HTTPS server".
    const tlsPort = await listen(http.createServer((_req, res) => {
      res.statusCode = 400;
      res.end('Client sent an HTTP request to an HTTPS server.\n');
    }));
    const r2 = await attempt(`tcp://127.0.0.1:${tlsPort}`, false, dir);
    expect(r2.errors[0]).toBe(`/version: HTTP 400: the engine at 127.0.0.1:${tlsPort} expects TLS: set --docker.tls-verify and --docker.cert-path (or DOCKER_TLS_VERIFY and DOCKER_CERT_PATH)`);
  });

  it('cert.pem without key.pem is a mistake named as such; with the right CA and no client certificate it connects', async () => {
    const { errors } = await attempt('tcp://127.0.0.1:1', true, path.join(dir, 'half'));
    expect(errors[0]).toBe(`--docker.cert-path: ${path.join(dir, 'half', 'key.pem')} is missing (cert.pem and key.pem go together)`);
    const port = await listen(https.createServer({ cert: read('server.crt'), key: read('server.key') }, engineAnswer));
    const ok = await attempt(`tcp://127.0.0.1:${port}`, true, path.join(dir, 'right'));
    expect(ok.errors).toEqual(['', '', '']);
    expect(ok.logged).toHaveLength(0);
  });

  it('logs the return of the engine once', async () => {
    let up = false;
    const port = await listen(http.createServer((req, res) => (up ? engineAnswer(req, res) : req.socket.destroy())));
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({ level: 'info' }, { write: (s: string) => void lines.push(JSON.parse(s) as Record<string, unknown>) });
    const client = new DockerClient({ host: `tcp://127.0.0.1:${port}`, tlsVerify: false, certPath: dir, timeoutMs: 5000, maxResponseBytes: 1 << 20 }, createExporterMetrics(new Registry()), logger);
    await expect(client.get('ping')).rejects.toThrow(`the engine at 127.0.0.1:${port} closed the connection`);
    await expect(client.get('ping')).rejects.toThrow();
    up = true;
    await client.get('ping');
    await client.get('ping');
    expect(lines.map((l) => l.msg).filter((m) => /Docker Engine/.test(String(m)))).toEqual([
      expect.stringContaining('cannot reach the Docker Engine: the engine at'),
      'the Docker Engine answers again',
    ]);
    expect(client.unreachableReason).toBeUndefined();
  });

  it('times requests out, tells a timeout from the caller\'s abort, and leaves one listener on the caller\'s signal, not one per request', async () => {
    let hang = false;
    const port = await listen(http.createServer((req, res) => (hang && req.url?.includes('_ping') ? undefined : engineAnswer(req, res))));
    const client = new DockerClient({ host: `tcp://127.0.0.1:${port}`, tlsVerify: false, certPath: dir, timeoutMs: 5000, maxResponseBytes: 1 << 20 }, createExporterMetrics(new Registry()), pino({ level: 'silent' }));
    // A long-lived signal, as a collector's stop signal is: many requests must not pile up on it.
    const stop = new AbortController();
    for (let i = 0; i < 50; i++) await client.get('ping', { signal: stop.signal });
    // One listener for the signal, never one per request.
    expect(getEventListeners(stop.signal, 'abort')).toHaveLength(1);
    // Where AbortSignal.any() would have left one entry per request (Node's internal set).
    const dependants = Object.getOwnPropertySymbols(stop.signal).find((sym) => sym.description === 'kDependantSignals');
    expect(dependants === undefined ? 0 : ((stop.signal as unknown as Record<symbol, Set<unknown> | undefined>)[dependants]?.size ?? 0)).toBe(0);
    hang = true;
    const started = performance.now();
    await expect(client.get('ping', { signal: stop.signal, timeoutMs: 150 })).rejects.toThrow('/_ping: timed out after 150 ms');
    expect(performance.now() - started).toBeLessThan(2000);
    const pending = client.get('ping', { signal: stop.signal, timeoutMs: 60_000 });
    setTimeout(() => stop.abort(), 50);
    const err = await pending.then(() => undefined, (e: Error) => e);
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).not.toContain('timed out');
  });

  it('aborts every request in flight with its caller, and never warns of a listener leak however many there are', async () => {
    const held: http.ServerResponse[] = [];
    const port = await listen(http.createServer((req, res) => (req.url?.includes('/containers/') ? void held.push(res) : engineAnswer(req, res))));
    const client = new DockerClient({ host: `tcp://127.0.0.1:${port}`, tlsVerify: false, certPath: dir, timeoutMs: 60_000, maxResponseBytes: 1 << 20 }, createExporterMetrics(new Registry()), pino({ level: 'silent' }));
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void warnings.push(w);
    process.on('warning', onWarning);
    try {
      const stop = new AbortController();
      // More than Node's default of 10 listeners per signal, as --stats.concurrency (32) has in flight.
      const pending = Array.from({ length: 40 }, (_, i) => client.get('stats', { id: `c${i}`, signal: stop.signal }).then(() => 'answered', (e: Error) => e.name));
      while (held.length < 40) await new Promise((r) => setTimeout(r, 10));
      expect(getEventListeners(stop.signal, 'abort')).toHaveLength(1);
      stop.abort();
      expect(await Promise.all(pending)).toEqual(Array(40).fill('AbortError'));
      await new Promise((r) => setImmediate(r));
      expect(warnings.filter((w) => w.name === 'MaxListenersExceededWarning')).toEqual([]);
    } finally {
      process.off('warning', onWarning);
      for (const res of held) res.destroy();
    }
  });
});
