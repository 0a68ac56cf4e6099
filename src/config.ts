import os from 'node:os';
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { COLLECTOR_NAMES, type CollectorName } from './collectors/collector.js';
import { parseDuration } from './duration.js';
import { ConfigError, EarlyExit } from './errors.js';
import { parseSize } from './size.js';
import { VERSION } from './version.js';

/** Config's errors, for its callers (they live in errors.ts so that anything can throw them). */
export { ConfigError, EarlyExit } from './errors.js';

export type StatsMode = 'stream' | 'poll';
export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
export type LogFormat = 'json' | 'pretty';

/** The exporter's whole configuration: built once, here, from flags, environment and defaults. */
export interface Config {
  web: {
    /** host part ('' = all interfaces) and port of `--web.listen-address`. */
    listenHost: string;
    listenPort: number;
    telemetryPath: string;
    /** Path of the exporter-toolkit style web config file, if any. */
    configFile?: string;
  };
  docker: {
    /** As given: unix:///path, tcp://host:port (or http://, https://). */
    host: string;
    tlsVerify: boolean;
    certPath: string;
    timeoutMs: number;
    /** Largest non-stream reply read from the engine; a larger one fails its request. */
    maxResponseBytes: number;
  };
  collectors: Record<CollectorName, boolean>;
  container: {
    labelAllowlist: string[];
    include?: RegExp;
    exclude?: RegExp;
  };
  events: {
    /** Docker event filters, key → values, as `docker events --filter` takes them. */
    filters: Record<string, string[]>;
  };
  stats: {
    mode: StatsMode;
    intervalMs: number;
    concurrency: number;
  };
  df: {
    intervalMs: number;
    timeoutMs: number;
  };
  log: {
    level: LogLevel;
    format: LogFormat;
  };
}

export const DEFAULT_LABEL_ALLOWLIST = [
  'com.docker.compose.project',
  'com.docker.compose.service',
  'com.docker.swarm.service.name',
  'com.docker.stack.namespace',
];

const ENV_PREFIX = 'DOCKER_EXPORTER_';

/**
 * Room for `/system/df` of a big host: in the recorded payloads (bench/fixtures/system-df.json) a
 * container takes ~1.1 KiB (say 2 with many labels), an image ~0.35 KiB, a volume or build-cache
 * record ~0.3 KiB, so 64 MiB holds e.g. 10,000 containers, 30,000 images and 60,000 cache records.
 * A 400 MiB reply read without bound took the exporter to 1.7 GB, and kept it there.
 */
export const DEFAULT_MAX_RESPONSE_SIZE = '64MiB';

/** The longest delay a Node.js timer holds (2^31 - 1 ms, ~24.8 days); a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Paths the web server serves itself, which the telemetry path must not shadow. */
const RESERVED_PATHS = ['/', '/healthz', '/readyz'];

/** `web.listen-address` → `DOCKER_EXPORTER_WEB_LISTEN_ADDRESS`. */
export function envName(flag: string): string {
  return ENV_PREFIX + flag.replace(/[.-]/g, '_').toUpperCase();
}

const COLLECTOR_HELP: Record<CollectorName, string> = {
  engine: 'engine facts and reachability (docker_up, docker_engine_*)',
  containers: 'every container\'s state, health, restarts, exit code and limits',
  stats: 'per-container CPU, memory, network, block I/O and PIDs (cAdvisor names)',
  events: 'docker_events_total from the engine\'s event stream',
  df: 'disk usage as `docker system df` reports it, refreshed in the background',
};

/** Collectors that are on unless switched off. */
export const DEFAULT_COLLECTORS: Record<CollectorName, boolean> = {
  engine: true,
  containers: true,
  stats: true,
  events: true,
  df: true,
};

function flag(spec: string, description: string, defaultValue?: string): Option {
  const name = spec.replace(/^--/, '').replace(/ .*$/, '');
  const option = new Option(spec, description).env(envName(name));
  if (defaultValue !== undefined) option.default(defaultValue);
  return option;
}

