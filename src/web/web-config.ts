import { createHash, X509Certificate } from 'node:crypto';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import tls from 'node:tls';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import type YamlModule from 'yaml';
import { ConfigError } from '../config.js';
import { parseDuration } from '../duration.js';
import { PasswordVerifier } from './password-verifier.js';
import { createWebMetrics, type WebMetrics } from './web-metrics.js';

// Loaded on first use: most installations have no web config file, and the YAML parser alone is
// ~8 MB of the exporter's resident memory. Synchronous, as the file is read. (bcryptjs, ~2 MB more,
// is loaded by the password worker only, when a password is first checked.)
const requireLazily = createRequire(import.meta.url);
let yamlModule: typeof YamlModule | undefined;
const YAML = (): typeof YamlModule => (yamlModule ??= requireLazily('yaml') as typeof YamlModule);

/**
 * The `--web.config.file` format of the Prometheus exporter-toolkit
 * (https://github.com/prometheus/exporter-toolkit/blob/master/docs/web-configuration.md), read
 * strictly: an unknown key or a bad value is a WebConfigError naming the key, as toolkit's
 * `yaml.UnmarshalStrict` does, so a typo never silently leaves an endpoint open.
 */

/** A web config file the exporter cannot use; at startup the CLI exits with status 2. */
export class WebConfigError extends ConfigError {
  override name = 'WebConfigError';
}

export const CLIENT_AUTH_TYPES = [
  'NoClientCert',
  'RequestClientCert',
  'RequireAnyClientCert',
  'VerifyClientCertIfGiven',
  'RequireAndVerifyClientCert',
] as const;
export type ClientAuthType = (typeof CLIENT_AUTH_TYPES)[number];

const TLS_VERSIONS = { TLS10: 'TLSv1', TLS11: 'TLSv1.1', TLS12: 'TLSv1.2', TLS13: 'TLSv1.3' } as const;
type TlsVersionName = keyof typeof TLS_VERSIONS;

/** Go's cipher suite names (what toolkit accepts) → OpenSSL's, which Node takes. */
const CIPHERS: Record<string, string> = {
  TLS_RSA_WITH_AES_128_CBC_SHA: 'AES128-SHA',
  TLS_RSA_WITH_AES_256_CBC_SHA: 'AES256-SHA',
  TLS_RSA_WITH_AES_128_GCM_SHA256: 'AES128-GCM-SHA256',
  TLS_RSA_WITH_AES_256_GCM_SHA384: 'AES256-GCM-SHA384',
  TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA: 'ECDHE-ECDSA-AES128-SHA',
  TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA: 'ECDHE-ECDSA-AES256-SHA',
  TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: 'ECDHE-RSA-AES128-SHA',
  TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA: 'ECDHE-RSA-AES256-SHA',
  TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256: 'ECDHE-ECDSA-AES128-GCM-SHA256',
  TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384: 'ECDHE-ECDSA-AES256-GCM-SHA384',
  TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256: 'ECDHE-RSA-AES128-GCM-SHA256',
  TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384: 'ECDHE-RSA-AES256-GCM-SHA384',
  TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-ECDSA-CHACHA20-POLY1305',
  TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256: 'ECDHE-RSA-CHACHA20-POLY1305',
  // Go ignores these in cipher_suites (TLS 1.3 suites are not configurable there); OpenSSL takes them.
  TLS_AES_128_GCM_SHA256: 'TLS_AES_128_GCM_SHA256',
  TLS_AES_256_GCM_SHA384: 'TLS_AES_256_GCM_SHA384',
  TLS_CHACHA20_POLY1305_SHA256: 'TLS_CHACHA20_POLY1305_SHA256',
};

/** Go's curve names → OpenSSL's. */
const CURVES: Record<string, string> = { CurveP256: 'prime256v1', CurveP384: 'secp384r1', CurveP521: 'secp521r1', X25519: 'X25519' };

/**
 * Response headers a web config may set, and their allowed values where they are an enumeration:
 * the same list as toolkit's, so a file works the same for every exporter.
 */
const ALLOWED_HEADERS: Record<string, readonly string[] | undefined> = {
  'Strict-Transport-Security': undefined,
  'X-Content-Type-Options': ['nosniff'],
  'X-Frame-Options': ['deny', 'sameorigin'],
  'X-XSS-Protection': undefined,
  'Content-Security-Policy': undefined,
};

