import { PassThrough } from 'node:stream';
import { EngineError, type DockerClient } from '../../src/docker/client.js';

/** One event as the fake engine stamps and sends it. */
export interface FakeEvent {
  type: string;
  action: string;
  id: string;
  timeNano: bigint;
  attributes?: Record<string, string>;
}

/** The raw line the engine writes for an event (timeNano as an exact integer, as Go encodes it). */
export function eventLine(e: FakeEvent): string {
  const actor = JSON.stringify({ ID: e.id, Attributes: e.attributes ?? {} });
  const head = e.type === 'container' ? `"status":${JSON.stringify(e.action)},"id":${JSON.stringify(e.id)},"from":"busybox",` : '';
  return `{${head}"Type":${JSON.stringify(e.type)},"Action":${JSON.stringify(e.action)},"Actor":${actor},"scope":"local","time":${e.timeNano / 1_000_000_000n},"timeNano":${e.timeNano}}`;
}

/** `since` as sent by the client ("seconds.nanoseconds") back to nanoseconds. */
function sinceToNano(since: string): bigint {
  const [s, ns = '0'] = since.split('.');
  return BigInt(s!) * 1_000_000_000n + BigInt(ns.padEnd(9, '0').slice(0, 9));
}

interface OpenStream {
  body: PassThrough;
  types?: string[];
}

/**
 * A Docker Engine in memory, as much of it as the inventory and the events stream use: the list,
 * inspect, and `/events` with the engine's own `since` semantics (it replays the buffered events
 * stamped at or after `since`, then streams live ones) and its `type` filter.
 */
export class FakeEngine {
  /** id → inspect payload. */
  readonly containers = new Map<string, Record<string, unknown>>();
  /** Every event ever sent, as the engine's buffer holds them. */
  readonly buffer: Array<{ timeNano: bigint; type: string; line: string }> = [];
  readonly streamQueries: Array<Record<string, unknown>> = [];
  readonly inspects: string[] = [];
  lists = 0;
  private open: OpenStream[] = [];
  /** Connection attempts still to refuse. */
  refuseConnections = 0;
  /** Fails the next container lists with this message. */
  failLists = 0;
  /** Called before an inspect answers: tests hold an answer back to reorder it with events. */
  beforeInspect: (id: string) => Promise<void> | void = () => undefined;
  /** Payloads that answer the next container lists, in order, instead of the list (an engine sending garbage). */
  listReplies: unknown[] = [];
  /** Per container: payloads that answer its next inspects, in order, instead of its inspect payload (an Error is thrown). */
  readonly inspectReplies = new Map<string, unknown[]>();
  /** Called before a container list answers: tests hold a list back. */
  beforeList: () => Promise<void> | void = () => undefined;
  private clock = 1_700_000_000_000_000_000n;

  /** Cast to the type the code under test takes. */
  get client(): DockerClient {
    return this as unknown as DockerClient;
  }

  get openStreams(): number {
    return this.open.length;
  }

  async get<T>(_route: string, path: string): Promise<T> {
    if (path === '/containers/json') {
      this.lists++;
      if (this.failLists > 0) {
        this.failLists--;
        throw new Error('connect ECONNREFUSED /var/run/docker.sock');
      }
      const reply = this.listReplies.length > 0 ? { payload: this.listReplies.shift() } : undefined;
      await this.beforeList();
      if (reply) return reply.payload as T;
      return [...this.containers.entries()].map(([id, c]) => ({ Id: id, Names: [c.Name] })) as T;
    }
    const id = /^\/containers\/([^/]+)\/json$/.exec(path)?.[1];
    if (!id) throw new Error(`unexpected GET ${path}`);
    this.inspects.push(id);
    // The engine reads the container now; the answer may reach the client later.
    const payload = this.containers.get(id);
    const replies = this.inspectReplies.get(id);
    const reply = replies?.length ? { payload: replies.shift() } : undefined;
    const answer = payload ? structuredClone(payload) : undefined;
    await this.beforeInspect(id);
    if (reply?.payload instanceof Error) throw reply.payload;
    if (reply) return reply.payload as T;
    if (!answer) throw new EngineError(`/containers/{id}/json: HTTP 404: No such container: ${id}`, 404, '/containers/{id}/json');
    return answer as T;
  }

  async stream(_route: string, path: string, opts: { query?: Record<string, unknown>; signal?: AbortSignal } = {}): Promise<PassThrough> {
    if (path !== '/events') throw new Error(`unexpected stream ${path}`);
    this.streamQueries.push({ ...opts.query });
    if (this.refuseConnections > 0) {
      this.refuseConnections--;
      throw new Error('connect ECONNREFUSED /var/run/docker.sock');
    }
    const filters = opts.query?.filters ? (JSON.parse(String(opts.query.filters)) as Record<string, string[]>) : {};
    const body = new PassThrough();
    const entry: OpenStream = { body, types: filters.type };
    this.open.push(entry);
    body.on('close', () => (this.open = this.open.filter((s) => s !== entry)));
    opts.signal?.addEventListener('abort', () => body.destroy(), { once: true });
    if (opts.query?.since !== undefined) {
      const since = sinceToNano(String(opts.query.since));
      for (const e of this.buffer) if (e.timeNano >= since && this.matches(entry, e.type)) body.write(e.line + '\n');
    }
    return body;
  }

  /** Stamps (unless given a time), buffers and sends an event to every open stream that takes it. */
  send(e: Omit<FakeEvent, 'timeNano'> & { timeNano?: bigint }): FakeEvent {
    const event = { ...e, timeNano: e.timeNano ?? (this.clock += 1_000_000n) };
    const line = eventLine(event);
    this.buffer.push({ timeNano: event.timeNano, type: event.type, line });
    for (const s of this.open) if (this.matches(s, event.type)) s.body.write(line + '\n');
    return event;
  }

  /** Writes raw text to every open stream (malformed records and the like). */
  sendRaw(text: string): void {
    for (const s of this.open) s.body.write(text);
  }

  /** Ends every open stream, as an engine restart or a proxy timeout does. */
  dropStreams(): void {
    for (const s of [...this.open]) s.body.end();
  }

  private matches(s: OpenStream, type: string): boolean {
    return !s.types || s.types.includes(type);
  }

  /** Adds or replaces a container (an inspect payload built from a few facts). */
  put(id: string, name: string, over: { status?: string; labels?: Record<string, string>; health?: string; failingStreak?: number; memory?: number } = {}): void {
    this.containers.set(id, {
      Id: id,
      Name: `/${name}`,
      Image: 'sha256:' + 'f'.repeat(64),
      Created: '2024-01-02T03:04:05.5Z',
      RestartCount: 0,
      State: {
        Status: over.status ?? 'running',
        ExitCode: 0,
        OOMKilled: false,
        StartedAt: '2024-01-02T03:04:06Z',
        FinishedAt: '0001-01-01T00:00:00Z',
        ...(over.health ? { Health: { Status: over.health, FailingStreak: over.failingStreak ?? 0 } } : {}),
      },
      Config: { Image: 'busybox', Labels: over.labels ?? {} },
      HostConfig: { Memory: over.memory ?? 0 },
    });
  }
}

/** A 64-hex id from a small number. */
export function hexId(n: number): string {
  return n.toString(16).padStart(64, '0');
}

/** Resolves once `check` holds, polling the event loop (fails after `ms`). */
export async function until(check: () => boolean, ms = 2000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 2));
  }
}