function program(): Command {
  const cmd = new Command('docker-exporter')
    .description('Prometheus exporter for a Docker host: container state, health, resources, events and disk usage.')
    .version(VERSION, '--version', 'print the version and exit')
    .helpOption('-h, --help', 'show this help and exit')
    .exitOverride()
    .configureOutput({ writeErr: () => {}, writeOut: () => {} })
    .allowExcessArguments(false)
    .addOption(flag('--web.listen-address <[host]:port>', 'address to serve /metrics on', ':9764'))
    .addOption(flag('--web.telemetry-path <path>', 'path under which metrics are served', '/metrics'))
    .addOption(flag('--web.config.file <path>', 'exporter-toolkit web config file (TLS, basic auth, headers)'))
    .addOption(flag('--docker.host <url>', 'engine address: unix:///path or tcp://host:port (default $DOCKER_HOST, else unix:///var/run/docker.sock)'))
    .addOption(flag('--docker.tls-verify [bool]', 'use TLS and verify the engine (default: $DOCKER_TLS_VERIFY set)'))
    .addOption(flag('--docker.cert-path <dir>', 'folder holding ca.pem, cert.pem and key.pem (default $DOCKER_CERT_PATH, else ~/.docker)'))
    .addOption(flag('--docker.timeout <duration>', 'deadline of every engine request, from connecting to the last byte of its reply; for a stream, until its headers', '10s'))
    .addOption(flag('--docker.max-response-size <size>', 'largest reply to a non-stream engine request (e.g. 64MiB); a larger one fails that request and is not kept', DEFAULT_MAX_RESPONSE_SIZE));
  for (const name of COLLECTOR_NAMES) {
    cmd.addOption(flag(`--collector.${name} [bool]`, `enable the ${name} collector: ${COLLECTOR_HELP[name]} (default ${DEFAULT_COLLECTORS[name]})`));
    cmd.addOption(new Option(`--no-collector.${name}`, `disable the ${name} collector`));
  }
  cmd
    .addOption(flag('--container.label-allowlist <keys>', 'comma-separated Docker label keys exported as container_label_<key>', DEFAULT_LABEL_ALLOWLIST.join(',')))
    .addOption(flag('--container.include <regex>', 'export only containers whose name matches'))
    .addOption(flag('--container.exclude <regex>', 'do not export containers whose name matches'))
    .addOption(
      flag('--events.filter <key=value>', 'count only events matching this Docker filter (repeatable; env: comma-separated)')
        .argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]),
    )
    .addOption(flag('--stats.mode <mode>', 'stream (one long-lived stats stream per container) or poll (one-shot samples every interval)', 'poll'))
    .addOption(flag('--stats.interval <duration>', 'poll mode: time between two samples of a container', '15s'))
    .addOption(flag('--stats.concurrency <n>', 'poll mode: stats requests in flight at once; the engine answers each at its next 1-second collection, so a round takes about running containers ÷ n seconds', '32'))
    .addOption(flag('--df.interval <duration>', 'time between two /system/df runs', '5m'))
    .addOption(flag('--df.timeout <duration>', 'give up on a /system/df run after this long', '2m'))
    .addOption(flag('--log.level <level>', 'fatal, error, warn, info, debug (logs every engine API call) or trace', 'info'))
    .addOption(flag('--log.format <format>', 'json or pretty', 'json'));
  return cmd;
}

/** Every flag with its description, default and environment variable, for the README. */
export function describeFlags(): Array<{ flags: string; description: string; defaultValue?: string; env?: string }> {
  return program().options.map((o) => ({
    flags: o.flags,
    description: o.description,
    defaultValue: o.defaultValue === undefined ? undefined : String(o.defaultValue),
    env: o.envVar,
  }));
}

function parseBool(flagName: string, value: unknown): boolean {
  if (value === true || value === false) return value;
  const s = String(value).trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(s)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(s)) return false;
  throw new ConfigError(`--${flagName}: "${String(value)}" is not a boolean (use true or false)`);
}

