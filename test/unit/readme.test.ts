import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { updateReadme } from '../../scripts/docs-lib.js';
import vitestConfig from '../../vitest.config.js';
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

  it('says how to run each test project, with the script that runs it, and how to rewrite the e2e golden file', () => {
    const projects = (vitestConfig.test?.projects ?? []) as Array<{ test: { name: string } }>;
    expect(projects.map((p) => p.test.name)).toEqual(['unit', 'tools', 'integration']);
    const { scripts } = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
    for (const { test: { name } } of projects) {
      expect(scripts[`test:${name}`], `package.json test:${name}`).toBe(`vitest run --project ${name}`);
      expect(readme).toContain(`npm run test:${name}`);
    }
    // The command the README gives names the test that writes the file.
    const update = /^UPDATE_GOLDEN=1 npx vitest run --project unit (\S+)$/m.exec(readme);
    expect(update, 'the README gives the UPDATE_GOLDEN=1 command').not.toBeNull();
    expect(fs.readFileSync(path.join(REPO_ROOT, update![1]!), 'utf8')).toContain('metrics.golden.prom');
  });
});
