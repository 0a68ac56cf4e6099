import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker } from '../helpers/docker.js';
import { startExporter, type RunningExporter } from '../helpers/exporter.js';
import { value } from '../helpers/prom.js';

describe('engine collector against the real engine', () => {
  let exporter: RunningExporter;
  beforeAll(async () => {
    exporter = await startExporter(['--no-collector.stats', '--no-collector.df']);
  });
  afterAll(async () => {
    expect(await exporter.stop()).toBe(0);
  });

  it('reports docker_up 1 and the engine facts docker itself reports', async () => {
    const info = JSON.parse(await docker(['info', '--format', '{{json .}}'])) as Record<string, unknown>;
    const version = await docker(['version', '--format', '{{.Server.APIVersion}}']);
    const samples = await exporter.samples();
    expect(value(samples, 'docker_up')).toBe(1);
    expect(value(samples, 'docker_engine_cpus')).toBe(info.NCPU);
    expect(value(samples, 'docker_engine_memory_bytes')).toBe(info.MemTotal);
    expect(value(samples, 'docker_engine_images')).toBe(info.Images);
    const infoSeries = samples.find((s) => s.name === 'docker_engine_info');
    expect(infoSeries?.labels).toMatchObject({
      version: info.ServerVersion,
      api_version: version,
      storage_driver: info.Driver,
      cgroup_version: info.CgroupVersion,
      logging_driver: info.LoggingDriver,
    });
    expect(value(samples, 'docker_exporter_collector_success', { collector: 'engine' })).toBe(1);
    expect(value(samples, 'docker_exporter_docker_requests_total', { endpoint: '/info' })).toBeGreaterThanOrEqual(1);
  });

  it('serves the landing page, health, readiness, OpenMetrics, gzip and 404', async () => {
    const landing = await (await fetch(exporter.url + '/')).text();
    expect(landing).toContain('Docker Exporter');
    expect(landing).toContain('href="/metrics"');
    expect(landing).toContain('reachable');
    expect((await fetch(exporter.url + '/healthz')).status).toBe(200);
    expect((await fetch(exporter.url + '/readyz')).status).toBe(200);
    expect((await fetch(exporter.url + '/nothing-here')).status).toBe(404);
    const om = await fetch(exporter.url + '/metrics', { headers: { accept: 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5' } });
    expect(om.headers.get('content-type')).toContain('application/openmetrics-text');
    expect((await om.text()).trimEnd().endsWith('# EOF')).toBe(true);
    const gz = await fetch(exporter.url + '/metrics', { headers: { 'accept-encoding': 'gzip' } });
    expect(gz.headers.get('content-encoding')).toBe('gzip');
    expect(await gz.text()).toContain('docker_up 1');
  });
});
