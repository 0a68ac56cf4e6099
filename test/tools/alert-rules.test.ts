import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { REPO_ROOT, requireTool } from '../helpers/tools.js';

// Static checks of what users load into Prometheus and Grafana: the rules pass promtool and their
// unit tests, the dashboards are well-formed Grafana JSON, and every metric either names is in the
// metric contract, so a renamed metric cannot silently empty a panel or disarm an alert.
// test/integration/dashboards.test.ts runs the same queries against a real Prometheus.

const RULES_FILE = path.join(REPO_ROOT, 'prometheus/rules/docker-exporter.rules.yml');
const RULE_TESTS_DIR = path.join(REPO_ROOT, 'prometheus/rules/tests');
const DASHBOARDS_DIR = path.join(REPO_ROOT, 'grafana/dashboards');
const METRICS_MD = path.resolve(REPO_ROOT, '..', 'shared', 'METRICS.md');

/** Exporter metrics that exist but METRICS.md names only by family (`process_*`, `nodejs_*`) or not yet. */
const EXTRA_METRICS = [
  'docker_exporter_parse_errors_total',
  'docker_exporter_df_last_success_timestamp_seconds',
  'process_cpu_seconds_total',
  'process_resident_memory_bytes',
  'nodejs_heap_size_used_bytes',
];
/** Made by Prometheus itself for every target, not by the exporter. */
const PROMETHEUS_METRICS = ['up'];

interface Rule {
  record?: string;
  alert?: string;
  expr: string;
  for?: string;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
}
interface Target {
  expr?: string;
  refId?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id?: number;
  type: string;
  title?: string;
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query?: string | { query?: string };
  definition?: string;
}
interface Dashboard {
  uid: string;
  title: string;
  schemaVersion: number;
  panels: Panel[];
  templating: { list: Variable[] };
  __inputs?: unknown;
}

function run(cmd: string, args: string[], input?: string): { code: number | null; out: string } {
  const r = spawnSync(cmd, args, { cwd: REPO_ROOT, encoding: 'utf8', input, timeout: 60_000 });
  return { code: r.status, out: `${r.stdout ?? ''}${r.stderr ?? ''}` };
}

const rules: Rule[] = (parseYaml(fs.readFileSync(RULES_FILE, 'utf8')) as { groups: { rules: Rule[] }[] }).groups.flatMap((g) => g.rules);
const alerts = rules.filter((r) => r.alert !== undefined);
const recorded = new Set(rules.flatMap((r) => (r.record ? [r.record] : [])));

const dashboards: [string, Dashboard][] = fs
  .readdirSync(DASHBOARDS_DIR)
  .filter((f) => f.endsWith('.json'))
  .sort()
  .map((f) => [f, JSON.parse(fs.readFileSync(path.join(DASHBOARDS_DIR, f), 'utf8')) as Dashboard]);

/** Every panel, the ones inside collapsed rows included. */
function allPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...allPanels(p.panels ?? [])]);
}

function variableQuery(v: Variable): string {
  return typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
}

/**
 * Metric names an expression uses: what is left once strings, label matchers, ranges, label lists
 * (by/on/…), Grafana variables, function calls and keywords are taken out. Not a parser, but
 * PromQL's grammar leaves nothing else that looks like an identifier.
 */
