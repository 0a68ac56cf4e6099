import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KIND_CYCLE, startFakeEngine, type FakeEngine } from '../../bench/fake-engine.js';
import { socketGet, socketLines } from '../../bench/lib.js';
import { DockerClient } from '../../src/docker/client.js';
import { readNdjson } from '../../src/docker/ndjson.js';
import { createExporterMetrics } from '../../src/exporter-metrics.js';

const FIXTURES = path.resolve(import.meta.dirname, '../../bench/fixtures');
const recorded = JSON.parse(fs.readFileSync(path.join(FIXTURES, 'containers.json'), 'utf8')) as Record<string, { list: any; inspect: any; stats: any }>;

/** 40 containers: two full KIND_CYCLEs, so 2 exited, 6 limited, 12 busy, 20 idle. */
const N = 40;
const TICK = 100;

/** The set of key paths of a JSON document (array elements collapsed), to compare shapes; the fake's own label aside. */
function shape(v: unknown, prefix = ''): string[] {
  if (Array.isArray(v)) return v.length ? [...new Set(v.flatMap((x) => shape(x, `${prefix}[]`)))] : [`${prefix}[]`];
  if (v && typeof v === 'object') {
    return Object.entries(v)
      .filter(([k]) => k !== 'fake-engine')
      .flatMap(([k, x]) => [`${prefix}.${k}`, ...shape(x, `${prefix}.${k}`)]);
  }
  return [];
}

