import { num, obj, str, stringMap } from './guards.js';

/** One record of `GET /events`, as much of it as the exporter uses. */
export interface EngineEvent {
  type: string;
  /** The full action, e.g. `health_status: healthy`, `exec_start: sh -c true`. */
  action: string;
  actorId: string;
  attributes: Record<string, string>;
  /** Nanoseconds since the epoch, exact (read from the raw line: it does not fit a double). */
  timeNano: bigint;
}

/** `health_status: healthy` → `health_status`; `exec_start: sh -c …` → `exec_start`. */
export function baseAction(action: string): string {
  const colon = action.indexOf(':');
  return (colon < 0 ? action : action.slice(0, colon)).trim();
}

/**
 * Podman's names for the container actions Docker calls otherwise (its `remove` is Docker's
 * `destroy`, `exec_died` is `exec_die`); Podman's extra `init` and `cleanup` have no Docker twin.
 */
const PODMAN_ACTIONS: Record<string, string> = { remove: 'destroy', exec_died: 'exec_die' };

/** The Docker name of a container event's base action, whichever engine sent it (`remove` → `destroy`). */
export function dockerAction(action: string): string {
  const base = baseAction(action);
  return PODMAN_ACTIONS[base] ?? base;
}

/**
 * Parses one events record; undefined when it lacks a type or an action. `line` is the raw JSON,
 * from which timeNano is read as an exact integer.
 */
export function parseEvent(value: unknown, line?: string): EngineEvent | undefined {
  const e = obj(value);
  if (!e) return undefined;
  const actor = obj(e.Actor);
  // Engines before API 1.22 sent only status/id/from.
  const type = str(e.Type) ?? (str(e.status) !== undefined ? 'container' : undefined);
  const action = str(e.Action) ?? str(e.status);
  if (!type || !action) return undefined;
  let timeNano: bigint | undefined;
  const m = line ? /"timeNano"\s*:\s*(\d+)/.exec(line) : null;
  if (m?.[1]) timeNano = BigInt(m[1]);
  else if (num(e.timeNano) !== undefined) timeNano = BigInt(Math.trunc(num(e.timeNano)!));
  else if (num(e.time) !== undefined) timeNano = BigInt(Math.trunc(num(e.time)!)) * 1_000_000_000n;
  return {
    type,
    action,
    actorId: str(actor?.ID) ?? str(e.id) ?? '',
    attributes: stringMap(actor?.Attributes),
    timeNano: timeNano ?? 0n,
  };
}
