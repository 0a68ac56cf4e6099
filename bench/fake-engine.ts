/**
 * A fake Docker Engine for scale runs: serves the payloads recorded from the real engine
 * (bench/fixtures/, see bench/record-fixtures.ts) for N synthetic containers over a unix socket,
 * with the engine's stream semantics, so the benchmark can measure the exporter's own cost at
 * 1,000 or 5,000 containers where real ones would not fit on the machine.
 *
 * What it reproduces, as measured on dockerd 20.10:
 * - stats come from one collector loop that samples every subscribed container once per tick
 *   (1 s): `stream=true` gets a frame at every tick, the first one 0–1 s after the request;
 *   `stream=false` answers at the second tick (the first frame has no precpu), `one-shot=true` at
 *   the first; a stopped container's frames are all zero; a removed container's streams end;
 * - `/events` is NDJSON held open, with `since`/`until` replay, and the lifecycle events of
 *   containers added or removed through the control endpoints (and, optionally, health-check
 *   exec events);
 * - `/v1.xx/` prefixes, `Api-Version` headers, 404 `{"message":"No such container: …"}`, and 400
 *   for a client version newer than the engine's or older than its `MinAPIVersion` (Docker 29
 *   refuses everything below 1.44 so), in moby's words (api/server/middleware/version.go).
 * The one synthetic part: the blkio entries of the "limited" kind, because this machine's engine
 * (cgroup v1 on a virtio disk) reports none, in the shape the v1 engine reports them.
 *
 * Run alone: `node --import tsx bench/fake-engine.ts --socket /tmp/fake.sock --containers 1000`.
 * Control (not part of the Engine API; the exporter only ever sends GETs):
 * `POST /_fake/containers?kind=busy` → `{"Id","Name"}`, `DELETE /_fake/containers/{id}`,
 * `GET /_fake/status`.
 */
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CgroupTree } from './cgroup-tree.js';

export type Kind = 'idle' | 'busy' | 'limited' | 'exited';

/** The mix of a synthetic host: half idle, some busy on two networks, some limited + health-checked, 5% exited. */
export const KIND_CYCLE: readonly Kind[] = [
  'idle', 'busy', 'idle', 'limited', 'idle', 'busy', 'idle', 'idle', 'busy', 'idle',
  'limited', 'idle', 'busy', 'idle', 'idle', 'busy', 'idle', 'limited', 'busy', 'exited',
];

export interface FakeEngineOptions {
  socketPath: string;
  /** Synthetic containers at start, kinds following KIND_CYCLE. */
  containers: number;
  /** Period of the stats collector loop (the engine's is 1 s). */
  tickMs?: number;
  /** Health-check period of "limited" containers, emitting exec_* events (0: none; Docker's default is 30 s). */
  healthIntervalMs?: number;
  /** Time /system/df takes to answer (the real one walks every layer; seconds at scale). */
  dfDelayMs?: number;
  /**
   * Time /version takes to answer. The exporter negotiates its API version with it before any other
   * request, so this holds back its first requests: the golden test uses it to fix which of them
   * start before the negotiation ends.
   */
  versionDelayMs?: number;
  fixturesDir?: string;
  /**
   * Also keep a simulated host's cgroup v2 tree and /proc for the containers under this directory
   * (bench/cgroup-tree.ts), for the cgroupfs source (`--path.rootfs <dir>`): each running container
   * gets a pid of its own (5,000,000 + its index, above any real pid_max) and its files.
   */
  rootfs?: string;
}

export interface FakeEngineStatus {
  containers: number;
  running: number;
  statsStreams: number;
  eventStreams: number;
  /** Requests by route template, as the exporter's `endpoint` label names them. */
  requests: Record<string, number>;
  /** Requests by the API version of their path (`1.52`), `unversioned` for a path without one. */
  apiVersions: Record<string, number>;
  /** Stats frames produced (one per container per tick with subscribers, plus one per one-shot). */
  statsSamples: number;
}

export interface FakeEngine {
  socketPath: string;
  ids(): string[];
  /** Creates and starts a container, with its create/start events; returns its id. */
  add(kind?: Kind): string;
  /** Kills and removes a container, with its kill/die/destroy events; ends its stats streams. */
  remove(id: string): boolean;
  status(): FakeEngineStatus;
  close(): Promise<void>;
}

interface RecordedContainer {
  list: Record<string, unknown>;
  inspect: Record<string, unknown>;
  stats: { oneShot: Record<string, unknown>; noStream: Record<string, unknown>; stream?: Array<Record<string, unknown>> };
}

