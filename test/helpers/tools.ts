import { execFileSync } from 'node:child_process';
import fs from 'node:fs';

/** Repository root (tests run from it, but helpers should not depend on the cwd). */
export const REPO_ROOT = new URL('../..', import.meta.url).pathname.replace(/\/$/, '');

function which(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(':').concat(['/usr/sbin', '/usr/bin', '/sbin'])) {
    const p = `${dir}/${name}`;
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch {
      /* not here */
    }
  }
  return undefined;
}

/**
 * Locates a program the tests need, installing its Debian package when it is missing and this is a
 * root shell on Debian (as in CI); otherwise throws an error saying exactly what to install.
 */
export function requireTool(name: string, debianPackage: string): string {
  let found = which(name);
  if (found) return found;
  const canInstall = process.getuid?.() === 0 && which('apt-get') !== undefined;
  if (canInstall) {
    try {
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      execFileSync('apt-get', ['install', '-y', '-qq', debianPackage], { env, stdio: 'ignore', timeout: 300_000 });
    } catch {
      execFileSync('apt-get', ['update', '-qq'], { stdio: 'ignore', timeout: 300_000 });
      execFileSync('apt-get', ['install', '-y', '-qq', debianPackage], { stdio: 'ignore', timeout: 300_000, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
    }
    found = which(name);
    if (found) return found;
  }
  throw new Error(`this test needs \`${name}\`: install it (Debian package \`${debianPackage}\`) and run the tests again`);
}
