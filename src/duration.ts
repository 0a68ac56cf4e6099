/** Parses a Prometheus-style duration ("250ms", "10s", "5m", "1h30m") into milliseconds. */
export function parseDuration(text: string): number {
  const s = text.trim();
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(s); m; m = re.exec(s)) {
    const n = Number(m[1]);
    const unit = m[2] as 'ms' | 's' | 'm' | 'h' | 'd';
    total += n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[unit];
    matched = re.lastIndex;
  }
  if (s === '' || matched !== s.length) {
    throw new Error(`invalid duration "${text}" (use e.g. 500ms, 10s, 5m, 1h)`);
  }
  return Math.round(total);
}