function metricNames(expr: string): string[] {
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\$\{[^}]*\}|\$\w+/g, ' ');
  const keywords = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan']);
  const names = new Set<string>();
  for (const m of stripped.matchAll(/(?<![\w:.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()/g)) {
    if (!keywords.has(m[1]!.toLowerCase())) names.add(m[1]!);
  }
  return [...names];
}

/** `label_values(selector, label)` → the selector; any other variable query is PromQL itself. */
function variableExpr(query: string): string | undefined {
  const m = /^\s*label_values\((.*),\s*\w+\s*\)\s*$/.exec(query);
  if (m) return m[1];
  if (/^\s*(?:label_names|metrics)\(/.test(query)) return undefined;
  const q = /^\s*query_result\((.*)\)\s*$/.exec(query);
  return q ? q[1] : query;
}

/**
 * Metric names the contract defines: the first column of every table in METRICS.md. A cell such as
 * "`container_network_transmit_bytes_total` (and `_packets_total`, …)" stands for the whole family:
 * each `_suffix` replaces the last two words of the name before it.
 */
function contractMetrics(): Set<string> {
  const names = new Set<string>();
  for (const line of fs.readFileSync(METRICS_MD, 'utf8').split('\n')) {
    if (!line.startsWith('|')) continue;
    const cell = line.split('|')[1] ?? '';
    let base: string | undefined;
    for (const [, token] of cell.matchAll(/`([^`]+)`/g)) {
      if (/^(?:container|docker)_[a-z0-9_]+$/.test(token!)) {
        base = token!;
        names.add(base);
      } else if (/^_[a-z0-9_]+$/.test(token!) && base) {
        names.add(base.split('_').slice(0, -2).join('_') + token);
      }
    }
  }
  return names;
}

const tmpDirs: string[] = [];
afterAll(() => {
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
});

describe('Prometheus rules', () => {
  const promtool = requireTool('promtool', 'prometheus');

  it('pass promtool check rules', () => {
    const r = run(promtool, ['check', 'rules', RULES_FILE]);
    expect(r.out).toContain('SUCCESS');
    expect(r.code, r.out).toBe(0);
  });

  it('pass their promtool unit tests', () => {
    const files = fs.readdirSync(RULE_TESTS_DIR).filter((f) => f.endsWith('.test.yml'));
    expect(files.length).toBeGreaterThan(0);
    const r = run(promtool, ['test', 'rules', ...files.map((f) => path.join(RULE_TESTS_DIR, f))]);
    expect(r.code, r.out).toBe(0);
    expect(r.out).not.toContain('FAILED');
  });

  it('load through the example Prometheus config (promtool check config)', () => {
    const r = run(promtool, ['check', 'config', path.join(REPO_ROOT, 'prometheus/prometheus.yml')]);
    expect(r.code, r.out).toBe(0);
    // The rule_files glob must find the rules, or Prometheus would start without alerts.
    expect(r.out).toContain('docker-exporter.rules.yml');
  });

  it('cover every alert the issue asks for', () => {
    expect(alerts.map((a) => a.alert).sort()).toEqual(
      [
        'ContainerCpuNearLimit',
        'ContainerCpuThrottled',
        'ContainerExitedNonZero',
        'ContainerExpectedRunningDown',
        'ContainerImageOutdated',
        'ContainerLogFileLarge',
        'ContainerMemoryNearLimit',
        'ContainerOomKilled',
        'ContainerRestartingRepeatedly',
        'ContainerUnhealthy',
        'DockerDiskReclaimableHigh',
        'DockerEngineUnreachable',
        'DockerExporterCollectorFailing',
        'DockerExporterDown',
        'SwarmServiceReplicasMissing',
      ].sort(),
    );
  });

  it.each(alerts.map((a) => [a.alert!, a] as const))('%s has for, severity, a summary and a description naming the container and host', (_name, a) => {
    expect(a.for, 'for:').toMatch(/^\d+[smhd]$/);
    expect(['critical', 'warning', 'info']).toContain(a.labels?.severity);
    const { summary, description } = a.annotations ?? {};
    expect(summary).toBeTruthy();
    expect(description).toContain('{{ $labels.instance }}');
    expect(summary).toContain('{{ $labels.instance }}');
    // Per-container alerts must say which container; host-level ones have no name label.
    const perContainer = metricNames(a.expr).some((n) => /^(container[_:]|docker_container_)/.test(n));
    if (perContainer) {
      expect(description).toContain('{{ $labels.name }}');
      expect(summary).toContain('{{ $labels.name }}');
    }
  });

  it('have a promtool test per alert where it fires and one where it does not', () => {
    const cases = fs
      .readdirSync(RULE_TESTS_DIR)
      .filter((f) => f.endsWith('.test.yml'))
      .flatMap((f) => (parseYaml(fs.readFileSync(path.join(RULE_TESTS_DIR, f), 'utf8')) as { tests: { alert_rule_test?: { alertname: string; exp_alerts?: unknown[] }[] }[] }).tests)
      .flatMap((t) => t.alert_rule_test ?? []);
    for (const a of alerts) {
      const mine = cases.filter((c) => c.alertname === a.alert);
      expect(mine.some((c) => (c.exp_alerts ?? []).length > 0), `${a.alert} fires somewhere`).toBe(true);
      expect(mine.some((c) => (c.exp_alerts ?? []).length === 0), `${a.alert} stays quiet somewhere`).toBe(true);
    }
  });
});

describe('Grafana dashboards', () => {
  it('are the three the issue asks for', () => {
    expect(dashboards.map(([f]) => f)).toEqual(['container-detail.json', 'docker-host-overview.json', 'exporter-health.json']);
    expect(new Set(dashboards.map(([, d]) => d.uid)).size).toBe(dashboards.length);
  });

  describe.each(dashboards)('%s', (_file, d) => {
    const panels = allPanels(d.panels);
    const vars = new Map(d.templating.list.map((v) => [v.name, v]));

    it('is provisioning-style JSON for Grafana 10+', () => {
      expect(d.schemaVersion).toBeGreaterThanOrEqual(38);
      expect(d.__inputs, 'no __inputs: the datasource comes from a variable').toBeUndefined();
      expect(d.uid).toMatch(/^[a-zA-Z0-9_-]{1,40}$/);
      expect(d.title).toBeTruthy();
    });

    it('has the datasource and instance variables', () => {
      expect(vars.get('datasource')).toMatchObject({ type: 'datasource', query: 'prometheus' });
      const instance = vars.get('instance');
      expect(instance?.type).toBe('query');
      expect(variableQuery(instance!)).toBe('label_values(docker_up, instance)');
    });

    it('has unique panel ids and refIds', () => {
      const ids = panels.map((p) => p.id);
      expect(ids.every((id) => Number.isInteger(id))).toBe(true);
      expect(new Set(ids).size).toBe(ids.length);
      for (const p of panels) {
        const refIds = (p.targets ?? []).map((t) => t.refId);
        expect(new Set(refIds).size, `refIds of "${p.title}"`).toBe(refIds.length);
      }
    });

    it('queries only through the datasource variable, with a query in every target', () => {
      const dataPanels = panels.filter((p) => p.type !== 'row');
      expect(dataPanels.length).toBeGreaterThan(0);
      for (const p of dataPanels) {
        expect(p.datasource, `"${p.title}"`).toEqual({ type: 'prometheus', uid: '${datasource}' });
        expect(p.targets?.length, `"${p.title}" has targets`).toBeGreaterThan(0);
        for (const t of p.targets ?? []) {
          expect(t.datasource, `"${p.title}" ${t.refId}`).toEqual({ type: 'prometheus', uid: '${datasource}' });
          expect(t.expr?.trim(), `"${p.title}" ${t.refId}`).toBeTruthy();
        }
      }
      for (const v of d.templating.list.filter((x) => x.type === 'query')) {
        expect((v as { datasource?: unknown }).datasource, `variable ${v.name}`).toEqual({ type: 'prometheus', uid: '${datasource}' });
      }
    });

    it('uses variables that exist', () => {
      const builtIn = new Set(['__rate_interval', '__interval', '__range', '__range_s', '__interval_ms', '__url_time_range']);
      const texts = [...panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr ?? '')), ...d.templating.list.map(variableQuery)];
      for (const text of texts) {
        for (const [, name] of text.matchAll(/\$\{?(\w+)/g)) {
          expect(vars.has(name!) || builtIn.has(name!), `$${name} in ${text}`).toBe(true);
        }
      }
    });
  });
});

describe('metric names in dashboards and rules', () => {
  const allowed = new Set([...contractMetrics(), ...EXTRA_METRICS, ...PROMETHEUS_METRICS, ...recorded]);

  it('reads the contract', () => {
    // Guards the parser of METRICS.md: a few names from different tables, one from a family cell.
    for (const n of ['container_cpu_usage_seconds_total', 'container_network_transmit_packets_dropped_total', 'docker_disk_usage_reclaimable_bytes', 'docker_exporter_collector_success', 'docker_container_finished_at_seconds']) {
      expect(allowed.has(n), n).toBe(true);
    }
  });

  it('extracts metric names from PromQL', () => {
    expect(metricNames('topk(10, sum by (name) (rate(container_cpu_usage_seconds_total{name=~"a.b", instance="$instance"}[$__rate_interval])))')).toEqual(['container_cpu_usage_seconds_total']);
    expect(metricNames('a / on (id, instance) group_left () (b > 0) unless on(x) c:d:e offset 5m == bool 1e9')).toEqual(['a', 'b', 'c:d:e']);
  });

  const exprs: [string, string][] = [
    ...rules.map((r) => [`rule ${r.record ?? r.alert}`, r.expr] as [string, string]),
    ...dashboards.flatMap(([f, d]) => [
      ...allPanels(d.panels).flatMap((p) => (p.targets ?? []).map((t) => [`${f} "${p.title}" ${t.refId}`, t.expr ?? ''] as [string, string])),
      ...d.templating.list.flatMap((v) => {
        const e = v.type === 'query' ? variableExpr(variableQuery(v)) : undefined;
        return e ? [[`${f} variable ${v.name}`, e] as [string, string]] : [];
      }),
    ]),
  ];

  it.each(exprs)('%s uses contract metrics only', (_where, expr) => {
    const names = metricNames(expr);
    expect(names.length, expr).toBeGreaterThan(0);
    for (const n of names) expect(allowed.has(n), `${n} in ${expr}`).toBe(true);
  });

  it('every dashboard and variable query parses (promtool check rules on a generated file)', () => {
    // promtool has no PromQL linter in this version, but it parses every rule expression: wrap each
    // query, Grafana variables filled in the way Grafana would, into a recording rule.
    const fill = (e: string): string =>
      e
        .replace(/\$__rate_interval|\$__interval|\$__range/g, '5m')
        .replace(/\$\{(\w+)[^}]*\}|\$(\w+)/g, 'x');
    const generated = {
      groups: [
        {
          name: 'dashboard-queries',
          rules: exprs.filter(([w]) => !w.startsWith('rule ')).map(([where, expr], i) => ({ record: `dashboard:query_${i}:check`, expr: fill(expr), labels: { where: where.replace(/"/g, "'") } })),
        },
      ],
    };
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dashboard-queries-'));
    tmpDirs.push(dir);
    const file = path.join(dir, 'queries.yml');
    fs.writeFileSync(file, stringifyYaml(generated));
    const r = run(requireTool('promtool', 'prometheus'), ['check', 'rules', file]);
    expect(r.code, r.out).toBe(0);
  });
});

describe('the ready stack', () => {
  const compose = parseYaml(fs.readFileSync(path.join(REPO_ROOT, 'docker-compose.yml'), 'utf8')) as {
    services: Record<string, { build?: { context?: string }; image?: string; ports?: string[]; volumes?: string[] }>;
  };

  it('runs the exporter from this repository, Prometheus and Grafana', () => {
    const { services } = compose;
    expect(Object.keys(services).sort()).toEqual(['docker-exporter', 'grafana', 'prometheus']);
    expect(services['docker-exporter']?.build?.context).toBe('.');
    expect(services['docker-exporter']?.ports).toContainEqual(expect.stringMatching(/:9764:9764$/));
    expect(services['docker-exporter']?.volumes).toContain('/var/run/docker.sock:/var/run/docker.sock:ro');
    expect(services.prometheus?.image).toMatch(/^prom\/prometheus:/);
    expect(services.grafana?.image).toMatch(/^grafana\/grafana(-oss)?:/);
  });

  it('mounts files that exist in the repository, read-only', () => {
    const mounts = Object.values(compose.services).flatMap((s) => s.volumes ?? []).filter((v) => v.startsWith('./'));
    expect(mounts.length).toBeGreaterThanOrEqual(4);
    for (const m of mounts) {
      const [src, , mode] = m.split(':');
      expect(fs.existsSync(path.join(REPO_ROOT, src!)), m).toBe(true);
      expect(mode, m).toBe('ro');
    }
  });

  it('provisions the datasource and the dashboards folder the stack mounts', () => {
    const ds = parseYaml(fs.readFileSync(path.join(REPO_ROOT, 'grafana/provisioning/datasources/prometheus.yml'), 'utf8')) as { datasources: { type: string; url: string }[] };
    expect(ds.datasources).toEqual([expect.objectContaining({ type: 'prometheus', url: 'http://prometheus:9090' })]);
    const providers = parseYaml(fs.readFileSync(path.join(REPO_ROOT, 'grafana/provisioning/dashboards/dashboards.yml'), 'utf8')) as { providers: { type: string; options: { path: string } }[] };
    const grafanaMounts = compose.services.grafana?.volumes ?? [];
    expect(grafanaMounts).toContain(`./grafana/dashboards:${providers.providers[0]!.options.path}:ro`);
    expect(grafanaMounts).toContain('./grafana/provisioning:/etc/grafana/provisioning:ro');
  });
});
