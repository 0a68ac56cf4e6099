import { execFileSync } from 'node:child_process';
import { REPO_ROOT } from './tools.js';

/**
 * Makes sure a Docker Engine answers and the local test image exists before any integration test:
 * scripts/test-engine.sh starts Debian's dockerd when none runs (as in CI) and imports the image
 * from busybox-static; on a developer machine with its own engine it only adds the image. When it
 * cannot, it says what to provide, and the integration tests do not run. Then scripts/test-podman.sh
 * serves Podman's Docker-compatible API on its own socket (the second engine of ENGINES in
 * helpers/docker.ts), with the same image.
 */
export default function setup(): void {
  try {
    execFileSync('bash', [`${REPO_ROOT}/scripts/test-engine.sh`], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 600_000 });
  } catch {
    throw new Error('integration tests need a Docker Engine: scripts/test-engine.sh could not provide one (see its message above)');
  }
  // TEST_ENGINES=docker (helpers/docker.ts) runs no test on Podman, so a machine without it can still test.
  if (!(process.env.TEST_ENGINES ?? 'docker,podman').split(',').some((e) => e.trim() === 'podman')) return;
  try {
    execFileSync('bash', [`${REPO_ROOT}/scripts/test-podman.sh`], { stdio: ['ignore', 'inherit', 'inherit'], timeout: 600_000 });
  } catch {
    throw new Error('integration tests need Podman as the second engine: scripts/test-podman.sh could not provide it (see its message above)');
  }
}
