import fs from 'node:fs';
import path from 'node:path';
import type { IncomingMessage } from 'node:http';
import Docker from 'dockerode';
import type Modem from 'docker-modem';
import type { Logger } from 'pino';
import type { Config } from '../config.js';
import type { ExporterMetrics } from '../exporter-metrics.js';

/**
 * The newest Engine API version whose payloads this exporter knows. The client pins
 * min(engine's maximum, this), so a newer engine answers in shapes we parse, and an older one
 * (down to 1.41) in its own.
 */
export const NEWEST_KNOWN_API = '1.52';
export const OLDEST_SUPPORTED_API = '1.41';

/** Route templates: the `endpoint` label of the request metrics, never a raw path. */
export type Route =
  | '/_ping'
  | '/version'
  | '/info'
  | '/containers/json'
  | '/containers/{id}/json'
  | '/containers/{id}/stats'
  | '/events'
  | '/system/df';

/** An error answer from the engine (HTTP status >= 400). */
export class EngineError extends Error {
  override name = 'EngineError';
  constructor(
    message: string,
    readonly statusCode: number,
    readonly route: Route,
  ) {
    super(message);
  }
}

export function isNotFound(err: unknown): boolean {
  return err instanceof EngineError && err.statusCode === 404;
}

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

interface RequestOptions {
  query?: Record<string, unknown>;
  /** Abort the request (and, for streams, the stream). */
  signal?: AbortSignal;
  /** Overrides --docker.timeout for this request. Streams never time out. */
  timeoutMs?: number;
}

type ModemOptions = Docker.DockerOptions;

/** Connection options for docker-modem from --docker.host and the TLS flags. */
export function modemOptions(docker: Config['docker']): NonNullable<ModemOptions> {
  const url = new URL(docker.host);
  // Every key is set, even to undefined: docker-modem otherwise fills gaps from DOCKER_* variables,
  // and the Config is the one place settings come from.
  const base = { socketPath: undefined, host: undefined, port: undefined, protocol: undefined, ca: undefined, cert: undefined, key: undefined, timeout: undefined, version: undefined } as Record<string, unknown>;
  if (url.protocol === 'unix:' || url.protocol === 'npipe:') {
    return { ...base, socketPath: docker.host.replace(/^(unix|npipe):\/\//, '') } as NonNullable<ModemOptions>;
  }
  const tls = docker.tlsVerify || url.protocol === 'https:';
  const opts: Record<string, unknown> = {
    ...base,
    host: url.hostname,
    port: url.port || (tls ? '2376' : '2375'),
    protocol: tls ? 'https' : 'http',
  };
  if (tls) {
    const read = (file: string): Buffer => {
      const p = path.join(docker.certPath, file);
      try {
        return fs.readFileSync(p);
      } catch (err) {
        throw new Error(`--docker.cert-path: cannot read ${p}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
      }
    };
    opts.ca = read('ca.pem');
    opts.cert = read('cert.pem');
    opts.key = read('key.pem');
  }
  return opts as NonNullable<ModemOptions>;
}

/**
 * The one way the exporter talks to the engine: GET requests only (so a read-only socket proxy
 * suffices), each counted by route template and logged at debug level, with the API version
 * negotiated on first use and again after any connection failure (the engine may have been
 * upgraded while it was down).
 */
export class DockerClient {
  private modem: Modem | undefined;
  private negotiating: Promise<Modem> | undefined;
  private version: string | undefined;
  private engineMax: string | undefined;

  constructor(
    private readonly config: Config['docker'],
    private readonly metrics: ExporterMetrics,
    private readonly logger: Logger,
  ) {}

  /** The API version in use, once negotiated. */
  get apiVersion(): string | undefined {
    return this.version;
  }

  /** GET a JSON document. */
  async get<T>(route: Route, path: string, opts: RequestOptions = {}): Promise<T> {
    return (await this.dial(route, path, false, opts)) as T;
  }

  /** GET a long-lived stream (events, stats). The caller ends it through `opts.signal`. */
  async stream(route: Route, path: string, opts: RequestOptions = {}): Promise<IncomingMessage> {
    return (await this.dial(route, path, true, opts)) as IncomingMessage;
  }

  /** The newest API version the engine itself supports (from `GET /version`). */
  get engineApiVersion(): string | undefined {
    return this.engineMax;
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
        const bare = new Docker(modemOptions(this.config)).modem as Modem;
        const v = (await this.raw(bare, '/version', '/version', false, {})) as { ApiVersion?: unknown };
        const engineMax = typeof v?.ApiVersion === 'string' ? v.ApiVersion : OLDEST_SUPPORTED_API;
        const pinned = negotiateApiVersion(engineMax);
        if (compareApiVersions(pinned, OLDEST_SUPPORTED_API) < 0) {
          this.logger.warn({ engineApi: engineMax }, `engine API ${engineMax} is older than ${OLDEST_SUPPORTED_API}; some metrics may be missing`);
        }
        this.modem = new Docker({ ...modemOptions(this.config), version: `v${pinned}` }).modem as Modem;
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

  private async dial(route: Route, path: string, isStream: boolean, opts: RequestOptions): Promise<unknown> {
    const modem = await this.connect();
    try {
      return await this.raw(modem, route, path, isStream, opts);
    } catch (err) {
      if (!(err instanceof EngineError)) this.reset();
      throw err;
    }
  }

  private raw(modem: Modem, route: Route, path: string, isStream: boolean, opts: RequestOptions): Promise<unknown> {
    const started = performance.now();
    this.metrics.dockerRequests.inc({ endpoint: route });
    const signals: AbortSignal[] = [];
    if (opts.signal) signals.push(opts.signal);
    const timeoutMs = isStream ? undefined : (opts.timeoutMs ?? this.config.timeoutMs);
    if (timeoutMs) signals.push(AbortSignal.timeout(timeoutMs));
    const signal = signals.length > 1 ? AbortSignal.any(signals) : signals[0];
    return new Promise((resolve, reject) => {
      modem.dial(
        {
          path: path + (opts.query ? '?' : ''),
          method: 'GET',
          options: opts.query ? { ...opts.query } : undefined,
          isStream,
          abortSignal: signal,
          statusCodes: { 200: true, 304: true, 400: 'bad parameter', 403: 'forbidden', 404: 'not found', 409: 'conflict', 500: 'server error', 503: 'unavailable' },
        },
        (err: (Error & { statusCode?: number; json?: { message?: string } }) | null, result: unknown) => {
          const ms = Math.round((performance.now() - started) * 10) / 10;
          if (err) {
            this.metrics.dockerRequestFailures.inc({ endpoint: route });
            const status = err.statusCode;
            let error: Error = err;
            if (status !== undefined) {
              error = new EngineError(`${route}: HTTP ${status}: ${err.json?.message ?? err.message}`, status, route);
            } else if (signal?.aborted && !opts.signal?.aborted) {
              error = new Error(`${route}: timed out after ${timeoutMs} ms`);
            }
            this.logger.debug({ method: 'GET', route, status: status ?? 0, ms, err: error.message }, 'engine request failed');
            return reject(error);
          }
          this.logger.debug({ method: 'GET', route, status: 200, ms }, 'engine request');
          resolve(result);
        },
      );
    });
  }
}
