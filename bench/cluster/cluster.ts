/**
 * A 3-node ticks cluster for bench/cluster: node processes (bench/lib/processes.ts startTicksNode,
 * configured only by TICKS_* variables) on a Redis and a Cassandra that the benchmark started for
 * itself (test/support/services), so killing a node, or anything else a run does, never touches the
 * shared servers of the session. Each run gets a fresh Redis key prefix and a fresh keyspace.
 *
 * Engines: `scylla` (Cassandra 5 through the scylla store) is the real case: a cluster needs a store
 * that every node reads and writes. `embedded` gives each node its own lmdb; it is only meaningful
 * for the delivery benchmark (conversations stay with the node that first registered them, and
 * nothing fails over), where it shows the cost of the cluster path without Cassandra's CPU.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import cassandra from 'cassandra-driver';
import { startCassandra, type CassandraService } from '../../test/support/services/cassandra.js';
import { freePorts } from '../../test/support/services/process.js';
import { startRedis, type RedisService } from '../../test/support/services/redis.js';
import { pinProcess, startTicksNode, type NodeRuntime, type TicksNode } from '../lib/processes.js';

export type Engine = 'scylla' | 'embedded';

export const SECRET = 'bench-cluster-secret-'.padEnd(48, 'x');

export interface Services {
  redis: RedisService;
  cassandra: CassandraService | null;
  contactPoints: string[];
  stop(): Promise<void>;
}

/**
 * Private Redis and (for scylla) Cassandra, pinned to `cpu` when given. TICKS_BENCH_CASSANDRA_CONTACT_POINTS
 * points at an existing Cassandra instead (development only: its CPU is then not measured).
 */
export async function startServices(engine: Engine, cpu: number | null, log: (line: string) => void): Promise<Services> {
  const redis = await startRedis();
  if (cpu !== null) await pinProcess(redis.pid, cpu);
  log(`(started Redis ${redis.url}, pid ${redis.pid}${cpu !== null ? `, pinned to CPU ${cpu}` : ''})`);
  let cass: CassandraService | null = null;
  let contactPoints: string[] = [];
  if (engine === 'scylla') {
    const external = process.env.TICKS_BENCH_CASSANDRA_CONTACT_POINTS?.split(',').filter(Boolean);
    if (external && external.length > 0) {
      contactPoints = external;
      log(`(Cassandra at ${contactPoints.join(',')}, not started or pinned here; its CPU is not measured)`);
    } else {
      try {
        cass = await startCassandra();
      } catch (err) {
        await redis.stop();
        throw err;
      }
      contactPoints = cass.contactPoints;
      if (cpu !== null) await pinProcess(cass.pid, cpu);
      log(`(started Cassandra ${contactPoints.join(',')} in ${cass.startMs} ms, pid ${cass.pid}${cpu !== null ? `, pinned to CPU ${cpu}` : ''})`);
    }
  }
  return {
    redis,
    cassandra: cass,
    contactPoints,
    stop: async () => {
      await cass?.stop();
      await redis.stop();
    },
  };
}

export interface ClusterNode {
  id: string;
  port: number;
  /** Base URL of the WebSocket endpoint (`ws://127.0.0.1:port/ws?v=1`). */
  wsUrl: string;
  metricsUrl: string;
  proc: TicksNode;
  killed: boolean;
}

export interface Cluster {
  nodes: ClusterNode[];
  keyspace: string | null;
  /** kill -9: no drain, no goodbye. Resolves once the process is gone. */
  kill9(i: number): Promise<void>;
  /** Stops every node still running (SIGTERM, then SIGKILL) and removes its data. */
  stop(log: (line: string) => void): Promise<void>;
}

export interface ClusterOptions {
  services: Services;
  engine: Engine;
  nodes: number;
  shards: number;
  /** Unique per run: names the key prefix, the keyspace and the node ids. */
  tag: string;
  cpu: number | null;
  runtime: NodeRuntime;
  /** More TICKS_* variables (they win). */
  env: Record<string, string>;
  /** Extra node flags for every node process (e.g. `--cpu-prof --cpu-prof-dir=/tmp/prof`). */
  nodeArgs?: string[];
}

