/**
 * The ticks node processes of one bench/fanout run: one node in embedded mode, or K nodes in
 * cluster mode on a private Redis (started by run.ts, never the session's shared one), each node on
 * its own port with its own embedded store (as bench/cluster's `embedded` engine: a conversation
 * stays with the node that registered it first; deliveries to users on other nodes cross the Redis
 * bus, one publish per (conversation, node)). Every node gets a fresh data dir and a fresh Redis key
 * prefix per run.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePorts } from '../../test/support/services/process.js';
import { startTicksNode, type NodeRuntime, type TicksNode } from '../lib/processes.js';

export const SECRET = 'bench-fanout-secret-'.padEnd(48, 'x');

export interface FanoutNode {
  id: string;
  port: number;
  wsUrl: string;
  metricsUrl: string;
  storePath: string;
  proc: TicksNode;
}

export interface NodesOptions {
  count: number;
  /** Cluster mode on this Redis; null: one embedded node (count must be 1). */
  redisUrl: string | null;
  tag: string;
  cpu: number | null;
  runtime: NodeRuntime;
  env: Record<string, string>;
  /** Extra node flags (e.g. --cpu-prof). */
  nodeArgs?: string[];
  /** Called with node 0's store path before any node starts (to write conversations directly). */
  prepare?: (storePath: string) => Promise<void>;
}

export interface Nodes {
  nodes: FanoutNode[];
  stop(log: (line: string) => void): Promise<void>;
}

export async function startNodes(o: NodesOptions): Promise<Nodes> {
  if (o.redisUrl === null && o.count !== 1) throw new Error('several nodes need cluster mode (a Redis)');
  const dir = mkdtempSync(join(tmpdir(), 'ticks-bench-fanout-'));
  const ports = await freePorts(o.count);
  const nodes: FanoutNode[] = [];
  const stop = async (log: (line: string) => void): Promise<void> => {
    await Promise.all(
      nodes.filter(Boolean).map(async (n) => {
        const s = await n.proc.stop();
        if (s.killed || (s.code !== 0 && s.code !== null)) log(`  node ${n.id} stop: ${JSON.stringify(s)}\n${n.proc.tail(10)}`);
      }),
    );
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const storePath = (i: number): string => join(dir, `n${i}`, 'store');
    for (let i = 0; i < o.count; i++) mkdirSync(join(dir, `n${i}`), { recursive: true });
    if (o.prepare) await o.prepare(storePath(0));
    const start = async (i: number): Promise<void> => {
      const env: Record<string, string> = {
        TICKS_NODE_ID: `fanout-${o.tag}-n${i}`,
        TICKS_LOG_LEVEL: 'warn',
        TICKS_DATA_DIR: join(dir, `n${i}`),
        TICKS_GATEWAY_HOST: '127.0.0.1',
        TICKS_GATEWAY_PORT: String(ports[i]),
        TICKS_GATEWAY_SHARDS: '1',
        // The default (50 frames/s per connection) would rate-limit a sender at 100 msgs/s.
        TICKS_GATEWAY_FRAMES_PER_SECOND: '100000',
        TICKS_AUTH_HS256_SECRET: SECRET,
        TICKS_AUTH_ALGORITHMS: 'HS256',
        TICKS_STORE_ENGINE: 'embedded',
        TICKS_STORE_EMBEDDED_PATH: storePath(i),
        ...(o.redisUrl === null ? {} : { TICKS_CLUSTER_REDIS_URL: o.redisUrl, TICKS_CLUSTER_KEY_PREFIX: `ticks:bench:fanout:${o.tag}:` }),
        ...o.env,
      };
      const proc = await startTicksNode({ dir, name: `n${i}`, env, cpu: o.cpu, runtime: o.runtime, nodeArgs: o.nodeArgs ?? [], readyTimeoutMs: 180_000 });
      nodes[i] = {
        id: env.TICKS_NODE_ID!,
        port: ports[i]!,
        wsUrl: `ws://127.0.0.1:${ports[i]}/ws?v=1`,
        metricsUrl: `http://127.0.0.1:${ports[i]}/metrics`,
        storePath: storePath(i),
        proc,
      };
    };
    await start(0);
    await Promise.all(Array.from({ length: o.count - 1 }, (_, j) => start(j + 1)));
  } catch (err) {
    await stop(() => {});
    throw err;
  }
  return { nodes, stop };
}
