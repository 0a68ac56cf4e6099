import { describe, expect, it } from 'vitest';
import { COLLECTORS } from '../../src/collectors/index.js';
import { buildConfig as buildConfigOf, ConfigError, describeFlags, EarlyExit, envName, type Config, type ConfigModule } from '../../src/config.js';
import { parseDuration } from '../../src/duration.js';
import { buildConfig } from '../helpers/config.js';

describe('buildConfig', () => {
  it('has the documented defaults', () => {
    const c = buildConfig([], {});
    expect(c.web).toEqual({ listenHost: '', listenPort: 9764, telemetryPath: '/metrics', configFile: undefined });
    expect(c.docker).toMatchObject({ host: 'unix:///var/run/docker.sock', tlsVerify: false, timeoutMs: 10_000 });
    expect(c.collectors).toEqual({ engine: true, containers: true, stats: true, events: true, df: true, logs: false, swarm: true });
    expect(c.container.labelAllowlist).toEqual([
      'com.docker.compose.project',
      'com.docker.compose.service',
      'com.docker.swarm.service.name',
      'com.docker.stack.namespace',
    ]);
    expect(c.stats).toEqual({ source: 'auto', mode: 'poll', intervalMs: 15_000, concurrency: 32 });
    expect(c.path).toEqual({ rootfs: '/', procfs: '/proc', sysfs: '/sys' });
    expect(c.df).toEqual({ intervalMs: 300_000, timeoutMs: 120_000 });
    expect(c.log).toEqual({ level: 'info', format: 'json' });
    expect(Object.isFrozen(c) && Object.isFrozen(c.web)).toBe(true);
  });

  it('takes flags over DOCKER_EXPORTER_* variables over Docker variables over defaults', () => {
    const env = {
      DOCKER_HOST: 'tcp://docker.example:2376',
      DOCKER_TLS_VERIFY: '1',
      DOCKER_CERT_PATH: '/certs',
      DOCKER_EXPORTER_WEB_LISTEN_ADDRESS: '127.0.0.1:9000',
      DOCKER_EXPORTER_STATS_INTERVAL: '30s',
      DOCKER_EXPORTER_COLLECTOR_DF: 'false',
      DOCKER_EXPORTER_EVENTS_FILTER: 'type=container,event=die',
    };
    const fromEnv = buildConfig([], env);
    expect(fromEnv.docker).toMatchObject({ host: 'tcp://docker.example:2376', tlsVerify: true, certPath: '/certs' });
    expect(fromEnv.web).toMatchObject({ listenHost: '127.0.0.1', listenPort: 9000 });
    expect(fromEnv.stats.intervalMs).toBe(30_000);
    expect(fromEnv.collectors.df).toBe(false);
    expect(fromEnv.events.filters).toEqual({ type: ['container'], event: ['die'] });

    const flags = buildConfig(
      ['--web.listen-address', '[::1]:9100', '--stats.interval=5s', '--collector.df', '--docker.host', 'unix:///run/other.sock', '--events.filter', 'type=image'],
      env,
    );
    expect(flags.web).toMatchObject({ listenHost: '::1', listenPort: 9100 });
    expect(flags.stats.intervalMs).toBe(5000);
    expect(flags.collectors.df).toBe(true);
    expect(flags.docker.host).toBe('unix:///run/other.sock');
    expect(flags.events.filters).toEqual({ type: ['image'] });
  });

  it('switches collectors with --no-collector.<name> and repeats --events.filter', () => {
    const c = buildConfig(['--no-collector.stats', '--no-collector.events', '--events.filter', 'type=container', '--events.filter', 'label=a=b', '--events.filter', 'type=image']);
    expect(c.collectors).toMatchObject({ stats: false, events: false, engine: true });
    expect(c.events.filters).toEqual({ type: ['container', 'image'], label: ['a=b'] });
  });

  it.each([
    [['--bogus'], "unknown option '--bogus'"],
    [['--docker.timeout', 'soon'], '--docker.timeout: invalid duration "soon"'],
    [['--stats.interval', '0s'], '--stats.interval: duration must be greater than zero'],
    [['--stats.mode', 'sometimes'], '--stats.mode: "sometimes" is not one of stream, poll'],
    [['--stats.concurrency', '0'], '--stats.concurrency: "0" is not a whole number'],
    [['--web.listen-address', '9764'], '--web.listen-address: "9764" is not [host]:port'],
    [['--web.telemetry-path', 'metrics'], '--web.telemetry-path: "metrics" must start with /'],
    // A route pattern would serve metrics on every path (/:x) or stop the exporter (/(.*)).
    [['--web.telemetry-path', '/:x'], '--web.telemetry-path: "/:x" is not a plain path'],
    [['--web.telemetry-path', '/(.*)'], '--web.telemetry-path: "/(.*)" is not a plain path'],
    [['--web.telemetry-path', '/metrics*'], '--web.telemetry-path: "/metrics*" is not a plain path'],
    [['--web.telemetry-path', '/a//b'], '--web.telemetry-path: "/a//b" is not a plain path'],
    [['--web.telemetry-path', '/m{x}'], '--web.telemetry-path: "/m{x}" is not a plain path'],
    [['--web.telemetry-path', '/'], '--web.telemetry-path: "/" is served by the exporter itself'],
    [['--web.telemetry-path', '/healthz'], '--web.telemetry-path: "/healthz" is served by the exporter itself'],
    [['--web.telemetry-path', '/readyz'], '--web.telemetry-path: "/readyz" is served by the exporter itself'],
    // Node turns a timer past 2^31-1 ms into a 1 ms one: 30d ran df 537 times in 10 s.
    [['--df.interval', '30d'], '--df.interval: "30d" is longer than the 2147483647 ms'],
    [['--stats.interval', '25d'], '--stats.interval: "25d" is longer than'],
    [['--docker.timeout', '2147483648ms'], '--docker.timeout: "2147483648ms" is longer than'],
    [['--df.timeout', '9999h'], '--df.timeout: "9999h" is longer than'],
    [['--docker.max-response-size', 'lots'], '--docker.max-response-size: invalid size "lots"'],
    [['--docker.max-response-size', '12XB'], '--docker.max-response-size: invalid size "12XB"'],
    [['--docker.max-response-size', '100'], '--docker.max-response-size: "100" is below the 1 KiB'],
    [['--docker.max-response-size', '3GiB'], '--docker.max-response-size: "3GiB" is above the 2 GiB'],
    [['--docker.host', 'ftp://x'], '--docker.host: "ftp://x" is not unix:///path/to/socket or tcp://host:port'],
    [['--container.include', '('], '--container.include: invalid regular expression'],
    [['--events.filter', 'nonsense'], '--events.filter: "nonsense" is not KEY=VALUE'],
    [['--log.level', 'loud'], '--log.level: "loud" is not one of'],
    [['--collector.df', 'maybe'], '--collector.df: "maybe" is not a boolean'],
    [['--web.listen-address'], "option '--web.listen-address <[host]:port>' argument missing"],
    [['extra'], 'too many arguments'],
  ])('rejects %j with a message naming the flag', (argv, message) => {
    let error: unknown;
    try {
      buildConfig(argv, {});
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as Error).message).toContain(message);
    expect((error as Error).message).not.toContain('\n');
  });

  it('puts --path.procfs and --path.sysfs under --path.rootfs unless given, and takes absolute paths only', () => {
    expect(buildConfig(['--path.rootfs', '/host'], {}).path).toEqual({ rootfs: '/host', procfs: '/host/proc', sysfs: '/host/sys' });
    expect(buildConfig(['--path.rootfs', '/host', '--path.procfs', '/hostproc/'], {}).path).toEqual({ rootfs: '/host', procfs: '/hostproc', sysfs: '/host/sys' });
    expect(buildConfig([], { DOCKER_EXPORTER_PATH_SYSFS: '/x/sys' }).path.sysfs).toBe('/x/sys');
    expect(() => buildConfig(['--path.procfs', 'proc'], {})).toThrow('--path.procfs: "proc" is not an absolute path');
    expect(() => buildConfig(['--stats.source', 'kernel'], {})).toThrow('--stats.source: "kernel" is not one of auto, cgroupfs, engine');
  });

  it('takes the longest duration a timer holds, plain paths, and byte sizes with units', () => {
    expect(buildConfig(['--df.interval', '2147483647ms'], {}).df.intervalMs).toBe(2 ** 31 - 1);
    expect(buildConfig(['--df.interval', '24d'], {}).df.intervalMs).toBe(24 * 86_400_000);
    expect(buildConfig(['--web.telemetry-path', '/docker/metrics.v1_x~y-z/'], {}).web.telemetryPath).toBe('/docker/metrics.v1_x~y-z/');
    expect(buildConfig([], {}).docker.maxResponseBytes).toBe(64 * 1024 * 1024);
    expect(buildConfig(['--docker.max-response-size', '512KiB'], {}).docker.maxResponseBytes).toBe(512 * 1024);
    expect(buildConfig(['--docker.max-response-size', '1gb'], {}).docker.maxResponseBytes).toBe(1e9);
    expect(buildConfig(['--docker.max-response-size', '65536'], {}).docker.maxResponseBytes).toBe(65536);
  });

  it('rejects a bad value from the environment, naming the flag', () => {
    expect(() => buildConfig([], { DOCKER_EXPORTER_DOCKER_TIMEOUT: 'x' })).toThrow('--docker.timeout: invalid duration "x"');
  });

  it('answers --help and --version without running', () => {
    expect(() => buildConfig(['--version'], {})).toThrow(EarlyExit);
    try {
      buildConfig(['--help'], {});
    } catch (err) {
      const help = (err as EarlyExit).output;
      for (const flag of ['--web.listen-address', '--docker.host', '--no-collector.stats', '--stats.mode', '--df.interval', '--log.format']) {
        expect(help).toContain(flag);
      }
    }
  });

  it('maps flags to environment variable names', () => {
    expect(envName('web.listen-address')).toBe('DOCKER_EXPORTER_WEB_LISTEN_ADDRESS');
    expect(envName('collector.df')).toBe('DOCKER_EXPORTER_COLLECTOR_DF');
  });
});