export async function startCluster(o: ClusterOptions): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), 'ticks-bench-cluster-'));
  const ports = await freePorts(o.nodes);
  const keyspace = o.engine === 'scylla' ? `ticks_bench_c_${o.tag}` : null;
  const envOf = (i: number): Record<string, string> => {
    const env: Record<string, string> = {
      TICKS_NODE_ID: `bench-${o.tag}-n${i}`,
      TICKS_LOG_LEVEL: 'warn',
      TICKS_DATA_DIR: join(dir, `n${i}`),
      TICKS_GATEWAY_HOST: '127.0.0.1',
      TICKS_GATEWAY_PORT: String(ports[i]),
      TICKS_GATEWAY_SHARDS: String(o.shards),
      // The default (50 frames/s per connection) would rate-limit a sender at 100 msgs/s.
      TICKS_GATEWAY_FRAMES_PER_SECOND: '100000',
      TICKS_AUTH_HS256_SECRET: SECRET,
      TICKS_AUTH_ALGORITHMS: 'HS256',
      TICKS_STORE_ENGINE: o.engine,
      TICKS_STORE_EMBEDDED_PATH: join(dir, `n${i}`, 'store'),
      TICKS_CLUSTER_REDIS_URL: o.services.redis.url,
      TICKS_CLUSTER_KEY_PREFIX: `ticks:bench:${o.tag}:`,
    };
    if (keyspace !== null) {
      env.TICKS_STORE_SCYLLA_CONTACT_POINTS = o.services.contactPoints.join(',');
      env.TICKS_STORE_SCYLLA_LOCAL_DATA_CENTER = 'datacenter1';
      env.TICKS_STORE_SCYLLA_KEYSPACE = keyspace;
      env.TICKS_STORE_SCYLLA_REPLICATION = JSON.stringify({ class: 'SimpleStrategy', replication_factor: '1' });
    }
    return { ...env, ...o.env };
  };
  const nodes: ClusterNode[] = [];
  const start = async (i: number): Promise<void> => {
    mkdirSync(join(dir, `n${i}`), { recursive: true });
    const proc = await startTicksNode({ dir, name: `n${i}`, env: envOf(i), cpu: o.cpu, runtime: o.runtime, readyTimeoutMs: 180_000, ...(o.nodeArgs ? { nodeArgs: o.nodeArgs } : {}) });
    nodes[i] = { id: `bench-${o.tag}-n${i}`, port: ports[i]!, wsUrl: `ws://127.0.0.1:${ports[i]}/ws?v=1`, metricsUrl: `http://127.0.0.1:${ports[i]}/metrics`, proc, killed: false };
  };
  const stopAll = async (log: (line: string) => void): Promise<void> => {
    await Promise.all(
      nodes.filter(Boolean).map(async (n) => {
        if (n.killed) return;
        const s = await n.proc.stop();
        if (s.killed || (s.code !== 0 && s.code !== null)) log(`  node ${n.id} stop: ${JSON.stringify(s)}\n${n.proc.tail(10)}`);
      }),
    );
    if (keyspace !== null) await dropKeyspace(o.services.contactPoints, keyspace, log);
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    // The first node creates the keyspace and tables; the others start once it is up.
    await start(0);
    await Promise.all(Array.from({ length: o.nodes - 1 }, (_, j) => start(j + 1)));
  } catch (err) {
    await stopAll(() => {});
    throw err;
  }
  return {
    nodes,
    keyspace,
    kill9: async (i) => {
      const n = nodes[i]!;
      n.killed = true;
      const gone = new Promise<void>((resolve) => {
        if (n.proc.child.exitCode !== null || n.proc.child.signalCode !== null) resolve();
        else n.proc.child.once('exit', () => resolve());
      });
      n.proc.child.kill('SIGKILL');
      await gone;
    },
    stop: stopAll,
  };
}

async function dropKeyspace(contactPoints: string[], keyspace: string, log: (line: string) => void): Promise<void> {
  const client = new cassandra.Client({ contactPoints, localDataCenter: 'datacenter1', socketOptions: { readTimeout: 60_000 } });
  try {
    await client.connect();
    await client.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`);
  } catch (err) {
    log(`  could not drop keyspace ${keyspace}: ${(err as Error).message}`);
  } finally {
    await client.shutdown();
  }
}
