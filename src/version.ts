import fs from 'node:fs';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const pkg = require('../package.json') as { version: string };

/** The package version, read from package.json so that a release bump needs one edit. */
export const VERSION: string = pkg.version;

/** The git commit the build was made from (dist/revision.txt, written by the build), or "unknown". */
export const REVISION: string = readRevision();

function readRevision(): string {
  try {
    return fs.readFileSync(new URL('./revision.txt', import.meta.url), 'utf8').trim() || 'unknown';
  } catch {
    return 'unknown';
  }
}
