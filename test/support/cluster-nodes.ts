/**
 * Cluster harness: ticks nodes as real OS processes (`node --import tsx src/main.ts`) configured by
 * environment variables only, sharing the test Redis (cluster mode) and one Cassandra keyspace, so a
 * test can SIGTERM (drain) or SIGKILL a node. `clusterNodeEnv` is the exact environment a node of a
 * cluster needs. (The chaos harness, test/support/chaos/cluster.ts, builds its own: it runs on private services.)
 *
 * Set TICKS_E2E_LOG=info (or debug) to see the nodes' logs on stderr.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { mintHs256Token } from '../../src/auth/mint.js';
import { configSchema } from '../../src/config/schema.js';
import { E2eClient } from './e2e-client.js';
import { requireCassandra, requireRedisUrl, uniqueKeyspace } from './env.js';

export const CLUSTER_SECRET = 'cluster-secret-'.padEnd(48, 'x');
const ROOT = fileURLToPath(new URL('../..', import.meta.url));

export interface ClusterSpec {
  /** Redis key prefix shared by the nodes of this cluster (unique per test). */
  keyPrefix: string;
  keyspace: string;
  leaseMs: number;
  heartbeatMs: number;
  sendTimeoutMs: number;
}

/** A cluster of one test file: unique Redis prefix and keyspace, short leases. */
export function clusterSpec(suffix: string, overrides: Partial<ClusterSpec> = {}): ClusterSpec {
  return {
    keyPrefix: `ticks:test:${uniqueKeyspace(suffix)}:`,
    keyspace: uniqueKeyspace(suffix),
    leaseMs: 1500,
    heartbeatMs: 250,
    sendTimeoutMs: 4000,
    ...overrides,
  };
}

/** The environment of one node process of `spec` (besides PATH and the like). */
export function clusterNodeEnv(spec: ClusterSpec, nodeId: string, port: number, dataDir: string): Record<string, string> {
  const cassandra = requireCassandra();
  return {
    TICKS_NODE_ID: nodeId,
    TICKS_DATA_DIR: dataDir,
    TICKS_LOG_LEVEL: process.env.TICKS_E2E_LOG ?? 'info',
    TICKS_GATEWAY_HOST: '127.0.0.1',
    TICKS_GATEWAY_PORT: String(port),
    TICKS_GATEWAY_SHARDS: '2',
    TICKS_GATEWAY_DRAIN_TIMEOUT_MS: '5000',
    TICKS_AUTH_HS256_SECRET: CLUSTER_SECRET,
    TICKS_AUTH_ALGORITHMS: 'HS256',
    TICKS_STORE_ENGINE: 'scylla',
    TICKS_STORE_BUCKET_SIZE: '8',
    TICKS_STORE_SCYLLA_CONTACT_POINTS: cassandra.contactPoints.join(','),
    TICKS_STORE_SCYLLA_LOCAL_DATA_CENTER: cassandra.localDataCenter,
    TICKS_STORE_SCYLLA_KEYSPACE: spec.keyspace,
    TICKS_STORE_SCYLLA_REQUEST_TIMEOUT_MS: '20000',
    TICKS_STORE_SCYLLA_CONNECT_TIMEOUT_MS: '10000',
    TICKS_CLUSTER_REDIS_URL: requireRedisUrl(),
    TICKS_CLUSTER_KEY_PREFIX: spec.keyPrefix,
    TICKS_CLUSTER_LEASE_MS: String(spec.leaseMs),
    TICKS_CLUSTER_HEARTBEAT_MS: String(spec.heartbeatMs),
    TICKS_CLUSTER_SEND_TIMEOUT_MS: String(spec.sendTimeoutMs),
    TICKS_CLUSTER_SESSION_TTL_MS: String(spec.leaseMs * 4),
  };
}

export class ClusterNode {
  exitCode: number | null = null;
  exitSignal: NodeJS.Signals | null = null;
  readonly exited: Promise<void>;
  readonly clients: E2eClient[] = [];
  stderr = '';
  /** The tail of the node's log (JSON lines on stdout), for failure messages. */
  stdout = '';

  constructor(
    readonly id: string,
    readonly port: number,
    readonly proc: ChildProcess,
    private readonly dir: string,
  ) {
    this.exited = new Promise((resolve) =>
      proc.once('exit', (code, signal) => {
        this.exitCode = code;
        this.exitSignal = signal;
        resolve();
      }),
    );
    proc.stdout?.on('data', (b: Buffer) => {
      this.stdout = (this.stdout + b.toString()).slice(-4000);
      if (process.env.TICKS_E2E_LOG) process.stderr.write(`[${id}] ${b.toString()}`);
    });
    proc.stderr?.on('data', (b: Buffer) => {
      this.stderr = (this.stderr + b.toString()).slice(-8000);
      if (process.env.TICKS_E2E_LOG) process.stderr.write(`[${id}] ${b.toString()}`);
    });
  }

  get url(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  get running(): boolean {
    return this.exitCode === null && this.exitSignal === null;
  }

  /** A recording SDK client of (user, device) on this node; closed at teardown. */
  client(user: string, device: string): E2eClient {
    const settings = configSchema.parse({}).auth;
    const c = new E2eClient({
      url: this.url,
      token: () => mintHs256Token({ secret: CLUSTER_SECRET, user, device, ttlS: 3600, settings }),
      label: `${user}/${device}@${this.id}`,
    });
    this.clients.push(c);
    return c;
  }

  async metrics(): Promise<string> {
    const res = await fetch(`http://127.0.0.1:${this.port}/metrics`);
    return res.text();
  }

  /** SIGTERM (drain); resolves with the exit code. */
  async term(): Promise<number | null> {
    if (this.running) this.proc.kill('SIGTERM');
    await this.exited;
    return this.exitCode;
  }

  async kill9(): Promise<void> {
    if (this.running) this.proc.kill('SIGKILL');
    await this.exited;
  }

  async close(): Promise<void> {
    for (const c of this.clients) c.close();
    await this.kill9();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * Starts a node process and waits until /readyz answers 200 (up to 180 s: a full `npm test` runs
 * many files at once on two cores, and the first node of a keyspace creates its tables).
 */
export async function startClusterNode(
  t: { teardown(fn: () => unknown): void },
  spec: ClusterSpec,
  id: string,
  /** More TICKS_* settings of this node (e.g. push providers). */
  extraEnv: Record<string, string> = {},
): Promise<ClusterNode> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'ticks-cluster-'));
  const proc = spawn(process.execPath, ['--import', 'tsx', 'src/main.ts'], {
    cwd: ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? dir, ...clusterNodeEnv(spec, id, port, dir), ...extraEnv },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const node = new ClusterNode(id, port, proc, dir);
  t.teardown(() => node.close());
  const deadline = Date.now() + 180_000;
  for (;;) {
    if (!node.running) throw new Error(`node ${id} exited during start (code ${node.exitCode}, signal ${node.exitSignal}):\n${node.stderr}`);
    try {
      const res = await fetch(`http://127.0.0.1:${port}/readyz`);
      if (res.status === 200) return node;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`node ${id} not ready after 180 s:\n${node.stderr}\nlog tail:\n${node.stdout}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}
