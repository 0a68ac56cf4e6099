import { Gauge, Registry } from 'prom-client';
const registry = new Registry();
const names = ['id', 'name', 'image', 'container_label_a', 'container_label_b', 'container_label_c', 'container_label_d'];
const gauges = Array.from({ length: 25 }, (_, i) => new Gauge({ name: `m${i}`, help: 'h', labelNames: [...names, 'interface'], registers: [registry] }));
const containers = Array.from({ length: 1000 }, (_, c) => ({ id: c.toString(16).padStart(64, '0'), name: `c-${c}`, image: 'img:1', container_label_a: '', container_label_b: 'svc', container_label_c: '', container_label_d: '' }));
for (const g of gauges) for (const l of containers) { g.set(l, 1); g.set({ ...l, interface: 'eth0' }, 2); }
const cache = new WeakMap<object, string>();
const lt = (l: Record<string, unknown>): string => { let t = cache.get(l); if (t === undefined) { t = Object.keys(l).map((k) => `${k}="${l[k]}"`).join(','); cache.set(l, t); } return t; };
const cu = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
async function joinVariant(): Promise<string> {
  const blocks: string[] = [];
  for (const g of gauges) { const m = await g.get(); const lines = [`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`]; for (const v of m.values) lines.push(`${m.name}{${lt(v.labels)}} ${v.value}`); blocks.push(lines.join('\n')); }
  return blocks.join('\n\n') + '\n';
}
async function ropeVariant(): Promise<string> {
  let out = '';
  for (const g of gauges) { const m = await g.get(); if (out) out += '\n'; out += `# HELP ${m.name} ${m.help}\n# TYPE ${m.name} ${m.type}\n`; for (const v of m.values) out += m.name + '{' + lt(v.labels) + '} ' + v.value + '\n'; }
  return out;
}
async function arrVariant(): Promise<string> {
  const parts: string[] = [];
  for (const g of gauges) { const m = await g.get(); if (parts.length) parts.push('\n'); parts.push(`# HELP ${m.name} ${m.help}\n# TYPE ${m.name} ${m.type}\n`); for (const v of m.values) { parts.push(m.name, '{', lt(v.labels), '} ', String(v.value), '\n'); } }
  return parts.join('');
}
for (let i = 0; i < 5; i++) {
  for (const [n, f] of [['join', joinVariant], ['rope', ropeVariant], ['arr', arrVariant]] as const) {
    const t = cu(); const s = await f(); const b = Buffer.from(s); const t2 = cu();
    process.stdout.write(`${n} ${(t2 - t).toFixed(0)}ms(${b.length})  `);
  }
  console.log();
}
