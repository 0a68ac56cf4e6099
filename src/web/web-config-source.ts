import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import { BasicAuth } from './basic-auth.js';
import { PasswordVerifier } from './password-verifier.js';
import { REQUIRES_CERT, VERIFIES_CERT } from './tls-config.js';
import { loadWebConfig, WebConfigError, type WebConfig } from './web-config-file.js';
import { createWebMetrics, type WebMetrics } from './web-metrics.js';
import { DistinctFailures } from '../helpers.js';

interface SourceEvents {
  /** A changed file was read and applied. */
  change: [next: WebConfig, previous: WebConfig];
}

/**
 * What `next` would turn off that the running config has: basic auth, TLS, requiring or verifying
 * client certificates, a SAN allow-list. Empty when it may replace it while running. An editor or a
 * config tool writes an empty or half-written file for an instant, and that must not open the
 * endpoint; changing users, passwords, certificates, CAs or headers is fine.
 */
export function weakenings(running: WebConfig, next: WebConfig): string[] {
  const found: string[] = [];
  if (running.users.size > 0 && next.users.size === 0) found.push('it has no basic_auth_users, which would turn basic auth off');
  const [was, now] = [running.tls, next.tls];
  if (was && !now) found.push('it has no tls_server_config, which would turn TLS off');
  if (was && now) {
    if (REQUIRES_CERT.includes(was.clientAuth) && !REQUIRES_CERT.includes(now.clientAuth)) {
      found.push(`client_auth_type ${now.clientAuth} would let in clients without a certificate, which ${was.clientAuth} turns away`);
    }
    if (VERIFIES_CERT.includes(was.clientAuth) && !VERIFIES_CERT.includes(now.clientAuth)) {
      found.push(`client_auth_type ${now.clientAuth} would stop verifying client certificates against client_ca_file, which ${was.clientAuth} does`);
    }
    if (was.clientAllowedSans && !now.clientAllowedSans) {
      found.push('it has no client_allowed_sans, which would let in any certificate the CA signed');
    }
  }
  return found;
}

/** What a WebConfigSource takes besides its file and logger. */
export interface WebConfigSourceOptions {
  /** Counters of reloads and of password checks; without them nothing is exposed. */
  metrics?: WebMetrics;
  /** Where passwords are checked; one is made (its worker started on the first check) when not given. */
  verifier?: PasswordVerifier;
}

/**
 * The current web config of a running server: re-read when the file or a file it names changes
 * (a cheap stat of each, checked on every connection and request) or on `refresh(true)` (SIGHUP).
 * A file that became bad, or that would turn off basic auth, TLS or client-certificate checks the
 * running config has, is refused: logged once at warn, counted, and the last good config stays in
 * force. So is a change between HTTP and HTTPS. Turning protection off takes a restart.
 */
export class WebConfigSource extends EventEmitter<SourceEvents> {
  private config: WebConfig;
  private auth: BasicAuth;
  private stamps: string;
  /** So that a bad file, checked on every request, is logged once per distinct reason. */
  private readonly failures = new DistinctFailures();
  readonly metrics: WebMetrics;
  private readonly verifier: PasswordVerifier;

  constructor(
    readonly file: string,
    private readonly logger: Logger,
    opts: WebConfigSourceOptions = {},
  ) {
    super();
    this.metrics = opts.metrics ?? createWebMetrics(new Registry());
    this.verifier = opts.verifier ?? new PasswordVerifier(logger);
    this.config = loadWebConfig(file);
    this.auth = new BasicAuth(this.config.users, this.verifier);
    this.stamps = stampsOf(this.config.files);
  }

  get current(): WebConfig {
    return this.config;
  }

  get basicAuth(): BasicAuth {
    return this.auth;
  }

  /** Re-reads the config if any of its files changed since the last look (or always, with force). */
  refresh(force = false): void {
    const stamps = stampsOf(this.config.files);
    if (!force && stamps === this.stamps) return;
    this.stamps = stamps;
    let next: WebConfig;
    try {
      next = loadWebConfig(this.file);
      if (!this.config.tls && next.tls) {
        throw new WebConfigError(`--web.config.file ${this.file}: switching from HTTP to HTTPS needs a restart`);
      }
      const weaker = weakenings(this.config, next);
      if (weaker.length > 0) {
        throw new WebConfigError(`--web.config.file ${this.file}: refused while running: ${weaker.join('; ')}; turning that off takes a restart`);
      }
    } catch (err) {
      this.metrics.configReloads.inc({ result: 'failure' });
      const message = (err as Error).message;
      // Warn, not error: the exporter goes on serving exactly as before.
      if (this.failures.isNew(this.file, message)) this.logger.warn({ err: message, file: this.file }, 'web config not reloaded; keeping the last good one');
      return;
    }
    this.metrics.configReloads.inc({ result: 'success' });
    this.failures.clear(this.file);
    // Files it names may have changed too (a new cert_file): watch the new set from now on.
    this.stamps = stampsOf(next.files);
    if (next.digest === this.config.digest) return;
    const previous = this.config;
    this.config = next;
    this.auth = new BasicAuth(next.users, this.verifier, this.auth);
    this.logger.info({ file: this.file, tls: Boolean(next.tls), users: next.users.size, headers: Object.keys(next.headers).length }, 'web config reloaded');
    this.emit('change', next, previous);
  }

  /** Stops the password worker, if one runs. */
  close(): Promise<void> {
    return this.verifier.close();
  }
}

/** One string that changes when any of the files does (inode, size, mtime, ctime; or the error). */
function stampsOf(files: string[]): string {
  return files
    .map((f) => {
      try {
        const s = fs.statSync(f, { bigint: true });
        return `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
      } catch (err) {
        return `!${(err as NodeJS.ErrnoException).code ?? 'error'}`;
      }
    })
    .join('|');
}
