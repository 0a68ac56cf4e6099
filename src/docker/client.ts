import type { Readable } from 'node:stream';
import Docker from 'dockerode';
import type Modem from 'docker-modem';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { ExporterMetrics } from '../exporter-metrics.js';
import { withDeadline } from '../helpers.js';
import { explainConnectionError, modemOptions, send, type Answer } from './connection.js';
import { EngineReplyError, EngineStatus, EngineTimeout, EngineUnreachable } from './errors.js';
import { ROUTES, routePath, type Route, type RouteName } from './routes.js';

/**
 * The newest Engine API version whose payloads this exporter knows. The client pins
 * min(engine's maximum, this), so a newer engine answers in shapes we parse, and an older one
 * (down to 1.41) in its own.
 */
export const NEWEST_KNOWN_API = '1.52';
export const OLDEST_SUPPORTED_API = '1.41';

/** Compares dotted API versions numerically ("1.9" < "1.41"). */
export function compareApiVersions(a: string, b: string): number {
  const [a1 = 0, a2 = 0] = a.split('.').map(Number);
  const [b1 = 0, b2 = 0] = b.split('.').map(Number);
  return a1 - b1 || a2 - b2;
}

/** The version to pin given the engine's maximum: min(engine, newest known). */
export function negotiateApiVersion(engineMax: string): string {
  return compareApiVersions(engineMax, NEWEST_KNOWN_API) < 0 ? engineMax : NEWEST_KNOWN_API;
}

export interface RequestOptions {
  /** The container, for the routes that take one (`inspect`, `stats`). */
  id?: string;
  query?: Record<string, unknown>;
  /** Abort the request (and, for streams, the stream). */
  signal?: AbortSignal;
  /** Overrides --docker.timeout for this request; for a stream, the time its headers may take. */
  timeoutMs?: number;
}

/**
 * What collectors and the inventory use of the engine: GET requests by route name, nothing else.
 * The client implements it; unit tests give a fake (test/unit/fake-docker.ts).
 */
export interface EngineApi {
  /** A JSON document (the text itself for `ping`). */
  get<T = unknown>(route: RouteName, opts?: RequestOptions): Promise<T>;
  /** A long-lived stream (`events`, `stats`); the caller ends it through `opts.signal`. */
  stream(route: RouteName, opts?: RequestOptions): Promise<Readable>;
  /** The API version in use, once negotiated. */
  readonly apiVersion: string | undefined;
  /** The newest API version the engine itself supports (from `GET /version`). */
  readonly engineApiVersion: string | undefined;
}

/**
 * The one way the exporter talks to the engine: GET requests only (so a read-only socket proxy
 * suffices), each counted by route template and logged at debug level, with the API version
 * negotiated on first use and again after any connection failure (the engine may have been
 * upgraded while it was down). Every request ends within its deadline (connection.ts).
 */
export class DockerClient implements EngineApi {
  private modem: Modem | undefined;
  private negotiating: Promise<Modem> | undefined;
  private version: string | undefined;
  private engineMax: string | undefined;
  /** Why the engine cannot be reached, while it cannot: logged once per distinct reason. */
  private downReason: string | undefined;
  private hasClientCert = false;

  constructor(
    private readonly config: Config['docker'],
    private readonly metrics: ExporterMetrics,
    private readonly logger: Logger,
  ) {}

  get apiVersion(): string | undefined {
    return this.version;
  }

  get engineApiVersion(): string | undefined {
    return this.engineMax;
  }

  /** Why the engine could not be reached on the last attempt, or undefined while it answers. */
  get unreachableReason(): string | undefined {
    return this.downReason;
  }

  async get<T = unknown>(route: RouteName, opts: RequestOptions = {}): Promise<T> {
    const answer = await this.dial(route, false, opts);
    return this.decode(route, answer.body!) as T;
  }

  async stream(route: RouteName, opts: RequestOptions = {}): Promise<Readable> {
    return (await this.dial(route, true, opts)).response!;
  }

  /** Forgets the negotiated version so the next request negotiates again. */
  reset(): void {
    this.modem = undefined;
    this.version = undefined;
  }

  private async connect(): Promise<Modem> {
    if (this.modem) return this.modem;
    this.negotiating ??= (async () => {
      try {
        let options: ReturnType<typeof modemOptions>;
        try {
          options = modemOptions(this.config);
        } catch (err) {
          this.noteDown((err as Error).message);
          throw err;
        }
        this.hasClientCert = Boolean((options as { cert?: unknown }).cert);
        const bare = new Docker(options).modem as Modem;
        const answer = await this.exchange(bare, 'version', false, {}, this.config.timeoutMs);
        const v = this.decode('version', answer.body!) as { ApiVersion?: unknown; MinAPIVersion?: unknown } | null;
        const engineMax = typeof v?.ApiVersion === 'string' ? v.ApiVersion : OLDEST_SUPPORTED_API;
        const pinned = negotiateApiVersion(engineMax);
        const engineMin = typeof v?.MinAPIVersion === 'string' ? v.MinAPIVersion : undefined;
        if (engineMin !== undefined && compareApiVersions(pinned, engineMin) < 0) {
          // An engine newer than this exporter that refuses every version it knows (as Docker 29
          // refuses those below 1.44): nothing can be asked. Said once (noteDown), then asked again
          // at the next request, in case the engine is replaced or given DOCKER_MIN_API_VERSION.
          const why = `the engine accepts API ${engineMin} to ${engineMax}, and the newest this exporter knows is ${NEWEST_KNOWN_API}: upgrade docker-exporter (or lower the engine's minimum with DOCKER_MIN_API_VERSION)`;
          this.noteDown(why);
          throw new EngineUnreachable(ROUTES.version.template, why, 'API_VERSION_UNSUPPORTED');
        }
        this.noteUp();
        if (compareApiVersions(pinned, OLDEST_SUPPORTED_API) < 0) {
          this.logger.warn({ engineApi: engineMax }, `engine API ${engineMax} is older than ${OLDEST_SUPPORTED_API}; some metrics may be missing`);
        }
        this.modem = new Docker({ ...options, version: `v${pinned}` }).modem as Modem;
        if (this.version !== pinned) this.logger.info({ apiVersion: pinned, engineApi: engineMax }, 'negotiated engine API version');
        this.version = pinned;
        this.engineMax = engineMax;
        return this.modem;
      } finally {
        this.negotiating = undefined;
      }
    })();
    return this.negotiating;
  }

