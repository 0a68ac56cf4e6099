import http from 'node:http';
import net from 'node:net';
import { gunzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestContainers, waitFor } from '../helpers/docker.js';
import { startExporter, type RunningExporter } from '../helpers/exporter.js';
import { findAll, parseMetrics, value, type Sample } from '../helpers/prom.js';

const PREFIX = `load-${process.pid}-`;
const RUNNING = 5;
const OPENMETRICS = 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5';

/** name{labels} of every engine-derived series: what must be the same in every answer. */
function seriesKeys(samples: Sample[]): string[] {
  return samples
    .filter((s) => /^(docker|container)_/.test(s.name) && !s.name.startsWith('docker_exporter_'))
    .map((s) => `${s.name}${JSON.stringify(Object.entries(s.labels).sort())}`)
    .sort();
}

/** OpenMetrics differs from the text format in counter names (`_total` on samples only) and `# EOF`; strip both to reuse the text parser. */
function parseOpenMetrics(body: string): Sample[] {
  expect(body.endsWith('# EOF\n')).toBe(true);
  return parseMetrics(body.replace(/# EOF\n$/, ''));
}

describe('under load', () => {
  const containers = new TestContainers();
  let exporter: RunningExporter;
  const ids: string[] = [];

  beforeAll(async () => {
    for (let i = 0; i < RUNNING; i++) ids.push(await containers.run(['--name', `${PREFIX}${i}`]));
    exporter = await startExporter(['--container.include', `^${PREFIX}`, '--stats.interval', '1s', '--df.interval', '10s']);
    // Warm: every container has a stats sample, so the answers below are complete.
    await waitFor('stats samples for every container', async () => {
      const s = await exporter.samples();
      return ids.every((id) => value(s, 'container_last_seen', { id }) !== undefined);
    }, 30_000, 500);
  });
  afterAll(async () => {
    const code = await exporter?.stop();
    await containers.removeAll();
    expect(code).toBe(0);
  });

  it('answers 100 concurrent scrapes, in both formats and gzip, all complete and consistent', async () => {
    const before = await exporter.samples();
    // Every render pings the engine once (docker_up).
    const pingsBefore = value(before, 'docker_exporter_docker_requests_total', { endpoint: '/_ping' })!;
    // 100 connections opened and kept first, so that the 100 scrapes reach the server together
    // rather than at the pace it accepts connections (from 5 to 94 renders of 100, run to run).
    const agent = new http.Agent({ keepAlive: true, maxSockets: 100 });
    const get = (path: string, headers: Record<string, string> = {}) =>
      new Promise<{ status: number; headers: http.IncomingHttpHeaders; raw: Buffer }>((resolve, reject) => {
        const req = http.get(`${exporter.url}${path}`, { agent, headers, timeout: 30_000 }, (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, raw: Buffer.concat(chunks) }));
          res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(new Error(`${path}: no answer in 30 s`)));
        req.on('error', reject);
      });
    await Promise.all(Array.from({ length: 100 }, () => get('/healthz')));
    const started = performance.now();
    const answers = await Promise.all(
      Array.from({ length: 100 }, async (_, i) => {
        const kind = i % 3 === 0 ? 'openmetrics' : i % 3 === 1 ? 'gzip' : 'text';
        const headers: Record<string, string> = kind === 'openmetrics' ? { accept: OPENMETRICS } : kind === 'gzip' ? { 'accept-encoding': 'gzip' } : {};
        const res = await get('/metrics', headers);
        const body = res.headers['content-encoding'] === 'gzip' ? gunzipSync(res.raw).toString() : res.raw.toString();
        return { kind, status: res.status, encoding: res.headers['content-encoding'], type: res.headers['content-type'] ?? null, body };
      }),
    );
    const elapsedMs = performance.now() - started;
    agent.destroy();

    const reference = seriesKeys(before);
    expect(reference.length).toBeGreaterThan(RUNNING * 20);
    for (const a of answers) {
      expect(a.status).toBe(200);
      if (a.kind === 'gzip') expect(a.encoding).toBe('gzip');
      if (a.kind === 'openmetrics') expect(a.type).toContain('application/openmetrics-text');
      const samples = a.kind === 'openmetrics' ? parseOpenMetrics(a.body) : parseMetrics(a.body);
      expect(value(samples, 'docker_up')).toBe(1);
      for (const s of findAll(samples, 'docker_exporter_collector_success')) expect(s.value, s.labels.collector).toBe(1);
      // No series missing, none doubled.
      const keys = seriesKeys(samples);
      expect(new Set(keys).size).toBe(keys.length);
      if (a.kind !== 'openmetrics') expect(keys).toEqual(reference);
      else expect(keys.length).toBe(reference.length);
      for (const id of ids) expect(value(samples, 'docker_container_state', { id, state: 'running' })).toBe(1);
    }
    // Concurrent scrapes share renders (one per format at a time): every scrape that arrives while
    // a render runs gets the next one, so the engine is pinged once per render, not per scrape (the
    // scrape just below is one more). With the connections open beforehand the 100 arrive together:
    // 3-4 renders here; 25 leaves room for a slow machine, and none sharing would be 100.
    const after = await exporter.samples();
    const renders = value(after, 'docker_exporter_docker_requests_total', { endpoint: '/_ping' })! - pingsBefore;
    const distinct = new Set(answers.map((a) => a.body)).size;
    console.log(`100 concurrent scrapes: ${Math.round(elapsedMs)} ms, ${renders - 1} renders, ${distinct} distinct bodies`);
    expect(renders).toBeGreaterThanOrEqual(2);
    expect(renders - 1).toBeLessThanOrEqual(25);
    expect(distinct).toBeLessThanOrEqual(renders);
  });

  it('keeps collecting and answering other scrapes while one scraper reads very slowly and another sends its request very slowly', async () => {
    // A scraper that takes its answer 100 bytes every 100 ms.
    const slowReader = net.connect(exporter.port, '127.0.0.1');
    let slowBytes = 0;
    let slowDone = false;
    await new Promise<void>((resolve) => slowReader.once('connect', resolve));
    slowReader.write('GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    slowReader.pause();
    const drip = setInterval(() => {
      const chunk = slowReader.read(100) as Buffer | null;
      if (chunk) slowBytes += chunk.length;
    }, 100);
    slowReader.on('end', () => (slowDone = true));
    // A scraper that sends its request line a byte at a time.
    const slowWriter = net.connect(exporter.port, '127.0.0.1');
    const request = 'GET /metrics HTTP/1.1\r\nHost: x\r\n';
    let sent = 0;
    const trickle = setInterval(() => {
      if (sent < request.length) slowWriter.write(request[sent++]!);
    }, 100);

    try {
      const lastSeen = (s: Sample[]): number[] => ids.map((id) => value(s, 'container_last_seen', { id })!);
      const first = await exporter.samples();
      let fresh = 0;
      const durations: number[] = [];
      for (let i = 0; i < 15; i++) {
        await new Promise((r) => setTimeout(r, 200));
        const t = performance.now();
        const samples = await exporter.samples();
        durations.push(performance.now() - t);
        if (lastSeen(samples).every((v, n) => v > lastSeen(first)[n]!)) fresh++;
      }
      console.log(`scrapes beside the slow ones: max ${Math.round(Math.max(...durations))} ms; slow reader got ${slowBytes} bytes so far`);
      // The slow scraper is still being served while the others were answered with fresh samples.
      expect(slowDone).toBe(false);
      expect(slowBytes).toBeGreaterThan(0);
      expect(Math.max(...durations)).toBeLessThan(2000);
      expect(fresh).toBeGreaterThanOrEqual(5);
    } finally {
      clearInterval(drip);
      clearInterval(trickle);
      slowReader.destroy();
      slowWriter.destroy();
    }
    expect(exporter.proc.exitCode).toBeNull();
  });
});
