// Records the git commit being built in dist/revision.txt, which docker_exporter_build_info reports
// (npm pack no longer records it); $REVISION, when set, wins. Outside a git checkout (a source tarball, a Docker build context
// without .git) it writes nothing and the revision reads "unknown".
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

if (process.env.REVISION) {
  fs.writeFileSync('dist/revision.txt', `${process.env.REVISION}\n`);
  process.exit(0);
}
try {
  const rev = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no'], { stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  fs.writeFileSync('dist/revision.txt', `${rev}${dirty ? '-dirty' : ''}\n`);
} catch {
  // Not a git checkout: nothing to record.
}
