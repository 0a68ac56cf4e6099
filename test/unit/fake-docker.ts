import { PassThrough } from 'node:stream';
import type { EngineApi, RequestOptions } from '../../src/docker/client.js';
import { EngineStatus } from '../../src/docker/errors.js';
import type { RouteName } from '../../src/docker/routes.js';

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

/** A route's answer in a test: a value, or a function of the request's options (throw to fail, a promise to hold or hang). */
export type Answer = (opts: RequestOptions) => unknown;

/**
 * The one fake engine of the unit tests: an EngineApi in memory. It models what the inventory and
 * the events stream use (the list, inspect, and `/events` with the engine's own `since` semantics:
 * it replays the buffered events stamped at or after `since`, then streams live ones, with its
 * `type` filter); every other route answers what a test gives it with `on()` / `onStream()`.
 */
export class FakeEngine implements EngineApi {
  apiVersion: string | undefined = '1.41';
  engineApiVersion: string | undefined = '1.41';
  /** Every request, in order. */
  readonly requests: Array<{ route: RouteName; opts: RequestOptions }> = [];
  /** id → inspect payload. */
  readonly containers = new Map<string, Record<string, unknown>>();
  /** Every event ever sent, as the engine's buffer holds them. */
  readonly buffer: Array<{ timeNano: bigint; type: string; line: string }> = [];
  readonly streamQueries: Array<Record<string, unknown>> = [];
  readonly inspects: string[] = [];
  lists = 0;
  private open: OpenStream[] = [];
  private readonly answers = new Map<RouteName, Answer>();
  private readonly streamAnswers = new Map<RouteName, (opts: RequestOptions) => PassThrough | Promise<PassThrough>>();
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

  get openStreams(): number {
    return this.open.length;
  }

  /** Answers GET `route` with `answer` from now on, instead of the fake's own behaviour. */
  on(route: RouteName, answer: Answer): this {
    this.answers.set(route, answer);
    return this;
  }

  /** Answers a stream of `route` with the body `open` makes (ended when the caller aborts). */
  onStream(route: RouteName, open: (opts: RequestOptions) => PassThrough | Promise<PassThrough>): this {
    this.streamAnswers.set(route, open);
    return this;
  }

  async get<T = unknown>(route: RouteName, opts: RequestOptions = {}): Promise<T> {
    this.requests.push({ route, opts });
    const answer = this.answers.get(route);
    if (answer) return (await answer(opts)) as T;
    if (route === 'containers') return (await this.list()) as T;
    if (route === 'inspect') return (await this.inspect(opts.id!)) as T;
    if (route === 'ping') return 'OK' as T;
    throw new Error(`FakeEngine: no answer for GET ${route} (give one with on())`);
  }

  async stream(route: RouteName, opts: RequestOptions = {}): Promise<PassThrough> {
    this.requests.push({ route, opts });
    const open = this.streamAnswers.get(route);
    if (open) {
      const body = await open(opts);
      opts.signal?.addEventListener('abort', () => body.destroy(), { once: true });
      return body;
    }
    if (route !== 'events') throw new Error(`FakeEngine: no stream for ${route} (give one with onStream())`);
    return this.events(opts);
  }

  private async list(): Promise<unknown> {
    this.lists++;
    if (this.failLists > 0) {
      this.failLists--;
      throw new Error('connect ECONNREFUSED /var/run/docker.sock');
    }
    const reply = this.listReplies.length > 0 ? { payload: this.listReplies.shift() } : undefined;
    await this.beforeList();
    if (reply) return reply.payload;
    return [...this.containers.entries()].map(([id, c]) => ({ Id: id, Names: [c.Name] }));
  }

  private async inspect(id: string): Promise<unknown> {
    this.inspects.push(id);
    // The engine reads the container now; the answer may reach the client later.
    const payload = this.containers.get(id);
    const replies = this.inspectReplies.get(id);
    const reply = replies?.length ? { payload: replies.shift() } : undefined;
    const answer = payload ? structuredClone(payload) : undefined;
    await this.beforeInspect(id);
    if (reply?.payload instanceof Error) throw reply.payload;
    if (reply) return reply.payload;
    if (!answer) throw new EngineStatus(`/containers/{id}/json: HTTP 404: No such container: ${id}`, 404, '/containers/{id}/json');
    return answer;
  }

  private events(opts: RequestOptions): PassThrough {
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
