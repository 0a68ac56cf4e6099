import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry, Summary } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { renderRegistry as renderBuffer } from '../../src/exposition.js';

const renderRegistry = async (...args: Parameters<typeof renderBuffer>): Promise<string> => (await renderBuffer(...args)).toString();

/** A registry with every kind of metric and value the exporter can hold, built the same way twice. */
function populated(): { registry: Registry; base: Record<string, string> } {
  const registry = new Registry();
  const registers = [registry];
  collectDefaultMetrics({ register: registry });
  const base = { id: 'a'.repeat(64), name: 'web-1', image: 'nginx:1.27', container_label_com_docker_compose_project: '' };
  const g = new Gauge({ name: 'container_memory_usage_bytes', help: 'Memory with a \\ backslash\nand a newline.', labelNames: ['id', 'name', 'image', 'container_label_com_docker_compose_project'], registers });
  g.set(base, 1234);
  g.set({ ...base, id: 'b'.repeat(64), name: 'quote"back\\slash\nnewline' }, 5);
  const net = new Counter({ name: 'container_network_receive_bytes_total', help: 'Bytes.', labelNames: ['id', 'name', 'image', 'container_label_com_docker_compose_project', 'interface'], registers });
  const withIf = { ...base, interface: 'eth0' };
  net.inc(withIf, 42);
  net.inc({ ...base, interface: 'eth1' }, 0);
  new Counter({ name: 'docker_exporter_events_reconnects_total', help: 'Reconnects.', registers }).inc(3);
  new Counter({ name: 'docker_events_total', help: 'Events.', labelNames: ['type', 'action'], registers }).inc({ type: 'container', action: 'start' }, 7);
  const odd = new Gauge({ name: 'test_odd_values', help: 'NaN, infinities, huge and tiny.', labelNames: ['k'], registers });
  odd.set({ k: 'nan' }, NaN);
  odd.set({ k: 'inf' }, Infinity);
  odd.set({ k: 'ninf' }, -Infinity);
  odd.set({ k: 'big' }, 2 ** 63);
  odd.set({ k: 'tiny' }, 1e-9);
  new Gauge({ name: 'test_empty', help: 'No series at all.', labelNames: ['k'], registers });
  const h = new Histogram({ name: 'test_duration_seconds', help: 'A histogram.', labelNames: ['route'], buckets: [0.1, 1], registers });
  h.observe({ route: '/metrics' }, 0.05);
  h.observe({ route: '/metrics' }, 3);
  const s = new Summary({ name: 'test_summary', help: 'A summary.', percentiles: [0.5, 0.9], registers });
  s.observe(1);
  s.observe(2);
  return { registry, base };
}

/** prom-client's own text for a registry in the given format, from a registry of its own. */
async function promClient(format: 'text' | 'openmetrics'): Promise<string> {
  const { registry } = populated();
  if (format === 'openmetrics') registry.setContentType(Registry.OPENMETRICS_CONTENT_TYPE as never);
  return registry.metrics();
}

/** Default metrics read the clock and the process: blank out their values to compare the text. */
function stable(text: string): string {
  return text
    .split('\n')
    .map((l) => (/^(process_|nodejs_)/.test(l) ? l.replace(/ [^ ]+$/, ' X') : l))
    .join('\n');
}

describe('renderRegistry', () => {
  it('writes the Prometheus text format exactly as prom-client does', async () => {
    const { registry } = populated();
    const ours = await renderRegistry(registry, 'text');
    expect(stable(ours)).toBe(stable(await promClient('text')));
    expect(ours).toContain('container_memory_usage_bytes{id="' + 'b'.repeat(64) + '",name="quote\\"back\\\\slash\\nnewline",image="nginx:1.27",container_label_com_docker_compose_project=""} 5\n');
    expect(ours).toContain('# HELP container_memory_usage_bytes Memory with a \\\\ backslash\\nand a newline.\n');
    expect(ours).toContain('test_odd_values{k="nan"} Nan\ntest_odd_values{k="inf"} +Inf\ntest_odd_values{k="ninf"} -Inf\ntest_odd_values{k="big"} 9223372036854776000\ntest_odd_values{k="tiny"} 1e-9\n');
    expect(ours).toContain('test_duration_seconds_bucket{le="0.1",route="/metrics"} 1\n');
    expect(ours).toContain('# TYPE test_empty gauge\n\n');
    expect(ours.endsWith('\n')).toBe(true);
  });

  it('writes OpenMetrics exactly as prom-client does, and leaves the text format\'s counter names alone afterwards', async () => {
    const { registry } = populated();
    const om = await renderRegistry(registry, 'openmetrics');
    expect(stable(om)).toBe(stable(await promClient('openmetrics')));
    expect(om).toContain('# TYPE docker_events counter\ndocker_events_total{type="container",action="start"} 7\n');
    expect(om.endsWith('\n# EOF\n')).toBe(true);
    // prom-client renames the counter for good on an OpenMetrics render; the text format then lost `_total`.
    const text = await renderRegistry(registry, 'text');
    expect(text).toContain('# TYPE docker_events_total counter\ndocker_events_total{type="container",action="start"} 7\n');
    expect(text).toContain('docker_exporter_events_reconnects_total 3\n');
  });

  it('reuses a label set\'s text only while the labels object is unchanged', async () => {
    const registry = new Registry();
    const g = new Gauge({ name: 'g', help: 'h', labelNames: ['id', 'name'], registers: [registry] });
    const labels: Record<string, string> = { id: 'x', name: 'one' };
    g.set(labels, 1);
    expect(await renderRegistry(registry, 'text')).toBe('# HELP g h\n# TYPE g gauge\ng{id="x",name="one"} 1\n');
    // Mutated in place between scrapes (legal once the gauge was reset): the text must follow.
    g.reset();
    labels.name = 'two';
    g.set(labels, 2);
    expect(await renderRegistry(registry, 'text')).toBe('# HELP g h\n# TYPE g gauge\ng{id="x",name="two"} 2\n');
    g.reset();
    delete (labels as Partial<typeof labels>).name;
    g.set(labels, 3);
    expect(await renderRegistry(registry, 'text')).toBe('# HELP g h\n# TYPE g gauge\ng{id="x"} 3\n');
    g.reset();
    labels.name = 'three';
    labels.id = 'y';
    g.set(labels, 4);
    // Re-added keys go last, as Object.entries (and so prom-client) orders them.
    expect(await renderRegistry(registry, 'text')).toBe('# HELP g h\n# TYPE g gauge\ng{id="y",name="three"} 4\n');
    expect(await renderRegistry(registry, 'text')).toBe(await registry.metrics());
  });
});
