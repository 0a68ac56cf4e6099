import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { promisify } from 'node:util';
import zlib from 'node:zlib';
import express, { type Request, type Response } from 'express';
import type { Logger } from 'pino';

const gzip = promisify(zlib.gzip);

/** What the web layer serves; it knows nothing of Docker or of how metrics are made. */
export interface WebHandlers {
  /** The exposition in the asked format. */
  metrics(format: 'text' | 'openmetrics'): Promise<{ contentType: string; body: string }>;
  /** Whether the exporter can do its job (the engine answers), with a one-line reason. */
  ready(): Promise<{ ready: boolean; detail: string }>;
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

/** Builds the express app: /metrics, a landing page, /healthz, /readyz, and 404 for the rest. */
export function createWebApp(opts: WebOptions, handlers: WebHandlers): express.Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);

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
        res.send(await gzip(body));
      } else {
        res.send(body);
      }
    } catch (err) {
      opts.logger.error({ err: (err as Error).message }, 'rendering metrics failed');
      res.status(500).type('text/plain').send(`error rendering metrics: ${(err as Error).message}\n`);
    }
  });

  app.get('/healthz', (_req, res) => {
    res.type('text/plain').send('ok\n');
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
<ul><li><a href="${path}">Metrics</a> (<code>${path}</code>)</li><li><a href="/healthz">/healthz</a> (process alive)</li><li><a href="/readyz">/readyz</a> (engine reachable)</li></ul>
</body></html>
`);
  });

  app.use((_req, res) => {
    res.status(404).type('text/plain').send('404 page not found\n');
  });
  return app;
}

/** Starts serving; resolves once the port is bound. */
export async function startWebServer(opts: WebOptions, handlers: WebHandlers): Promise<WebServer> {
  const server = http.createServer(createWebApp(opts, handlers));
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
  opts.logger.info({ address: opts.listenHost || '0.0.0.0', port, telemetryPath: opts.telemetryPath }, 'listening');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        // Keep-alive scrapers would otherwise hold close() open.
        setTimeout(() => server.closeAllConnections(), 1000).unref();
      }),
  };
}