function request(socketPath: string, method: string, p: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ socketPath, path: p, method }, (res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('fake engine', () => {
  let engine: FakeEngine;
  let sock: string;
  let dir: string;
  const get = async (p: string): Promise<any> => {
    const res = await socketGet(sock, p);
    expect(res.status, `GET ${p}: ${res.body}`).toBe(200);
    return JSON.parse(res.body);
  };
  const idOf = async (kind: string): Promise<string> => {
    const list = (await get('/v1.41/containers/json?all=1')) as Array<{ Id: string; Names: string[] }>;
    return list.find((c) => c.Names[0]!.startsWith(`/fake-${kind}-`))!.Id;
  };

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-engine-test-'));
    sock = path.join(dir, 'docker.sock');
    engine = await startFakeEngine({ socketPath: sock, containers: N, tickMs: TICK });
  });
  afterAll(async () => {
    await engine.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers /_ping, /version and /info as the recorded engine, and refuses a newer client version', async () => {
    const ping = await socketGet(sock, '/_ping');
    expect(ping.status).toBe(200);
    expect(ping.body).toBe('OK');
    expect(ping.headers['api-version']).toBe('1.41');
    expect((await get('/version')).ApiVersion).toBe('1.41');
    const info = await get('/v1.41/info');
    expect(info.ServerVersion).toMatch(/^20\.10\./);
    expect([info.Containers, info.ContainersRunning, info.ContainersStopped]).toEqual([40, 38, 2]);
    const tooNew = await socketGet(sock, '/v1.52/info');
    expect(tooNew.status).toBe(400);
    expect(JSON.parse(tooNew.body).message).toBe('client version 1.52 is too new. Maximum supported API version is 1.41');
    expect((await request(sock, 'POST', '/v1.41/containers/json')).status).toBe(405);
    expect((await socketGet(sock, '/v1.41/nothing')).status).toBe(404);
  });

  it('lists N synthetic containers in the KIND_CYCLE mix, running ones unless all=1, each as recorded', async () => {
    const all = (await get('/v1.41/containers/json?all=1')) as Array<Record<string, any>>;
    const running = (await get('/v1.41/containers/json')) as Array<Record<string, any>>;
    expect(all).toHaveLength(N);
    expect(running).toHaveLength(N - 2);
    expect(new Set(all.map((c) => c.Id)).size).toBe(N);
    for (const c of all) expect(c.Id).toMatch(/^[0-9a-f]{64}$/);
    const kinds = all.map((c) => /^\/fake-(\w+)-(\d+)$/.exec(c.Names[0])!).sort((a, b) => Number(a[2]) - Number(b[2])).map((m) => m[1]);
    expect(kinds).toEqual([...KIND_CYCLE, ...KIND_CYCLE]);
    const busy = all.find((c) => c.Names[0].startsWith('/fake-busy-'))!;
    expect(shape(busy).sort()).toEqual(shape(recorded.busy!.list).sort());
    expect(Object.keys(busy.NetworkSettings.Networks).sort()).toEqual(['bench-record-net', 'bridge']);
    expect(busy.Labels['fake-engine']).toBe('1');
    expect((await socketGet(sock, '/v1.41/containers/json?filters=%7B%22label%22%3A%5B%22x%22%5D%7D')).status).toBe(400);
  });

  it('inspects by id, name and unique prefix with the recorded limits, and 404s an unknown one like the engine', async () => {
    const id = await idOf('limited');
    const inspect = await get(`/v1.41/containers/${id}/json`);
    expect(inspect.Id).toBe(id);
    expect(inspect.HostConfig).toMatchObject({ Memory: 67108864, MemoryReservation: 33554432, NanoCpus: 500000000, PidsLimit: 100, CpuShares: 512 });
    expect(inspect.State.Health.Status).toBe('healthy');
    expect(shape(inspect).sort()).toEqual(shape(recorded.limited!.inspect).sort());
    expect((await get(`/v1.41/containers/${inspect.Name.slice(1)}/json`)).Id).toBe(id);
    expect((await get(`/v1.41/containers/${id.slice(0, 12)}/json`)).Id).toBe(id);
    const missing = await socketGet(sock, '/v1.41/containers/nosuch/json');
    expect(missing.status).toBe(404);
    expect(JSON.parse(missing.body)).toEqual({ message: 'No such container: nosuch' });
    expect((await socketGet(sock, '/v1.41/containers/nosuch/stats?stream=false')).status).toBe(404);
  });

  it('answers one-shot stats at the next tick and stream=false at the second, in the recorded shape', async () => {
    const id = await idOf('limited');
    // Timed by the frames' own `read` (the tick that made them), not by a clock that the load of
    // parallel test files stretches.
    let asked = Date.now();
    const one = await get(`/v1.41/containers/${id}/stats?stream=false&one-shot=true`);
    expect(Date.parse(one.read) - asked).toBeLessThanOrEqual(TICK + 30);
    asked = Date.now();
    const two = await get(`/v1.41/containers/${id}/stats?stream=false`);
    expect(Date.parse(two.read) - asked).toBeGreaterThanOrEqual(TICK);
    expect(Date.parse(two.read) - asked).toBeLessThanOrEqual(2 * TICK + 30);
    expect(one.id).toBe(id);
    expect(one.preread).toBe('0001-01-01T00:00:00Z');
    expect(one.precpu_stats.system_cpu_usage).toBeUndefined();
    expect(two.precpu_stats.system_cpu_usage).toBeGreaterThan(0);
    expect(Date.parse(two.read) - Date.parse(two.preread)).toBe(TICK);
    expect(two.cpu_stats.cpu_usage.total_usage).toBeGreaterThan(two.precpu_stats.cpu_usage.total_usage);
    expect(two.cpu_stats.throttling_data.periods).toBeGreaterThan(0);
    expect(two.pids_stats).toEqual({ current: 2, limit: 100 });
    // The one synthetic part: v1-style blkio entries, which this machine's engine does not report.
    expect(two.blkio_stats.io_service_bytes_recursive.map((e: { op: string }) => e.op)).toEqual(['Read', 'Write', 'Sync', 'Async', 'Discard', 'Total']);
    const withoutBlkio = (s: string[]): string[] => s.filter((k) => !k.startsWith('.blkio_stats')).sort();
    expect(withoutBlkio(shape(two))).toEqual(withoutBlkio(shape(recorded.limited!.stats.stream[1])));
    expect(withoutBlkio(shape(one))).toEqual(withoutBlkio(shape(recorded.limited!.stats.oneShot)));
  });

  it('streams one frame per tick with moving counters, two interfaces for the busy kind, zeros for a stopped one', async () => {
    const busy = await idOf('busy');
    const asked = Date.now();
    const frames = await socketLines(sock, `/v1.41/containers/${busy}/stats`, 4, 20 * TICK);
    expect(frames.lines).toHaveLength(4);
    const parsed = frames.lines.map((l) => JSON.parse(l));
    expect(Date.parse(parsed[0].read) - asked).toBeLessThanOrEqual(TICK + 30);
    for (let i = 1; i < parsed.length; i++) {
      expect(Date.parse(parsed[i].read) - Date.parse(parsed[i - 1].read)).toBeGreaterThanOrEqual(TICK - 5);
      expect(parsed[i].networks.eth0.rx_bytes).toBeGreaterThanOrEqual(parsed[i - 1].networks.eth0.rx_bytes);
      expect(parsed[i].cpu_stats.system_cpu_usage).toBeGreaterThan(parsed[i - 1].cpu_stats.system_cpu_usage);
    }
    expect(Object.keys(parsed[0].networks)).toEqual(['eth0', 'eth1']);
    const exited = await idOf('exited');
    const zero = await get(`/v1.41/containers/${exited}/stats?stream=false`);
    expect(zero.read).toBe('0001-01-01T00:00:00Z');
    expect(zero.cpu_stats.cpu_usage.total_usage).toBe(0);
    expect(zero.id).toBe(exited);
  });

  it('emits lifecycle events on a held-open /events with exact nanosecond times, replays since/until, ends removed streams', async () => {
    const events: Array<{ value: any; line: string }> = [];
    const ac = new AbortController();
    const res = await new Promise<http.IncomingMessage>((resolve) => {
      http.get({ socketPath: sock, path: `/v1.41/events?filters=${encodeURIComponent(JSON.stringify({ type: ['container'] }))}`, signal: ac.signal }, resolve).on('error', () => undefined);
    });
    expect(res.headers['content-type']).toBe('application/json');
    const reading = readNdjson(res, { onRecord: (value, line) => events.push({ value, line }), onBadRecord: () => expect.fail('bad record') }).catch(() => undefined);
    const before = BigInt(Date.now()) * 1_000_000n;
    const id = engine.add('limited');
    expect(engine.ids()).toContain(id);
    const stream = socketLines(sock, `/v1.41/containers/${id}/stats`, 100, 20 * TICK);
    await new Promise((r) => setTimeout(r, 2 * TICK));
    expect(engine.remove(id)).toBe(true);
    const streamed = await stream;
    expect(streamed.lines.length).toBeGreaterThanOrEqual(1);
    expect(streamed.lines.length).toBeLessThan(5);
    await new Promise((r) => setTimeout(r, 50));
    ac.abort();
    await reading;
    const mine = events.filter((e) => e.value.Actor.ID === id);
    expect(mine.map((e) => e.value.Action)).toEqual(['create', 'start', 'kill', 'die', 'destroy']);
    const nanos = mine.map((e) => BigInt(/"timeNano":(\d+)/.exec(e.line)![1]!));
    for (const n of nanos) expect(n.toString()).toHaveLength(19);
    for (let i = 1; i < nanos.length; i++) expect(nanos[i]! > nanos[i - 1]!).toBe(true);
    expect(nanos[0]! >= before).toBe(true);
    expect(mine[0]!.value.Actor.Attributes.name).toMatch(/^fake-limited-\d{5}$/);

    // since = the start event's own time: the engine replays from it, inclusive; until ends the answer.
    const since = `${nanos[1]! / 1_000_000_000n}.${(nanos[1]! % 1_000_000_000n).toString().padStart(9, '0')}`;
    const until = `${nanos[3]! / 1_000_000_000n}.${(nanos[3]! % 1_000_000_000n).toString().padStart(9, '0')}`;
    const replay = await socketLines(sock, `/v1.41/events?since=${since}&until=${until}&filters=${encodeURIComponent(JSON.stringify({ container: [id] }))}`, 100, 5000);
    expect(replay.lines.map((l) => JSON.parse(l).Action)).toEqual(['start', 'kill', 'die']);
    expect(replay.atMs.at(-1)!).toBeLessThan(1000);
    expect((await socketGet(sock, `/v1.41/containers/${id}/json`)).status).toBe(404);
  });

  it('reports disk usage for every container and one volume per limited container', async () => {
    const df = await get('/v1.41/system/df');
    expect(df.Containers).toHaveLength(engine.ids().length);
    expect(df.Volumes).toHaveLength(6);
    expect(df.Volumes[0]).toMatchObject({ Driver: 'local', UsageData: { RefCount: 1, Size: 1048576 } });
    const idle = df.Containers.find((c: { Names: string[] }) => c.Names[0]!.startsWith('/fake-idle-'));
    expect(idle.SizeRw).toBe(6);
    expect(idle.SizeRootFs).toBeGreaterThan(1_000_000);
    expect(df.Images.length).toBeGreaterThan(0);
  });

  it('adds and removes containers through the control endpoints, and counts requests by route', async () => {
    const created = await request(sock, 'POST', '/_fake/containers?kind=idle');
    expect(created.status).toBe(201);
    const { Id } = JSON.parse(created.body) as { Id: string };
    expect((await get(`/v1.41/containers/${Id}/json`)).State.Status).toBe('running');
    expect((await request(sock, 'DELETE', `/_fake/containers/${Id}`)).status).toBe(204);
    expect((await request(sock, 'DELETE', `/_fake/containers/${Id}`)).status).toBe(404);
    expect((await request(sock, 'POST', '/_fake/containers?kind=nonsense')).status).toBe(400);
    const status = JSON.parse((await socketGet(sock, '/_fake/status')).body);
    expect(status.containers).toBe(N);
    expect(status.requests['/containers/{id}/json']).toBeGreaterThanOrEqual(5);
  });

  it('is spoken to by the exporter\'s own DockerClient: negotiates 1.41 and reads its stats stream', async () => {
    const registry = new Registry();
    const client = new DockerClient({ host: `unix://${sock}`, tlsVerify: false, certPath: '', timeoutMs: 5000, maxResponseBytes: 1 << 20 }, createExporterMetrics(registry), pino({ level: 'silent' }));
    const info = await client.get<{ Containers: number }>('info');
    expect(client.apiVersion).toBe('1.41');
    expect(info.Containers).toBe(engine.ids().length);
    const id = await idOf('idle');
    const ac = new AbortController();
    const res = await client.stream('stats', { id, query: { stream: true }, signal: ac.signal });
    const records: any[] = [];
    await readNdjson(res, {
      onRecord: (v) => {
        records.push(v);
        if (records.length === 2) ac.abort();
      },
      onBadRecord: () => expect.fail('bad record'),
    }).catch(() => undefined);
    expect(records.map((r) => r.id)).toEqual([id, id]);
    await expect(client.get('inspect', { id: 'nosuch' })).rejects.toMatchObject({ statusCode: 404 });
  });
});