interface Fixtures {
  ping: { headers: Record<string, string>; body: string };
  version: Record<string, unknown>;
  info: Record<string, unknown>;
  containers: Record<Kind, RecordedContainer>;
  events: Array<Record<string, unknown>>;
  df: Record<string, unknown>;
}

const DEFAULT_FIXTURES = path.join(path.dirname(fileURLToPath(import.meta.url)), 'fixtures');

function loadFixtures(dir: string): Fixtures {
  const json = (f: string): unknown => JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8'));
  return {
    ping: json('ping.json') as Fixtures['ping'],
    version: json('version.json') as Record<string, unknown>,
    info: json('info.json') as Record<string, unknown>,
    containers: json('containers.json') as Record<Kind, RecordedContainer>,
    events: fs
      .readFileSync(path.join(dir, 'events.ndjson'), 'utf8')
      .split('\n')
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as Record<string, unknown>),
    df: json('system-df.json') as Record<string, unknown>,
  };
}

/**
 * A JSON document with holes: rendered by concatenation, so producing thousands of stats frames a
 * second costs the fake engine next to nothing and leaves the CPU to the exporter under test.
 */
class Template {
  private readonly parts: string[];
  private readonly slots: string[];

  /** `holes`: slot name → path in `doc`; paths absent from `doc` are skipped. */
  constructor(doc: unknown, holes: Record<string, Array<string | number>>) {
    const copy = structuredClone(doc) as Record<string, unknown>;
    for (const [name, p] of Object.entries(holes)) {
      let node: Record<string | number, unknown> | undefined = copy;
      for (const key of p.slice(0, -1)) node = node?.[key] as Record<string | number, unknown> | undefined;
      const last = p[p.length - 1]!;
      if (node && typeof node === 'object' && last in node) node[last] = `@@${name}@@`;
    }
    const split = JSON.stringify(copy).split(/"@@([A-Za-z0-9_.]+)@@"/);
    this.parts = split.filter((_, i) => i % 2 === 0);
    this.slots = split.filter((_, i) => i % 2 === 1);
  }

  /** Values are raw JSON fragments (`JSON.stringify` strings; numbers as they are). */
  render(values: Record<string, string | number>): string {
    let out = this.parts[0]!;
    for (let i = 0; i < this.slots.length; i++) {
      const v = values[this.slots[i]!];
      out += (v === undefined ? 'null' : String(v)) + this.parts[i + 1]!;
    }
    return out;
  }
}

/** How a v1 engine reports block I/O (major:minor of the disk, one entry per op). */
function blkioEntries(read: string, write: string): Array<Record<string, unknown>> {
  return ['Read', 'Write', 'Sync', 'Async', 'Discard', 'Total'].map((op) => ({
    major: 254,
    minor: 0,
    op,
    value: op === 'Read' ? `@@${read}@@` : op === 'Write' ? `@@${write}@@` : 0,
  }));
}

const NET_FIELDS = ['rx_bytes', 'rx_packets', 'tx_bytes', 'tx_packets'] as const;

/** The holes of a stats frame: what changes from one sample to the next. */
function statsTemplate(frame: Record<string, unknown>, kind: Kind, withPre: boolean): Template {
  const doc = structuredClone(frame) as Record<string, any>;
  if (kind === 'limited' && doc.blkio_stats) {
    doc.blkio_stats.io_service_bytes_recursive = blkioEntries('blkReadBytes', 'blkWriteBytes');
    doc.blkio_stats.io_serviced_recursive = blkioEntries('blkReads', 'blkWrites');
  }
  const holes: Record<string, Array<string | number>> = {
    read: ['read'],
    id: ['id'],
    name: ['name'],
    total: ['cpu_stats', 'cpu_usage', 'total_usage'],
    user: ['cpu_stats', 'cpu_usage', 'usage_in_usermode'],
    kernel: ['cpu_stats', 'cpu_usage', 'usage_in_kernelmode'],
    system: ['cpu_stats', 'system_cpu_usage'],
    periods: ['cpu_stats', 'throttling_data', 'periods'],
    throttled: ['cpu_stats', 'throttling_data', 'throttled_periods'],
    throttledTime: ['cpu_stats', 'throttling_data', 'throttled_time'],
    pgfault: ['memory_stats', 'stats', 'total_pgfault'],
  };
  if (withPre) {
    Object.assign(holes, {
      preread: ['preread'],
      preTotal: ['precpu_stats', 'cpu_usage', 'total_usage'],
      preUser: ['precpu_stats', 'cpu_usage', 'usage_in_usermode'],
      preKernel: ['precpu_stats', 'cpu_usage', 'usage_in_kernelmode'],
      preSystem: ['precpu_stats', 'system_cpu_usage'],
      prePeriods: ['precpu_stats', 'throttling_data', 'periods'],
      preThrottled: ['precpu_stats', 'throttling_data', 'throttled_periods'],
      preThrottledTime: ['precpu_stats', 'throttling_data', 'throttled_time'],
    });
  }
  for (const ifname of Object.keys((doc.networks ?? {}) as object)) {
    for (const f of NET_FIELDS) holes[`${ifname}.${f}`] = ['networks', ifname, f];
  }
  return new Template(doc, holes);
}

