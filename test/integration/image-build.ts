import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { REPO_ROOT } from '../helpers/tools.js';

const run = promisify(execFile);

/** Tag of the exporter image the container tests build from the repository's Dockerfile. */
export const EXPORTER_IMAGE = process.env.EXPORTER_TEST_IMAGE ?? 'docker-exporter-test/exporter:local';

/** The base image built from this machine's Node.js by scripts/node-base-image.sh. */
export const NODE_BASE_IMAGE = process.env.NODE_BASE_IMAGE ?? 'docker-exporter-test/node:local';

async function sh(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 600_000): Promise<string> {
  try {
    const { stdout } = await run(cmd, args, { cwd: REPO_ROOT, env: { ...process.env, ...env }, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 });
    return stdout.trim();
  } catch (err) {
    const e = err as Error & { stdout?: string; stderr?: string };
    throw new Error(`${cmd} ${args.join(' ')} failed:\n${e.stdout?.slice(-4000) ?? ''}\n${e.stderr?.trim() || e.message}`);
  }
}

async function imageId(tag: string): Promise<string | undefined> {
  return sh('docker', ['image', 'inspect', '--format', '{{.Id}}', tag]).catch(() => undefined);
}

/**
 * Builds the exporter image from the repository's Dockerfile on the local Node.js base image, never
 * pulling. Both images are kept between runs: the base is rebuilt only when node changes, and the
 * legacy builder's layer cache makes a rebuild with an unchanged lockfile take seconds (the two
 * `npm ci` layers are what makes a cold build slow). A replaced exporter image is removed.
 */
export async function buildExporterImage(): Promise<{ image: string; seconds: number }> {
  const started = Date.now();
  await sh('bash', [`${REPO_ROOT}/scripts/node-base-image.sh`], { NODE_BASE_IMAGE });
  const before = await imageId(EXPORTER_IMAGE);
  // The legacy builder needs no buildx plugin and reuses local images as they are; --force-rm
  // leaves no container behind when a step fails.
  await sh('docker', ['build', '--force-rm', '--build-arg', `NODE_IMAGE=${NODE_BASE_IMAGE}`, '-t', EXPORTER_IMAGE, '.'], { DOCKER_BUILDKIT: '0' });
  const after = await imageId(EXPORTER_IMAGE);
  if (before && before !== after) await sh('docker', ['rmi', before]).catch(() => undefined);
  return { image: EXPORTER_IMAGE, seconds: (Date.now() - started) / 1000 };
}
