// Regenerates the flag and metric tables in README.md from the code (`npm run docs`).
import fs from 'node:fs';
import { updateReadme } from './docs-lib.js';

fs.writeFileSync('README.md', updateReadme(fs.readFileSync('README.md', 'utf8')));
console.log('README.md tables updated');
process.exit(0);
