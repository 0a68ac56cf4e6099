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
    const read = (file: string, optional = false): Buffer | undefined => {
      const p = path.join(docker.certPath, file);
      try {
        return fs.readFileSync(p);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (optional && code === 'ENOENT') return undefined;
        throw new Error(`--docker.cert-path: cannot read ${p}: ${code ?? (err as Error).message}`);
      }
    };
    opts.ca = read('ca.pem');
    // As the docker CLI: without cert.pem and key.pem it connects without a client certificate
    // (enough for an engine started with --tls but not --tlsverify); one without the other is a mistake.
    opts.cert = read('cert.pem', true);
    opts.key = read('key.pem', true);
    if (Boolean(opts.cert) !== Boolean(opts.key)) {
      const missing = opts.cert ? 'key.pem' : 'cert.pem';
      throw new Error(`--docker.cert-path: ${path.join(docker.certPath, missing)} is missing (cert.pem and key.pem go together)`);
    }
  }
  return opts as NonNullable<ModemOptions>;
}

/** Node's codes for a server certificate that does not chain to the CA we trust. */
const UNTRUSTED_SERVER_CERT = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_GET_ISSUER_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'CERT_SIGNATURE_FAILURE', 'CERT_UNTRUSTED',
]);

/** Errors below HTTP that mean the engine cannot be reached at all (rather than one request failing). */
const CONNECTION_CODES = new Set([
  'ENOENT', 'EACCES', 'EPERM', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENETUNREACH',
  'ENOTFOUND', 'EAI_AGAIN', 'EPROTO', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID',
  ...UNTRUSTED_SERVER_CERT,
]);

/** The engine's answer when plain HTTP reaches its TLS port. */
const HTTP_TO_HTTPS = /Client sent an HTTP request to an HTTPS server/i;

/**
 * One line saying why the engine cannot be reached, in terms of the flags that fix it; undefined
 * when the error is not a connection problem (an HTTP error status, a timeout).
 */
