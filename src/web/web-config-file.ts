import { createHash, X509Certificate } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import tls from 'node:tls';
import type YamlModule from 'yaml';
import { ConfigError } from '../config.js';
import { parseDuration } from '../duration.js';
import { isBcryptHash } from './basic-auth.js';
import { CLIENT_AUTH_TYPES, secureContextOptions, VERIFIES_CERT, type TlsSettings } from './tls-config.js';

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
  if (!clientCa && VERIFIES_CERT.includes(clientAuth)) {
    r.fail(w, `client_auth_type ${clientAuth} needs client_ca_file (the CA that signs client certificates)`);
  }
  const clientAllowedSans = r.stringList(`${w}.client_allowed_sans`, t.client_allowed_sans);
  if (clientAllowedSans && !VERIFIES_CERT.includes(clientAuth)) {
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
