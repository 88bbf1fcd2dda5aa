import { readFileSync } from 'node:fs';
import t from 'tap';
import { configMarkdown, describeConfig } from '../../src/config/describe.js';
import { configLeaves } from '../../src/config/load.js';

t.test('docs/CONFIG.md matches the schema (run `npm run config:doc` after changing it)', async (t) => {
  const onDisk = readFileSync(new URL('../../docs/CONFIG.md', import.meta.url), 'utf8');
  t.equal(onDisk, configMarkdown());
});

t.test('every configuration key has a description', async (t) => {
  const keys = describeConfig();
  t.equal(keys.length, configLeaves().length, 'one row per leaf key');
  for (const k of keys) t.ok(k.description.length > 10, `${k.key} is described`);
});
