import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The small local image every test container runs (built by scripts/test-engine.sh, never pulled). */
export const TEST_IMAGE = process.env.TEST_IMAGE ?? 'docker-exporter-test/busybox:latest';

/** Every object a test creates carries this label, so leftovers can be found and removed. */
export const TEST_LABEL = 'docker-exporter-test=1';

/**
 * A real engine the integration tests run against. Both are driven with the docker CLI through
 * their Docker-compatible API, which is what the exporter reads, so every reference value a test
 * compares with comes through the same API; `podman()` is for what only Podman's own CLI does.
 */
export interface Engine {
  /** `docker` (dockerd 20.10 on /var/run/docker.sock) or `podman` (scripts/test-podman.sh). */
  name: 'docker' | 'podman';
  socket: string;
  /** The address for `--docker.host` and the CLI's `-H`. */
  host: string;
  /** The exporter's flags that point it at this engine. */
  exporterArgs: string[];
  /** TEST_IMAGE as this engine names it in inspect and list (Podman adds its localhost/ registry). */
  image: string;
}

const PODMAN_SOCKET = process.env.TEST_PODMAN_SOCKET ?? '/run/docker-exporter-test/podman.sock';

export const DOCKER: Engine = { name: 'docker', socket: '/var/run/docker.sock', host: 'unix:///var/run/docker.sock', exporterArgs: [], image: TEST_IMAGE };
export const PODMAN: Engine = {
  name: 'podman',
  socket: PODMAN_SOCKET,
  host: `unix://${PODMAN_SOCKET}`,
  exporterArgs: ['--docker.host', `unix://${PODMAN_SOCKET}`],
  image: TEST_IMAGE.includes('/') && !/^[^/]*[.:]/.test(TEST_IMAGE) ? `localhost/${TEST_IMAGE}` : TEST_IMAGE,
};

/**
 * The engines the engine-facing tests run against (`describe.each(ENGINES)`): both, unless
 * TEST_ENGINES names some (`TEST_ENGINES=podman npx vitest run --project integration test/integration/df.test.ts`).
 */
export const ENGINES: Engine[] = (process.env.TEST_ENGINES ?? 'docker,podman').split(',').map((n) => {
  const e = [DOCKER, PODMAN].find((x) => x.name === n.trim());
  if (!e) throw new Error(`TEST_ENGINES: unknown engine "${n}" (docker, podman)`);
  return e;
});

/** Podman's own CLI's environment: the test containers.conf (the VM's ulimits) that scripts/test-podman.sh writes. */
export const PODMAN_ENV = { ...process.env, CONTAINERS_CONF: `${process.env.TEST_ENGINE_STATE ?? '/var/tmp/docker-exporter-test'}/podman/containers.conf` };

async function cli(command: string, args: string[], timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<string> {
  try {
    const { stdout } = await run(command, args, { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, env });
    return stdout.trim();
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`${command} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

/**
 * Runs the docker CLI against the test engine (dockerd unless `engine` says otherwise); resolves
 * with trimmed stdout, rejects with stderr.
 */
export async function docker(args: string[], opts: { timeoutMs?: number; engine?: Engine } = {}): Promise<string> {
  const engine = opts.engine ?? DOCKER;
  return cli('docker', engine === DOCKER ? args : ['-H', engine.host, ...args], opts.timeoutMs ?? 120_000);
}

/** The docker CLI bound to one engine. */
export function cliFor(engine: Engine): (args: string[], opts?: { timeoutMs?: number }) => Promise<string> {
  return (args, opts = {}) => docker(args, { ...opts, engine });
}

/** Podman's own CLI (same store as the API service), e.g. `podman healthcheck run`. */
export async function podman(args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  return cli('podman', args, opts.timeoutMs ?? 120_000, PODMAN_ENV);
}

/**
 * Tracks what one test file creates so that it removes exactly that, and nothing colleagues'
 * concurrent test runs created.
 */
export class TestContainers {
  private readonly docker: (args: string[]) => Promise<string>;

  /** On `engine` (dockerd by default). */
  constructor(engine: Engine = DOCKER) {
    this.docker = cliFor(engine);
  }

  private readonly ids = new Set<string>();
  private readonly volumes = new Set<string>();
  private readonly networks = new Set<string>();

  /** `docker run -d` with the test label; `args` go before the image, `cmd` after it. */
  async run(args: string[], cmd: string[] = ['sleep', '3600']): Promise<string> {
    const id = await this.docker(['run', '-d', '--label', TEST_LABEL, ...args, TEST_IMAGE, ...cmd]);
    this.ids.add(id);
    return id;
  }

  /** `docker create` with the test label. */
  async create(args: string[], cmd: string[] = ['sleep', '3600']): Promise<string> {
    const id = await this.docker(['create', '--label', TEST_LABEL, ...args, TEST_IMAGE, ...cmd]);
    this.ids.add(id);
    return id;
  }

  /** Registers an id created some other way, for removal. */
  track(id: string): string {
    this.ids.add(id);
    return id;
  }

  async network(name: string): Promise<string> {
    await this.docker(['network', 'create', '--label', TEST_LABEL, name]);
    this.networks.add(name);
    return name;
  }

  async volume(name: string): Promise<string> {
    await this.docker(['volume', 'create', '--label', TEST_LABEL, name]);
    this.volumes.add(name);
    return name;
  }

  async removeAll(): Promise<void> {
    const ids = [...this.ids];
    this.ids.clear();
    for (let i = 0; i < ids.length; i += 50) {
      await this.docker(['rm', '-f', '-v', ...ids.slice(i, i + 50)]).catch(() => undefined);
    }
    for (const n of this.networks) await this.docker(['network', 'rm', n]).catch(() => undefined);
    this.networks.clear();
    for (const v of this.volumes) await this.docker(['volume', 'rm', '-f', v]).catch(() => undefined);
    this.volumes.clear();
  }
}

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitFor<T>(what: string, check: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 20_000, everyMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${lastError ? `: ${(lastError as Error).message}` : ''}`);
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
