/**
 * Processes a benchmark launches: ticks nodes (`node --import tsx src/main.ts`, configured by
 * TICKS_* variables) and load-generator children (with an IPC channel), each optionally pinned to
 * one CPU with `taskset -c`. Every child is tied to this process (parent-death signal, see
 * test/support/services/process.ts), so an interrupted benchmark leaves nothing running.
 */
import type { ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { commandExists, spawnTied } from '../../test/support/services/process.js';

export const repoRoot = fileURLToPath(new URL('../../', import.meta.url));

/** `taskset -c <cpu>` before the command, when a CPU is given and taskset exists. */
function pinned(cpu: number | null, command: string, args: string[]): [string, string[]] {
  if (cpu === null) return [command, args];
  if (!commandExists('taskset')) throw new Error('taskset is missing (apt-get install util-linux): the benchmark pins processes to CPUs');
  return ['taskset', ['-c', String(cpu), command, ...args]];
}

/** Pins every thread of a running process (e.g. a JVM started elsewhere) to `cpu`. */
export async function pinProcess(pid: number, cpu: number): Promise<void> {
  const { spawnSync } = await import('node:child_process');
  const r = spawnSync('taskset', ['-a', '-p', '-c', String(cpu), String(pid)], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`taskset -a -p -c ${cpu} ${pid} failed: ${r.stderr.trim()}`);
}

/**
 * How a benchmark runs the node: `tsx` (src/main.ts through tsx, as `npm start` does) or `build`
 * (the same sources compiled by tsc into .cache/bench-dist, run by plain node). tsx compiles with
 * esbuild's keepNames, which wraps every function expression in a `__name(fn, "...")` call that
 * redefines the function's `name`; that costs time per closure created and leaves each such closure
 * with a dictionary-mode property store, so the two can differ in CPU and memory.
 */
export type NodeRuntime = 'tsx' | 'build';

export const BUILD_DIR = join(repoRoot, '.cache', 'bench-dist');

/** Compiles src/ with tsconfig.build.json into BUILD_DIR (never into dist/, which is not ours). */
export async function buildForBench(log: (line: string) => void): Promise<void> {
  const { spawnSync } = await import('node:child_process');
  const started = Date.now();
  const r = spawnSync(process.execPath, [join(repoRoot, 'node_modules/typescript/bin/tsc'), '-p', join(repoRoot, 'tsconfig.build.json'), '--outDir', BUILD_DIR], {
    cwd: repoRoot,
    encoding: 'utf8',
  });
  if (r.status !== 0) throw new Error(`tsc build for the benchmark failed:\n${r.stdout}${r.stderr}`);
  // Runtime files tsc does not emit (Lua scripts), as `npm run build` copies them into dist/.
  const { cpSync, readdirSync, statSync } = await import('node:fs');
  const { relative } = await import('node:path');
  const srcDir = join(repoRoot, 'src');
  const copyAssets = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) copyAssets(p);
      else if (name.endsWith('.lua')) cpSync(p, join(BUILD_DIR, relative(srcDir, p)));
    }
  };
  copyAssets(srcDir);
  log(`(compiled src/ with tsc into ${BUILD_DIR} in ${Date.now() - started} ms)`);
}

export interface TicksNode {
  pid: number;
  child: ChildProcess;
  logFile: string;
  /** Last lines of the node's output (for error messages). */
  tail(lines?: number): string;
  /** SIGTERM (drain), then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean }>;
}

export interface TicksNodeOptions {
  /** Folder for the config file and the log. */
  dir: string;
  name: string;
  /** TICKS_* variables (the config file is an empty `{}`, so these and the defaults are all). */
  env: Record<string, string>;
  cpu: number | null;
  /** Extra node flags, e.g. --cpu-prof. */
  nodeArgs?: string[];
  /** Default tsx; `build` needs buildForBench() first. */
  runtime?: NodeRuntime;
  readyTimeoutMs?: number;
}