/** Per-kind load of a synthetic container, so that counters move as on a real host. */
const CPU_CORES: Record<Kind, number> = { idle: 0.0001, busy: 0.003, limited: 0.05, exited: 0 };
const NET_BYTES_PER_S: Record<Kind, number> = { idle: 2, busy: 300, limited: 20, exited: 0 };

interface FakeContainer {
  id: string;
  name: string;
  kind: Kind;
  index: number;
  createdMs: number;
  running: boolean;
  streams: Set<http.ServerResponse>;
  inspectJson?: string;
}

interface Waiter {
  container: FakeContainer;
  res: http.ServerResponse;
  ticksLeft: number;
  oneShot: boolean;
}

/** ISO time with nanoseconds, as the engine writes it. */
function engineTime(ms: number): string {
  const iso = new Date(Math.floor(ms)).toISOString();
  const nanos = Math.floor((ms % 1000) * 1e6).toString().padStart(9, '0');
  return `${iso.slice(0, 19)}.${nanos}Z`;
}

function idFor(seed: string): string {
  return crypto.createHash('sha256').update(seed).digest('hex');
}

const ROUTES: Array<[RegExp, string]> = [
  [/^\/_ping$/, '/_ping'],
  [/^\/version$/, '/version'],
  [/^\/info$/, '/info'],
  [/^\/containers\/json$/, '/containers/json'],
  [/^\/containers\/[^/]+\/json$/, '/containers/{id}/json'],
  [/^\/containers\/[^/]+\/stats$/, '/containers/{id}/stats'],
  [/^\/images\/.+\/json$/, '/images/{name}/json'],
  [/^\/events$/, '/events'],
  [/^\/system\/df$/, '/system/df'],
];