describe('options that modules declare', () => {
  const messageOf = (fn: () => unknown): string => {
    try {
      fn();
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      return (err as Error).message;
    }
    throw new Error('no ConfigError');
  };

  it('are listed with their environment variables and defaults, after the collector switches', () => {
    const flags = describeFlags(COLLECTORS);
    const row = (name: string) => flags.find((f) => f.flags.startsWith(`${name} `));
    expect(row('--stats.mode')).toMatchObject({ env: 'DOCKER_EXPORTER_STATS_MODE', defaultValue: 'poll' });
    expect(row('--stats.interval')).toMatchObject({ env: 'DOCKER_EXPORTER_STATS_INTERVAL', defaultValue: '15s' });
    expect(row('--stats.concurrency')).toMatchObject({ env: 'DOCKER_EXPORTER_STATS_CONCURRENCY', defaultValue: '32' });
    expect(row('--df.interval')).toMatchObject({ env: 'DOCKER_EXPORTER_DF_INTERVAL', defaultValue: '5m' });
    expect(row('--df.timeout')).toMatchObject({ env: 'DOCKER_EXPORTER_DF_TIMEOUT', defaultValue: '2m' });
    expect(row('--events.filter')).toMatchObject({ env: 'DOCKER_EXPORTER_EVENTS_FILTER', defaultValue: undefined });
    expect(row('--container.label-allowlist')).toMatchObject({ env: 'DOCKER_EXPORTER_CONTAINER_LABEL_ALLOWLIST' });
    expect(row('--container.include')).toMatchObject({ env: 'DOCKER_EXPORTER_CONTAINER_INCLUDE' });
    const at = (name: string) => flags.findIndex((f) => f.flags.startsWith(`${name} `));
    expect(at('--collector.df')).toBeLessThan(at('--container.label-allowlist'));
    expect(at('--df.timeout')).toBeLessThan(at('--log.level'));
  });

  it('stop the start on a bad --events.filter even with the events collector off', () => {
    const message = messageOf(() => buildConfig(['--no-collector.events', '--events.filter', 'type=container', '--events.filter', 'colour=red']));
    expect(message).toContain('--events.filter: unknown key "colour"');
    expect(messageOf(() => buildConfig([], { DOCKER_EXPORTER_COLLECTOR_EVENTS: 'false', DOCKER_EXPORTER_EVENTS_FILTER: 'type=containers' }))).toContain(
      '--events.filter: unknown type "containers"',
    );
  });

  it('refuse two allowlisted label keys that become one label name', () => {
    for (const argv of [['--container.label-allowlist', 'a.b,a_b'], ['--container.label-allowlist', 'a.b,a_b', '--no-collector.containers', '--no-collector.stats', '--no-collector.df']]) {
      expect(messageOf(() => buildConfig(argv))).toBe('--container.label-allowlist: "a.b" and "a_b" both become the label container_label_a_b; keep one of them');
    }
    // The same key twice is one label, not a collision.
    expect(buildConfig(['--container.label-allowlist', 'a.b,a.b,c']).container.labelAllowlist).toEqual(['a.b', 'c']);
  });
});

