import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { NODE_FLAGS } from '../../bench/lib.js';

const root = path.resolve(import.meta.dirname, '../..');
const read = (file: string): string => fs.readFileSync(path.join(root, file), 'utf8');

// The young-generation cap saves ~30 MB of resident memory; it only works as a node flag given at
// start, so every way the exporter is launched must give it, and the benchmark measures it so.
describe('launchers', () => {
  it('npm start, the image and the systemd unit run node with the benchmark\'s flags', () => {
    const pkg = JSON.parse(read('package.json')) as { scripts: Record<string, string> };
    expect(pkg.scripts.start).toBe(`node ${NODE_FLAGS} dist/cli.js`);
    expect(read('Dockerfile')).toContain(`ENTRYPOINT ["node", "${NODE_FLAGS}", "dist/cli.js"]`);
    expect(read('docker-exporter.service')).toMatch(new RegExp(`^Environment=NODE_OPTIONS=${NODE_FLAGS}$`, 'm'));
  });
});
