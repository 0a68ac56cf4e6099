import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { Logger } from 'pino';
import type { AuthResult } from './basic-auth.js';
import { checkClientCert, clientCertOptions, secureContextOptions } from './tls-config.js';
import type { WebConfig } from './web-config-file.js';
import { WebConfigSource } from './web-config-source.js';
import type { WebMetrics } from './web-metrics.js';

const gzip = promisify(zlib.gzip);

/** Each body's gzip, made once: concurrent scrapes share one render, and so one compression. */
const gzipped = new WeakMap<Buffer, Promise<Buffer>>();

function compressed(body: Buffer): Promise<Buffer> {
  // The fastest level: Prometheus asks for gzip on every scrape, and at level 6 compressing
  // 100 containers' 1.9 MB took longer than rendering it; level 1 is ~8 % larger.
  let done = gzipped.get(body);
  if (!done) {
    done = gzip(body, { level: zlib.constants.Z_BEST_SPEED });
    gzipped.set(body, done);
  }
  return done;
}

/** What the web layer serves; it knows nothing of Docker or of how metrics are made. */
export interface WebHandlers {
  /** The exposition in the asked format. */
  metrics(format: 'text' | 'openmetrics'): Promise<{ contentType: string; body: Buffer }>;
  /** Whether the exporter can do its job (the engine answers), with a one-line reason. */
  ready(): Promise<{ ready: boolean; detail: string }>;
  /** Whether the process can still recover by itself (no background loop stuck), with a one-line reason. */
  live(): { live: boolean; detail: string };
}

export interface WebOptions {
  listenHost: string;
  listenPort: number;
  telemetryPath: string;
  version: string;
  logger: Logger;
}

export interface WebServer {
  /** The port actually bound (differs from the configured one when that was 0). */
  port: number;
  close(): Promise<void>;
}

/** Offered with its version: a scraper's Accept parameters must match the offer's. */
const OPENMETRICS = 'application/openmetrics-text; version=1.0.0';
const TEXT = 'text/plain; version=0.0.4';

function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A token bucket as toolkit's `rate_limit` (Go's rate.Limiter): one request per interval, bursts up to `burst`. */
class RateLimiter {
  private tokens: number;
  private last = performance.now();

  constructor(private readonly limit: NonNullable<WebConfig['rateLimit']>) {
    this.tokens = limit.burst;
  }

  allow(): boolean {
    const now = performance.now();
    this.tokens = Math.min(this.limit.burst, this.tokens + (now - this.last) / this.limit.intervalMs);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}

/** A full password queue is logged at most this often; the counter has every refusal. */
const BUSY_LOG_INTERVAL_MS = 60_000;

/**
 * Headers, rate limit and basic auth from the web config, before any route: like toolkit, every
 * path (also /healthz) is behind the same authentication.
 */
function guard(source: WebConfigSource, logger: Logger) {
  let limiter: { config: WebConfig; limiter: RateLimiter | undefined } | undefined;
  let busyLoggedAt = -Infinity;
  return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
    source.refresh();
    const config = source.current;
    for (const [name, value] of Object.entries(config.headers)) res.set(name, value);
    if (limiter?.config !== config) limiter = { config, limiter: config.rateLimit && new RateLimiter(config.rateLimit) };
    if (limiter.limiter && !limiter.limiter.allow()) {
      res.status(429).type('text/plain').send('Too Many Requests\n');
      return;
    }
    const auth = source.basicAuth;
    if (!auth.enabled) return next();
    let result: AuthResult;
    try {
      result = await auth.check(req.get('authorization'));
    } catch (err) {
      // Fail closed. The worker's death is logged where it happens, once; each refusal is counted.
      source.metrics.passwordChecksRefused.inc({ reason: 'worker_failed' });
      logger.debug({ err: (err as Error).message, path: req.path }, 'basic auth check failed');
      res.set('Retry-After', '1');
      res.status(503).type('text/plain').send('Service Unavailable: the password check failed\n');
      return;
    }
    if (result === 'ok') return next();
    if (result === 'busy') {
      // Refused before any compare, whoever it claims to be: the answer tells nothing about users.
      source.metrics.passwordChecksRefused.inc({ reason: 'queue_full' });
      if (performance.now() - busyLoggedAt >= BUSY_LOG_INTERVAL_MS) {
        busyLoggedAt = performance.now();
        logger.warn({ remote: req.socket.remoteAddress }, 'password checks refused with 429: too many waiting for bcrypt (counted in docker_exporter_web_password_checks_refused_total)');
      }
      res.set('Retry-After', '1');
      res.status(429).type('text/plain').send('Too Many Requests\n');
      return;
    }
    logger.debug({ path: req.path, remote: req.socket.remoteAddress }, 'basic auth refused');
    res.set('WWW-Authenticate', 'Basic');
    res.status(401).type('text/plain').send('Unauthorized\n');
  };
}

