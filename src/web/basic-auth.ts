import { createHash } from 'node:crypto';
import type { PasswordVerifier } from './password-verifier.js';

/** Whether a basic_auth_users value is a hash BasicAuth can check ($2a$, $2b$ or $2y$, cost 4-31). */
export function isBcryptHash(hash: string): boolean {
  if (!/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) return false;
  const rounds = costOf(hash);
  return rounds >= 4 && rounds <= 31;
}

/** The cost of a hash isBcryptHash accepted (`$2b$10$…` → 10), read without loading bcryptjs. */
function costOf(hash: string): number {
  return Number(hash.slice(4, 6));
}

/** Cost of the configured hashes, so that the dummy compare for an unknown user takes as long as a real one. */
function dummyHash(users: Map<string, string>): string {
  let cost = 10;
  if (users.size > 0) cost = Math.max(...[...users.values()].map(costOf));
  // Any well-formed hash will do: it only has to cost the same; it can never match (the user is unknown).
  return `$2b$${String(cost).padStart(2, '0')}$${'N9qo8uLOickgx2ZMRZoMye'}${'IjZAgcfl7p92ldGxad68LJZdL17lhWy'}`;
}

/** Name and password pairs remembered, each way, as toolkit does: bcrypt is slow by design, scrapes are frequent. */
const AUTH_CACHE_SIZE = 100;

/** What a basic auth check found: let in, turn away (401), or not checked as too many are waiting (429). */
export type AuthResult = 'ok' | 'denied' | 'busy';

/**
 * Checks `Authorization: Basic` headers against the configured users. Every check of a name and
 * password not seen recently costs one bcrypt compare in the verifier's worker, also for a user
 * that does not exist (against a dummy hash of the same cost), so response time does not tell which
 * users exist. Pairs known to be right are answered at once, without the worker or its queue, and
 * are kept apart from wrong ones: a flood of wrong passwords can neither delay nor evict them.
 */
export class BasicAuth {
  /** Digest of user, hash and password → who it is; the most recently used last. */
  private readonly good = new Map<string, { user: string; hash: string }>();
  private readonly bad = new Set<string>();
  /** Checks running now: the same pair sent by many requests at once costs one compare. */
  private readonly inflight = new Map<string, Promise<boolean | 'busy'>>();
  private readonly dummy: string;

  /** `previous`: the instance this one replaces on a reload; its right pairs stay right while the user's hash is unchanged. */
  constructor(
    private readonly users: Map<string, string>,
    private readonly verifier: PasswordVerifier,
    previous?: BasicAuth,
  ) {
    this.dummy = dummyHash(users);
    for (const [key, who] of previous?.good ?? []) if (users.get(who.user) === who.hash) this.good.set(key, who);
  }

  get enabled(): boolean {
    return this.users.size > 0;
  }

  /** Whether the header carries a configured user's right password. Rejects when the worker failed: never let in then. */
  async check(authorization: string | undefined): Promise<AuthResult> {
    const creds = parseBasicAuth(authorization);
    if (!creds) return 'denied';
    const known = this.users.get(creds.user);
    const hash = known ?? this.dummy;
    // The key holds a digest, not the password itself.
    const key = createHash('sha256').update(creds.user).update('\0').update(hash).update('\0').update(creds.password).digest('hex');
    const who = this.good.get(key);
    if (who) {
      this.good.delete(key);
      this.good.set(key, who);
      return 'ok';
    }
    if (this.bad.has(key)) return 'denied';
    let running = this.inflight.get(key);
    if (!running) {
      running = this.verifier.verify(creds.password, hash).finally(() => this.inflight.delete(key));
      this.inflight.set(key, running);
    }
    const match = await running;
    if (match === 'busy') return 'busy';
    if (known !== undefined && match) {
      if (this.good.size >= AUTH_CACHE_SIZE) this.good.delete(this.good.keys().next().value!);
      this.good.set(key, { user: creds.user, hash });
      return 'ok';
    }
    if (this.bad.size >= AUTH_CACHE_SIZE) this.bad.delete(this.bad.values().next().value!);
    this.bad.add(key);
    return 'denied';
  }
}

/** `Basic base64(user:password)` → its parts, or undefined when the header is not that. */
export function parseBasicAuth(header: string | undefined): { user: string; password: string } | undefined {
  const m = header ? /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header) : null;
  if (!m) return undefined;
  const decoded = Buffer.from(m[1]!, 'base64').toString('utf8');
  const colon = decoded.indexOf(':');
  if (colon < 0) return undefined;
  return { user: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
