/**
 * `npm test`: the whole, self-contained test command.
 *
 *   1. lint (`npm run lint`: tsc --noEmit and the import-cycle check); a failure counts as one
 *      failed test, and the suites still run;
 *   2. start Redis and Cassandra in parallel, unless TICKS_TEST_REDIS_URL /
 *      TICKS_TEST_CASSANDRA_CONTACT_POINTS point at running ones;
 *   3. run every *.test.ts under test/{unit,contract,integration,chaos} with tap, two files at a
 *      time (each file uses its own keyspace and key prefix, so they can share the servers);
 *   4. stop what it started, always, and print `N passed, N failed` as the very last line.
 *
 * `npm test -- test/unit` (files or folders) runs only those tests, still with the services.
 *
 * How tap runs TypeScript: the "tap" section of package.json disables tap's own TypeScript plugin
 * (a ts-node fork) and passes `--import=tsx` to each test process instead. Measured here on a test
 * importing an 80-module graph: 1.4 s per file with tsx, 2.5 s with tap's ts-node; tsx is also what
 * `npm start` runs, and the ts-node fork breaks with TypeScript 7 (NOTES.md). Changing the plugin
 * list makes tap rebuild its test class once (about 5 s, in node_modules) on the first run after
 * `npm ci`. Coverage is disabled there too: tap would otherwise fail the run for missing coverage.
 *
 * How totals are counted: tap prints raw TAP (`--reporter=tap`), which is streamed to the console
 * unchanged and read by TapCounter (test/support/tap-totals.ts): leaf assertions, plus one failure
 * for each file that crashed, timed out, exited non-zero, had no tests, or never reported.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CASSANDRA_UNAVAILABLE_VAR, newRunId, REDIS_UNAVAILABLE_VAR } from './support/env.js';
import { startCassandra } from './support/services/cassandra.js';
import { spawnTied } from './support/services/process.js';
import { startRedis } from './support/services/redis.js';
import { TapCounter } from './support/tap-totals.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const SUITES = ['test/unit', 'test/contract', 'test/integration', 'test/chaos'];
const TAP_JOBS = 2;

interface Started {
  name: string;
  pid: number;
  stop(): Promise<void>;
}

const startedAt = Date.now();
const started: Started[] = [];
const failures: string[] = [];
let passed = 0;
let failed = 0;
let skipped = 0;
let todo = 0;
let tapChild: ChildProcess | undefined;
let interrupted: NodeJS.Signals | undefined;

function section(title: string): void {
  console.log(`\n==== ${title} ${'='.repeat(Math.max(0, 70 - title.length))}`);
}

function failOne(what: string): void {
  failed++;
  failures.push(what);
}

function run(command: string, args: string[]): Promise<number> {
  return new Promise((resolveRun) => {
    const child = spawn(command, args, { cwd: root, stdio: 'inherit' });
    child.on('error', () => resolveRun(127));
    child.on('exit', (code, signal) => resolveRun(code ?? (signal ? 128 : 1)));
  });
}

function findTests(paths: string[]): string[] {
  const found: string[] = [];
  const walk = (path: string): void => {
    const stat = statSync(path);
    if (stat.isDirectory()) {
      for (const entry of readdirSync(path)) {
        if (entry !== 'node_modules' && !entry.startsWith('.')) walk(join(path, entry));
      }
    } else if (path.endsWith('.test.ts')) {
      found.push(relative(root, path).split('\\').join('/'));
    }
  };
  for (const p of paths) {
    const abs = resolve(root, p);
    if (existsSync(abs)) walk(abs);
    else failOne(`${p}: no such test file or folder`);
  }
  return [...new Set(found)].sort();
}

async function lint(): Promise<void> {
  section('lint: npm run lint');
  const t0 = Date.now();
  const code = await run('npm', ['run', '--silent', 'lint']);
  if (code === 0) console.log(`lint passed in ${Date.now() - t0} ms`);
  else {
    console.log(`\n*** LINT FAILED (exit ${code}); counted as 1 failed test, running the suites anyway ***`);
    failOne('lint: npm run lint failed (tsc --noEmit or the import-cycle check)');
  }
}

async function startServices(env: NodeJS.ProcessEnv): Promise<void> {
  section('services');
  const jobs: Promise<void>[] = [];
  if (env.TICKS_TEST_REDIS_URL) console.log(`Redis: using TICKS_TEST_REDIS_URL=${env.TICKS_TEST_REDIS_URL}`);
  else {
    jobs.push(
      startRedis().then(
        (redis) => {
          started.push({ name: 'Redis', pid: redis.pid, stop: redis.stop });
          env.TICKS_TEST_REDIS_URL = redis.url;
          console.log(`Redis: started at ${redis.url} (pid ${redis.pid})`);
        },
        (err: unknown) => {
          env[REDIS_UNAVAILABLE_VAR] = firstLine(err);
          console.error(`Redis: could not start: ${(err as Error).message}`);
          failOne(`services: ${firstLine(err)}`);
        },
      ),
    );
  }
  if (env.TICKS_TEST_CASSANDRA_CONTACT_POINTS) {
    console.log(`Cassandra: using TICKS_TEST_CASSANDRA_CONTACT_POINTS=${env.TICKS_TEST_CASSANDRA_CONTACT_POINTS}`);
  } else {
    jobs.push(
      startCassandra().then(
        (cassandra) => {
          started.push({ name: 'Cassandra', pid: cassandra.pid, stop: cassandra.stop });
          env.TICKS_TEST_CASSANDRA_CONTACT_POINTS = cassandra.contactPoints.join(',');
          env.TICKS_TEST_CASSANDRA_DC = cassandra.localDataCenter;
          console.log(
            `Cassandra: started at ${cassandra.contactPoints.join(',')} (pid ${cassandra.pid}) in ${cassandra.startMs} ms`,
          );
        },
        (err: unknown) => {
          env[CASSANDRA_UNAVAILABLE_VAR] = firstLine(err);
          console.error(`Cassandra: could not start: ${(err as Error).message}`);
          failOne(`services: ${firstLine(err)}`);
        },
      ),
    );
  }
  await Promise.all(jobs);
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0] ?? '';
}

async function runTests(files: string[], env: NodeJS.ProcessEnv): Promise<void> {
  section(`tests: ${files.length} file(s), ${TAP_JOBS} at a time`);
  if (files.length === 0) {
    failOne('tests: no *.test.ts files found');
    return;
  }
  const tapBin = join(root, 'node_modules', 'tap', 'dist', 'esm', 'run.mjs');
  const counter = new TapCounter();
  const code = await new Promise<number>((resolveTap) => {
    // stdout is TAP (ours to count); the test processes' stderr goes straight to the console.
    // Tied to this process: if the runner is killed, tap gets SIGTERM and stops its test files.
    const child = spawnTied(process.execPath, [tapBin, '--reporter=tap', `--jobs=${TAP_JOBS}`, ...files], {
      cwd: root,
      env,
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    tapChild = child;
    child.stdout?.setEncoding('utf8');
    child.stdout?.on('data', (chunk: string) => {
      process.stdout.write(chunk);
      counter.feed(chunk);
    });
    child.on('error', (err) => {
      console.error(`tap did not start: ${err.message}`);
      resolveTap(127);
    });
    child.on('close', (exitCode, signal) => resolveTap(exitCode ?? (signal ? 128 : 1)));
  });
  tapChild = undefined;
  const totals = counter.finish(files);
  passed += totals.passed;
  skipped += totals.skipped;
  todo += totals.todo;
  for (const f of totals.failures) failOne(f);
  // The counter should always agree with tap; if tap failed and nothing explains it, say so.
  if (code !== 0 && totals.failed === 0) failOne(`tap: exited with code ${code} and no failed test`);
}

async function stopServices(): Promise<void> {
  if (started.length === 0) return;
  section('stopping services');
  await Promise.all(
    started.splice(0).map(async (service) => {
      const t0 = Date.now();
      try {
        await service.stop();
        console.log(`${service.name}: stopped in ${Date.now() - t0} ms`);
      } catch (err) {
        console.error(`${service.name}: stop failed: ${(err as Error).message}`);
        failOne(`services: ${service.name} did not stop cleanly`);
      }
    }),
  );
}

function onSignal(signal: NodeJS.Signals): void {
  if (interrupted) return;
  interrupted = signal;
  console.error(`\nreceived ${signal}: stopping the tests and the services`);
  tapChild?.kill('SIGTERM');
}

async function main(): Promise<number> {
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  // Last resort if this process dies on an exception: the servers also get SIGTERM from the kernel
  // (setpriv --pdeathsig), and this covers machines without setpriv.
  process.on('exit', () => {
    for (const service of started) {
      try {
        process.kill(service.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  });

  const requested = process.argv.slice(2);
  const env: NodeJS.ProcessEnv = { ...process.env, TICKS_TEST_RUN_ID: newRunId() };
  console.log(`ticks test run ${env.TICKS_TEST_RUN_ID}`);
  try {
    await lint();
    if (!interrupted) await startServices(env);
    const files = findTests(requested.length > 0 ? requested : SUITES.filter((s) => existsSync(join(root, s))));
    if (!interrupted) await runTests(files, env);
  } catch (err) {
    console.error(err);
    failOne(`test/run.ts: ${firstLine(err)}`);
  } finally {
    await stopServices();
  }
  if (interrupted) failOne(`interrupted by ${interrupted}`);

  section('summary');
  if (failures.length > 0) {
    console.log('failed:');
    for (const f of failures) console.log(`  - ${f}`);
  }
  if (skipped > 0 || todo > 0) console.log(`${skipped} skipped, ${todo} todo`);
  console.log(`total time ${((Date.now() - startedAt) / 1000).toFixed(1)} s`);
  console.log(`${passed} passed, ${failed} failed`);
  return failed === 0 ? 0 : 1;
}

// Exit explicitly: a stray handle (a driver socket, a timer) must not keep a finished run alive.
process.exit(await main());
