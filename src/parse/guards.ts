/** Small readers for untrusted JSON from the engine: each returns undefined for a wrong type. */

export type Json = Record<string, unknown>;

export function obj(value: unknown): Json | undefined {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Json) : undefined;
}

export function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isFinite(value) ? value : undefined;
}

export function str(value: unknown): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

export function bool(value: unknown): boolean | undefined {
  return typeof value === 'boolean' ? value : undefined;
}

export function arr(value: unknown): unknown[] | undefined {
  return Array.isArray(value) ? value : undefined;
}

/** A record of string values (Docker labels); non-string values are dropped. */
export function stringMap(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  const o = obj(value);
  if (o) for (const [k, v] of Object.entries(o)) if (typeof v === 'string') out[k] = v;
  return out;
}

/** Thrown by parsers when a payload is unusable as a whole; callers count and log it. */
export class PayloadError extends Error {
  override name = 'PayloadError';
}

/** A value's JSON type for messages ('null', 'array', 'bytes' for a body the client left unparsed, …). */
export function typeName(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (value instanceof Uint8Array) return 'bytes';
  return typeof value;
}

/**
 * A member that may be missing: undefined when absent or null (Go's nil), else `read(value)`. A
 * value `read` refuses is of the wrong type, not missing: PayloadError naming `what`.
 */
export function optional<T>(value: unknown, read: (v: unknown) => T | undefined, what: string): T | undefined {
  if (value === undefined || value === null) return undefined;
  const v = read(value);
  if (v === undefined) throw new PayloadError(`${what} is of the wrong type (${typeName(value)})`);
  return v;
}
