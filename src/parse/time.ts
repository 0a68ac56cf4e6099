/**
 * Unix seconds of an RFC 3339 timestamp as the engine writes it (nanosecond fraction, `Z` or an
 * offset), or undefined for Go's zero time (`0001-01-01T00:00:00Z`), which the engine uses for
 * "never", and for anything unparseable.
 */
export function parseEngineTime(value: unknown): number | undefined {
  if (typeof value !== 'string') return undefined;
  const m = /^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})$/.exec(value);
  if (!m) return undefined;
  const wholeMs = Date.parse(`${m[1]}${m[3]}`);
  if (!Number.isFinite(wholeMs) || wholeMs <= 0) return undefined;
  const fraction = m[2] ? Number(`0.${m[2]}`) : 0;
  return wholeMs / 1000 + fraction;
}
