import { COLLECTORS } from '../../src/collectors/index.js';
import { buildConfig as buildConfigOf, type Config } from '../../src/config.js';

/**
 * The Config the exporter builds, with every registered collector's flags (as src/cli.ts hands
 * COLLECTORS to config's buildConfig); the environment is only what the test gives.
 */
export function buildConfig(argv: string[], env: NodeJS.ProcessEnv = {}): Config {
  return buildConfigOf(argv, env, COLLECTORS);
}
