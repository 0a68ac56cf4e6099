import os from 'node:os';
import path from 'node:path';
import { Command, CommanderError, Option } from 'commander';
import { parseDuration } from './duration.js';
import { ConfigError, EarlyExit } from './errors.js';
import { parseSize } from './size.js';
import { VERSION } from './version.js';

/** Config's errors, for its callers (they live in errors.ts so that anything can throw them). */
export { ConfigError, EarlyExit } from './errors.js';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
export type LogFormat = 'json' | 'pretty';

/**
 * The exporter's whole configuration: built once, here, from flags, environment and defaults. The
 * sections below are the exporter's own; each registered module adds the section its flags fill
 * (`stats`, `df`, `events`, `container`) next to those flags, by declaration merging:
 * `declare module '../config.js' { interface Config { stats: StatsConfig } }`.
 */
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
  /** Where the host's pseudo-filesystems are, as node_exporter takes them (another root in a container). */
  path: {
    /** The host's root filesystem: host paths the engine names (a container's LogPath) are read under it. */
    rootfs: string;
    /** The host's /proc: each container's cgroup and network counters are read under it. */
    procfs: string;
    /** The host's /sys: its cgroup filesystem is `<sysfs>/fs/cgroup`. */
    sysfs: string;
  };
  /** Whether each registered module runs, by name. */
  collectors: Readonly<Record<string, boolean>>;
  log: {
    level: LogLevel;
    format: LogFormat;
  };
}

/** The sections config fills itself; a module's options fill one of the others. */
const OWN_SECTIONS: readonly string[] = ['web', 'docker', 'path', 'collectors', 'log'];

/** One flag a module declares, named `--<section>.<option>`; its environment variable is made from that name. */
export interface FlagSpec {
  /** As commander spells it: `--stats.mode <mode>`. */
  flags: string;
  /** One line for `--help` and the README. */
  description: string;
  defaultValue?: string;
  /** Given more than once, the values add up (read them with `all`); the environment variable holds them comma-separated. */
  repeatable?: boolean;
}

/** A module's flags and how their values become its section of Config. */
export interface ModuleOptions<K extends keyof Config = keyof Config> {
  /** The Config section the flags fill; the module declares its type. */
  section: K;
  flags: readonly FlagSpec[];
  /**
   * Reads and checks the flags' values; throws ConfigError for one the module cannot use. Runs
   * whether the module is switched on or off, so a bad value stops the exporter at start either way.
   */
  parse(values: FlagValues): Config[K];
}

/** What config reads of a registered module (collectors/collector.ts's CollectorModule is one). */
export interface ConfigModule {
  /** Makes `--collector.<name>` and `--no-collector.<name>`. */
  name: string;
  defaultEnabled: boolean;
  /** What the module reports, in one line, for `--collector.<name>`'s help. */
  help: string;
  options?: ModuleOptions;
}

/**
 * The values given to the flags (flag, then environment variable, then default), read by flag name
 * without the dashes (`stats.mode`). Each reader checks the value and throws a ConfigError naming the flag.
 */
export interface FlagValues {
  /** The value as given, or undefined for a flag without a value or default. */
  string(flag: string): string | undefined;
  /** A duration above zero that a timer can hold (`15s`, `5m`), in milliseconds. */
  duration(flag: string): number;
  /** A whole number from min to max. */
  integer(flag: string, min: number, max: number): number;
  oneOf<T extends string>(flag: string, allowed: readonly T[]): T;
  /** A regular expression; undefined when not given or empty. */
  regex(flag: string): RegExp | undefined;
  /** A comma-separated list, each item trimmed, empty ones dropped. */
  list(flag: string): string[];
  /** Every value of a repeatable flag, in the order given. */
  all(flag: string): string[];
}

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

function flag(spec: string, description: string, defaultValue?: string): Option {
  const name = spec.replace(/^--/, '').replace(/ .*$/, '');
  const option = new Option(spec, description).env(envName(name));
  if (defaultValue !== undefined) option.default(defaultValue);
  return option;
}