function durationOf(flagName: string, value: string): number {
  try {
    const ms = parseDuration(value);
    if (ms <= 0) throw new Error(`duration must be greater than zero, got "${value}"`);
    // Node turns a longer timer into a 1 ms one: --df.interval=30d ran df 537 times in 10 s.
    if (ms > MAX_TIMER_MS) throw new Error(`"${value}" is longer than the ${MAX_TIMER_MS} ms (about 24.8 days) a timer can hold`);
    return ms;
  } catch (err) {
    throw new ConfigError(`--${flagName}: ${(err as Error).message}`);
  }
}

function sizeOf(flagName: string, value: string): number {
  try {
    const bytes = parseSize(value);
    if (bytes < 1024) throw new Error(`"${value}" is below the 1 KiB that the smallest engine reply needs`);
    // Node's Buffer cannot hold more, and a reply that large is no engine's.
    if (bytes > 2 ** 31) throw new Error(`"${value}" is above the 2 GiB a reply can be read into`);
    return bytes;
  } catch (err) {
    throw new ConfigError(`--${flagName}: ${(err as Error).message}`);
  }
}

/**
 * The telemetry path is a literal path: the web framework would read `:x` or `(.*)` in it as a route
 * pattern (`/:x` served metrics on every path; `/(.*)` made it exit), so only the characters of a
 * plain path segment are let through.
 */
function telemetryPathOf(value: string): string {
  if (!value.startsWith('/')) throw new ConfigError(`--web.telemetry-path: "${value}" must start with /`);
  if (RESERVED_PATHS.includes(value)) throw new ConfigError(`--web.telemetry-path: "${value}" is served by the exporter itself (${RESERVED_PATHS.join(', ')}): choose another path`);
  if (!/^(\/[A-Za-z0-9._~-]+)+\/?$/.test(value)) {
    throw new ConfigError(`--web.telemetry-path: "${value}" is not a plain path: use letters, digits and . _ ~ - between single slashes (e.g. /metrics)`);
  }
  return value;
}

function regexOf(flagName: string, value: string | undefined): RegExp | undefined {
  if (value === undefined || value === '') return undefined;
  try {
    return new RegExp(value);
  } catch (err) {
    throw new ConfigError(`--${flagName}: invalid regular expression: ${(err as Error).message}`);
  }
}

/** Splits `[host]:port` as Prometheus exporters take it (`:9764`, `127.0.0.1:9764`, `[::1]:9764`). */
function listenAddress(value: string): { listenHost: string; listenPort: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value.trim());
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new ConfigError(`--web.listen-address: "${value}" is not [host]:port (e.g. :9764 or 127.0.0.1:9764)`);
  }
  return { listenHost: m[1] ?? m[2] ?? '', listenPort: port };
}

function dockerHost(value: string): string {
  if (/^(unix|npipe):\/\/.+/.test(value) || /^(tcp|http|https):\/\/[^/:]+(:\d+)?\/?$/.test(value)) return value;
  throw new ConfigError(`--docker.host: "${value}" is not unix:///path/to/socket or tcp://host:port`);
}

function eventFilters(raw: string[]): Record<string, string[]> {
  const filters: Record<string, string[]> = {};
  for (const item of raw) {
    const eq = item.indexOf('=');
    if (eq <= 0) throw new ConfigError(`--events.filter: "${item}" is not KEY=VALUE (e.g. type=container)`);
    const key = item.slice(0, eq).trim();
    (filters[key] ??= []).push(item.slice(eq + 1).trim());
  }
  return filters;
}

function oneOf<T extends string>(flagName: string, value: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new ConfigError(`--${flagName}: "${value}" is not one of ${allowed.join(', ')}`);
}

/**
 * Builds the frozen Config from command-line arguments (without node and script) and environment.
 * Precedence: flag, then DOCKER_EXPORTER_* variable, then the Docker variables where a flag
 * follows one (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH), then the default.
 * Throws ConfigError for anything unusable and EarlyExit for --help and --version.
 */
