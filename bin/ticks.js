#!/usr/bin/env node
// The `ticks` command. Runs the TypeScript sources through tsx (registered here, for this process
// only), so `npx ticks ...` works straight after `npm ci` without a build.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/cli/main.ts');
process.exitCode = await main(process.argv.slice(2));
