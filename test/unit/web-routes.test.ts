import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';
import pino from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { createWebApp, type WebHandlers, type WebOptions } from '../../src/web/server.js';

/**
 * The routes of the web layer, in process, with stub handlers and no Docker: what each path answers
 * for what a scraper asks. (A stuck loop's /healthz is in sick-engine.test.ts; the real app's
 * answers against a real engine in integration/engine.test.ts.)
 */

const BODY = { text: Buffer.from('up 1\n'), openmetrics: Buffer.from('up 1\n# EOF\n') };
const CONTENT_TYPE = { text: Registry.PROMETHEUS_CONTENT_TYPE, openmetrics: Registry.OPENMETRICS_CONTENT_TYPE };

/** What Prometheus 2.x sends when scraping (scrape/scrape.go, scrapeAcceptHeader). */
const PROMETHEUS_ACCEPT = 'application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1';

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  /** The body as sent, not decompressed. */
  raw: Buffer;
  text: string;
}

const servers: http.Server[] = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
});

/** Serves createWebApp on 127.0.0.1 and returns a GET that sends exactly the given headers. */
async function serve(handlers: Partial<WebHandlers> = {}, opts: Partial<WebOptions> = {}) {
  const asked: Array<'text' | 'openmetrics'> = [];
  const app = createWebApp(
    { listenHost: '127.0.0.1', listenPort: 0, telemetryPath: '/metrics', version: '1.2.3', logger: pino({ level: 'silent' }), ...opts },
    {
      metrics: async (format) => {
        asked.push(format);
        return { contentType: CONTENT_TYPE[format], body: BODY[format] };
      },
      ready: async () => ({ ready: true, detail: 'engine API 1.41 at unix:///var/run/docker.sock' }),
      live: () => ({ live: true, detail: 'ok' }),
      ...handlers,
    },
  );
  const server = http.createServer(app);
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const get = (path: string, headers: Record<string, string> = {}): Promise<Reply> =>
    new Promise((resolve, reject) => {
      // node:http, not fetch: fetch adds its own Accept and Accept-Encoding and decompresses.
      const req = http.get({ host: '127.0.0.1', port, path, headers }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const raw = Buffer.concat(chunks);
          resolve({ status: res.statusCode ?? 0, headers: res.headers, raw, text: raw.toString('utf8') });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
    });
  return { get, asked };
}

describe('/metrics', () => {
  it.each([
    ['no Accept header', undefined, 'text'],
    ['*/*', '*/*', 'text'],
    ['text/plain', 'text/plain', 'text'],
    ['text/plain;version=0.0.4', 'text/plain;version=0.0.4', 'text'],
    ['what Prometheus sends', PROMETHEUS_ACCEPT, 'openmetrics'],
    ['OpenMetrics without a version', 'application/openmetrics-text', 'openmetrics'],
    ['OpenMetrics 1.0.0 only', 'application/openmetrics-text; version=1.0.0', 'openmetrics'],
    // Only 1.0.0 is offered: a scraper that wants another version gets the classic format.
    ['OpenMetrics 0.0.1 only', 'application/openmetrics-text;version=0.0.1', 'text'],
    ['text preferred by q', 'application/openmetrics-text;version=1.0.0;q=0.2,text/plain;q=0.9', 'text'],
    ['a type neither format is', 'application/json', 'text'],
  ] as const)('%s gets the %s format, with its content type and no-store', async (_what, accept, format) => {
    const { get, asked } = await serve();
    const r = await get('/metrics', accept === undefined ? {} : { accept });
    expect(r.status).toBe(200);
    expect(asked).toEqual([format]);
    expect(r.headers['content-type']).toBe(CONTENT_TYPE[format]);
    expect(r.headers['cache-control']).toBe('no-store');
    expect(r.headers['content-encoding']).toBeUndefined();
    expect(r.raw.equals(BODY[format])).toBe(true);
  });

  it('is gzipped when asked, and the body decompresses to the handler\'s body, in both formats', async () => {
    const { get } = await serve();
    for (const format of ['text', 'openmetrics'] as const) {
      const r = await get('/metrics', { 'accept-encoding': 'gzip, deflate, br', ...(format === 'openmetrics' ? { accept: PROMETHEUS_ACCEPT } : {}) });
      expect(r.status).toBe(200);
      expect(r.headers['content-encoding']).toBe('gzip');
      expect(r.headers.vary).toBe('Accept-Encoding');
      expect(r.headers['cache-control']).toBe('no-store');
      expect(r.headers['content-type']).toBe(CONTENT_TYPE[format]);
      expect(r.raw.equals(BODY[format])).toBe(false);
      expect(gunzipSync(r.raw).equals(BODY[format])).toBe(true);
    }
  });

  it.each([['identity'], ['br'], ['gzip;q=0'], ['deflate']])('is sent as it is for Accept-Encoding: %s', async (encoding) => {
    const { get } = await serve();
    const r = await get('/metrics', { 'accept-encoding': encoding });
    expect(r.headers['content-encoding']).toBeUndefined();
    expect(r.raw.equals(BODY.text)).toBe(true);
  });

  it('answers 500 with one line, and logs one line, when the handler throws', async () => {
    const logged: Array<{ level: number; msg: string; err?: string }> = [];
    const logger = pino({ level: 'debug' }, { write: (line: string) => void logged.push(JSON.parse(line)) });
    const { get } = await serve(
      {
        metrics: async () => {
          throw new Error('the registry is broken');
        },
      },
      { logger },
    );
    const r = await get('/metrics', { 'accept-encoding': 'gzip' });
    expect(r.status).toBe(500);
    expect(r.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(r.headers['content-encoding']).toBeUndefined();
    expect(r.text).toBe('error rendering metrics: the registry is broken\n');
    expect(logged.map(({ level, msg, err }) => ({ level, msg, err }))).toEqual([{ level: 50, msg: 'rendering metrics failed', err: 'the registry is broken' }]);
  });

  it('is served under the configured telemetry path, and only there', async () => {
    const { get, asked } = await serve({}, { telemetryPath: '/custom/metrics' });
    expect((await get('/custom/metrics')).text).toBe('up 1\n');
    expect((await get('/metrics')).status).toBe(404);
    expect(asked).toEqual(['text']);
  });
});

describe('/healthz and /readyz', () => {
  it('/healthz answers 200 or 503 with the handler\'s detail as one line', async () => {
    let state = { live: true, detail: 'ok' };
    const { get } = await serve({ live: () => state });
    const ok = await get('/healthz');
    expect([ok.status, ok.headers['content-type'], ok.text]).toEqual([200, 'text/plain; charset=utf-8', 'ok\n']);
    state = { live: false, detail: 'stuck: df run: no progress for 300 s, bound 240 s' };
    const stuck = await get('/healthz');
    expect([stuck.status, stuck.text]).toEqual([503, 'stuck: df run: no progress for 300 s, bound 240 s\n']);
  });

  it('/readyz answers 200 or 503 with the handler\'s detail as one line, asking the handler each time', async () => {
    let calls = 0;
    let state = { ready: true, detail: 'engine API 1.41 at unix:///var/run/docker.sock' };
    const { get } = await serve({
      ready: async () => {
        calls++;
        return state;
      },
    });
    const ready = await get('/readyz');
    expect([ready.status, ready.headers['content-type'], ready.text]).toEqual([200, 'text/plain; charset=utf-8', 'engine API 1.41 at unix:///var/run/docker.sock\n']);
    state = { ready: false, detail: 'engine at unix:///var/run/docker.sock does not answer: connect ECONNREFUSED' };
    const down = await get('/readyz');
    expect([down.status, down.text]).toEqual([503, 'engine at unix:///var/run/docker.sock does not answer: connect ECONNREFUSED\n']);
    expect(calls).toBe(2);
  });
});

describe('the landing page', () => {
  it('escapes a hostile telemetry path, version and engine detail', async () => {
    const { get } = await serve(
      { ready: async () => ({ ready: false, detail: 'engine said <b onmouseover="x">&amp;</b>' }) },
      { telemetryPath: '/m"\'><script>&', version: '<script>alert("v")</script>' },
    );
    const r = await get('/');
    expect(r.status).toBe(200);
    expect(r.headers['content-type']).toBe('text/html; charset=utf-8');
    // Nothing of the three got into the markup as markup.
    expect(r.text).not.toContain('<script>');
    expect(r.text).not.toContain('<b ');
    expect(r.text).toContain('<a href="/m&#34;&#39;&#62;&#60;script&#62;&#38;">Metrics</a> (<code>/m&#34;&#39;&#62;&#60;script&#62;&#38;</code>)');
    expect(r.text).toContain('version <code>&#60;script&#62;alert(&#34;v&#34;)&#60;/script&#62;</code>');
    expect(r.text).toContain('<strong class="down">unreachable</strong> (engine said &#60;b onmouseover=&#34;x&#34;&#62;&#38;amp;&#60;/b&#62;)');
  });

  it('says whether the engine is reachable', async () => {
    const { get } = await serve();
    expect((await get('/')).text).toContain('<strong class="ok">reachable</strong> (engine API 1.41 at unix:///var/run/docker.sock)');
  });
});

describe('anything else', () => {
  it.each([['/nothing'], ['/metrics/extra'], ['/metricsx'], ['/METRICS'], ['/metrics/'], ['/Healthz'], ['/readyz/'], ['/healthz/x'], ['/favicon.ico'], ['/index.html']])('%s is 404 with the exact body', async (path) => {
    const { get, asked } = await serve();
    const r = await get(path);
    expect(r.status).toBe(404);
    expect(r.headers['content-type']).toBe('text/plain; charset=utf-8');
    expect(r.text).toBe('404 page not found\n');
    expect(asked).toEqual([]);
  });
});
