/**
 * What the service starters share: installing a missing Debian package, picking free loopback
 * ports, launching a server so that it cannot outlive the test run, and stopping it by its PID.
 */
import { spawn, spawnSync, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export function commandExists(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' }).status === 0;
}

let aptUpdated = false;

/**
 * Installs Debian packages. A fresh machine of another kind may lack redis-server, java or maven;
 * the test command installs them itself rather than relying on what someone left on a machine.
 */
export function aptInstall(packages: string[], why: string): void {
  if (process.getuid?.() !== 0) {
    throw new Error(`${why}: install ${packages.join(' ')} (apt-get install -y ${packages.join(' ')}) and re-run`);
  }
  console.log(`[services] ${why}: apt-get install -y ${packages.join(' ')}`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  if (!aptUpdated) {
    const update = spawnSync('apt-get', ['update', '-q'], { stdio: ['ignore', 'ignore', 'inherit'], env });
    if (update.status !== 0) throw new Error(`${why}: apt-get update failed (exit ${update.status})`);
    aptUpdated = true;
  }
  const install = spawnSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...packages], {
    stdio: ['ignore', 'ignore', 'inherit'],
    env,
  });
  if (install.status !== 0) {
    throw new Error(`${why}: apt-get install ${packages.join(' ')} failed (exit ${install.status})`);
  }
}

/**
 * Free loopback ports, all distinct (every listener stays open until all are chosen). Another
 * process can still take one before the server binds it; starters retry on "address in use".
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<ReturnType<typeof createServer>>((resolve, reject) => {
          const server = createServer();
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => resolve(server));
        }),
    ),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

const ipcLockDrop = ['--inh-caps=-ipc_lock', '--bounding-set=-ipc_lock'];
let setprivPrefix: string[] | undefined;

/**
 * `setpriv` replaces itself with the program (exec), so the PID we hold is the program's own PID,
 * never a wrapper's. It adds two things:
 * - `--pdeathsig TERM`: the kernel sends SIGTERM to the child when this Node process dies, even
 *   by SIGKILL, so no orphan Redis, Cassandra or tap outlives a crashed test run;
 * - as root, dropping CAP_IPC_LOCK: Cassandra otherwise mlockall()s its whole heap, which doubles
 *   its RSS (CASSANDRA.md).
 * The exact flags are tried once on `true`, since a container may refuse capability changes.
 */
function launchPrefix(): string[] {
  if (setprivPrefix) return setprivPrefix;
  setprivPrefix = [];
  if (commandExists('setpriv')) {
    const candidates = process.getuid?.() === 0 ? [[...ipcLockDrop, '--pdeathsig', 'TERM'], ['--pdeathsig', 'TERM']] : [['--pdeathsig', 'TERM']];
    for (const flags of candidates) {
      if (spawnSync('setpriv', [...flags, '--', 'true'], { stdio: 'ignore' }).status === 0) {
        setprivPrefix = ['setpriv', ...flags, '--'];
        break;
      }
    }
  }
  return setprivPrefix;
}

/**
 * Spawns a process that must not outlive this one: a server, or the test runner itself. Must be
 * called from the main thread: the parent-death signal follows the thread that forked the child.
 */
export function spawnTied(command: string, args: string[], options: SpawnOptions): ChildProcess {
  const [wrapper, ...wrapperArgs] = launchPrefix();
  const child =
    wrapper === undefined ? spawn(command, args, options) : spawn(wrapper, [...wrapperArgs, command, ...args], options);
  // An 'error' event (for example ENOENT) would otherwise be thrown as uncaught.
  child.on('error', () => {});
  return child;
}

export function isRunning(child: ChildProcess): boolean {
  return child.exitCode === null && child.signalCode === null;
}

function exited(child: ChildProcess): Promise<void> {
  if (!isRunning(child)) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/**
 * SIGTERM to the server's own PID, then wait until /proc/<pid> is gone: after a kill the main
 * thread can linger while other threads still hold ports (CASSANDRA.md). SIGKILL after `graceMs`.
 * Returns how the process ended.
 */
export async function stopServer(
  child: ChildProcess,
  graceMs: number,
): Promise<{ killed: boolean; code: number | null; signal: NodeJS.Signals | null }> {
  const pid = child.pid;
  let killed = false;
  if (pid !== undefined && isRunning(child)) {
    const gone = exited(child);
    child.kill('SIGTERM');
    const deadline = Date.now() + graceMs;
    while (isRunning(child) && Date.now() < deadline) await Promise.race([gone, sleep(50)]);
    if (isRunning(child)) {
      killed = true;
      child.kill('SIGKILL');
    }
  }
  await exited(child);
  // Node reaps the child before 'exit', so this normally finds nothing; bounded in case the PID
  // was already reused by an unrelated process.
  const procDeadline = Date.now() + 5_000;
  while (pid !== undefined && existsSync(`/proc/${pid}`) && Date.now() < procDeadline) await sleep(20);
  return { killed, code: child.exitCode, signal: child.signalCode };
}

/** Resolves when the process exits; used to fail fast while waiting for a server to be ready. */
export function exitPromise(child: ChildProcess): Promise<string> {
  return exited(child).then(() =>
    child.signalCode !== null ? `killed by ${child.signalCode}` : `exited with code ${child.exitCode}`,
  );
}
