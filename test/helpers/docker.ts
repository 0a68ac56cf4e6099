import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The small local image every test container runs (built by scripts/test-engine.sh, never pulled). */
export const TEST_IMAGE = process.env.TEST_IMAGE ?? 'docker-exporter-test/busybox:latest';

/** Every object a test creates carries this label, so leftovers can be found and removed. */
export const TEST_LABEL = 'docker-exporter-test=1';

/** Runs the docker CLI against the test engine; resolves with trimmed stdout, rejects with stderr. */
export async function docker(args: string[], opts: { timeoutMs?: number } = {}): Promise<string> {
  try {
    const { stdout } = await run('docker', args, { timeout: opts.timeoutMs ?? 120_000, maxBuffer: 64 * 1024 * 1024 });
    return stdout.trim();
  } catch (err) {
    const e = err as Error & { stderr?: string };
    throw new Error(`docker ${args.join(' ')}: ${e.stderr?.trim() || e.message}`);
  }
}

/**
 * Tracks what one test file creates so that it removes exactly that, and nothing colleagues'
 * concurrent test runs created.
 */
export class TestContainers {
  private readonly ids = new Set<string>();
  private readonly volumes = new Set<string>();
  private readonly networks = new Set<string>();

  /** `docker run -d` with the test label; `args` go before the image, `cmd` after it. */
  async run(args: string[], cmd: string[] = ['sleep', '3600']): Promise<string> {
    const id = await docker(['run', '-d', '--label', TEST_LABEL, ...args, TEST_IMAGE, ...cmd]);
    this.ids.add(id);
    return id;
  }

  /** `docker create` with the test label. */
  async create(args: string[], cmd: string[] = ['sleep', '3600']): Promise<string> {
    const id = await docker(['create', '--label', TEST_LABEL, ...args, TEST_IMAGE, ...cmd]);
    this.ids.add(id);
    return id;
  }

  /** Registers an id created some other way, for removal. */
  track(id: string): string {
    this.ids.add(id);
    return id;
  }

  async network(name: string): Promise<string> {
    await docker(['network', 'create', '--label', TEST_LABEL, name]);
    this.networks.add(name);
    return name;
  }

  async volume(name: string): Promise<string> {
    await docker(['volume', 'create', '--label', TEST_LABEL, name]);
    this.volumes.add(name);
    return name;
  }

  async removeAll(): Promise<void> {
    const ids = [...this.ids];
    this.ids.clear();
    for (let i = 0; i < ids.length; i += 50) {
      await docker(['rm', '-f', '-v', ...ids.slice(i, i + 50)]).catch(() => undefined);
    }
    for (const n of this.networks) await docker(['network', 'rm', n]).catch(() => undefined);
    this.networks.clear();
    for (const v of this.volumes) await docker(['volume', 'rm', '-f', v]).catch(() => undefined);
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
