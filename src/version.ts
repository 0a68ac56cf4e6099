import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const pkg = require('../package.json') as { version: string; gitHead?: string };

/** The package version, read from package.json so that a release bump needs one edit. */
export const VERSION: string = pkg.version;

/** The git commit the package was packed from (npm pack records it as gitHead), or "unknown". */
export const REVISION: string = pkg.gitHead ?? 'unknown';
