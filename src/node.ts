import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { availableParallelism, hostname } from 'node:os';
import { resolveHs256Secret } from './auth/dev-secret.js';
import { createVerifyPool, type VerifyPool } from './auth/verify-pool.js';
import type { Config } from './config/schema.js';
import { loadUws } from './gateway/uws.js';
import { createLogger, type Logger } from './lib/log.js';
import { startNodeMetrics } from './metrics/node.js';
import { mergeThreadMetrics, threadMetrics } from './metrics/threads.js';
import { ShardSupervisor } from './node-shards.js';
import { PresenceHost } from './cluster/presence/port-presence.js';
import type { MainToShard } from './shard-control.js';

/**
 * The composition root of a node (one process): resolves the configuration into concrete choices,
 * starts the shard threads and the verification pool, and owns the shutdown order.
 *
 * Token verification: HS256 verifies inline on the shard that took the connection (an HMAC is
 * cheaper than a thread hop). EdDSA/ES256 verifications are posted to this thread and run in a
 * piscina pool (auth.verifyThreads), so a reconnect storm of public-key tokens does not stall the
 * shards' sockets. The pool exists only when auth.publicKeys is set.
 *
 * Drain (stop(), SIGTERM, SIGINT), in order:
 *  1. every shard closes its listen socket (/readyz answers 503 on connections still open; new
 *     connections go to other nodes);
 *  2. every shard closes its sessions with 4000 (reconnect), awaits its actors' drain (in-flight
 *     group commits finish) bounded by gateway.drainTimeoutMs, closes its store, then closes every
 *     remaining uWS socket (a thread that ends with open uWS sockets aborts the process);
 *  3. the threads are ended, the pool is destroyed; main.ts exits 0.
 */
export interface StartOptions {
  log?: Logger;
  /** Print the human start-up lines on stderr (main.ts: yes; tests: no). */
  banner?: boolean;
  /** Honour test-only control messages (crash a shard). Integration tests only. */
  testHooks?: boolean;
}

export interface RunningNode {
  readonly nodeId: string;
  readonly host: string;
  readonly port: number;
  readonly shards: number;
  /** The merged Prometheus text of every thread. */
  metrics(): Promise<string>;
  /** Test hook (needs `testHooks`): make shard `index` throw on its event loop. */
  crashShard(index: number): void;
  /** Shards currently accepting. */
  readyShards(): number;
  /** Drains and stops; idempotent. Resolves when every thread has ended. */
  stop(): Promise<void>;
}

/** Scrape budget of each shard: a shard that does not answer is left out of that scrape. */
const METRICS_COLLECT_TIMEOUT_MS = 2000;
/** Slack over drainTimeoutMs for a shard to close its store and sockets before it is ended anyway. */
const DRAIN_GRACE_MS = 3000;

