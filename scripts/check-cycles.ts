/**
 * Fails (exit 1) when src/ has an import cycle, and prints each cycle as a chain of files.
 *
 * Uses madge with the project's tsconfig. Checked when this was written: madge resolves the
 * `./x.js` specifiers of NodeNext ESM to the `./x.ts` files (a planted three-file cycle through
 * `.js` specifiers and a folder was reported), and it counts type-only imports and `export ...
 * from` re-exports as edges. Type-only cycles are reported on purpose: they do no harm at run time,
 * but they still mean two modules depend on each other, which the layout rules forbid.
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const madgeCli = createRequire(import.meta.url).resolve('madge/bin/cli.js');

const result = spawnSync(
  process.execPath,
  [madgeCli, '--circular', '--json', '--no-spinner', '--extensions', 'ts', '--ts-config', 'tsconfig.json', 'src'],
  { cwd: root, encoding: 'utf8' },
);

let cycles: string[][];
try {
  cycles = JSON.parse(result.stdout) as string[][];
} catch {
  console.error(`check-cycles: madge did not produce a result (exit ${result.status})\n${result.stdout}${result.stderr}`);
  process.exit(1);
}

if (cycles.length === 0) {
  console.log('check-cycles: no import cycles in src/');
} else {
  console.error(`check-cycles: ${cycles.length} import cycle(s) in src/:`);
  for (const cycle of cycles) {
    console.error(`  ${[...cycle, cycle[0]].map((f) => `src/${f}`).join(' -> ')}`);
  }
  process.exit(1);
}