/** Starts a node and resolves once it printed its banner (every shard accepting). */
export async function startTicksNode(o: TicksNodeOptions): Promise<TicksNode> {
  const configFile = join(o.dir, `${o.name}.config.json`);
  writeFileSync(configFile, '{}\n');
  const logFile = join(o.dir, `${o.name}.log`);
  const log = createWriteStream(logFile);
  const entry = o.runtime === 'build' ? [join(BUILD_DIR, 'main.js')] : ['--import', 'tsx', join(repoRoot, 'src/main.ts')];
  const [cmd, args] = pinned(o.cpu, process.execPath, [...(o.nodeArgs ?? []), ...entry]);
  // Only TICKS_* from `o.env`: a stray TICKS_* in the caller's environment must not change the run.
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TICKS_')));
  const child = spawnTied(cmd, args, {
    cwd: repoRoot,
    env: { ...env, ...o.env, TICKS_CONFIG: configFile },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let ready = false;
  const onData = (chunk: Buffer): void => {
    log.write(chunk);
    if (!ready) out = (out + chunk.toString('utf8')).slice(-20_000);
  };
  child.stdout!.on('data', onData);
  child.stderr!.on('data', onData);
  const tail = (lines = 30): string => {
    const text = existsSync(logFile) ? readFileSync(logFile, 'utf8') : out;
    return text.trim().split('\n').slice(-lines).join('\n');
  };
  const deadline = Date.now() + (o.readyTimeoutMs ?? 60_000);
  while (!/shards? listening on/.test(out)) {
    if (child.exitCode !== null || child.signalCode !== null) {
      throw new Error(`node ${o.name} exited during start (${child.exitCode ?? child.signalCode}):\n${tail()}`);
    }
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`node ${o.name} not ready within ${o.readyTimeoutMs ?? 60_000} ms:\n${tail()}`);
    }
    await sleep(50);
  }
  ready = true;
  out = '';
  const stop = async (graceMs = 20_000): Promise<{ code: number | null; signal: NodeJS.Signals | null; killed: boolean }> => {
    const exited = new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    child.kill('SIGTERM');
    let killed = false;
    const timer = setTimeout(() => {
      killed = true;
      child.kill('SIGKILL');
    }, graceMs);
    await exited;
    clearTimeout(timer);
    // The main thread can exit while the kernel still tears the process down: wait for /proc.
    for (let i = 0; i < 100 && child.pid !== undefined && existsSync(`/proc/${child.pid}`); i++) await sleep(20);
    await new Promise<void>((resolve) => log.end(resolve));
    return { code: child.exitCode, signal: child.signalCode, killed };
  };
  return { pid: child.pid!, child, logFile, tail, stop };
}

/** Launches `script` (a .ts file) as a child with an IPC channel, optionally pinned. */
export function startChild(script: string, cpu: number | null, nodeArgs: string[] = []): ChildProcess {
  const [cmd, args] = pinned(cpu, process.execPath, [...nodeArgs, '--import', 'tsx', script]);
  return spawnTied(cmd, args, { cwd: repoRoot, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
}

/** The next IPC message from `child` that satisfies `pred`; rejects when the child exits first. */
export function nextMessage<T>(child: ChildProcess, pred: (m: unknown) => m is T, timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMessage = (m: unknown): void => {
      if (!pred(m)) return;
      cleanup();
      resolve(m);
    };
    const onExit = (code: number | null, signal: string | null): void => {
      cleanup();
      reject(new Error(`child ${child.pid} exited (${code ?? signal}) before answering`));
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`child ${child.pid} did not answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const cleanup = (): void => {
      clearTimeout(timer);
      child.off('message', onMessage);
      child.off('exit', onExit);
    };
    child.on('message', onMessage);
    child.on('exit', onExit);
  });
}

/** Ends a child: asks nicely (disconnecting IPC), then SIGKILL after `graceMs`. */
export async function endChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  if (child.connected) child.disconnect();
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(timer);
}
