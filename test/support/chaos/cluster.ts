/**
 * K ticks nodes as real OS processes (test/support/chaos/node-entry.ts, tied to this process with
 * spawnTied), configured only through TICKS_* variables, each on its own port, on a store and
 * (in cluster mode) a Redis that the chaos test started for itself.
 *
 * Faults a node can take: `kill9()` (no drain, no goodbye), `crashShard(i)` (the test hook of
 * src/node.ts, asked for over stdin), `stop()` (SIGTERM drain) and `start()` again on the same port.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdirSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import { configLeaves } from '../../../src/config/load.js';
import { exitPromise, freePorts, isRunning, spawnTied, stopServer } from '../services/process.js';

const repoRoot = fileURLToPath(new URL('../../../', import.meta.url));
const entry = fileURLToPath(new URL('./node-entry.ts', import.meta.url));
const READY_TIMEOUT_MS = 90_000;

export const CHAOS_SECRET = 'chaos-secret-'.padEnd(48, 'x');

export type ChaosMode = 'single' | 'cluster';

export interface ChaosClusterOptions {
  nodes: number;
  shards: number;
  mode: ChaosMode;
  cassandra: { contactPoints: string[]; localDataCenter: string };
  keyspace: string;
  /** Cluster mode: the private Redis, and the key prefix of this cluster (one per run). */
  redisUrl?: string;
  keyPrefix?: string;
  /** Folder for the nodes' logs and data. */
  dir: string;
  /** More TICKS_* variables for every node (they win over the defaults here). */
  env?: Record<string, string>;
}

/**
 * The environment variables that put a node into cluster mode on `redisUrl` with its keys under
 * `keyPrefix`, or a sentence saying why this checkout cannot (no `cluster.redisUrl` in
 * src/config/schema.ts). Read from the schema at run time.
 */
export function clusterEnv(redisUrl: string, keyPrefix: string): { env: Record<string, string> } | { missing: string } {
  const leaves = new Set(configLeaves().map((l) => l.envName));
  if (!leaves.has('TICKS_CLUSTER_REDIS_URL')) {
    return { missing: 'src/config/schema.ts has no cluster.redisUrl: the node cannot use Redis for its directory, bus and sessions' };
  }
  const env: Record<string, string> = { TICKS_CLUSTER_REDIS_URL: redisUrl };
  if (leaves.has('TICKS_CLUSTER_KEY_PREFIX')) env.TICKS_CLUSTER_KEY_PREFIX = keyPrefix;
  return { env };
}

/**
 * SIGSTOP with a safety net: a frozen process ignores the SIGTERM that its parent-death signal
 * sends until it is continued, so if this test process died mid-pause, the process would stay
 * frozen forever. A detached `sleep; kill -CONT` (it ends by itself) continues it after
 * `maxMs` whatever happens here; the caller continues it earlier in the normal case.
 */
export function freeze(pid: number, maxMs: number): void {
  const watchdog = spawn('sh', ['-c', `sleep ${Math.ceil(maxMs / 1000) + 1}; kill -CONT ${pid} 2>/dev/null`], { detached: true, stdio: 'ignore' });
  watchdog.on('error', () => {});
  watchdog.unref();
  process.kill(pid, 'SIGSTOP');
}

export class ChaosNode {
  #child: ChildProcess | undefined;
  readonly logFile: string;
  starts = 0;
  nodeId: string;

