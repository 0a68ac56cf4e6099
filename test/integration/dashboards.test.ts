import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { docker, TestContainers, waitFor } from '../helpers/docker.js';
import { startExporter, type RunningExporter } from '../helpers/exporter.js';
import { REPO_ROOT, requireTool } from '../helpers/tools.js';

// End to end: the real exporter on the real engine with a handful of containers in the situations
// the dashboards and alerts are about (CPU-limited and throttled, unhealthy, crash-looping,
// exited non-zero, OOM-killed), scraped every second by a real Prometheus (Debian's package) that
// loads our rules. Then every query of every dashboard, variables filled in as Grafana would,
// must return at least one series, and every rule must evaluate cleanly.

const RULES_FILE = path.join(REPO_ROOT, 'prometheus/rules/docker-exporter.rules.yml');
const DASHBOARDS_DIR = path.join(REPO_ROOT, 'grafana/dashboards');

/**
 * Metrics the exporter omits where the engine cannot supply them (METRICS.md: "the series is
 * omitted, never exported as 0"). Block I/O is the common case: with overlay2 on some hosts and in
 * engines running inside containers, blkio_stats comes back empty. A query on these must still
 * parse and run; it need only return data where the exporter exports the metric at all.
 */
const ENGINE_OPTIONAL = [
  'container_fs_reads_bytes_total', 'container_fs_writes_bytes_total', 'container_fs_reads_total', 'container_fs_writes_total',
  // Only a Swarm manager has them: test/integration/swarm.test.ts runs the Swarm panel's queries
  // against a real Prometheus on a swarm, which this file does not make.
  'docker_swarm_service_replicas_running', 'docker_swarm_service_replicas_desired',
];

/** How Grafana fills its built-in interval variables; with a 1 s scrape, 10 s spans ten samples. */
const BUILTINS: Record<string, string> = { __rate_interval: '10s', __interval: '2s', __range: '1h', __range_s: '3600' };

interface Target {
  dashboard: string;
  panel: string;
  refId: string;
  expr: string;
}
interface Panel {
  type: string;
  title?: string;
  targets?: { refId: string; expr: string }[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  multi?: boolean;
  includeAll?: boolean;
  query?: string | { query: string };
}
interface Dashboard {
  panels: Panel[];
  templating: { list: Variable[] };
}
interface QueryAnswer {
  status: 'success' | 'error';
  error?: string;
  data?: { resultType: string; result: { metric: Record<string, string> }[] | unknown };
}

function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

function loadDashboards(): [string, Dashboard][] {
  return fs
    .readdirSync(DASHBOARDS_DIR)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => [f, JSON.parse(fs.readFileSync(path.join(DASHBOARDS_DIR, f), 'utf8')) as Dashboard]);
}

/**
 * Fills a query's variables the way Grafana's Prometheus datasource does: a multi-value (or "All")
 * variable becomes a regex group of its escaped values, a single-value one is inserted as it is.
 */
function fill(expr: string, d: Dashboard, values: Record<string, string>): string {
  const vars = new Map(d.templating.list.map((v) => [v.name, v]));
  return expr.replace(/\$\{(\w+)(?::\w+)?\}|\$(\w+)/g, (whole, a: string | undefined, b: string | undefined) => {
    const name = (a ?? b)!;
    if (name in BUILTINS) return BUILTINS[name]!;
    const value = values[name];
    if (value === undefined) throw new Error(`no value for $${name} in ${expr}`);
    const v = vars.get(name);
    if (value === '.*' || !(v?.multi || v?.includeAll)) return value;
    return `(${value.replace(/[\\^$.|?*+()[\]{}]/g, '\\\\$&')})`;
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo;
      srv.close(() => resolve(port));
    });
  });
}

const suffix = `${process.pid}-${Date.now().toString(36)}`;
const names = {
  web: `dex-dash-web-${suffix}`,
  api: `dex-dash-api-${suffix}`,
  crash: `dex-dash-crash-${suffix}`,
  exited: `dex-dash-exited-${suffix}`,
  oom: `dex-dash-oom-${suffix}`,
  stopped: `dex-dash-stopped-${suffix}`,
};