/** Starts the fake engine on `socketPath` (a stale socket file there is replaced). */
export async function startFakeEngine(opts: FakeEngineOptions): Promise<FakeEngine> {
  const fx = loadFixtures(opts.fixturesDir ?? DEFAULT_FIXTURES);
  const tickMs = opts.tickMs ?? 1000;
  const apiVersion = String(fx.version.ApiVersion);
  const minApiVersion = typeof fx.version.MinAPIVersion === 'string' ? fx.version.MinAPIVersion : undefined;
  const apiVersions: Record<string, number> = {};
  const baseHeaders: Record<string, string> = {
    'Api-Version': apiVersion,
    'Docker-Experimental': String(fx.ping.headers['docker-experimental'] ?? 'false'),
    Ostype: String(fx.ping.headers.ostype ?? 'linux'),
    Server: String(fx.ping.headers.server ?? `Docker/${String(fx.version.Version)} (linux)`),
  };
  const recordedName = (k: Kind): string => String(fx.containers[k].inspect.Name).replace(/^\//, '');
  const recordedId = (k: Kind): string => String(fx.containers[k].inspect.Id);

  const kinds = Object.keys(fx.containers) as Kind[];
  const frames = new Map<Kind, { first: Template; next: Template }>();
  for (const k of kinds) {
    const s = fx.containers[k].stats;
    frames.set(k, { first: statsTemplate(s.oneShot, k, false), next: statsTemplate(s.stream?.[1] ?? s.noStream, k, true) });
  }
  // A stopped container's frame: all zero, only its id and name filled in.
  const stoppedFrame = new Template(fx.containers.exited.stats.oneShot, { id: ['id'], name: ['name'] });

  const containers = new Map<string, FakeContainer>();
  const byName = new Map<string, FakeContainer>();
  let nextIndex = 0;
  let listCache: { all?: string; running?: string } = {};
  const waiters = new Set<Waiter>();
  const eventStreams = new Set<{ res: http.ServerResponse; filters: Record<string, string[]>; until?: bigint }>();
  const history: Array<{ timeNano: bigint; line: string; event: Record<string, any> }> = [];
  const requests: Record<string, number> = {};
  let statsSamples = 0;
  const startedMs = Date.now();
  const tree = opts.rootfs === undefined ? undefined : new CgroupTree(opts.rootfs);
  const pidOf = (c: FakeContainer): number => 5_000_000 + c.index;
  /** The host's cumulative CPU time in ns, as system_cpu_usage counts it (2 cores). */
  const hostCpuNs = (ms: number): number => Math.floor(((ms - startedMs) / 1000 + 1_000_000) * 2 * 100) * 1e7;

  function create(kind: Kind, atMs = Date.now()): FakeContainer {
    const index = nextIndex++;
    const name = `fake-${kind}-${String(index).padStart(5, '0')}`;
    const c: FakeContainer = { id: idFor(`fake-engine-${index}`), name, kind, index, createdMs: atMs, running: kind !== 'exited', streams: new Set() };
    containers.set(c.id, c);
    byName.set(name, c);
    listCache = {};
    if (tree && c.running) {
      const stats = fx.containers[kind].stats.oneShot as { networks?: object };
      const mode = String((fx.containers[kind].inspect.HostConfig as { NetworkMode?: string }).NetworkMode);
      const pidsLimit = (fx.containers[kind].inspect.HostConfig as { PidsLimit?: number | null }).PidsLimit;
      tree.add(
        {
          id: c.id,
          pid: pidOf(c),
          index,
          cores: CPU_CORES[kind],
          interfaces: mode === 'host' || mode === 'none' ? [] : Object.keys(stats.networks ?? {}),
          netBytesPerS: NET_BYTES_PER_S[kind],
          pidsMax: pidsLimit ?? undefined,
          io: kind === 'limited',
          createdMs: atMs,
        },
        Date.now(),
      );
    }
    return c;
  }

  function rewrite(doc: unknown, c: FakeContainer): Record<string, any> {
    const text = JSON.stringify(doc).split(recordedId(c.kind)).join(c.id).split(recordedName(c.kind)).join(c.name);
    return JSON.parse(text) as Record<string, any>;
  }

  function listEntry(c: FakeContainer): Record<string, any> {
    const e = rewrite(fx.containers[c.kind].list, c);
    e.Created = Math.floor(c.createdMs / 1000);
    e.Labels = { ...(e.Labels as object), 'fake-engine': '1' };
    return e;
  }

  function inspectOf(c: FakeContainer): string {
    if (c.inspectJson) return c.inspectJson;
    const doc = rewrite(fx.containers[c.kind].inspect, c);
    doc.Created = engineTime(c.createdMs);
    (doc.Config as Record<string, unknown>).Labels = { ...((doc.Config as { Labels?: object }).Labels ?? {}), 'fake-engine': '1' };
    if (c.running) (doc.State as Record<string, unknown>).StartedAt = engineTime(c.createdMs + 50);
    if (tree && c.running) (doc.State as Record<string, unknown>).Pid = pidOf(c);
    c.inspectJson = JSON.stringify(doc);
    return c.inspectJson;
  }

  function frameValues(c: FakeContainer, nowMs: number, withPre: boolean): Record<string, string | number> {
    const v: Record<string, string | number> = { id: JSON.stringify(c.id), name: JSON.stringify(`/${c.name}`), read: JSON.stringify(engineTime(nowMs)) };
    const cpuAt = (ms: number, keys: readonly [string, string, string, string, string, string, string]): void => {
      const t = Math.max(0, (ms - c.createdMs) / 1000);
      const cpuNs = Math.floor((CPU_CORES[c.kind] * t + 0.05) * 1e9) + (c.index % 97) * 1000;
      const values = [cpuNs, Math.floor((cpuNs * 0.65) / 1e7) * 1e7, Math.floor((cpuNs * 0.3) / 1e7) * 1e7, hostCpuNs(ms), Math.floor(t * 10), Math.floor(t * 0.5), Math.floor(t * 5e6)];
      keys.forEach((k, i) => (v[k] = values[i]!));
    };
    cpuAt(nowMs, ['total', 'user', 'kernel', 'system', 'periods', 'throttled', 'throttledTime']);
    if (withPre) {
      v.preread = JSON.stringify(engineTime(nowMs - tickMs));
      cpuAt(nowMs - tickMs, ['preTotal', 'preUser', 'preKernel', 'preSystem', 'prePeriods', 'preThrottled', 'preThrottledTime']);
    }
    const t = Math.max(0, (nowMs - c.createdMs) / 1000);
    const bytes = Math.floor(NET_BYTES_PER_S[c.kind] * t) + 698;
    for (const ifname of ['eth0', 'eth1']) {
      v[`${ifname}.rx_bytes`] = bytes;
      v[`${ifname}.tx_bytes`] = Math.floor(bytes / 3);
      v[`${ifname}.rx_packets`] = Math.floor(bytes / 70);
      v[`${ifname}.tx_packets`] = Math.floor(bytes / 210);
    }
    v.pgfault = 1000 + Math.floor(t * 3);
    v.blkReadBytes = 4096 * (10 + Math.floor(t / 10));
    v.blkWriteBytes = 65536 * 16 * Math.floor(t);
    v.blkReads = 10 + Math.floor(t / 10);
    v.blkWrites = 16 * Math.floor(t);
    return v;
  }

  function frame(c: FakeContainer, nowMs: number, first: boolean): string {
    statsSamples++;
    if (!c.running) return stoppedFrame.render({ id: JSON.stringify(c.id), name: JSON.stringify(`/${c.name}`) });
    const t = frames.get(c.kind)!;
    return first ? t.first.render(frameValues(c, nowMs, false)) : t.next.render(frameValues(c, nowMs, true));
  }

  // The engine's stats collector: one loop, one sample per subscribed container per tick.
  const ticker = setInterval(() => {
    const now = Date.now();
    for (const c of containers.values()) {
      if (c.streams.size === 0) continue;
      const body = frame(c, now, false) + '\n';
      for (const res of c.streams) {
        // A subscriber that does not read loses frames, as with the engine's publisher.
        if (res.writableNeedDrain) continue;
        res.write(body);
      }
    }
    for (const w of waiters) {
      if (--w.ticksLeft > 0) continue;
      waiters.delete(w);
      if (!w.res.destroyed) w.res.end(frame(w.container, now, w.oneShot) + '\n');
    }
  }, tickMs);

  function lookup(ref: string): FakeContainer | undefined {
    const direct = containers.get(ref) ?? byName.get(ref.replace(/^\//, ''));
    if (direct) return direct;
    if (ref.length < 1 || !/^[0-9a-f]+$/.test(ref)) return undefined;
    let found: FakeContainer | undefined;
    for (const c of containers.values()) {
      if (!c.id.startsWith(ref)) continue;
      if (found) return undefined;
      found = c;
    }
    return found;
  }

  // ---- events ----
  const eventTemplates = new Map<string, Record<string, any>>();
  for (const e of fx.events) {
    const action = String(e.Action).split(':')[0]!;
    if (!eventTemplates.has(action)) eventTemplates.set(action, e);
  }
  const recordedProbe = fx.events[0] as { id?: string; Actor?: { Attributes?: Record<string, string> } } | undefined;
  const probeId = String(recordedProbe?.id ?? '');
  const probeName = String(recordedProbe?.Actor?.Attributes?.name ?? '');
  let lastNano = 0n;

  function emit(action: string, c: FakeContainer, extra: Record<string, string> = {}): void {
    const base = eventTemplates.get(action.split(':')[0]!) ?? eventTemplates.get('create')!;
    const e = JSON.parse(JSON.stringify(base).split(probeId).join(c.id).split(probeName).join(c.name)) as Record<string, any>;
    let nano = BigInt(Date.now()) * 1_000_000n + BigInt(Math.floor((performance.now() % 1) * 1e6));
    if (nano <= lastNano) nano = lastNano + 1n;
    lastNano = nano;
    e.status = action;
    e.Action = action;
    e.Actor.Attributes = { ...e.Actor.Attributes, 'fake-engine': '1', ...extra };
    e.time = Number(nano / 1_000_000_000n);
    // timeNano must keep its 19 digits exactly: written by hand, not through a JS number.
    e.timeNano = '@@NANO@@';
    const line = JSON.stringify(e).replace('"@@NANO@@"', nano.toString());
    history.push({ timeNano: nano, line, event: e });
    if (history.length > 5000) history.splice(0, history.length - 5000);
    for (const s of eventStreams) {
      if (matches(e, s.filters)) s.res.write(line + '\n');
    }
  }

  function matches(e: Record<string, any>, filters: Record<string, string[]>): boolean {
    for (const [key, values] of Object.entries(filters)) {
      if (values.length === 0) continue;
      const ok = values.some((v) => {
        switch (key) {
          case 'type':
            return e.Type === v;
          case 'event':
            return String(e.Action).split(':')[0] === v;
          case 'container':
            return e.Actor?.ID === v || e.Actor?.Attributes?.name === v;
          case 'label': {
            const [k, val] = v.split('=', 2) as [string, string | undefined];
            const attrs = (e.Actor?.Attributes ?? {}) as Record<string, string>;
            return k in attrs && (val === undefined || attrs[k] === val);
          }
          default:
            return false;
        }
      });
      if (!ok) return false;
    }
    return true;
  }

  const healthTimer =
    opts.healthIntervalMs && opts.healthIntervalMs > 0
      ? setInterval(() => {
          for (const c of containers.values()) {
            if (c.kind !== 'limited' || !c.running) continue;
            const execID = idFor(`exec-${c.id}-${Date.now()}`);
            emit('exec_create: /bin/sh -c true', c, { execID });
            emit('exec_start: /bin/sh -c true', c, { execID });
            emit('exec_die', c, { execID, exitCode: '0' });
          }
        }, opts.healthIntervalMs)
      : undefined;

  // The tree's moving counters, every 5 s (its files are rewritten in place, ~1,000 × 3 small writes).
  const treeTimer = tree ? setInterval(() => tree.tick(), 5000) : undefined;

  for (let i = 0; i < opts.containers; i++) create(KIND_CYCLE[i % KIND_CYCLE.length]!, startedMs - 3600_000 + i);

  function add(kind: Kind = 'busy'): string {
    const c = create(kind);
    emit('create', c);
    if (c.running) emit('start', c);
    return c.id;
  }

  function remove(id: string): boolean {
    const c = lookup(id);
    if (!c) return false;
    if (c.running) {
      emit('kill', c, { signal: '9' });
      emit('die', c, { exitCode: '137' });
    }
    containers.delete(c.id);
    byName.delete(c.name);
    tree?.remove(c.id);
    listCache = {};
    for (const res of c.streams) res.end();
    c.streams.clear();
    for (const w of waiters) if (w.container === c) w.ticksLeft = 1;
    emit('destroy', c);
    return true;
  }

  // ---- HTTP ----
  function send(res: http.ServerResponse, status: number, body: string, type = 'application/json'): void {
    res.writeHead(status, { ...baseHeaders, 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
    res.end(body);
  }
  const notFound = (res: http.ServerResponse, ref: string): void => send(res, 404, JSON.stringify({ message: `No such container: ${ref}` }) + '\n');
  const badRequest = (res: http.ServerResponse, message: string): void => send(res, 400, JSON.stringify({ message }) + '\n');

  function flag(q: URLSearchParams, key: string, dflt: boolean): boolean {
    const v = q.get(key);
    if (v === null) return dflt;
    return v === '1' || v.toLowerCase() === 'true';
  }

  function parseFilters(q: URLSearchParams): Record<string, string[]> | Error {
    const raw = q.get('filters');
    if (!raw) return {};
    try {
      const parsed = JSON.parse(raw) as Record<string, string[] | Record<string, boolean>>;
      const out: Record<string, string[]> = {};
      // The engine takes both {"type":["container"]} and the older {"type":{"container":true}}.
      for (const [k, v] of Object.entries(parsed)) out[k] = Array.isArray(v) ? v : Object.keys(v).filter((x) => v[x]);
      return out;
    } catch {
      return new Error(`invalid filter '${raw}'`);
    }
  }

  function listJson(all: boolean): string {
    const key = all ? 'all' : 'running';
    const cached = listCache[key];
    if (cached) return cached;
    const entries: string[] = [];
    // Newest first, as the engine lists them.
    const sorted = [...containers.values()].sort((a, b) => b.createdMs - a.createdMs || b.index - a.index);
    for (const c of sorted) if (all || c.running) entries.push(JSON.stringify(listEntry(c)));
    const body = `[${entries.join(',')}]\n`;
    listCache[key] = body;
    return body;
  }

  function handleApi(route: string, p: string, q: URLSearchParams, req: http.IncomingMessage, res: http.ServerResponse): void {
    requests[route] = (requests[route] ?? 0) + 1;
    switch (route) {
      case '/_ping':
        res.writeHead(200, { ...baseHeaders, 'Cache-Control': 'no-cache, no-store, must-revalidate', Pragma: 'no-cache', 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': 2 });
        res.end(req.method === 'HEAD' ? undefined : fx.ping.body);
        return;
      case '/version': {
        const answer = (): void => {
          if (!res.destroyed) send(res, 200, JSON.stringify(fx.version) + '\n');
        };
        if (opts.versionDelayMs) setTimeout(answer, opts.versionDelayMs);
        else answer();
        return;
      }
      case '/info': {
        const running = [...containers.values()].filter((c) => c.running).length;
        return send(res, 200, JSON.stringify({ ...fx.info, Containers: containers.size, ContainersRunning: running, ContainersPaused: 0, ContainersStopped: containers.size - running }) + '\n');
      }
      case '/containers/json': {
        const filters = parseFilters(q);
        if (filters instanceof Error) return badRequest(res, filters.message);
        const unsupported = Object.keys(filters).filter((k) => filters[k]!.length > 0);
        if (unsupported.length) return badRequest(res, `the fake engine does not implement container list filters (${unsupported.join(', ')})`);
        return send(res, 200, listJson(flag(q, 'all', false)));
      }
      case '/containers/{id}/json': {
        const ref = decodeURIComponent(p.split('/')[2]!);
        const c = lookup(ref);
        return c ? send(res, 200, inspectOf(c) + '\n') : notFound(res, ref);
      }
      case '/images/{name}/json': {
        // An image is known by the references its containers were created from, and is the one they run.
        const ref = decodeURIComponent(p.slice('/images/'.length, -'/json'.length));
        for (const c of containers.values()) {
          const doc = JSON.parse(inspectOf(c)) as { Image: string; Config: { Image: string } };
          if (doc.Config.Image === ref) return send(res, 200, JSON.stringify({ Id: doc.Image, RepoTags: [ref] }) + '\n');
        }
        return send(res, 404, JSON.stringify({ message: `No such image: ${ref}` }) + '\n');
      }
      case '/containers/{id}/stats': {
        const ref = decodeURIComponent(p.split('/')[2]!);
        const c = lookup(ref);
        if (!c) return notFound(res, ref);
        const stream = flag(q, 'stream', true);
        if (!stream && !c.running) {
          // As the engine: a stopped container's one-shot answer is immediate and all zero.
          return send(res, 200, frame(c, Date.now(), true) + '\n');
        }
        res.writeHead(200, { ...baseHeaders });
        res.flushHeaders();
        if (stream) {
          c.streams.add(res);
          res.on('close', () => c.streams.delete(res));
        } else {
          const oneShot = flag(q, 'one-shot', false);
          const w: Waiter = { container: c, res, ticksLeft: oneShot ? 1 : 2, oneShot };
          waiters.add(w);
          res.on('close', () => waiters.delete(w));
        }
        return;
      }
      case '/events': {
        const filters = parseFilters(q);
        if (filters instanceof Error) return badRequest(res, filters.message);
        const since = q.get('since');
        const until = q.get('until');
        const toNano = (s: string): bigint => {
          const [sec, frac = ''] = s.split('.');
          return BigInt(sec!) * 1_000_000_000n + BigInt((frac + '000000000').slice(0, 9));
        };
        res.writeHead(200, { ...baseHeaders, 'Content-Type': 'application/json' });
        res.flushHeaders();
        const untilNano = until ? toNano(until) : undefined;
        if (since) {
          const sinceNano = toNano(since);
          for (const h of history) {
            if (h.timeNano < sinceNano) continue;
            if (untilNano !== undefined && h.timeNano > untilNano) break;
            if (matches(h.event, filters)) res.write(h.line + '\n');
          }
        }
        if (untilNano !== undefined && untilNano <= BigInt(Date.now()) * 1_000_000n) {
          res.end();
          return;
        }
        const s = { res, filters, until: untilNano };
        eventStreams.add(s);
        const timer = untilNano === undefined ? undefined : setTimeout(() => res.end(), Number(untilNano / 1_000_000n) - Date.now());
        res.on('close', () => {
          clearTimeout(timer);
          eventStreams.delete(s);
        });
        return;
      }
      case '/system/df': {
        const answer = (): void => {
          if (res.destroyed) return;
          const dfContainers = fx.df.Containers as Array<Record<string, unknown>>;
          const rowOf = (k: Kind): Record<string, unknown> | undefined => dfContainers.find((r) => (r.Names as string[] | undefined)?.[0] === `/${recordedName(k)}`);
          const rows: string[] = [];
          const volumes: Array<Record<string, unknown>> = [];
          const vol = (fx.df.Volumes as Array<Record<string, any>>)[0];
          for (const c of containers.values()) {
            const row = rowOf(c.kind);
            rows.push(JSON.stringify({ ...listEntry(c), ...(row?.SizeRw !== undefined ? { SizeRw: row.SizeRw } : {}), SizeRootFs: row?.SizeRootFs ?? 0 }));
            if (c.kind === 'limited' && vol) {
              const name = `fake-vol-${String(c.index).padStart(5, '0')}`;
              volumes.push({ ...vol, Name: name, Mountpoint: `/var/lib/docker/volumes/${name}/_data` });
            }
          }
          const body = JSON.stringify({ ...fx.df, Containers: '@@ROWS@@', Volumes: volumes }).replace('"@@ROWS@@"', `[${rows.join(',')}]`);
          send(res, 200, body + '\n');
        };
        if (opts.dfDelayMs) setTimeout(answer, opts.dfDelayMs);
        else answer();
        return;
      }
    }
  }

  function handleControl(p: string, q: URLSearchParams, req: http.IncomingMessage, res: http.ServerResponse): void {
    if (p === '/_fake/containers' && req.method === 'POST') {
      const kind = (q.get('kind') ?? 'busy') as Kind;
      if (!kinds.includes(kind)) return badRequest(res, `kind must be one of ${kinds.join(', ')}`);
      const id = add(kind);
      return send(res, 201, JSON.stringify({ Id: id, Name: containers.get(id)!.name }) + '\n');
    }
    const m = /^\/_fake\/containers\/([^/]+)$/.exec(p);
    if (m && req.method === 'DELETE') {
      if (!remove(decodeURIComponent(m[1]!))) return notFound(res, m[1]!);
      res.writeHead(204, baseHeaders);
      res.end();
      return;
    }
    if (p === '/_fake/status' && req.method === 'GET') return send(res, 200, JSON.stringify(status()) + '\n');
    send(res, 404, JSON.stringify({ message: 'page not found' }) + '\n');
  }

  function status(): FakeEngineStatus {
    let statsStreams = 0;
    let running = 0;
    for (const c of containers.values()) {
      statsStreams += c.streams.size;
      if (c.running) running++;
    }
    return { containers: containers.size, running, statsStreams, eventStreams: eventStreams.size, requests: { ...requests }, apiVersions: { ...apiVersions }, statsSamples };
  }

  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://engine');
    let p = url.pathname;
    if (p.startsWith('/_fake/')) return handleControl(p, url.searchParams, req, res);
    const versioned = /^\/v(\d+\.\d+)(\/.*)$/.exec(p);
    apiVersions[versioned?.[1] ?? 'unversioned'] = (apiVersions[versioned?.[1] ?? 'unversioned'] ?? 0) + 1;
    if (versioned) {
      const [a1, a2] = versioned[1]!.split('.').map(Number) as [number, number];
      const [b1, b2] = apiVersion.split('.').map(Number) as [number, number];
      if (a1 > b1 || (a1 === b1 && a2 > b2)) {
        return badRequest(res, `client version ${versioned[1]} is too new. Maximum supported API version is ${apiVersion}`);
      }
      const [m1, m2] = (minApiVersion ?? '0.0').split('.').map(Number) as [number, number];
      if (a1 < m1 || (a1 === m1 && a2 < m2)) {
        return badRequest(res, `client version ${versioned[1]} is too old. Minimum supported API version is ${minApiVersion}, please upgrade your client to a newer version`);
      }
      p = versioned[2]!;
    }
    const route = ROUTES.find(([re]) => re.test(p))?.[1];
    if (!route) return send(res, 404, JSON.stringify({ message: 'page not found' }) + '\n');
    if (req.method !== 'GET' && !(req.method === 'HEAD' && route === '/_ping')) {
      return send(res, 405, JSON.stringify({ message: `${req.method} is not served by the fake engine` }) + '\n');
    }
    handleApi(route, p, url.searchParams, req, res);
  });
  server.keepAliveTimeout = 0;
  server.maxConnections = 100_000;

  try {
    fs.unlinkSync(opts.socketPath);
  } catch {
    /* no stale socket */
  }
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.socketPath, () => {
      server.off('error', reject);
      resolve();
    });
  });

  return {
    socketPath: opts.socketPath,
    ids: () => [...containers.keys()],
    add,
    remove,
    status,
    async close() {
      clearInterval(ticker);
      if (treeTimer) clearInterval(treeTimer);
      tree?.close();
      if (healthTimer) clearInterval(healthTimer);
      for (const s of eventStreams) s.res.end();
      for (const c of containers.values()) for (const r of c.streams) r.end();
      for (const w of waiters) w.res.destroy();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      try {
        fs.unlinkSync(opts.socketPath);
      } catch {
        /* already gone */
      }
    },
  };
}

function argValue(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  if (i >= 0) return args[i + 1];
  const eq = args.find((a) => a.startsWith(`${name}=`));
  return eq?.slice(name.length + 1);
}

async function main(args: string[]): Promise<void> {
  const socketPath = argValue(args, '--socket');
  const n = Number(argValue(args, '--containers') ?? '100');
  if (!socketPath || !Number.isInteger(n) || n < 0) {
    process.stderr.write('usage: fake-engine.ts --socket PATH [--containers N] [--tick MS] [--health-interval MS] [--df-delay MS] [--rootfs DIR]\n');
    process.exit(2);
  }
  const engine = await startFakeEngine({
    socketPath,
    containers: n,
    tickMs: Number(argValue(args, '--tick') ?? 1000),
    healthIntervalMs: Number(argValue(args, '--health-interval') ?? 0),
    dfDelayMs: Number(argValue(args, '--df-delay') ?? 0),
    rootfs: argValue(args, '--rootfs'),
  });
  process.stdout.write(JSON.stringify({ msg: 'listening', socket: socketPath, containers: n, pid: process.pid }) + '\n');
  const stop = (): void => void engine.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === path.resolve(process.argv[1])) {
  await main(process.argv.slice(2));
}