describe('registration', () => {
  // A module config has never heard of: its switch and its flag come from this declaration alone.
  const probe = {
    name: 'probe',
    defaultEnabled: false,
    help: 'what a probe reports',
    options: {
      section: 'probe',
      flags: [{ flags: '--probe.depth <n>', description: 'how deep the probe goes', defaultValue: '3' }],
      parse: (values: { integer(flag: string, min: number, max: number): number }) => ({ depth: values.integer('probe.depth', 1, 9) }),
    },
  } as unknown as ConfigModule;
  const probeSection = (c: Config): unknown => (c as unknown as Record<string, unknown>).probe;

  it('makes --collector.<name>, --no-collector.<name> and the module\'s flags from the modules handed in', () => {
    const flags = describeFlags([probe]);
    expect(flags).toContainEqual({ flags: '--collector.probe [bool]', description: 'enable the probe collector: what a probe reports (default false)', defaultValue: undefined, env: 'DOCKER_EXPORTER_COLLECTOR_PROBE' });
    expect(flags).toContainEqual({ flags: '--no-collector.probe', description: 'disable the probe collector', defaultValue: undefined, env: undefined });
    expect(flags).toContainEqual({ flags: '--probe.depth <n>', description: 'how deep the probe goes', defaultValue: '3', env: 'DOCKER_EXPORTER_PROBE_DEPTH' });
    expect(flags.some((f) => f.flags.startsWith('--collector.stats') || f.flags.startsWith('--stats.'))).toBe(false);

    const defaults = buildConfigOf([], {}, [probe]);
    expect(defaults.collectors).toEqual({ probe: false });
    expect(probeSection(defaults)).toEqual({ depth: 3 });
    expect(Object.isFrozen(probeSection(defaults))).toBe(true);
    expect(buildConfigOf(['--collector.probe'], {}, [probe]).collectors).toEqual({ probe: true });
    expect(buildConfigOf([], { DOCKER_EXPORTER_COLLECTOR_PROBE: 'yes' }, [probe]).collectors).toEqual({ probe: true });
    expect(buildConfigOf(['--no-collector.probe'], { DOCKER_EXPORTER_COLLECTOR_PROBE: 'yes' }, [probe]).collectors).toEqual({ probe: false });
    expect(probeSection(buildConfigOf(['--probe.depth', '5'], { DOCKER_EXPORTER_PROBE_DEPTH: '7' }, [probe]))).toEqual({ depth: 5 });
    expect(probeSection(buildConfigOf([], { DOCKER_EXPORTER_PROBE_DEPTH: '7' }, [probe]))).toEqual({ depth: 7 });
    expect(() => buildConfigOf(['--probe.depth', '10'], {}, [probe])).toThrow('--probe.depth: "10" is not a whole number from 1 to 9');
    expect(() => buildConfigOf(['--collector.stats'], {}, [probe])).toThrow("unknown option '--collector.stats'");
  });

  it('refuses a module list with two modules of one name, two filling one section, or a flag outside its section', () => {
    expect(() => buildConfigOf([], {}, [probe, probe])).toThrow('two modules are named probe');
    const web = { ...probe, name: 'web', options: { ...probe.options!, section: 'web' } } as unknown as ConfigModule;
    expect(() => buildConfigOf([], {}, [web])).toThrow('module web: the Config section web is taken');
    const stray = { ...probe, options: { ...probe.options!, flags: [{ flags: '--log.depth <n>', description: 'x' }] } } as unknown as ConfigModule;
    expect(() => buildConfigOf([], {}, [stray])).toThrow('module probe: its flag --log.depth <n> is not named --probe.<option>');
  });
});

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['10s', 10_000],
    ['5m', 300_000],
    ['1h30m', 5_400_000],
    ['1.5s', 1500],
  ])('%s = %d ms', (text, ms) => expect(parseDuration(text)).toBe(ms));
  it.each(['', '10', 's', '10x', '5m garbage'])('rejects %j', (text) => expect(() => parseDuration(text)).toThrow('invalid duration'));
});