/** A module's flag as commander takes it. */
function moduleFlag(spec: FlagSpec): Option {
  const option = flag(spec.flags, spec.description, spec.defaultValue);
  return spec.repeatable ? option.argParser((value: string, previous: string[] | undefined) => [...(previous ?? []), value]) : option;
}

/**
 * The command line: the exporter's own flags, then for each module (in the order given)
 * `--collector.<name>` and `--no-collector.<name>`, then each module's options, then logging.
 */
function program(modules: readonly ConfigModule[]): Command {
  const sections = new Set(OWN_SECTIONS);
  const names = new Set<string>();
  for (const m of modules) {
    // Mistakes in the module list, not in the flags: they are the code's, not the user's.
    if (names.has(m.name)) throw new Error(`two modules are named ${m.name}`);
    names.add(m.name);
    if (!m.options) continue;
    const { section, flags } = m.options;
    if (sections.has(section)) throw new Error(`module ${m.name}: the Config section ${section} is taken`);
    sections.add(section);
    const stray = flags.find((f) => !f.flags.startsWith(`--${section}.`));
    if (stray) throw new Error(`module ${m.name}: its flag ${stray.flags} is not named --${section}.<option>`);
  }
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
    .addOption(flag('--docker.max-response-size <size>', 'largest reply to a non-stream engine request (e.g. 64MiB); a larger one fails that request and is not kept', DEFAULT_MAX_RESPONSE_SIZE))
    .addOption(flag('--path.rootfs <dir>', 'the host\'s root filesystem as the exporter sees it (e.g. /host in a container); the defaults of --path.procfs and --path.sysfs are under it, and so are the log files the logs collector reads', '/'))
    .addOption(flag('--path.procfs <dir>', 'the host\'s /proc (default <rootfs>/proc)'))
    .addOption(flag('--path.sysfs <dir>', 'the host\'s /sys, whose fs/cgroup holds the containers\' cgroups (default <rootfs>/sys)'));
  for (const { name, help, defaultEnabled } of modules) {
    cmd.addOption(flag(`--collector.${name} [bool]`, `enable the ${name} collector: ${help} (default ${defaultEnabled})`));
    cmd.addOption(new Option(`--no-collector.${name}`, `disable the ${name} collector`));
  }
  for (const m of modules) for (const spec of m.options?.flags ?? []) cmd.addOption(moduleFlag(spec));
  cmd
    .addOption(flag('--log.level <level>', 'fatal, error, warn, info, debug (logs every engine API call) or trace', 'info'))
    .addOption(flag('--log.format <format>', 'json or pretty', 'json'));
  return cmd;
}

