import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TestContainers, waitFor } from '../helpers/docker.js';
import { startExporter, type RunningExporter } from '../helpers/exporter.js';
import { find, parseMetrics } from '../helpers/prom.js';
import { requireTool } from '../helpers/tools.js';
import { startPrometheus, type RunningPrometheus } from './prometheus-server.js';

/**
 * Docker label values can hold anything (names cannot: the engine allows only [a-zA-Z0-9_.-]).
 * Each must reach Prometheus unchanged through both exposition formats.
 */
const VALUES = {
  'com.docker.compose.project': 'q"uote \\back\\slash\\n (not a newline) and a\nreal newline',
  'com.docker.compose.service': 'unicode ☃ 😀 日本語 é, commas, {braces} and = signs',
  'com.docker.stack.namespace': 'trailing backslash\\',
  'com.docker.swarm.service.name': '"',
};
const LABEL_NAMES: Record<string, string> = {
  'com.docker.compose.project': 'container_label_com_docker_compose_project',
  'com.docker.compose.service': 'container_label_com_docker_compose_service',
  'com.docker.stack.namespace': 'container_label_com_docker_stack_namespace',
  'com.docker.swarm.service.name': 'container_label_com_docker_swarm_service_name',
};

/** Label values of one OpenMetrics sample line, unescaped by the spec's three escapes only. */
function openMetricsLabels(line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"/gy;
  let rest = line.slice(line.indexOf('{') + 1);
  for (let m = re.exec(rest); m; m = re.exec(rest)) {
    labels[m[1]!] = m[2]!.replace(/\\(["\\n])/g, (_x, c: string) => (c === 'n' ? '\n' : c));
    if (rest[re.lastIndex] === ',') re.lastIndex++;
    else break;
  }
  rest = rest.slice(re.lastIndex);
  if (!/^\} \S+$/.test(rest)) throw new Error(`sample line does not parse: ${JSON.stringify(line)}`);
  return labels;
}

describe('container label values in both exposition formats', () => {
  const containers = new TestContainers();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'label-escaping-'));
  let exporter: RunningExporter;
  let prometheus: RunningPrometheus | undefined;
  let id: string;
  const name = `escape-${process.pid}`;

  beforeAll(async () => {
    id = await containers.run(['--name', name, ...Object.entries(VALUES).flatMap(([k, v]) => ['--label', `${k}=${v}`])]);
    exporter = await startExporter(['--container.include', `^${name}$`, '--no-collector.stats', '--no-collector.df']);
    await waitFor('the container in the inventory', async () => find(await exporter.samples(), 'docker_container_info', { id }), 20_000, 250);
  });
  afterAll(async () => {
    await prometheus?.stop();
    const code = await exporter?.stop();
    await containers.removeAll();
    fs.rmSync(dir, { recursive: true, force: true });
    expect(code).toBe(0);
  });

  it('text format: every value parses back exactly, and promtool accepts the page', async () => {
    const text = await exporter.scrape();
    const info = find(parseMetrics(text), 'docker_container_info', { id })!;
    for (const [key, v] of Object.entries(VALUES)) expect(info.labels[LABEL_NAMES[key]!], key).toBe(v);
    expect(info.labels.name).toBe(name);
    const promtool = spawnSync(requireTool('promtool', 'prometheus'), ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 60_000 });
    expect(promtool.stdout + promtool.stderr).toBe('');
    expect(promtool.status).toBe(0);
  });

  it('OpenMetrics: every value parses back exactly, and Prometheus (which negotiates OpenMetrics) stores it unchanged', async () => {
    const res = await fetch(`${exporter.url}/metrics`, { headers: { accept: 'application/openmetrics-text;version=1.0.0' } });
    expect(res.headers.get('content-type')).toContain('application/openmetrics-text');
    const body = await res.text();
    const line = body.split('\n').find((l) => l.startsWith('docker_container_info{') && l.includes(id))!;
    const labels = openMetricsLabels(line);
    for (const [key, v] of Object.entries(VALUES)) expect(labels[LABEL_NAMES[key]!], key).toBe(v);

    const config = path.join(dir, 'prometheus.yml');
    fs.writeFileSync(config, `scrape_configs:\n  - job_name: escaping\n    static_configs:\n      - targets: ['127.0.0.1:${exporter.port}']\n`);
    prometheus = await startPrometheus(config);
    const stored = await waitFor('Prometheus to have scraped the container', async () => (await prometheus!.query(`docker_container_info{id="${id}"}`))[0], 30_000, 500);
    for (const [key, v] of Object.entries(VALUES)) expect(stored.metric[LABEL_NAMES[key]!], key).toBe(v);
    const target = (await prometheus.activeTargets())[0]!;
    expect(target.health).toBe('up');
    expect(target.lastError).toBe('');
  });

  it('text format after OpenMetrics scrapes: still the same names, and promtool still accepts it', async () => {
    expect(prometheus).toBeDefined();
    const text = await exporter.scrape();
    // Counters keep `_total` in the text format (prom-client 15.1.3 strips it in place on an OpenMetrics render).
    expect(text).toContain('# TYPE docker_container_restarts_total counter');
    expect(text).toMatch(/^docker_exporter_docker_requests_total\{/m);
    const promtool = spawnSync(requireTool('promtool', 'prometheus'), ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 60_000 });
    expect(promtool.stdout + promtool.stderr).toBe('');
  });
});
