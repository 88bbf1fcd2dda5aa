/** Copies non-TypeScript runtime files (Lua scripts) from src/ to dist/ after `tsc`. */
import { cpSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';

const src = new URL('../src/', import.meta.url).pathname;
const dist = new URL('../dist/', import.meta.url).pathname;
let n = 0;
function walk(dir: string): void {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (name.endsWith('.lua')) {
      cpSync(p, join(dist, relative(src, p)));
      n++;
    }
  }
}
walk(src);
console.log(`copied ${n} asset files to dist/`);