/** What the HTTPS server is built from (paths already resolved and files read). */
export interface TlsSettings {
  cert: Buffer;
  key: Buffer;
  clientCa?: Buffer;
  clientAuth: ClientAuthType;
  minVersion: tls.SecureVersion;
  maxVersion: tls.SecureVersion;
  /** OpenSSL cipher list, when the file restricts it. */
  ciphers?: string;
  ecdhCurve?: string;
  honorCipherOrder: boolean;
  /** A client certificate must carry one of these SANs (DNS, e-mail, IP or URI), when set. */
  clientAllowedSans?: string[];
}

/** A validated web config. */
export interface WebConfig {
  /** The file it came from. */
  file: string;
  /** Absent: plain HTTP. */
  tls?: TlsSettings;
  /** User name → bcrypt hash; empty: no basic auth. */
  users: Map<string, string>;
  /** Set on every response. */
  headers: Record<string, string>;
  rateLimit?: { intervalMs: number; burst: number };
  /** Files whose change means the config must be read again (the file itself and those it names). */
  files: string[];
  /** Hash of everything read, to tell a touched file from a changed one. */
  digest: string;
}

type Node = Record<string, unknown>;

class Reader {
  constructor(
    private readonly file: string,
    private readonly baseDir: string,
  ) {}

  readonly files: string[] = [];
  readonly hash = createHash('sha256');

  fail(where: string, what: string): never {
    throw new WebConfigError(`--web.config.file ${this.file}: ${where ? `${where}: ` : ''}${what}`);
  }

  mapping(where: string, value: unknown, keys: readonly string[]): Node {
    if (value === null || value === undefined) return {};
    if (typeof value !== 'object' || Array.isArray(value) || Buffer.isBuffer(value)) this.fail(where, `must be a mapping, got ${describe(value)}`);
    const node = value as Node;
    for (const key of Object.keys(node)) {
      if (!keys.includes(key)) this.fail(where, `unknown key "${key}" (known: ${keys.join(', ')})`);
    }
    return node;
  }

  string(where: string, value: unknown): string | undefined {
    if (value === null || value === undefined || value === '') return undefined;
    if (typeof value !== 'string') this.fail(where, `must be a string, got ${describe(value)}`);
    return value;
  }

  bool(where: string, value: unknown, fallback: boolean): boolean {
    if (value === null || value === undefined) return fallback;
    if (typeof value !== 'boolean') this.fail(where, `must be true or false, got ${describe(value)}`);
    return value;
  }

  stringList(where: string, value: unknown): string[] | undefined {
    if (value === null || value === undefined) return undefined;
    if (!Array.isArray(value)) this.fail(where, `must be a list, got ${describe(value)}`);
    return value.map((v, i) => {
      if (typeof v !== 'string' || v === '') this.fail(`${where}[${i}]`, `must be a non-empty string, got ${describe(v)}`);
      return v;
    });
  }

  oneOf<T extends string>(where: string, value: string, allowed: readonly T[]): T {
    if ((allowed as readonly string[]).includes(value)) return value as T;
    this.fail(where, `"${value}" is not one of ${allowed.join(', ')}`);
  }