export async function startNode(config: Readonly<Config>, opts: StartOptions = {}): Promise<RunningNode> {
  const nodeId = config.nodeId ?? `${hostname().replace(/[^A-Za-z0-9_.-]/g, '-').slice(0, 50)}-${process.pid}`;
  // This process among all that ever ran under nodeId (src/cluster/routing.ts, "Identity").
  const incarnation = randomBytes(8).toString('hex');
  const log = opts.log ?? createLogger({ level: config.log.level, node: nodeId, thread: 'main' });
  loadUws(); // fail here, before any thread starts, when only the pure-JS fallback loads
  if (config.cluster.heartbeatMs * 3 > config.cluster.leaseMs) {
    throw new Error(`config: cluster.heartbeatMs (${config.cluster.heartbeatMs}) must be at most a third of cluster.leaseMs (${config.cluster.leaseMs})`);
  }
  const metrics = startNodeMetrics(() => supervisor.readyCount);
  const shardCount = config.gateway.shards === 0 ? availableParallelism() : config.gateway.shards;
  const host = config.gateway.host;
  // Shards must all bind one explicit port: a second uWS listen on a port the kernel picked for port 0
  // fails. So port 0 is resolved here first (a brief race with other processes is possible).
  const port = config.gateway.port === 0 ? await freePort(host) : config.gateway.port;
  const secret = resolveHs256Secret(config, { create: true });
  if (secret?.created) log.info({ path: secret.path }, 'created the dev token secret');
  const pool: VerifyPool | null = config.auth.publicKeys.length > 0 ? createVerifyPool(config.auth) : null;

  const mergedMetrics = async (): Promise<string> => {
    const parts = await supervisor.collectMetrics(METRICS_COLLECT_TIMEOUT_MS);
    return mergeThreadMetrics([await threadMetrics(), ...parts]);
  };

  // Embedded mode: the node's one presence state lives here, shared by the shard threads.
  const presenceHost =
    config.cluster.redisUrl === undefined ? new PresenceHost(nodeId, (shard, node, bytes) => supervisor.post(shard, { t: 'presence-frame', node, bytes })) : null;

  const supervisor = new ShardSupervisor({
    count: shardCount,
    log,
    init: () => ({ nodeId, incarnation, config, port, hs256Secret: secret?.secret, publicKeys: pool !== null, testHooks: opts.testHooks === true }),
    onRestart: () => metrics.shardRestarts.inc(),
    onRequest(_index, msg, reply) {
      if (msg.t === 'verify') {
        if (pool === null) return reply({ t: 'verified', req: msg.req, outcome: { ok: false, reason: 'invalid' } });
        pool.verify(msg.token).then(
          (outcome) => reply({ t: 'verified', req: msg.req, outcome }),
          (err: unknown) => reply({ t: 'verified', req: msg.req, outcome: null, error: (err as Error).message }),
        );
      } else if (msg.t === 'presence-call') {
        if (presenceHost === null) return reply({ t: 'presence-result', req: msg.req, error: 'no embedded presence in cluster mode' });
        presenceHost.call(msg.op, msg.args).then(
          (value) => reply({ t: 'presence-result', req: msg.req, value }),
          (err: unknown) => reply({ t: 'presence-result', req: msg.req, error: (err as Error).message }),
        );
      } else if (msg.t === 'presence-publish') {
        presenceHost?.publish(msg.node, msg.bytes);
      } else if (msg.t === 'metrics-request') {
        mergedMetrics().then(
          (text) => reply({ t: 'metrics-text', req: msg.req, text }),
          (err: unknown) => reply({ t: 'metrics-text', req: msg.req, text: null, error: (err as Error).message }),
        );
      }
    },
  });

  try {
    await supervisor.start();
  } catch (err) {
    await pool?.close();
    throw err;
  }

  let stopping: Promise<void> | null = null;
  const stop = async (): Promise<void> => {
    const t0 = Date.now();
    supervisor.beginStop();
    log.info({ drainTimeoutMs: config.gateway.drainTimeoutMs }, 'draining');
    await supervisor.broadcast({ t: 'stop-accepting' } satisfies MainToShard, 'stopped-accepting', DRAIN_GRACE_MS);
    const late = await supervisor.broadcast(
      { t: 'drain', timeoutMs: config.gateway.drainTimeoutMs } satisfies MainToShard,
      'drained',
      config.gateway.drainTimeoutMs + DRAIN_GRACE_MS,
    );
    if (late.length > 0) log.error({ shards: late }, 'shards did not finish draining in time; ending them anyway');
    await supervisor.terminate();
    await pool?.close();
    log.info({ ms: Date.now() - t0 }, 'stopped');
  };

  const url = `ws://${host.includes(':') ? `[${host}]` : host}:${port}`;
  log.info({ ws: `${url}/ws`, shards: shardCount, store: config.store.engine, cluster: config.cluster.redisUrl === undefined ? 'embedded' : 'redis', devTokens: secret?.source === 'dev-secret' }, 'node listening');
  if (opts.banner) {
    const http = url.replace(/^ws/, 'http');
    const lines = [
      `ticks ${nodeId}: ${shardCount} shard${shardCount === 1 ? '' : 's'} listening on ${url}/ws?v=1`,
      `  health ${http}/healthz   ready ${http}/readyz   metrics ${http}/metrics`,
      secret?.source === 'dev-secret'
        ? `  dev token (auth.devTokens is on; never in production): npx ticks token alice phone`
        : secret
          ? `  tokens: HS256 with auth.hs256Secret (npx ticks token <user> <device>)${pool ? ', EdDSA/ES256 with auth.publicKeys' : ''}`
          : `  tokens: EdDSA/ES256 with auth.publicKeys only (no HS256 secret configured)`,
    ];
    process.stderr.write(lines.join('\n') + '\n');
  }

  return {
    nodeId,
    host,
    port,
    shards: shardCount,
    metrics: mergedMetrics,
    crashShard: (index) => supervisor.crash(index),
    readyShards: () => supervisor.readyCount,
    stop: () => (stopping ??= stop()),
  };
}

/** A port that was free a moment ago on `host`. */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, host, () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr !== null ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}