export function buildConfig(argv: string[], env: NodeJS.ProcessEnv = process.env): Config {
  const cmd = program();
  // Commander reads DOCKER_EXPORTER_* through process.env; give it the env we were handed.
  const saved = { ...process.env };
  const given = { ...env };
  try {
    for (const key of Object.keys(process.env)) if (key.startsWith(ENV_PREFIX)) delete process.env[key];
    for (const [key, value] of Object.entries(given)) if (key.startsWith(ENV_PREFIX)) process.env[key] = value;
    cmd.parse(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version') {
        throw new EarlyExit(err.code === 'commander.version' ? `${VERSION}\n` : cmd.helpInformation());
      }
      throw new ConfigError(err.message.replace(/^error: /, ''));
    }
    throw err;
  } finally {
    for (const key of Object.keys(process.env)) if (key.startsWith(ENV_PREFIX)) delete process.env[key];
    for (const [key, value] of Object.entries(saved)) if (key.startsWith(ENV_PREFIX)) process.env[key] = value;
  }
  const values = cmd.opts<Record<string, unknown>>();
  // Commander camel-cases dashed names (web.listen-address → web.listenAddress); look up by flag.
  const raw = (flagName: string): unknown => {
    const option = cmd.options.find((opt) => opt.long === `--${flagName}`);
    return option ? values[option.attributeName()] : undefined;
  };
  const str = (flagName: string): string | undefined => {
    const v = raw(flagName);
    return v === undefined ? undefined : String(v);
  };

  const collectors = { ...DEFAULT_COLLECTORS };
  for (const name of COLLECTOR_NAMES) {
    const value = raw(`collector.${name}`);
    if (value !== undefined) collectors[name] = parseBool(`collector.${name}`, value);
  }

  // A flag repeats; its environment variable holds the list comma-separated.
  const rawFilters = (raw('events.filter') as string[] | undefined) ?? [];
  const filterList =
    cmd.getOptionValueSource('events.filter') === 'env'
      ? rawFilters.flatMap((v) => v.split(',')).filter((v) => v.trim() !== '')
      : rawFilters;

  const concurrency = Number(str('stats.concurrency'));
  if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 1000) {
    throw new ConfigError(`--stats.concurrency: "${str('stats.concurrency')}" is not a whole number from 1 to 1000`);
  }

  const telemetryPath = telemetryPathOf(str('web.telemetry-path') ?? '/metrics');

  const tlsRaw = raw('docker.tls-verify') ?? (env.DOCKER_TLS_VERIFY ? true : false);
  const allowlist = (str('container.label-allowlist') ?? '')
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);

  const config: Config = {
    web: {
      ...listenAddress(str('web.listen-address') ?? ':9764'),
      telemetryPath,
      configFile: str('web.config.file') || undefined,
    },
    docker: {
      host: dockerHost(str('docker.host') ?? (env.DOCKER_HOST || 'unix:///var/run/docker.sock')),
      tlsVerify: parseBool('docker.tls-verify', tlsRaw),
      certPath: str('docker.cert-path') ?? (env.DOCKER_CERT_PATH || path.join(os.homedir(), '.docker')),
      timeoutMs: durationOf('docker.timeout', str('docker.timeout') ?? '10s'),
      maxResponseBytes: sizeOf('docker.max-response-size', str('docker.max-response-size') ?? DEFAULT_MAX_RESPONSE_SIZE),
    },
    collectors,
    container: {
      labelAllowlist: [...new Set(allowlist)],
      include: regexOf('container.include', str('container.include')),
      exclude: regexOf('container.exclude', str('container.exclude')),
    },
    events: { filters: eventFilters(filterList) },
    stats: {
      mode: oneOf('stats.mode', str('stats.mode') ?? 'poll', ['stream', 'poll'] as const),
      intervalMs: durationOf('stats.interval', str('stats.interval') ?? '15s'),
      concurrency,
    },
    df: {
      intervalMs: durationOf('df.interval', str('df.interval') ?? '5m'),
      timeoutMs: durationOf('df.timeout', str('df.timeout') ?? '2m'),
    },
    log: {
      level: oneOf('log.level', str('log.level') ?? 'info', ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const),
      format: oneOf('log.format', str('log.format') ?? 'json', ['json', 'pretty'] as const),
    },
  };
  return deepFreeze(config);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !(value instanceof RegExp)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