  private noteDown(reason: string): void {
    if (reason === this.downReason) return;
    this.downReason = reason;
    this.logger.error({ docker: this.config.host, reason }, `cannot reach the Docker Engine: ${reason}`);
  }

  private noteUp(): void {
    if (this.downReason === undefined) return;
    this.downReason = undefined;
    this.logger.info({ docker: this.config.host }, 'the Docker Engine answers again');
  }

  private async dial(route: RouteName, isStream: boolean, opts: RequestOptions): Promise<Answer> {
    const timeoutMs = opts.timeoutMs ?? this.config.timeoutMs;
    const started = performance.now();
    // Negotiation is shared by whoever asks while it runs, and bounded by --docker.timeout; a
    // caller with a shorter deadline (a scrape's ping) does not wait past its own.
    const modem = this.modem ?? (timeoutMs < this.config.timeoutMs ? await withDeadline(this.connect(), timeoutMs, () => new EngineTimeout(ROUTES[route].template, timeoutMs)) : await this.connect());
    try {
      return await this.exchange(modem, route, isStream, opts, timeoutMs, Math.max(1, Math.ceil(timeoutMs - (performance.now() - started))));
    } catch (err) {
      // The connection may be what failed: the next request negotiates again (the engine may
      // have been upgraded meanwhile). An answer that was whole but unusable says nothing of it.
      if (!(err instanceof EngineStatus) && !(err instanceof EngineReplyError && err.kind !== 'truncated')) this.reset();
      // An engine replaced behind the same connection (a proxy's) may refuse the pinned version.
      else if (err instanceof EngineStatus && err.statusCode === 400 && /client version \S+ is too (old|new)/.test(err.message)) this.reset();
      throw err;
    }
  }

  /** One counted, logged exchange; connection errors become EngineUnreachable with what to fix. */
  private async exchange(modem: Modem, name: RouteName, isStream: boolean, opts: RequestOptions, timeoutMs: number, leftMs = timeoutMs): Promise<Answer> {
    const route = ROUTES[name].template;
    const started = performance.now();
    const ms = (): number => Math.round((performance.now() - started) * 10) / 10;
    this.metrics.dockerRequests.inc({ endpoint: route });
    try {
      const answer = await send({ modem, route, path: routePath(name, opts.id), query: opts.query, stream: isStream, signal: opts.signal, timeoutMs, leftMs, maxBytes: this.config.maxResponseBytes });
      this.logger.debug({ method: 'GET', route, status: answer.status, ms: ms() }, 'engine request');
      // The negotiation's answer says whether the engine can be used; it notes that itself.
      if (name !== 'version') this.noteUp();
      return answer;
    } catch (err) {
      if (opts.signal?.aborted) {
        // Ended by its caller (a collector stopping, a container gone): logged, not counted as
        // the engine's failure.
        this.logger.debug({ method: 'GET', route, ms: ms(), err: 'aborted by the exporter' }, 'engine request failed');
        throw err;
      }
      this.metrics.dockerRequestFailures.inc({ endpoint: route });
      const error = this.explain(err as Error & { code?: string }, route);
      this.logger.debug({ method: 'GET', route, status: error instanceof EngineStatus ? error.statusCode : 0, ms: ms(), err: error.message }, 'engine request failed');
      throw error;
    }
  }

  /** The error as the exporter reports it: in terms of the flags that fix it, where it says that much. */
  private explain(err: Error & { code?: string }, route: Route): Error {
    if (err instanceof EngineTimeout || err instanceof EngineReplyError) return err;
    const why = explainConnectionError(err, this.config, this.hasClientCert);
    if (!why) return err;
    this.noteDown(why);
    // An HTTP answer can say the connection is wrong too (plain HTTP sent to the TLS port).
    if (err instanceof EngineStatus) return new EngineStatus(`${route}: HTTP ${err.statusCode}: ${why}`, err.statusCode, route);
    return new EngineUnreachable(route, why, err.code, { cause: err });
  }

  /** A whole body as its route's value: parsed JSON (a counted parse error if it is not), or text. */
  private decode(name: RouteName, body: Buffer): unknown {
    const { json, source, template } = ROUTES[name];
    if (!json) return body.toString('utf8');
    try {
      return JSON.parse(body.toString('utf8'));
    } catch (err) {
      this.metrics.parseErrors.inc({ source });
      this.metrics.dockerRequestFailures.inc({ endpoint: template });
      throw new EngineReplyError(`${template}: the reply is not JSON (${(err as Error).message}; ${body.length} bytes)`, 'malformed', template);
    }
  }
}
