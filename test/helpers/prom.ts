/** One sample of the Prometheus text format. */
export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

function unescapeLabel(s: string): string {
  return s.replace(/\\(["\\n])/g, (_m, c: string) => (c === 'n' ? '\n' : c));
}

/** Parses Prometheus text exposition (0.0.4) into samples; comments are skipped. */
export function parseMetrics(text: string): Sample[] {
  const samples: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/.exec(line);
    if (!m) throw new Error(`unparseable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    if (m[2]) {
      const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g;
      for (let l = re.exec(m[2]); l; l = re.exec(m[2])) labels[l[1]!] = unescapeLabel(l[2]!);
    }
    const raw = m[3]!;
    const value = raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw);
    samples.push({ name: m[1]!, labels, value });
  }
  return samples;
}

/** Samples of `name` whose labels include every given label. */
export function findAll(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample[] {
  return samples.filter((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v));
}

/** The one sample of `name` with these labels, or undefined. Throws when several match. */
export function find(samples: Sample[], name: string, labels: Record<string, string> = {}): Sample | undefined {
  const all = findAll(samples, name, labels);
  if (all.length > 1) throw new Error(`${all.length} samples of ${name} match ${JSON.stringify(labels)}`);
  return all[0];
}

/** The value of the one matching sample, or undefined. */
export function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number | undefined {
  return find(samples, name, labels)?.value;
}
