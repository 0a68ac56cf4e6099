import type { Route } from './routes.js';

/** An error answer from the engine (HTTP status >= 400). */
export class EngineStatus extends Error {
  override name = 'EngineStatus';
  constructor(
    message: string,
    readonly statusCode: number,
    readonly route: Route,
  ) {
    super(message);
  }
}

/** A request that did not end within its deadline: no answer, or an answer that never finished. */
export class EngineTimeout extends Error {
  override name = 'EngineTimeout';
  constructor(
    readonly route: Route,
    readonly timeoutMs: number,
  ) {
    super(`${route}: timed out after ${timeoutMs} ms`);
  }
}

/** The engine cannot be reached at all (no socket, refused, TLS mismatch, …); `reason` says what to fix. */
export class EngineUnreachable extends Error {
  override name = 'EngineUnreachable';
  constructor(
    readonly route: Route,
    readonly reason: string,
    readonly code: string | undefined,
    options?: { cause?: unknown },
  ) {
    super(`${route}: ${reason}`, options);
  }
}

/**
 * A reply that cannot be used: cut off before its end (the connection closed mid-body: a proxy's
 * timeout, an engine crash), larger than --docker.max-response-size, or not JSON where JSON is due.
 */
export class EngineReplyError extends Error {
  override name = 'EngineReplyError';
  constructor(
    message: string,
    readonly kind: 'truncated' | 'too-large' | 'malformed',
    readonly route: Route,
  ) {
    super(message);
  }
}

export function isNotFound(err: unknown): boolean {
  return err instanceof EngineStatus && err.statusCode === 404;
}
