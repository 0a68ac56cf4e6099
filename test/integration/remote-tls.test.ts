import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { COLLECTORS } from '../../src/collectors/index.js';
import { TestContainers, waitFor } from '../helpers/docker.js';
import { startExporter, type RunningExporter } from '../helpers/exporter.js';
import { findAll, value, type Sample } from '../helpers/prom.js';

/**
 * The test engine listens on loopback TCP with --tlsverify as well as on its socket
 * (scripts/test-engine.sh); the exporter reaches it there with the client certificate.
 */
const STATE = process.env.TEST_ENGINE_STATE ?? '/var/tmp/docker-exporter-test';
const TLS_DIR = path.join(STATE, 'tls');
const hostFile = path.join(STATE, 'tls-host');

function engineTlsHost(): string {
  if (!fs.existsSync(hostFile) || !fs.existsSync(path.join(TLS_DIR, 'ca.pem'))) {
    throw new Error(`no TLS listener on the test engine (${hostFile} missing): run scripts/test-engine.sh on a host where it starts dockerd`);
  }
  return fs.readFileSync(hostFile, 'utf8').trim();
}

/** Only this file's containers, so colleagues' concurrent tests do not change what is asserted. */
const INCLUDE = ['--container.include', '^remote-tls-'];

describe('remote engine over TCP with TLS', () => {
  const containers = new TestContainers();
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'remote-tls-'));
  let host: string;
  let good: RunningExporter;
  let wrongCa: RunningExporter;
  let noCert: RunningExporter;
  let id: string;

  beforeAll(async () => {
    host = engineTlsHost();
    // A cert dir whose ca.pem is some other CA: the engine's certificate will not verify.
    const wrongDir = path.join(tmp, 'wrong-ca');
    fs.mkdirSync(wrongDir);
    fs.copyFileSync(path.join(TLS_DIR, 'wrong-ca.pem'), path.join(wrongDir, 'ca.pem'));
    for (const f of ['cert.pem', 'key.pem']) fs.copyFileSync(path.join(TLS_DIR, f), path.join(wrongDir, f));
    // The right CA but no client certificate: the engine (--tlsverify) refuses the handshake.
    const noCertDir = path.join(tmp, 'no-cert');
    fs.mkdirSync(noCertDir);
    fs.copyFileSync(path.join(TLS_DIR, 'ca.pem'), path.join(noCertDir, 'ca.pem'));

    id = await containers.run(['--name', `remote-tls-${process.pid}`]);
    [good, wrongCa, noCert] = await Promise.all([
      startExporter([...INCLUDE, '--docker.host', host, '--docker.tls-verify', '--docker.cert-path', TLS_DIR, '--stats.interval', '1s', '--df.interval', '5s']),
      // The same through the docker CLI's variables.
      startExporter(INCLUDE, { env: { DOCKER_HOST: host, DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: wrongDir } }),
      startExporter([...INCLUDE, '--docker.host', host, '--docker.tls-verify', '--docker.cert-path', noCertDir]),
    ]);
  });
  afterAll(async () => {
    const codes = await Promise.all([good, wrongCa, noCert].map((e) => e?.stop()));
    await containers.removeAll();
    fs.rmSync(tmp, { recursive: true, force: true });
    expect(codes).toEqual([0, 0, 0]);
  });

  it('runs every collector through the TLS connection', async () => {
    // The ones on by default (logs reads local files and is off unless asked for).
    const names = COLLECTORS.filter((c) => c.defaultEnabled).map((c) => c.name);
    const samples = await waitFor(
      'every collector to succeed',
      async () => {
        const s = await good.samples();
        return names.every((n) => value(s, 'docker_exporter_collector_success', { collector: n }) === 1) && s;
      },
      30_000,
      500,
    );
    expect(value(samples, 'docker_up')).toBe(1);
    expect(findAll(samples, 'docker_exporter_collector_success').map((s) => s.labels.collector).sort()).toEqual([...names].sort());
    // Per-container data came over TLS too.
    expect(value(samples, 'docker_container_state', { id, state: 'running' })).toBe(1);
    if (names.includes('stats')) {
      const cpu = await waitFor('a stats sample', async () => value(await good.samples(), 'container_cpu_usage_seconds_total', { id }), 15_000, 500);
      expect(cpu).toBeGreaterThan(0);
    }
    expect(value(samples, 'docker_exporter_docker_request_failures_total', { endpoint: '/version' })).toBeUndefined();
    expect(good.logs.join('\n')).not.toContain('cannot reach the Docker Engine');
    expect(good.logs.some((l) => l.includes('"msg":"negotiated engine API version"'))).toBe(true);
  });

  /** Scrapes a few times: the exporter stays up, says docker_up 0 and logs the reason once. */
  async function expectDownWithReason(exporter: RunningExporter, reason: string): Promise<Sample[]> {
    let samples: Sample[] = [];
    for (let i = 0; i < 4; i++) {
      samples = await exporter.samples();
      expect(value(samples, 'docker_up')).toBe(0);
      await new Promise((r) => setTimeout(r, 300));
    }
    const lines = exporter.logs.filter((l) => l.includes('cannot reach the Docker Engine'));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('"level":50');
    expect(lines[0]).toContain(reason);
    const ready = await fetch(`${exporter.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.text()).toContain(reason);
    expect((await fetch(`${exporter.url}/healthz`)).status).toBe(200);
    expect(exporter.proc.exitCode).toBeNull();
    return samples;
  }

  it('with a wrong CA: docker_up 0, one log line saying the engine certificate is not signed by that CA, no exit', async () => {
    const samples = await expectDownWithReason(wrongCa, `is not signed by the CA in ${path.join(tmp, 'wrong-ca', 'ca.pem')}`);
    expect(value(samples, 'docker_exporter_collector_success', { collector: 'engine' })).toBe(0);
    expect(findAll(samples, 'docker_container_state')).toEqual([]);
  });

  it('without a client certificate: docker_up 0, one log line saying the engine requires one, no exit', async () => {
    await expectDownWithReason(noCert, `requires a client certificate`);
    expect(noCert.logs.find((l) => l.includes('cannot reach the Docker Engine'))).toContain(`${path.join(tmp, 'no-cert')} has no cert.pem and key.pem`);
  });
});
