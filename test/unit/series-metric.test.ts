import { Counter, Gauge, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { renderRegistry, SeriesMetric } from '../../src/exposition.js';

const LABELS = ['id', 'name', 'interface'];
const a = Object.freeze({ id: 'a'.repeat(64), name: 'web-1', interface: 'eth0' });
const b = Object.freeze({ id: 'b'.repeat(64), name: 'quote"back\\slash\nnewline', interface: 'eth0' });
const c = { id: 'c'.repeat(64), name: 'ünïcode ✓', interface: 'eth1' };

/** The same series in prom-client's own metrics and in SeriesMetric, in registries of their own. */
function pair(): { ours: Registry; theirs: Registry; g: SeriesMetric; k: SeriesMetric } {
  const ours = new Registry();
  const theirs = new Registry();
  const g = new SeriesMetric({ name: 'container_memory_usage_bytes', help: 'Memory, with a \\ and a\nnewline.', type: 'gauge', labelNames: LABELS, registers: [ours] });
  const k = new SeriesMetric({ name: 'container_network_receive_bytes_total', help: 'Bytes.', type: 'counter', labelNames: LABELS, registers: [ours] });
  const pg = new Gauge({ name: 'container_memory_usage_bytes', help: 'Memory, with a \\ and a\nnewline.', labelNames: LABELS, registers: [theirs] });
  const pk = new Counter({ name: 'container_network_receive_bytes_total', help: 'Bytes.', labelNames: LABELS, registers: [theirs] });
  for (const [labels, v] of [[a, 1234], [b, 2 ** 53], [c, 0.5]] as const) {
    g.set(labels, v);
    pg.set(labels, v);
    k.set(labels, v * 2);
    pk.inc(labels, v * 2);
  }
  g.set({ ...a, id: 'd'.repeat(64) }, NaN);
  pg.set({ ...a, id: 'd'.repeat(64) }, NaN);
  return { ours, theirs, g, k };
}

const text = async (r: Registry, format: 'text' | 'openmetrics'): Promise<string> => (await renderRegistry(r, format)).toString('utf8');

describe('SeriesMetric', () => {
  it('renders the text prom-client renders for the same series, in both formats', async () => {
    const { ours, theirs } = pair();
    expect(await text(ours, 'text')).toBe(await theirs.metrics());
    const om = await text(ours, 'openmetrics');
    theirs.setContentType(Registry.OPENMETRICS_CONTENT_TYPE as never);
    expect(om).toBe(await theirs.metrics());
    expect(om).toContain('# TYPE container_network_receive_bytes counter\ncontainer_network_receive_bytes_total{');
    // After an OpenMetrics render, the text format still names the counter with _total.
    expect(await text(ours, 'text')).toContain('# TYPE container_network_receive_bytes_total counter');
  });

  it('is what registry.metrics() and getSingleMetric see', async () => {
    const { ours, theirs } = pair();
    expect(await ours.metrics()).toBe(await theirs.metrics());
    const got = await (ours.getSingleMetric('container_memory_usage_bytes') as unknown as SeriesMetric).get();
    expect(got.values).toHaveLength(4);
  });

  it('a changed value is rendered anew; one not set again in a refill is dropped', async () => {
    const { ours, g, k } = pair();
    await text(ours, 'text');
    g.beginRefill();
    g.set(a, 99);
    g.set({ ...c }, 7); // another object with the same labels is the same series
    g.endRefill();
    const body = await text(ours, 'text');
    expect(body).toContain(`container_memory_usage_bytes{id="${a.id}",name="web-1",interface="eth0"} 99\n`);
    expect(body).toContain(`container_memory_usage_bytes{id="${c.id}",name="ünïcode ✓",interface="eth1"} 7\n`);
    const gaugeLines = body.split('\n').filter((l) => l.startsWith('container_memory_usage_bytes{'));
    expect(gaugeLines).toHaveLength(2);
    expect(gaugeLines.some((l) => l.includes(b.id))).toBe(false);
    expect(g.size).toBe(2);
    expect(k.size).toBe(3);
    k.remove(b);
    k.reset();
    expect(k.size).toBe(0);
    expect(await text(ours, 'text')).toMatch(/# TYPE container_network_receive_bytes_total counter\n$/);
  });

  it('writes UTF-8 and grows its buffer past any size hint', async () => {
    const r = new Registry();
    const g = new SeriesMetric({ name: 'g', help: 'h', type: 'gauge', labelNames: ['v'], registers: [r] });
    const long = '✓'.repeat(50_000);
    for (let i = 0; i < 40; i++) g.set({ v: `${i}${long}` }, i);
    const buf = await renderRegistry(r, 'text');
    const s = buf.toString('utf8');
    expect(Buffer.byteLength(s)).toBe(buf.length);
    expect(s.split('\n').filter((l) => l.startsWith('g{'))).toHaveLength(40);
    expect(s).toContain(`g{v="39${long}"} 39\n`);
  });
});
