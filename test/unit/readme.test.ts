import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { updateReadme } from '../../scripts/docs-lib.js';
import { REPO_ROOT } from '../helpers/tools.js';

describe('README', () => {
  const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');

  it('lists every flag and every metric exactly as the code defines them (run `npm run docs` to update)', () => {
    expect(readme).toBe(updateReadme(readme));
  });

  it('names the two commands and the test command that .ci/run calls', () => {
    expect(readme).toContain('npm ci && npm start');
    expect(readme).toContain('npm test');
    expect(fs.readFileSync(path.join(REPO_ROOT, '.ci/run'), 'utf8')).toMatch(/^npm test$/m);
  });
});