  /** Reads a file the config names; relative paths are relative to the config file's folder, as in toolkit. */
  readFile(where: string, p: string): Buffer {
    const full = path.resolve(this.baseDir, p);
    this.files.push(full);
    try {
      const data = fs.readFileSync(full);
      this.hash.update(full).update('\0').update(data).update('\0');
      return data;
    } catch (err) {
      this.fail(where, `cannot read ${full}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return 'a list';
  if (Buffer.isBuffer(value)) return 'binary data';
  if (typeof value === 'object') return 'a mapping';
  return `${typeof value} ${JSON.stringify(value)}`;
}

/** Whether every PEM block in `pem` is a certificate that parses; returns how many there are. */
function countCertificates(pem: Buffer): number {
  const blocks = pem.toString('utf8').match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  for (const block of blocks) new X509Certificate(block);
  return blocks.length;
}

function parseTls(r: Reader, raw: unknown): TlsSettings | undefined {
  const w = 'tls_server_config';
  const t = r.mapping(w, raw, [
    'cert', 'key', 'client_ca', 'cert_file', 'key_file', 'client_auth_type', 'client_ca_file', 'cipher_suites',
    'curve_preferences', 'min_version', 'max_version', 'prefer_server_cipher_suites', 'client_allowed_sans',
  ]);
  // As toolkit: an empty (or absent) tls_server_config means plain HTTP.
  if (Object.values(t).every((v) => v === null || v === undefined || v === '')) return undefined;

  const certFile = r.string(`${w}.cert_file`, t.cert_file);
  const certText = r.string(`${w}.cert`, t.cert);
  const keyFile = r.string(`${w}.key_file`, t.key_file);
  const keyText = r.string(`${w}.key`, t.key);
  const caFile = r.string(`${w}.client_ca_file`, t.client_ca_file);
  const caText = r.string(`${w}.client_ca`, t.client_ca);
  if (certFile && certText) r.fail(w, 'set one of cert and cert_file, not both');
  if (keyFile && keyText) r.fail(w, 'set one of key and key_file, not both');
  if (caFile && caText) r.fail(w, 'set one of client_ca and client_ca_file, not both');
  if (!certFile && !certText) r.fail(w, 'cert_file (or cert) is required to serve HTTPS');
  if (!keyFile && !keyText) r.fail(w, 'key_file (or key) is required to serve HTTPS');

  const cert = certFile ? r.readFile(`${w}.cert_file`, certFile) : Buffer.from(certText!);
  const key = keyFile ? r.readFile(`${w}.key_file`, keyFile) : Buffer.from(keyText!);
  if (!certFile) r.hash.update(cert);
  if (!keyFile) r.hash.update(key);
  const certWhere = `${w}.${certFile ? 'cert_file' : 'cert'}`;
  try {
    if (countCertificates(cert) === 0) r.fail(certWhere, 'holds no PEM certificate');
  } catch (err) {
    if (err instanceof WebConfigError) throw err;
    r.fail(certWhere, `not a valid certificate: ${(err as Error).message}`);
  }

  let clientCa: Buffer | undefined;
  if (caFile || caText) {
    const caWhere = `${w}.${caFile ? 'client_ca_file' : 'client_ca'}`;
    clientCa = caFile ? r.readFile(caWhere, caFile) : Buffer.from(caText!);
    if (!caFile) r.hash.update(clientCa);
    let count = 0;
    try {
      count = countCertificates(clientCa);
    } catch (err) {
      r.fail(caWhere, `not a valid certificate: ${(err as Error).message}`);
    }
    if (count === 0) r.fail(caWhere, 'holds no PEM certificate');
  }

  const authRaw = r.string(`${w}.client_auth_type`, t.client_auth_type) ?? 'NoClientCert';
  // toolkit still takes the old name RequireClientCert for RequireAnyClientCert.
  const clientAuth = r.oneOf(`${w}.client_auth_type`, authRaw === 'RequireClientCert' ? 'RequireAnyClientCert' : authRaw, CLIENT_AUTH_TYPES);
  if (clientCa && clientAuth === 'NoClientCert') {
    r.fail(w, 'client_ca_file is set but client_auth_type is NoClientCert: set client_auth_type (e.g. RequireAndVerifyClientCert)');
  }
  if (!clientCa && (clientAuth === 'RequireAndVerifyClientCert' || clientAuth === 'VerifyClientCertIfGiven')) {
    r.fail(w, `client_auth_type ${clientAuth} needs client_ca_file (the CA that signs client certificates)`);
  }
  const clientAllowedSans = r.stringList(`${w}.client_allowed_sans`, t.client_allowed_sans);
  if (clientAllowedSans && clientAuth !== 'RequireAndVerifyClientCert' && clientAuth !== 'VerifyClientCertIfGiven') {
    r.fail(w, 'client_allowed_sans needs client_auth_type RequireAndVerifyClientCert or VerifyClientCertIfGiven');
  }

  const versionNames = Object.keys(TLS_VERSIONS) as TlsVersionName[];
  const minName = r.oneOf(`${w}.min_version`, r.string(`${w}.min_version`, t.min_version) ?? 'TLS12', versionNames);
  const maxName = r.oneOf(`${w}.max_version`, r.string(`${w}.max_version`, t.max_version) ?? 'TLS13', versionNames);
  if (versionNames.indexOf(minName) > versionNames.indexOf(maxName)) r.fail(w, `min_version ${minName} is above max_version ${maxName}`);

  const cipherNames = r.stringList(`${w}.cipher_suites`, t.cipher_suites);
  const ciphers = cipherNames?.map((name, i) => CIPHERS[name] ?? r.fail(`${w}.cipher_suites[${i}]`, `unknown cipher suite "${name}" (use Go's names, e.g. TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256)`));
  const curveNames = r.stringList(`${w}.curve_preferences`, t.curve_preferences);
  const curves = curveNames?.map((name, i) => CURVES[name] ?? r.fail(`${w}.curve_preferences[${i}]`, `unknown curve "${name}" (one of ${Object.keys(CURVES).join(', ')})`));

  const settings: TlsSettings = {
    cert,
    key,
    clientCa,
    clientAuth,
    minVersion: TLS_VERSIONS[minName],
    maxVersion: TLS_VERSIONS[maxName],
    ciphers: ciphers && ciphers.length > 0 ? ciphers.join(':') : undefined,
    ecdhCurve: curves && curves.length > 0 ? curves.join(':') : undefined,
    honorCipherOrder: r.bool(`${w}.prefer_server_cipher_suites`, t.prefer_server_cipher_suites, true),
    clientAllowedSans,
  };
  // The same call the server makes: a key that does not match the certificate, an unusable cipher
  // list or version range fails here, at load, rather than on the first handshake.
  try {
    tls.createSecureContext(secureContextOptions(settings));
  } catch (err) {
    r.fail(w, `cannot use this certificate and key: ${(err as Error).message}`);
  }
  return settings;
}

function parseUsers(r: Reader, raw: unknown): Map<string, string> {
  const w = 'basic_auth_users';
  const users = new Map<string, string>();
  if (raw === null || raw === undefined) return users;
  if (typeof raw !== 'object' || Array.isArray(raw)) r.fail(w, `must be a mapping of user name to bcrypt hash, got ${describe(raw)}`);
  for (const [user, hash] of Object.entries(raw as Node)) {
    if (user === '') r.fail(w, 'a user name is empty');
    if (user.includes(':')) r.fail(`${w}.${user}`, 'a user name cannot contain ":" (basic auth splits on it)');
    if (typeof hash !== 'string') r.fail(`${w}.${user}`, `must be a bcrypt hash string, got ${describe(hash)}`);
    if (!isBcryptHash(hash)) r.fail(`${w}.${user}`, 'is not a bcrypt hash ($2a$, $2b$ or $2y$ with cost 4-31): store a hash, never the password (see htpasswd -nBC 10 USER)');
    users.set(user, hash);
    r.hash.update(`user\0${user}\0${hash}\0`);
  }
  return users;
}

function isBcryptHash(hash: string): boolean {
  if (!/^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/.test(hash)) return false;
  const rounds = costOf(hash);
  return rounds >= 4 && rounds <= 31;
}

/** The cost of a hash isBcryptHash accepted (`$2b$10$…` → 10), read without loading bcryptjs. */
function costOf(hash: string): number {
  return Number(hash.slice(4, 6));
}

function parseHttp(r: Reader, raw: unknown): { headers: Record<string, string> } {
  const w = 'http_server_config';
  const h = r.mapping(w, raw, ['http2', 'headers']);
  // Accepted for compatibility; this server speaks HTTP/1.1 either way.
  r.bool(`${w}.http2`, h.http2, true);
  const headers: Record<string, string> = {};
  const rawHeaders = h.headers;
  if (rawHeaders === null || rawHeaders === undefined) return { headers };
  if (typeof rawHeaders !== 'object' || Array.isArray(rawHeaders)) r.fail(`${w}.headers`, `must be a mapping of header name to value, got ${describe(rawHeaders)}`);
  for (const [name, value] of Object.entries(rawHeaders as Node)) {
    const where = `${w}.headers.${name}`;
    if (!(name in ALLOWED_HEADERS)) r.fail(`${w}.headers`, `header "${name}" cannot be set (allowed: ${Object.keys(ALLOWED_HEADERS).join(', ')})`);
    if (typeof value !== 'string' || value === '' || /[\r\n]/.test(value)) r.fail(where, `must be a one-line string, got ${describe(value)}`);
    const allowed = ALLOWED_HEADERS[name];
    if (allowed && !allowed.includes(value)) r.fail(where, `"${value}" is not one of ${allowed.join(', ')}`);
    headers[name] = value;
    r.hash.update(`header\0${name}\0${value}\0`);
  }
  return { headers };
}

function parseRateLimit(r: Reader, raw: unknown): WebConfig['rateLimit'] {
  const w = 'rate_limit';
  const l = r.mapping(w, raw, ['burst', 'interval']);
  const intervalText = r.string(`${w}.interval`, l.interval);
  if (intervalText === undefined) {
    if (l.burst !== undefined && l.burst !== null) r.fail(w, 'burst without interval has no effect: set interval (e.g. 1s)');
    return undefined;
  }
  let intervalMs: number;
  try {
    intervalMs = parseDuration(intervalText);
  } catch (err) {
    r.fail(`${w}.interval`, (err as Error).message);
  }
  const burst = l.burst;
  if (burst === undefined || burst === null) r.fail(`${w}.burst`, 'is missing: interval needs burst, the number of requests let through at once (e.g. burst: 10)');
  if (typeof burst !== 'number' || !Number.isInteger(burst) || burst < 1) r.fail(`${w}.burst`, `must be a whole number of at least 1, got ${describe(burst)}`);
  if (intervalMs <= 0) r.fail(`${w}.interval`, 'must be greater than zero');
  r.hash.update(`rate\0${intervalMs}\0${burst}\0`);
  return { intervalMs, burst };
}

/** Parses web config YAML; `file` names it in errors, and relative paths in it resolve against its folder. */
export function parseWebConfig(text: string, file: string): WebConfig {
  const r = new Reader(file, path.dirname(path.resolve(file)));
  r.hash.update(text);
  let raw: unknown;
  try {
    raw = YAML().parse(text, { uniqueKeys: true, maxAliasCount: 100 });
  } catch (err) {
    // The yaml package appends a source excerpt over several lines; one line is what a log wants.
    r.fail('', `not valid YAML: ${(err as Error).message.split('\n')[0]!.replace(/:$/, '')}`);
  }
  const top = r.mapping('', raw, ['tls_server_config', 'http_server_config', 'basic_auth_users', 'rate_limit']);
  const config: WebConfig = {
    file,
    tls: parseTls(r, top.tls_server_config),
    users: parseUsers(r, top.basic_auth_users),
    headers: parseHttp(r, top.http_server_config).headers,
    rateLimit: parseRateLimit(r, top.rate_limit),
    files: [path.resolve(file), ...r.files],
    digest: '',
  };
  config.digest = r.hash.digest('hex');
  return config;
}

/** Reads and validates a web config file; throws WebConfigError for anything unusable. */
export function loadWebConfig(file: string): WebConfig {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new WebConfigError(`--web.config.file ${file}: cannot read it: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return parseWebConfig(text, file);
}

/** The options for `tls.createSecureContext` / `https.createServer` from the TLS settings. */
export function secureContextOptions(t: TlsSettings): tls.SecureContextOptions {
  return {
    cert: t.cert,
    key: t.key,
    ca: t.clientCa,
    minVersion: t.minVersion,
    maxVersion: t.maxVersion,
    ciphers: t.ciphers,
    ecdhCurve: t.ecdhCurve,
    honorCipherOrder: t.honorCipherOrder,
  };
}

/** How the TLS server asks for client certificates; the rest of client_auth_type is checked after the handshake. */
export function clientCertOptions(t: TlsSettings): { requestCert: boolean; rejectUnauthorized: boolean } {
  return {
    requestCert: t.clientAuth !== 'NoClientCert',
    // Only this mode fails the handshake itself; the optional modes are checked by checkClientCert.
    rejectUnauthorized: t.clientAuth === 'RequireAndVerifyClientCert',
  };
}

/** Why a TLS client must be turned away after its handshake, or undefined to let it in. */
export function checkClientCert(t: TlsSettings, socket: tls.TLSSocket): string | undefined {
  if (t.clientAuth === 'NoClientCert' || t.clientAuth === 'RequestClientCert') return undefined;
  const cert = socket.getPeerCertificate();
  const given = cert !== null && typeof cert === 'object' && Object.keys(cert).length > 0;
  if (!given) return t.clientAuth === 'VerifyClientCertIfGiven' ? undefined : 'no client certificate';
  if (t.clientAuth !== 'RequireAnyClientCert' && !socket.authorized) return `client certificate not trusted: ${String(socket.authorizationError)}`;
  if (t.clientAllowedSans) {
    const sans = (cert.subjectaltname ?? '')
      .split(/,\s*/)
      .map((s) => s.replace(/^(DNS|IP Address|email|URI):/, ''))
      .filter(Boolean);
    if (!sans.some((s) => t.clientAllowedSans!.includes(s))) return `client certificate SANs [${sans.join(', ')}] are not in client_allowed_sans`;
  }
  return undefined;
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

interface SourceEvents {
  /** A changed file was read and applied. */
  change: [next: WebConfig, previous: WebConfig];
}

/** Client-certificate modes that turn away a client without a certificate. */
const REQUIRES_CERT: readonly ClientAuthType[] = ['RequireAnyClientCert', 'RequireAndVerifyClientCert'];
/** Client-certificate modes that check a certificate against client_ca_file. */
const VERIFIES_CERT: readonly ClientAuthType[] = ['VerifyClientCertIfGiven', 'RequireAndVerifyClientCert'];

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
  private lastError: string | undefined;
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
      if (message !== this.lastError) this.logger.warn({ err: message, file: this.file }, 'web config not reloaded; keeping the last good one');
      this.lastError = message;
      return;
    }
    this.metrics.configReloads.inc({ result: 'success' });
    this.lastError = undefined;
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
