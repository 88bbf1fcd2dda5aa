import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { Counter } from 'prom-client';
import { registry } from '../metrics/registry.js';
import { ClusterError } from './errors.js';

/**
 * The one place that creates ioredis connections for `src/cluster/` (directory, sessions, bus,
 * presence) and turns ioredis errors into ClusterErrors. Defaults favour failing fast over waiting:
 * a cluster operation sits on the delivery path, so a dead Redis must surface as a retryable
 * `cluster.unavailable` within a couple of seconds rather than hang in the offline queue.
 *
 * BullMQ needs `maxRetriesPerRequest: null` on its own connections; it creates those itself and
 * must not use this factory.
 */
export interface CreateRedisOptions {
  /** redis://[user:pass@]host:port[/db] */
  url: string;
  /** Prepended to every key by ioredis (including the KEYS of scripts), e.g. `ticks:prod:`. */
  keyPrefix: string;
  /**
   * A short fixed component name (`directory`, `sessions`, `bus`, `presence`): the connection's
   * CLIENT SETNAME and the `component` label of `ticks_cluster_redis_errors_total`.
   */
  name: string;
  /**
   * Per-command reply timeout. Default 2000 ms. Pass 0 for a connection that runs blocking
   * commands (XREAD BLOCK, BRPOP) or only subscribes, where a long wait is normal.
   */
  commandTimeoutMs?: number;
}

const CONNECT_TIMEOUT_MS = 2_000;
const COMMAND_TIMEOUT_MS = 2_000;
/**
 * Reconnect backoff: 100 ms doubling to 500 ms, forever. A command queued while disconnected fails
 * after two failed attempts (maxRetriesPerRequest 1), so at most about a second once Redis is down.
 */
const MAX_RECONNECT_DELAY_MS = 500;

const redisErrors = new Counter({
  name: 'ticks_cluster_redis_errors_total',
  help: 'Redis errors seen by cluster components (connection events and failed operations), by code.',
  labelNames: ['component', 'code'] as const,
  registers: [registry],
});

/** Counts one error against `ticks_cluster_redis_errors_total{component,code}`. */
export function countRedisError(component: string, err: ClusterError): void {
  redisErrors.inc({ component, code: err.code });
}

export function createRedis(opts: CreateRedisOptions): Redis {
  const commandTimeout = opts.commandTimeoutMs ?? COMMAND_TIMEOUT_MS;
  const redis = new Redis(opts.url, {
    keyPrefix: opts.keyPrefix,
    connectionName: opts.name,
    connectTimeout: CONNECT_TIMEOUT_MS,
    ...(commandTimeout > 0 ? { commandTimeout } : {}),
    // A queued command fails after two failed connection attempts rather than twenty-one.
    maxRetriesPerRequest: 1,
    retryStrategy: (times) => Math.min(50 * 2 ** Math.min(times, 4), MAX_RECONNECT_DELAY_MS),
    // ioredis re-sends commands whose reply was lost in a reconnect (autoResendUnfulfilledCommands,
    // default on; turning it off leaves them unsettled), so every script here is idempotent.
  });
  // Without a listener ioredis prints every reconnect failure to stderr; count them instead. The
  // failures that matter reach the caller through the rejected command.
  redis.on('error', (err: unknown) => countRedisError(opts.name, wrapRedisError(err)));
  return redis;
}

/** Socket and server states that mean "not reachable now, try again later". */
const UNAVAILABLE_SYSCALL_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ECONNABORTED',
  'EPIPE',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ETIMEDOUT',
]);
const UNAVAILABLE_REPLY_PREFIXES = ['LOADING', 'READONLY', 'MASTERDOWN', 'CLUSTERDOWN', 'TRYAGAIN', 'BUSY', 'OOM'];

/**
 * Maps anything ioredis throws to a ClusterError. ioredis reports most client-side states only in
 * the message text, so this is the single place that reads it; callers branch on `code`.
 */