  constructor(
    readonly index: number,
    readonly port: number,
    readonly env: Record<string, string>,
    dir: string,
  ) {
    this.nodeId = env.TICKS_NODE_ID!;
    this.logFile = join(dir, `node-${index}.log`);
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  get alive(): boolean {
    return this.#child !== undefined && isRunning(this.#child);
  }

  get pid(): number | undefined {
    return this.#child?.pid;
  }

  async start(): Promise<void> {
    this.starts++;
    appendFileSync(this.logFile, `--- start ${this.starts} at ${new Date().toISOString()}\n`);
    const child = spawnTied(process.execPath, ['--import', 'tsx', entry], {
      cwd: repoRoot,
      env: this.env,
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.#child = child;
    const ready = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`node ${this.index} not ready within ${READY_TIMEOUT_MS} ms`)), READY_TIMEOUT_MS);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        appendFileSync(this.logFile, line + '\n');
        if (line.startsWith('CHAOS-READY ')) {
          clearTimeout(timer);
          resolve();
        }
      });
      createInterface({ input: child.stderr! }).on('line', (line) => appendFileSync(this.logFile, `[stderr] ${line}\n`));
      void exitPromise(child).then((how) => {
        clearTimeout(timer);
        appendFileSync(this.logFile, `--- node process ${how}\n`);
        reject(new Error(`node ${this.index} ${how} before it was ready`));
      });
    });
    // stdin errors (EPIPE after a kill) must not crash the harness.
    child.stdin!.on('error', () => {});
    try {
      await ready;
    } catch (err) {
      throw new Error(`${(err as Error).message}\n--- last lines of ${this.logFile}:\n${this.tail(30)}`);
    }
  }

  /** kill -9: the process ends with no drain; its sockets are reset by the kernel. */
  async kill9(): Promise<void> {
    const child = this.#child;
    if (child === undefined || !isRunning(child)) return;
    const gone = exitPromise(child);
    child.kill('SIGKILL');
    await gone;
  }

  /** Crashes shard thread `index` (src/node.ts test hook); the supervisor restarts it. */
  crashShard(index: number): void {
    if (!this.alive) throw new Error(`node ${this.index} is not running`);
    this.#child!.stdin!.write(`crash ${index}\n`);
  }

  /** Freezes the whole process (a long GC pause, a stalled VM): SIGSTOP, for at most `maxMs`. */
  pause(maxMs: number): void {
    if (this.alive) freeze(this.#child!.pid!, maxMs);
  }

  resume(): void {
    if (this.alive) process.kill(this.#child!.pid!, 'SIGCONT');
  }

  /** SIGTERM drain; SIGKILL after 20 s. */
  async stop(): Promise<void> {
    if (this.#child === undefined) return;
    this.resume();
    await stopServer(this.#child, 20_000);
  }

  /** HTTP status of /readyz (0 when it does not answer within 3 s). */
  async readyStatus(): Promise<number> {
    try {
      const res = await fetch(`http://127.0.0.1:${this.port}/readyz`, { signal: AbortSignal.timeout(3_000) });
      await res.text();
      return res.status;
    } catch {
      return 0;
    }
  }

  /** The node's merged /metrics text, or undefined when it does not answer within 5 s. */
  async metrics(): Promise<string | undefined> {
    if (!this.alive) return undefined;
    try {
      const res = await fetch(`http://127.0.0.1:${this.port}/metrics`, { signal: AbortSignal.timeout(5_000) });
      return res.ok ? await res.text() : undefined;
    } catch {
      return undefined;
    }
  }

  tail(lines: number): string {
    return existsSync(this.logFile) ? readFileSync(this.logFile, 'utf8').trim().split('\n').slice(-lines).join('\n') : '(no log)';
  }
}

export class ChaosCluster {
  private constructor(
    readonly o: ChaosClusterOptions,
    readonly nodes: ChaosNode[],
  ) {}

  static async start(o: ChaosClusterOptions): Promise<ChaosCluster> {
    if (o.mode === 'cluster' && o.redisUrl === undefined) throw new Error('cluster mode needs a redisUrl');
    let clusterVars: Record<string, string> = {};
    if (o.mode === 'cluster') {
      const c = clusterEnv(o.redisUrl!, o.keyPrefix ?? 'chaos:');
      if ('missing' in c) throw new Error(`cluster mode is not available: ${c.missing}`);
      clusterVars = c.env;
    }
    mkdirSync(o.dir, { recursive: true });
    const emptyConfig = join(o.dir, 'empty-config.json');
    writeFileSync(emptyConfig, '{}\n');
    // The parent's TICKS_* (test services, a developer's settings) must not leak into the nodes.
    const base: Record<string, string> = {};
    for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TICKS_') && v !== undefined) base[k] = v;
    const ports = await freePorts(o.nodes);
    const nodes = ports.map((port, i) => {
      const dataDir = join(o.dir, `data-${i}`);
      mkdirSync(dataDir, { recursive: true });
      const env: Record<string, string> = {
        ...base,
        TICKS_CONFIG: emptyConfig,
        TICKS_NODE_ID: `chaos-${i}`,
        TICKS_LOG_LEVEL: 'warn',
        TICKS_DATA_DIR: dataDir,
        TICKS_STORE_ENGINE: 'scylla',
        TICKS_STORE_SCYLLA_CONTACT_POINTS: o.cassandra.contactPoints.join(','),
        TICKS_STORE_SCYLLA_LOCAL_DATA_CENTER: o.cassandra.localDataCenter,
        TICKS_STORE_SCYLLA_KEYSPACE: o.keyspace,
        // Small buckets: traffic crosses partition boundaries (fencing is per partition).
        TICKS_STORE_BUCKET_SIZE: '50',
        TICKS_GATEWAY_HOST: '127.0.0.1',
        TICKS_GATEWAY_PORT: String(port),
        TICKS_GATEWAY_SHARDS: String(o.shards),
        // The test measures delivery under faults, not the per-connection rate limit.
        TICKS_GATEWAY_FRAMES_PER_SECOND: '1000',
        TICKS_GATEWAY_DRAIN_TIMEOUT_MS: '5000',
        TICKS_AUTH_ALGORITHMS: 'HS256',
        TICKS_AUTH_HS256_SECRET: CHAOS_SECRET,
        // Redeliver quickly, so a lost live delivery shows up within the test's patience.
        TICKS_ACTORS_DELIVERY_RETRY_MS: '500',
        ...clusterVars,
        ...o.env,
      };
      return new ChaosNode(i, port, env, o.dir);
    });
    const cluster = new ChaosCluster(o, nodes);
    try {
      // The first node alone (it may create the keyspace and its tables, and concurrent first
      // starts would race on that), then the others together.
      await nodes[0]!.start();
      await Promise.all(nodes.slice(1).map((n) => n.start()));
    } catch (err) {
      await cluster.stop();
      throw err;
    }
    return cluster;
  }

  urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((n) => n.stop()));
  }
}
