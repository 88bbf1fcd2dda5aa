import type { Redis } from 'ioredis';
import { createRedis, wrapRedisError } from '../cluster/redis-client.js';
import { fetchLimited } from './metrics.js';

/**
 * The per-user rate limit on prekey bundle fetches (`keys.fetchPerMinute`): each GET /keys/:user or
 * GET /keys/:user/:device request of a user counts one, in fixed windows of one minute. Fetching a
 * bundle consumes another device's one-time prekey, so an unthrottled client could drain every
 * device's prekeys (forcing X3DH without one) or hammer the directory.
 *
 * - With `cluster.redisUrl`: one counter per (user, window) in Redis (INCR, expiring with the window),
 *   so the limit holds across every thread of every node.
 * - Without (embedded mode): a counter per shard thread. A user's requests land on the thread that
 *   accepted their HTTP connection, so across a node's threads the effective limit is at most
 *   `shards x fetchPerMinute` (documented in docs/HTTP.md).
 *
 * `take` resolves `{ ok: true }` or `{ ok: false, retryAfterS }` (seconds until the window ends);
 * it rejects with a retryable ClusterError when Redis cannot be reached (answered 503).
 */
export interface FetchLimiter {
  readonly kind: 'memory' | 'redis';
  take(user: string): Promise<FetchVerdict>;
  close(): Promise<void>;
}

export type FetchVerdict = { ok: true } | { ok: false; retryAfterS: number };

const WINDOW_MS = 60_000;
/** Users tracked by the memory limiter before entries of past windows are swept. */
const MEMORY_SWEEP_AT = 10_000;

export class MemoryFetchLimiter implements FetchLimiter {
  readonly kind = 'memory' as const;
  private readonly counts = new Map<string, { window: number; n: number }>();

  constructor(
    private readonly perMinute: number,
    private readonly now: () => number = Date.now,
  ) {}

  async take(user: string): Promise<FetchVerdict> {
    const t = this.now();
    const window = Math.floor(t / WINDOW_MS);
    let c = this.counts.get(user);
    if (c === undefined || c.window !== window) {
      if (c === undefined && this.counts.size >= MEMORY_SWEEP_AT) this.sweep(window);
      c = { window, n: 0 };
      this.counts.set(user, c);
    }
    c.n++;
    return verdict(c.n, this.perMinute, (window + 1) * WINDOW_MS - t);
  }

  async close(): Promise<void> {
    this.counts.clear();
  }

  private sweep(window: number): void {
    for (const [user, c] of this.counts) if (c.window !== window) this.counts.delete(user);
  }
}

// KEYS[1] = the (user, window) counter; ARGV[1] = its lifetime in ms. Returns the count after this take.
const TAKE_LUA = `local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
return n`;

export class RedisFetchLimiter implements FetchLimiter {
  readonly kind = 'redis' as const;
  private readonly redis: Redis;

  constructor(
    url: string,
    keyPrefix: string,
    private readonly perMinute: number,
    private readonly now: () => number = Date.now,
  ) {
    this.redis = createRedis({ url, keyPrefix, name: 'keys' });
  }

  async take(user: string): Promise<FetchVerdict> {
    const t = this.now();
    const window = Math.floor(t / WINDOW_MS);
    let n: number;
    try {
      // The user is hash-tagged so the key stays on one slot in Redis Cluster.
      n = Number(await this.redis.eval(TAKE_LUA, 1, `keys:fetch:{${user}}:${window}`, String(WINDOW_MS * 2)));
    } catch (err) {
      throw wrapRedisError(err);
    }
    return verdict(n, this.perMinute, (window + 1) * WINDOW_MS - t);
  }

  async close(): Promise<void> {
    this.redis.disconnect();
  }
}

function verdict(n: number, perMinute: number, leftMs: number): FetchVerdict {
  if (n <= perMinute) return { ok: true };
  fetchLimited.inc();
  return { ok: false, retryAfterS: Math.max(1, Math.ceil(leftMs / 1000)) };
}
