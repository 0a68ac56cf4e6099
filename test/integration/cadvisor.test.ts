import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { docker, TestContainers, waitFor } from '../helpers/docker.js';
import { startExporter, type RunningExporter } from '../helpers/exporter.js';
import { find } from '../helpers/prom.js';
import { startPrometheus, type RunningPrometheus } from './prometheus-server.js';

/**
 * cAdvisor's names as a real Prometheus sees them from the exporter on the real engine:
 * machine_cpu_cores and machine_memory_bytes equal to `docker info`, container_fs_usage_bytes equal
 * to the bytes a container wrote into its writable layer, and labels picked by an allowlist glob.
 */

/** Bytes the probe writes into its writable layer: an odd size, so that no block rounding can match it by chance. */
const WRITTEN = 123_457;
const PREFIX = `cadv-${process.pid}`;

const containers = new TestContainers();
let exporter: RunningExporter;
let prometheus: RunningPrometheus;
let dir: string;
let info: { NCPU: number; MemTotal: number };

/** The one sample of an instant query, as a number; undefined while Prometheus has none. */
async function scalar(q: string): Promise<number | undefined> {
  const result = await prometheus.query(q);
  if (result.length > 1) throw new Error(`${q}: ${result.length} series`);
  return result[0] ? Number(result[0].value[1]) : undefined;
}

beforeAll(async () => {
  info = JSON.parse(await docker(['info', '--format', '{{json .}}'])) as typeof info;
  await containers.run(['--name', `${PREFIX}-a`, '--label', 'org.label-schema.name=probe-a', '--label', 'com.docker.compose.project=cadv'], ['sh', '-c', `head -c ${WRITTEN} /dev/zero > /written; sleep 3600`]);
  exporter = await startExporter([
    // Only this file's containers: the glob's label set is the union over the containers held.
    '--container.include', `^${PREFIX}-`,
    '--container.label-allowlist', 'org.label-schema.*,com.docker.compose.project',
    '--df.interval', '1s',
  ]);
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'cadvisor-test-'));
  const config = path.join(dir, 'prometheus.yml');
  fs.writeFileSync(config, `scrape_configs:\n  - job_name: docker-exporter\n    static_configs:\n      - targets: ["127.0.0.1:${exporter.port}"]\n`);
  prometheus = await startPrometheus(config);
}, 120_000);

afterAll(async () => {
  await prometheus?.stop();
  if (exporter) expect(await exporter.stop()).toBe(0);
  await containers.removeAll();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('cAdvisor drop-ins through a real Prometheus', () => {
  it('machine_cpu_cores and machine_memory_bytes are the engine\'s NCPU and MemTotal', async () => {
    expect(await waitFor('machine_cpu_cores in Prometheus', () => scalar('machine_cpu_cores{job="docker-exporter"}'), 30_000, 250)).toBe(info.NCPU);
    expect(await scalar('machine_memory_bytes{job="docker-exporter"}')).toBe(info.MemTotal);
  });

  it('container_fs_usage_bytes is exactly the bytes the container wrote into its writable layer, with the glob-allowlisted label', async () => {
    const q = `container_fs_usage_bytes{name="${PREFIX}-a",container_label_org_label_schema_name="probe-a",container_label_com_docker_compose_project="cadv"}`;
    expect(await waitFor('container_fs_usage_bytes in Prometheus', () => scalar(q), 30_000, 250)).toBe(WRITTEN);
    // The same figure the engine gives, and the same series as docker_container_rw_size_bytes.
    expect(await scalar(`docker_container_rw_size_bytes{name="${PREFIX}-a"}`)).toBe(WRITTEN);
    const listed = JSON.parse(await docker(['ps', '-a', '--size', '--no-trunc', '--filter', `name=${PREFIX}-a`, '--format', '{{json .}}'])) as { Size: string };
    expect(listed.Size).toMatch(/^123kB \(virtual /);
  });

  it('a key a new container brings joins every series; an empty label is no label to Prometheus, so the old series go on', async () => {
    const before = await prometheus.query(`container_fs_usage_bytes{name="${PREFIX}-a"}`);
    expect(before).toHaveLength(1);
    await containers.run(['--name', `${PREFIX}-b`, '--label', 'org.label-schema.vendor=acme'], ['sleep', '3600']);
    await waitFor('the new container in Prometheus', () => scalar(`container_fs_usage_bytes{name="${PREFIX}-b",container_label_org_label_schema_vendor="acme"}`), 30_000, 250);
    // The exporter writes the new label on the first container's series too, empty.
    const a = find((await exporter.samples()), 'container_fs_usage_bytes', { name: `${PREFIX}-a` })!;
    expect(a.labels).toMatchObject({ container_label_org_label_schema_vendor: '', container_label_org_label_schema_name: 'probe-a' });
    // Prometheus drops empty labels: the first container still has one series, with the labels it had.
    const after = await prometheus.query(`container_fs_usage_bytes{name="${PREFIX}-a"}`);
    expect(after.map((s) => s.metric)).toEqual(before.map((s) => s.metric));
    expect(await scalar(`count(count_over_time(container_fs_usage_bytes{name="${PREFIX}-a"}[1m]))`)).toBe(1);
  });

  it('container_last_seen is the time of the scrape that read it (the cgroupfs source reads at scrape time)', async () => {
    const source = await waitFor('the stats source', async () => (await prometheus.query('docker_exporter_stats_source == 1'))[0]?.metric.source, 30_000, 250);
    const q = `container_last_seen{name="${PREFIX}-a"}`;
    await waitFor('container_last_seen in Prometheus', () => scalar(q), 30_000, 250);
    // Prometheus stamps each sample with the scrape's start; the engine sources give the sample's
    // own read time instead, up to a second (stream) or --stats.interval (poll) before the scrape.
    const lag = await scalar(`timestamp(${q}) - ${q}`);
    if (source === 'cgroupfs') expect(Math.abs(lag!)).toBeLessThan(1);
    else expect(lag!).toBeLessThan(3);
  });
});
