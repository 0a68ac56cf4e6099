// The image's HEALTHCHECK: exits 0 when the exporter in this container answers /healthz.
// Runs with node alone (a minimal image has no curl or wget). It follows the listen port set with
// DOCKER_EXPORTER_WEB_LISTEN_ADDRESS, and works with a --web.config.file too: it tries plain HTTP,
// then HTTPS without verifying the certificate (this is loopback, and the question is only "does
// the process serve?"), and counts a 401 from basic auth as an answer. Only a web config that
// requires client certificates defeats it; then disable the health check (`--no-healthcheck`).
import http from 'node:http';
import https from 'node:https';

const TIMEOUT_MS = 4000;
// `[host]:port` as the exporter takes it; an empty or wildcard host is reached on loopback.
const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec((process.env.DOCKER_EXPORTER_WEB_LISTEN_ADDRESS ?? ':9764').trim());
const port = Number(m?.[3] ?? 9764);
const listenHost = m?.[1] ?? m?.[2] ?? '';
const host = ['', '0.0.0.0', '::'].includes(listenHost) ? '127.0.0.1' : listenHost;

function probe(client) {
  return new Promise((resolve) => {
    const req = client.get(
      { host, port, path: '/healthz', timeout: TIMEOUT_MS, rejectUnauthorized: false },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200 || res.statusCode === 401 ? 'ok' : `HTTP ${res.statusCode}`);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`no answer within ${TIMEOUT_MS} ms`)));
    req.on('error', (err) => resolve(err.message));
  });
}

const plain = await probe(http);
if (plain === 'ok') process.exit(0);
const tls = await probe(https);
if (tls === 'ok') process.exit(0);
console.error(`unhealthy: ${host}:${port}/healthz: http: ${plain}; https: ${tls}`);
process.exit(1);
