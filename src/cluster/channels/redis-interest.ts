import type { Redis } from 'ioredis';
import { ClusterError } from '../errors.js';
import { countRedisError, RedisScript, runScriptMany, wrapRedisError } from '../redis-client.js';
import type { ChannelInterest } from './interest.js';
import { instrument, type InterestOp } from './metrics.js';
import { checkChannel, checkEndpoint, checkTtlMs } from './validate.js';

export interface RedisChannelInterestOptions {
  /** A connection from createRedis; its keyPrefix namespaces every key. Not closed by the registry. */
  redis: Redis;
}

const lua = (name: string) => new RedisScript(`channels.${name}`, new URL(`./lua/${name}.lua`, import.meta.url));
const ADD = lua('add');
const LIST = lua('list');

/**
 * The channel-interest registry on Redis. One key per channel, under the connection's prefix:
 *
 *   chan:{<channel>}:ep   zset  endpoint -> expiresAtMs (Redis server time)
 *
 * A sorted set of expiries (as the session registry does) because per-member TTLs need Redis 7.4:
 * `list` filters by score, `add` prunes and extends the key's own expiry to its longest-lived entry,
 * so a channel nobody follows any more leaves nothing. `remove` is a plain ZREM (atomic on its own).
 */
export class RedisChannelInterest implements ChannelInterest {
  readonly impl = 'redis';
  private readonly redis: Redis;

  constructor(opts: RedisChannelInterestOptions) {
    this.redis = opts.redis;
  }

  /** Loads the scripts now (SCRIPT LOAD), so a node fails at start rather than on first use. */
  async loadScripts(): Promise<void> {
    await this.op('list', async () => {
      for (const s of [ADD, LIST]) await s.load(this.redis);
    });
  }

  add(channel: string, endpoint: string, ttlMs: number): Promise<boolean> {
    return this.op('add', async () => {
      checkChannel(channel);
      checkEndpoint(endpoint);
      checkTtlMs(ttlMs);
      return (await ADD.run(this.redis, [keyOf(channel)], [endpoint, ttlMs])) === 1;
    });
  }

  remove(channel: string, endpoint: string): Promise<boolean> {
    return this.op('remove', async () => {
      checkChannel(channel);
      checkEndpoint(endpoint);
      return (await this.redis.zrem(keyOf(channel), endpoint)) === 1;
    });
  }

  refresh(channels: readonly string[], endpoint: string, ttlMs: number): Promise<void> {
    return this.op('refresh', async () => {
      for (const c of channels) checkChannel(c);
      checkEndpoint(endpoint);
      checkTtlMs(ttlMs);
      if (channels.length === 0) return;
      await runScriptMany(ADD, this.redis, channels.map((c) => ({ keys: [keyOf(c)], args: [endpoint, ttlMs] })));
    });
  }

  list(channel: string): Promise<string[]> {
    return this.op('list', async () => {
      checkChannel(channel);
      const reply = await LIST.run(this.redis, [keyOf(channel)], []);
      if (!Array.isArray(reply) || !reply.every((x): x is string => typeof x === 'string')) {
        throw new ClusterError('cluster.internal', `channel interest list: unexpected reply ${JSON.stringify(reply)}`);
      }
      return reply;
    });
  }

  private op<T>(op: InterestOp, fn: () => Promise<T>): Promise<T> {
    return instrument('redis', op, wrap, fn);
  }
}

function wrap(err: unknown): ClusterError {
  const e = wrapRedisError(err);
  countRedisError('channels', e);
  return e;
}

function keyOf(channel: string): string {
  return `chan:{${channel}}:ep`;
}