/** Every flag the modules given make, with its description, default and environment variable, for the README. */
export function describeFlags(modules: readonly ConfigModule[]): Array<{ flags: string; description: string; defaultValue?: string; env?: string }> {
  return program(modules).options.map((o) => ({
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

/** An absolute folder path, normalised (whether it exists is for the reader to find out: it may be mounted later). */
function absoluteDir(flagName: string, value: string): string {
  if (!path.isAbsolute(value)) throw new ConfigError(`--${flagName}: "${value}" is not an absolute path`);
  return path.normalize(value).replace(/(.)\/+$/, '$1');
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

function oneOf<T extends string>(flagName: string, value: string, allowed: readonly T[]): T {
  if ((allowed as readonly string[]).includes(value)) return value as T;
  throw new ConfigError(`--${flagName}: "${value}" is not one of ${allowed.join(', ')}`);
}

/** Reads the parsed command line by flag name (commander camel-cases dashed names: web.listen-address → web.listenAddress). */
function flagValues(cmd: Command): FlagValues & { raw(flag: string): unknown } {
  const values = cmd.opts<Record<string, unknown>>();
  const optionOf = (flagName: string): Option => {
    const option = cmd.options.find((opt) => opt.long === `--${flagName}`);
    if (!option) throw new Error(`--${flagName} is not a declared flag`);
    return option;
  };
  const raw = (flagName: string): unknown => values[optionOf(flagName).attributeName()];
  const string = (flagName: string): string | undefined => {
    const v = raw(flagName);
    return v === undefined ? undefined : String(v);
  };
  return {
    raw,
    string,
    duration: (flagName) => durationOf(flagName, string(flagName) ?? ''),
    integer(flagName, min, max) {
      const text = string(flagName);
      const n = Number(text);
      if (!Number.isInteger(n) || n < min || n > max) throw new ConfigError(`--${flagName}: "${text}" is not a whole number from ${min} to ${max}`);
      return n;
    },
    oneOf: (flagName, allowed) => oneOf(flagName, string(flagName) ?? '', allowed),
    regex: (flagName) => regexOf(flagName, string(flagName)),
    list: (flagName) =>
      (string(flagName) ?? '')
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean),
    all(flagName) {
      const given = (raw(flagName) as string[] | undefined) ?? [];
      // A flag repeats; its environment variable holds the list comma-separated.
      if (cmd.getOptionValueSource(optionOf(flagName).attributeName()) !== 'env') return given;
      return given.flatMap((v) => v.split(',')).filter((v) => v.trim() !== '');
    },
  };
}

/**
 * Builds the frozen Config from command-line arguments (without node and script), environment and
 * the registered modules (collectors/index.ts's COLLECTORS, handed in: config imports no collector),
 * whose declarations make the `--collector.<name>` switches and the modules' own flags.
 * Precedence: flag, then DOCKER_EXPORTER_* variable, then the Docker variables where a flag
 * follows one (DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH), then the default.
 * Throws ConfigError for anything unusable and EarlyExit for --help and --version.
 */
export function buildConfig(argv: string[], env: NodeJS.ProcessEnv, modules: readonly ConfigModule[]): Config {
  const cmd = program(modules);
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
  const values = flagValues(cmd);
  const str = values.string;

  const collectors: Record<string, boolean> = {};
  for (const { name, defaultEnabled } of modules) {
    const value = values.raw(`collector.${name}`);
    collectors[name] = value === undefined ? defaultEnabled : parseBool(`collector.${name}`, value);
  }

  const telemetryPath = telemetryPathOf(str('web.telemetry-path') ?? '/metrics');
  const tlsRaw = values.raw('docker.tls-verify') ?? (env.DOCKER_TLS_VERIFY ? true : false);

  const web: Config['web'] = {
    ...listenAddress(str('web.listen-address') ?? ':9764'),
    telemetryPath,
    configFile: str('web.config.file') || undefined,
  };
  const docker: Config['docker'] = {
    host: dockerHost(str('docker.host') ?? (env.DOCKER_HOST || 'unix:///var/run/docker.sock')),
    tlsVerify: parseBool('docker.tls-verify', tlsRaw),
    certPath: str('docker.cert-path') ?? (env.DOCKER_CERT_PATH || path.join(os.homedir(), '.docker')),
    timeoutMs: values.duration('docker.timeout'),
    maxResponseBytes: sizeOf('docker.max-response-size', str('docker.max-response-size') ?? DEFAULT_MAX_RESPONSE_SIZE),
  };
  const rootfs = absoluteDir('path.rootfs', str('path.rootfs') ?? '/');
  const paths: Config['path'] = {
    rootfs,
    procfs: absoluteDir('path.procfs', str('path.procfs') ?? path.join(rootfs, 'proc')),
    sysfs: absoluteDir('path.sysfs', str('path.sysfs') ?? path.join(rootfs, 'sys')),
  };
  // Every module's, switched on or not: a value it cannot use stops the exporter either way.
  const sections: Record<string, unknown> = {};
  for (const m of modules) if (m.options) sections[m.options.section] = m.options.parse(values);
  const log: Config['log'] = {
    level: values.oneOf('log.level', ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const),
    format: values.oneOf('log.format', ['json', 'pretty'] as const),
  };
  // Each section is typed by the module that declares it; their sum is the Config the modules declared.
  return deepFreeze({ web, docker, path: paths, collectors, ...sections, log } as Config);
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object' && !(value instanceof RegExp)) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}
