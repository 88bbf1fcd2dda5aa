/** Writes docs/CONFIG.md from the config schema. */
import { writeFileSync } from 'node:fs';
import { configMarkdown } from '../src/config/describe.js';

writeFileSync(new URL('../docs/CONFIG.md', import.meta.url), configMarkdown());
console.log('wrote docs/CONFIG.md');
