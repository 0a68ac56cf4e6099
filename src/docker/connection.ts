import fs from 'node:fs';
import path from 'node:path';
import type { IncomingMessage } from 'node:http';
import type Docker from 'dockerode';
import type Modem from 'docker-modem';
import type { Config } from '../config.js';
import { EngineReplyError, EngineStatus, EngineTimeout } from './errors.js';
import type { Route } from './routes.js';

/**
 * The connection to the engine: docker-modem's options from the flags, what a connection error
 * means in terms of those flags, and `send()`, the one exchange that always ends. It knows no
 * route's meaning; the client (client.ts) counts, logs and parses.
 */

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

/**
 * Makes `own` abort with `caller`, until the returned function is called. Not AbortSignal.any():
 * any() leaves an entry in a long-lived caller signal (a collector's stop signal) for every request
 * it is given, which Node never prunes (https://github.com/nodejs/node/issues/55351): about 60 bytes
 * per engine request, for as long as the exporter runs.
 */
function followCaller(caller: AbortSignal, own: AbortController): () => void {
  const requests = inFlightUnder(caller);
  requests.add(own);
  return () => void requests.delete(own);
}

/**
 * Every status code, marked "fine" for docker-modem: it then hands over the response as it stands
 * and this client reads the body itself, bounded in time and size. docker-modem's own reading of a
 * body (ok or error) buffers it without bound and never calls back when the body is cut off, not
 * even after the request is aborted: one truncated reply hung its caller for good.
 */
const EVERY_STATUS: Record<number, true> = Object.fromEntries(Array.from({ length: 500 }, (_, i) => [i + 100, true]));

/**
 * Reads a whole reply body, failing as soon as it passes `limit` bytes (announced or sent) or when
 * the connection ends before the body does. The caller's deadline covers the time it takes.
 */
function readBody(res: IncomingMessage, limit: number, route: Route): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const announced = Number(res.headers['content-length']);
    if (announced > limit) {
      reject(new EngineReplyError(`${route}: the reply is ${announced} bytes, over the ${limit} of --docker.max-response-size`, 'too-large', route));
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    const fail = (err: Error): void => {
      if (done) return;
      done = true;
      chunks.length = 0;
      reject(err);
    };
    res.on('data', (chunk: Buffer) => {
      if (done) return;
      size += chunk.length;
      if (size > limit) {
        fail(new EngineReplyError(`${route}: the reply passed the ${limit} bytes of --docker.max-response-size`, 'too-large', route));
        return;
      }
      chunks.push(chunk);
    });
    res.on('end', () => {
      if (done) return;
      done = true;
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    });
    const cut = (): void => fail(new EngineReplyError(`${route}: the connection closed after ${size} bytes of the reply, before its end`, 'truncated', route));
    res.on('error', cut);
    // 'close' without 'end': the socket went away mid-body (Node emits 'aborted' or an error, or
    // neither, depending on when it happened).
    res.on('close', () => setImmediate(() => { if (!done) cut(); }));
  });
}

/** The message of an engine error answer: its JSON `message`, else the start of its text. */
function errorMessage(body: Buffer): string {
  const text = body.toString('utf8', 0, Math.min(body.length, 4096));
  try {
    const m = (JSON.parse(text) as { message?: unknown }).message;
    if (typeof m === 'string') return m;
  } catch {
    // Not JSON: the text itself says it.
  }
  return text.trim().slice(0, 300) || 'no message';
}

/** One exchange with the engine, as `send()` takes it. */
export interface Exchange {
  modem: Modem;
  route: Route;
  path: string;
  query?: Record<string, unknown>;
  /** A stream is handed over open at its headers; anything else is read whole. */
  stream: boolean;
  /** The caller's: aborting it ends the exchange (and, for a stream, the stream). */
  signal?: AbortSignal;
  /** The deadline as the caller gave it (for the error message) and what is left of it now. */
  timeoutMs: number;
  leftMs: number;
  /** Largest body read (see --docker.max-response-size). */
  maxBytes: number;
}

/** A whole body (status < 400), or the open response of a stream. */
export type Answer = { status: number; body: Buffer; response?: undefined } | { status: number; body?: undefined; response: IncomingMessage };

/**
 * One exchange that always ends: within `leftMs` from now, however the engine behaves (never
 * answers, stops mid-body, never ends), its promise settles and its socket is destroyed. For a
 * stream the deadline covers the wait for its headers; the stream then lasts until the caller's
 * signal aborts or the engine ends it. Rejects with EngineTimeout, EngineReplyError (cut off, too
 * large), EngineStatus (status >= 400), the caller's abort reason, or the socket's own error.
 */
export function send(x: Exchange): Promise<Answer> {
  const own = new AbortController();
  const caller = x.signal;
  const leave = caller && !caller.aborted ? followCaller(caller, own) : () => {};
  return new Promise((resolve, reject) => {
    let settled = false;
    let response: IncomingMessage | undefined;
    const fail = (err: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      // Frees the socket and whatever of the body was buffered, whoever still holds the request.
      own.abort(err);
      response?.destroy();
      leave();
      reject(caller?.aborted && caller.reason instanceof Error ? caller.reason : err);
    };
    const succeed = (answer: Answer): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (answer.response) answer.response.once('close', leave);
      else leave();
      resolve(answer);
    };
    const timer = setTimeout(() => fail(new EngineTimeout(x.route, x.timeoutMs)), x.leftMs);
    own.signal.addEventListener('abort', () => {
      if (settled) response?.destroy();
      else fail(new DOMException('the request was aborted', 'AbortError') as Error);
    }, { once: true });
    if (caller?.aborted) own.abort(caller.reason);
    if (settled) return;
    x.modem.dial(
      {
        path: x.path + (x.query ? '?' : ''),
        method: 'GET',
        options: x.query ? { ...x.query } : undefined,
        // Always as a stream: docker-modem hands over the response at its headers, and the body
        // is read here (see EVERY_STATUS).
        isStream: true,
        abortSignal: own.signal,
        statusCodes: EVERY_STATUS,
      },
      (err: Error | null, result: unknown) => {
        const res = result as IncomingMessage | null;
        if (settled) {
          res?.destroy();
          return;
        }
        if (err || !res) {
          fail(err ?? new Error('no response'));
          return;
        }
        response = res;
        const status = res.statusCode ?? 0;
        if (x.stream && status < 400) {
          succeed({ status, response: res });
          return;
        }
        readBody(res, x.maxBytes, x.route).then(
          (body) => (status >= 400 ? fail(new EngineStatus(`${x.route}: HTTP ${status}: ${errorMessage(body)}`, status, x.route)) : succeed({ status, body })),
          fail,
        );
      },
    );
  });
}