export function wrapRedisError(err: unknown): ClusterError {
  if (err instanceof ClusterError) return err;
  const e = err as { name?: unknown; code?: unknown; message?: unknown } | null;
  const name = typeof e?.name === 'string' ? e.name : '';
  const code = typeof e?.code === 'string' ? e.code : '';
  const message = typeof e?.message === 'string' ? e.message : String(err);
  if (message === 'Command timed out') {
    return new ClusterError('cluster.timeout', 'Redis did not reply in time', err);
  }
  if (
    name === 'MaxRetriesPerRequestError' ||
    UNAVAILABLE_SYSCALL_CODES.has(code) ||
    message === 'Connection is closed.' ||
    message.startsWith("Stream isn't writeable") ||
    message.startsWith('connect ETIMEDOUT') ||
    UNAVAILABLE_REPLY_PREFIXES.some((p) => message.startsWith(p + ' ') || message === p)
  ) {
    return new ClusterError('cluster.unavailable', `Redis is unavailable: ${message}`, err);
  }
  return new ClusterError('cluster.internal', `Redis error: ${message}`, err);
}

/**
 * A Lua script read once from its own file and called by SHA (EVALSHA). On NOSCRIPT (first use on
 * a server, after SCRIPT FLUSH or a Redis restart) it loads the script with SCRIPT LOAD and retries
 * once. ioredis applies the connection's keyPrefix to KEYS, never to ARGV.
 */
export class RedisScript {
  readonly sha: string;
  private readonly lua: string;

  constructor(
    readonly name: string,
    file: URL,
  ) {
    this.lua = readFileSync(file, 'utf8');
    this.sha = createHash('sha1').update(this.lua).digest('hex');
  }

  /** SCRIPT LOAD; optional (run() loads on demand), useful at start to fail early. */
  async load(redis: Redis): Promise<void> {
    const sha = await redis.script('LOAD', this.lua);
    if (sha !== this.sha) throw new ClusterError('cluster.internal', `script ${this.name}: SHA mismatch`);
  }

  async run(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    try {
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    } catch (err) {
      if (!isNoScript(err)) throw err;
      await this.load(redis);
      return await redis.evalsha(this.sha, keys.length, ...keys, ...args);
    }
  }
}

export interface ScriptCall {
  keys: readonly string[];
  args: readonly (string | number)[];
}

/**
 * Runs many calls of one script in a single pipeline (one round trip); `result[i]` answers
 * `calls[i]`. Calls that hit NOSCRIPT are re-run after SCRIPT LOAD, so scripts run this way must
 * be idempotent. Any other per-call error rejects the whole batch with that (unwrapped) error.
 */
export async function runScriptMany(
  script: RedisScript,
  redis: Redis,
  calls: readonly ScriptCall[],
): Promise<unknown[]> {
  const out = await pipelineOf(script, redis, calls);
  const missing = out.flatMap((r, i) => (r[0] !== null && isNoScript(r[0]) ? [i] : []));
  if (missing.length > 0) {
    await script.load(redis);
    const retried = await pipelineOf(script, redis, missing.map((i) => calls[i]));
    missing.forEach((i, j) => (out[i] = retried[j]));
  }
  return out.map(([err, value]) => {
    if (err !== null) throw err;
    return value;
  });
}

async function pipelineOf(
  script: RedisScript,
  redis: Redis,
  calls: readonly ScriptCall[],
): Promise<[Error | null, unknown][]> {
  const p = redis.pipeline();
  for (const c of calls) p.evalsha(script.sha, c.keys.length, ...c.keys, ...c.args);
  const res = await p.exec();
  if (res === null || res.length !== calls.length) {
    throw new ClusterError('cluster.internal', `script ${script.name}: pipeline returned no replies`);
  }
  return res;
}

function isNoScript(err: unknown): boolean {
  const message = (err as { message?: unknown } | null)?.message;
  return typeof message === 'string' && message.startsWith('NOSCRIPT');
}