/** Builds the express app: /metrics, a landing page, /healthz, /readyz, and 404 for the rest. */
export function createWebApp(opts: WebOptions, handlers: WebHandlers, webConfig?: WebConfigSource): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  // Paths match as written, as in the Go exporters' ServeMux: /METRICS and /metrics/ are not the
  // telemetry path (Express would take both), so a typo in a scrape config fails visibly.
  app.set('case sensitive routing', true);
  app.set('strict routing', true);
  if (webConfig) app.use(guard(webConfig, opts.logger));

  app.get(opts.telemetryPath, async (req: Request, res: Response) => {
    // text/plain first: a scraper that accepts anything gets the classic format.
    const format = req.accepts([TEXT, OPENMETRICS]) === OPENMETRICS ? 'openmetrics' : 'text';
    try {
      const { contentType, body } = await handlers.metrics(format);
      res.set('Content-Type', contentType);
      res.set('Cache-Control', 'no-store');
      if (req.get('accept-encoding') && req.acceptsEncodings('gzip') === 'gzip') {
        res.set('Content-Encoding', 'gzip');
        res.set('Vary', 'Accept-Encoding');
        res.send(await compressed(body));
      } else {
        res.send(body);
      }
    } catch (err) {
      opts.logger.error({ err: (err as Error).message }, 'rendering metrics failed');
      res.status(500).type('text/plain').send(`error rendering metrics: ${(err as Error).message}\n`);
    }
  });

  app.get('/healthz', (_req, res) => {
    const { live, detail } = handlers.live();
    res.status(live ? 200 : 503).type('text/plain').send(`${detail}\n`);
  });

  app.get('/readyz', async (_req, res) => {
    const { ready, detail } = await handlers.ready();
    res.status(ready ? 200 : 503).type('text/plain').send(`${detail}\n`);
  });

  app.get('/', async (_req, res) => {
    const { ready, detail } = await handlers.ready();
    const path = escapeHtml(opts.telemetryPath);
    res.type('html').send(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Docker Exporter</title>
<style>body{font-family:system-ui,sans-serif;margin:2rem;max-width:50rem}code{background:#eee;padding:0 .2em}
.ok{color:#176f2c}.down{color:#b3261e}</style></head>
<body><h1>Docker Exporter</h1>
<p>Prometheus exporter for a Docker host, version <code>${escapeHtml(opts.version)}</code>.</p>
<p>Docker Engine: <strong class="${ready ? 'ok' : 'down'}">${ready ? 'reachable' : 'unreachable'}</strong> (${escapeHtml(detail)})</p>
<ul><li><a href="${path}">Metrics</a> (<code>${path}</code>)</li><li><a href="/healthz">/healthz</a> (process alive, no loop stuck)</li><li><a href="/readyz">/readyz</a> (engine reachable)</li></ul>
</body></html>
`);
  });

  app.use((_req, res) => {
    res.status(404).type('text/plain').send('404 page not found\n');
  });
  return app;
}

/** Web configs of the servers this process runs, for SIGHUP. */
const reloadable = new Set<WebConfigSource>();

/** Re-reads every running server's web config now (SIGHUP); returns how many there are. */
export function reloadWebConfigs(): number {
  for (const source of reloadable) source.refresh(true);
  return reloadable.size;
}

/** An HTTPS server whose certificate, CA and client-certificate policy follow the web config. */
function httpsServer(source: WebConfigSource, app: express.Express, logger: Logger): https.Server {
  const tlsOf = (c: WebConfig) => c.tls!;
  const server = https.createServer({ ...secureContextOptions(tlsOf(source.current)), ...clientCertOptions(tlsOf(source.current)) }, app);
  const apply = (config: WebConfig): void => {
    server.setSecureContext(secureContextOptions(tlsOf(config)));
    // Read by Node's TLS server for each new connection; setSecureContext does not cover them.
    Object.assign(server, clientCertOptions(tlsOf(config)));
  };
  source.on('change', (next) => apply(next));
  // Before Node wraps the socket in TLS: a changed certificate applies to this very handshake.
  server.prependListener('connection', () => source.refresh());
  // Ahead of Node's HTTP handling of the connection: a refused client never gets a request read.
  server.prependListener('secureConnection', (socket: TLSSocket) => {
    const why = checkClientCert(tlsOf(source.current), socket);
    if (why) {
      logger.debug({ remote: socket.remoteAddress, reason: why }, 'TLS client refused');
      socket.destroy();
    }
  });
  server.on('tlsClientError', (err: Error, socket: Socket) => {
    logger.debug({ remote: socket.remoteAddress, err: err.message }, 'TLS handshake failed');
  });
  return server;
}

/**
 * Starts serving; resolves once the port is bound. `source` is the `--web.config.file` (TLS, basic
 * auth, headers), read by the caller before anything started and re-read here when it changes.
 */
export async function startWebServer(opts: WebOptions, handlers: WebHandlers, source?: WebConfigSource): Promise<WebServer> {
  const app = createWebApp(opts, handlers, source);
  const server = source?.current.tls ? httpsServer(source, app, opts.logger) : http.createServer(app);
  // A scraper that never reads must not hold a socket forever.
  server.requestTimeout = 60_000;
  server.headersTimeout = 30_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listenPort, opts.listenHost || undefined, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  if (source) reloadable.add(source);
  const security = source && {
    tls: Boolean(source.current.tls),
    clientAuth: source.current.tls?.clientAuth,
    basicAuth: source.current.users.size > 0,
  };
  opts.logger.info({ address: opts.listenHost || '0.0.0.0', port, telemetryPath: opts.telemetryPath, ...security }, 'listening');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        if (source) reloadable.delete(source);
        // The password worker, if one was started, goes with the server.
        server.close(() => resolve(source?.close()));
        server.closeIdleConnections();
        // Keep-alive scrapers would otherwise hold close() open.
        setTimeout(() => server.closeAllConnections(), 1000).unref();
      }),
  };
}