export function explainConnectionError(err: Error & { code?: string; statusCode?: number }, docker: Config['docker'], hasClientCert: boolean): string | undefined {
  const code = err.code ?? '';
  const message = err.message ?? '';
  const url = new URL(docker.host);
  const unix = url.protocol === 'unix:' || url.protocol === 'npipe:';
  const where = unix ? docker.host.replace(/^(unix|npipe):\/\//, '') : `${url.hostname}:${url.port || (docker.tlsVerify ? '2376' : '2375')}`;
  const certDir = docker.certPath;
  if (message.startsWith('--docker.cert-path')) return message;
  if (HTTP_TO_HTTPS.test(message)) return `the engine at ${where} expects TLS: set --docker.tls-verify and --docker.cert-path (or DOCKER_TLS_VERIFY and DOCKER_CERT_PATH)`;
  if (err.statusCode !== undefined) return undefined;
  if (UNTRUSTED_SERVER_CERT.has(code)) {
    return `TLS: the engine's certificate at ${where} is not signed by the CA in ${path.join(certDir, 'ca.pem')} (${code}): is that the engine's CA?`;
  }
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID') return `TLS: the engine's certificate is not valid for the name ${url.hostname}: ${message}`;
  if (code === 'CERT_HAS_EXPIRED' || code === 'CERT_NOT_YET_VALID') return `TLS: the engine's certificate at ${where} ${code === 'CERT_HAS_EXPIRED' ? 'has expired' : 'is not valid yet'}`;
  // The engine turned our certificate (or its absence) down: a TLS alert during the handshake.
  const alert = /alert (bad certificate|certificate required|unknown ca|certificate unknown|access denied|handshake failure)/i.exec(message)?.[0];
  if (alert || /ALERT_(BAD_CERTIFICATE|CERTIFICATE_REQUIRED|UNKNOWN_CA|CERTIFICATE_UNKNOWN|ACCESS_DENIED|HANDSHAKE_FAILURE)/.test(code)) {
    const why = code && code !== 'EPROTO' ? code : alert;
    return hasClientCert
      ? `TLS: the engine at ${where} refused our client certificate ${path.join(certDir, 'cert.pem')} (${why}): it is not signed by a CA the engine trusts (--tlscacert)`
      : `TLS: the engine at ${where} requires a client certificate (${why}), and ${certDir} has no cert.pem and key.pem`;
  }
  if (code === 'ERR_SSL_WRONG_VERSION_NUMBER' || /wrong version number/i.test(message)) {
    return `TLS: ${where} does not speak TLS: drop --docker.tls-verify, or point --docker.host at the engine's TLS port`;
  }
  if (unix) {
    if (code === 'ENOENT') return `${where} does not exist: is the Docker Engine running (or is --docker.host wrong)?`;
    if (code === 'EACCES' || code === 'EPERM') return `permission denied on ${where}: run the exporter in the docker group, or give it a read-only socket proxy (see Security in the README)`;
    if (code === 'ECONNREFUSED') return `nothing accepts connections on ${where}: is the Docker Engine running?`;
  } else {
    if (code === 'ECONNREFUSED') return `connection refused by ${where}: is the engine listening there (dockerd -H tcp://…)?`;
    if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return `cannot resolve ${url.hostname} (${code})`;
    if (code === 'ETIMEDOUT' || code === 'EHOSTUNREACH' || code === 'ENETUNREACH') return `cannot reach ${where} (${code})`;
  }
  if (code === 'ECONNRESET' || code === 'EPIPE' || /socket hang up/i.test(message)) {
    const hint = !unix && docker.tlsVerify ? '; with TLS this can also mean the engine refused the client certificate' : '';
    return `the engine at ${where} closed the connection (${code || message})${hint}`;
  }
  if (CONNECTION_CODES.has(code)) return `cannot connect to ${where}: ${message}`;
  return undefined;
}

/**
 * Requests in flight under each caller signal. A caller signal gets one abort listener, however many
 * requests it has in flight: a collector's stop signal has up to --stats.concurrency at once, and a
 * listener each set off Node's MaxListenersExceededWarning at the 11th. Entries go when their
 * request ends; the set goes with the signal.
 */
const inFlight = new WeakMap<AbortSignal, Set<AbortController>>();

/** The set of requests in flight under `caller`, made with the one listener that aborts them. */
function inFlightUnder(caller: AbortSignal): Set<AbortController> {
  const known = inFlight.get(caller);
  if (known) return known;
  const requests = new Set<AbortController>();
  caller.addEventListener('abort', () => {
    for (const c of requests) c.abort(caller.reason);
    requests.clear();
  }, { once: true });
  inFlight.set(caller, requests);
  return requests;
}

function followCaller(caller: AbortSignal, own: AbortController): () => void {
  const requests = inFlightUnder(caller);
  requests.add(own);
  return () => void requests.delete(own);
}

/**
 * The signal of one request: the caller's, with the timeout added. Not AbortSignal.any() nor
 * AbortSignal.timeout(): any() leaves an entry in a long-lived caller signal (a collector's stop
 * signal) for every request it is given, which Node never prunes
 * (https://github.com/nodejs/node/issues/55351): about 60 bytes per engine request, for as long as
 * the exporter runs. Here the request joins its caller's set (above) and leaves it in `done()`.
 */
function requestSignal(caller: AbortSignal | undefined, timeoutMs: number | undefined): { signal: AbortSignal | undefined; timedOut: () => boolean; done: () => void } {
  if (!timeoutMs) return { signal: caller, timedOut: () => false, done: () => {} };
  const own = new AbortController();
  let expired = false;
  const timer = setTimeout(() => {
    expired = true;
    own.abort(new DOMException(`timed out after ${timeoutMs} ms`, 'TimeoutError'));
  }, timeoutMs);
  let leave = (): void => {};
  if (caller?.aborted) own.abort(caller.reason);
  else if (caller) leave = followCaller(caller, own);
  return {
    signal: own.signal,
    timedOut: () => expired,
    done: () => {
      clearTimeout(timer);
      leave();
    },
  };
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
  /** Why the engine cannot be reached, while it cannot: logged once per distinct reason. */
  private downReason: string | undefined;
  private hasClientCert = false;

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

  /** Why the engine could not be reached on the last attempt, or undefined while it answers. */
  get unreachableReason(): string | undefined {
    return this.downReason;
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
        let options: NonNullable<ModemOptions>;
        try {
          options = modemOptions(this.config);
        } catch (err) {
          this.noteDown((err as Error).message);
          throw err;
        }
        this.hasClientCert = Boolean((options as { cert?: unknown }).cert);
        const bare = new Docker(options).modem as Modem;
        const v = (await this.raw(bare, '/version', '/version', false, {})) as { ApiVersion?: unknown };
        const engineMax = typeof v?.ApiVersion === 'string' ? v.ApiVersion : OLDEST_SUPPORTED_API;
        const pinned = negotiateApiVersion(engineMax);
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
    const timeoutMs = isStream ? undefined : (opts.timeoutMs ?? this.config.timeoutMs);
    const { signal, timedOut, done } = requestSignal(opts.signal, timeoutMs);
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
          done();
          const ms = Math.round((performance.now() - started) * 10) / 10;
          if (err) {
            this.metrics.dockerRequestFailures.inc({ endpoint: route });
            const status = err.statusCode;
            let error: Error = err;
            const why = opts.signal?.aborted ? undefined : explainConnectionError(err, this.config, this.hasClientCert);
            if (status !== undefined) {
              error = new EngineError(`${route}: HTTP ${status}: ${why ?? err.json?.message ?? err.message}`, status, route);
            } else if (timedOut() && !opts.signal?.aborted) {
              error = new Error(`${route}: timed out after ${timeoutMs} ms`);
            } else if (why) {
              error = Object.assign(new Error(`${route}: ${why}`, { cause: err }), { code: (err as NodeJS.ErrnoException).code });
            }
            if (why) this.noteDown(why);
            this.logger.debug({ method: 'GET', route, status: status ?? 0, ms, err: error.message }, 'engine request failed');
            return reject(error);
          }
          this.logger.debug({ method: 'GET', route, status: 200, ms }, 'engine request');
          this.noteUp();
          resolve(result);
        },
      );
    });
  }
}