describe('dashboards and rules on a real Prometheus', () => {
  const containers = new TestContainers();
  let exporter: RunningExporter | undefined;
  let prometheus: ChildProcess | undefined;
  let promUrl = '';
  let instance = '';
  let tmp = '';
  let startedAt = 0;

  async function query(expr: string): Promise<QueryAnswer> {
    const res = await fetch(`${promUrl}/api/v1/query`, { method: 'POST', body: new URLSearchParams({ query: expr }) });
    return (await res.json()) as QueryAnswer;
  }
  async function seriesCount(expr: string): Promise<number> {
    const a = await query(expr);
    if (a.status !== 'success') throw new Error(`${expr}: ${a.error}`);
    return Array.isArray(a.data?.result) ? a.data.result.length : 1;
  }

  beforeAll(async () => {
    // The exporter and Prometheus first, so that they see the containers start (events, running
    // state before the exits). Stats every second and df every 5 s: a few seconds give rates and
    // disk usage.
    // The logs collector (off by default) feeds the overview's log file panel.
    exporter = await startExporter(['--stats.interval', '1s', '--df.interval', '5s', '--collector.logs']);
    instance = `127.0.0.1:${exporter.port}`;

    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dex-prometheus-'));
    const config = [
      'global:',
      '  scrape_interval: 1s',
      '  evaluation_interval: 1s',
      'rule_files:',
      `  - ${JSON.stringify(RULES_FILE)}`,
      'scrape_configs:',
      // The job name the DockerExporterDown alert expects.
      '  - job_name: docker-exporter',
      '    static_configs:',
      `      - targets: [${JSON.stringify(instance)}]`,
      '',
    ].join('\n');
    fs.writeFileSync(path.join(tmp, 'prometheus.yml'), config);
    const port = await freePort();
    promUrl = `http://127.0.0.1:${port}`;
    const logs: string[] = [];
    prometheus = spawn(
      requireTool('prometheus', 'prometheus'),
      [`--config.file=${path.join(tmp, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(tmp, 'data')}`, `--web.listen-address=127.0.0.1:${port}`, '--log.level=warn'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    // Never outlive the test run, whatever happens to afterAll.
    process.once('exit', () => prometheus?.kill('SIGKILL'));
    prometheus.stdout!.on('data', (c: Buffer) => logs.push(c.toString()));
    prometheus.stderr!.on('data', (c: Buffer) => logs.push(c.toString()));
    await waitFor(`Prometheus ready on ${promUrl}`, async () => {
      if (prometheus!.exitCode !== null) throw new Error(`prometheus exited with ${prometheus!.exitCode}: ${logs.join('')}`);
      return (await fetch(`${promUrl}/-/ready`)).ok;
    }, 30_000, 250);

    // Then the containers, with Prometheus already scraping: it must see some of them running
    // before they exit.
    await containers.run(
      // Compose labels, every limit, a passing health check and a busy loop: CPU at its limit,
      // throttled, and a series for every per-container panel of the detail dashboard.
      ['--name', names.web, '--label', 'com.docker.compose.project=demo', '--label', 'com.docker.compose.service=web',
        '--memory', '64m', '--memory-swap', '64m', '--cpus', '0.2', '--pids-limit', '64',
        '--health-cmd', 'true', '--health-interval', '1s'],
      ['sh', '-c', 'while :; do :; done'],
    );
    await containers.run(
      ['--name', names.api, '--label', 'com.docker.compose.project=demo', '--label', 'com.docker.compose.service=api',
        '--health-cmd', 'false', '--health-interval', '1s', '--health-retries', '1'],
    );
    await containers.run(['--name', names.crash, '--restart', 'always'], ['sh', '-c', 'sleep 1; exit 3']);
    // Both run for a few seconds first, so that Prometheus has seen them running before they end.
    await containers.run(['--name', names.exited], ['sh', '-c', 'sleep 8; exit 2']);
    await containers.run(
      ['--name', names.oom, '--memory', '16m', '--memory-swap', '16m'],
      ['sh', '-c', 'sleep 8; x=$(head -c 100000000 /dev/zero | tr "\\0" a); echo "$x" | wc -c'],
    );

    // Stopped by hand although its restart policy keeps it running: ContainerExpectedRunningDown.
    await containers.run(['--name', names.stopped, '--restart', 'unless-stopped']);
    await docker(['stop', '-t', '0', names.stopped]);

    startedAt = Date.now();
  });

  afterAll(async () => {
    if (prometheus && prometheus.exitCode === null) {
      const exited = new Promise((r) => prometheus!.once('exit', r));
      prometheus.kill('SIGTERM');
      const timer = setTimeout(() => prometheus!.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    await exporter?.stop();
    await containers.removeAll();
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** Lets the scrapes and the containers' stories (exits, OOM kill, restarts) accumulate. */
  async function settled(): Promise<void> {
    const wait = 20_000 - (Date.now() - startedAt);
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }

  it('returns at least one series for every dashboard query', { timeout: 180_000 }, async () => {
    await settled();
    const metricsText = await (await fetch(`${exporter!.url}/metrics`, { headers: { accept: 'text/plain; version=0.0.4' } })).text();
    const absent = ENGINE_OPTIONAL.filter((m) => !new RegExp(`^${m}[{ ]`, 'm').test(metricsText));
    const optional = (expr: string): string[] => ENGINE_OPTIONAL.filter((m) => new RegExp(`\\b${m}\\b`).test(expr));

    // Values per dashboard. The detail dashboard shows one container: a query passes when it has
    // data for one of ours (the OOM panel only for the OOM-killed one, CPU panels only for running
    // ones), as a user picks the container a panel is about.
    const dashboards = loadDashboards();
    const candidates: Record<string, Record<string, string>[]> = {
      'docker-host-overview.json': [{ instance, compose_project: '.*', compose_service: '.*' }],
      'exporter-health.json': [{ instance }],
      'container-detail.json': [
        { instance, compose_project: 'demo', compose_service: 'web', container: names.web },
        ...[names.oom, names.crash, names.exited, names.api].map((container) => ({ instance, compose_project: '.*', compose_service: '.*', container })),
      ],
    };
    expect(Object.keys(candidates).sort()).toEqual(dashboards.map(([f]) => f));

    const targets: (Target & { d: Dashboard })[] = dashboards.flatMap(([file, d]) =>
      allPanels(d.panels).flatMap((p) => (p.targets ?? []).map((t) => ({ dashboard: file, panel: p.title ?? '', refId: t.refId, expr: t.expr, d }))),
    );
    expect(targets.length).toBeGreaterThan(50);

    // Rates need a few samples and the containers' stories take a few seconds more: retry what is
    // still empty until it has data or the deadline passes, then report everything that is not.
    const pending = new Map(targets.map((t) => [`${t.dashboard} "${t.panel}" ${t.refId}`, t]));
    const problems = new Map<string, string>();
    const skipped: string[] = [];
    const deadline = Date.now() + 90_000;
    while (pending.size > 0 && Date.now() < deadline) {
      for (const [key, t] of pending) {
        let found = false;
        for (const values of candidates[t.dashboard]!) {
          const expr = fill(t.expr, t.d, values);
          const a = await query(expr);
          if (a.status !== 'success') {
            // A query that Prometheus refuses never gets better: fail at once.
            throw new Error(`${key}: ${a.error}\n  ${expr}`);
          }
          if (Array.isArray(a.data?.result) && a.data.result.length > 0) {
            found = true;
            break;
          }
        }
        if (found) {
          pending.delete(key);
          problems.delete(key);
        } else if (optional(t.expr).length > 0 && optional(t.expr).every((m) => absent.includes(m))) {
          // It parsed and ran; the exporter exports no such series on this engine.
          pending.delete(key);
          skipped.push(key);
        } else {
          problems.set(key, fill(t.expr, t.d, candidates[t.dashboard]![0]!));
        }
      }
      if (pending.size > 0) await new Promise((r) => setTimeout(r, 2_000));
    }
    if (skipped.length > 0) {
      console.info(`${absent.join(', ')} absent from /metrics on this engine (no block I/O, not a Swarm manager): these queries ran without error but could not return data:\n  ${skipped.join('\n  ')}`);
    }
    expect([...problems].map(([k, e]) => `${k}: no series for ${e}`)).toEqual([]);
  });

  it('lists our containers, compose projects and services in the dashboard variables', async () => {
    await settled();
    for (const [file, d] of loadDashboards()) {
      const values = { instance, compose_project: '.*', compose_service: '.*' };
      for (const v of d.templating.list.filter((x) => x.type === 'query')) {
        const q = typeof v.query === 'string' ? v.query : v.query!.query;
        const m = /^label_values\((.*),\s*(\w+)\)$/.exec(q);
        expect(m, `${file} $${v.name}: ${q}`).not.toBeNull();
        const a = await query(fill(m![1]!, d, values));
        expect(a.status, a.error).toBe('success');
        const listed = new Set((a.data!.result as { metric: Record<string, string> }[]).map((s) => s.metric[m![2]!]).filter(Boolean));
        const expected = { instance, compose_project: 'demo', compose_service: 'web', container: names.web }[v.name as 'instance'];
        expect([...listed], `${file} $${v.name}`).toContain(expected);
      }
    }
  });

  it('evaluates every recording and alerting rule without error', { timeout: 60_000 }, async () => {
    await settled();
    const groups = (parseYaml(fs.readFileSync(RULES_FILE, 'utf8')) as { groups: { rules: { record?: string; alert?: string; expr: string }[] }[] }).groups;
    const rules = groups.flatMap((g) => g.rules);
    for (const r of rules) {
      const a = await query(r.expr);
      expect(a.status, `${r.record ?? r.alert}: ${a.error}`).toBe('success');
    }
    // And Prometheus' own evaluation loop, which would also catch e.g. many-to-many matches that
    // only appear with real label sets.
    type RuleState = { name: string; health: string; lastError?: string };
    const loaded = await waitFor('every rule evaluated', async () => {
      const res = (await (await fetch(`${promUrl}/api/v1/rules`)).json()) as { data: { groups: { rules: RuleState[] }[] } };
      const all = res.data.groups.flatMap((g) => g.rules);
      return all.length === rules.length && all.every((r) => r.health !== 'unknown') ? all : undefined;
    }, 30_000, 500);
    expect(loaded.filter((r) => r.health !== 'ok').map((r) => `${r.name}: ${r.health} ${r.lastError ?? ''}`)).toEqual([]);
  });

  it('matches the test containers with the alert expressions that describe them', { timeout: 120_000 }, async () => {
    await settled();
    // The conditions, not the alerts: `for:` keeps the alerts pending far longer than a test runs.
    const rules = (parseYaml(fs.readFileSync(RULES_FILE, 'utf8')) as { groups: { rules: { alert?: string; expr: string }[] }[] }).groups.flatMap((g) => g.rules);
    const exprOf = (alert: string): string => rules.find((r) => r.alert === alert)!.expr;
    const expectations: [string, string][] = [
      ['ContainerUnhealthy', names.api],
      ['ContainerExitedNonZero', names.exited],
      ['ContainerOomKilled', names.oom],
      ['ContainerCpuThrottled', names.web],
      ['ContainerRestartingRepeatedly', names.crash],
      ['ContainerExpectedRunningDown', names.stopped],
    ];
    for (const [alert, name] of expectations) {
      const expr = `(${exprOf(alert)}) and on (id, instance) docker_container_info{name="${name}"}`;
      await waitFor(`${alert} to match ${name}: ${expr}`, async () => (await seriesCount(expr)) > 0, 60_000, 1_000);
    }
  });

  it('exposes /metrics that promtool check metrics has nothing to say about', async () => {
    await settled();
    // The classic text format explicitly: promtool lints that one (Prometheus itself negotiates
    // OpenMetrics, whose TYPE lines name counters without _total).
    const res = await fetch(`${exporter!.url}/metrics`, { headers: { accept: 'text/plain; version=0.0.4' } });
    expect(res.headers.get('content-type')).toMatch(/^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    // Every kind of container is running or has run: the output holds all the per-container families.
    expect(text).toContain(names.web);
    const r = spawnSync(requireTool('promtool', 'prometheus'), ['check', 'metrics'], { input: text, encoding: 'utf8', timeout: 60_000 });
    expect(`${r.stdout}${r.stderr}`).toBe('');
    expect(r.status).toBe(0);
  });
});
