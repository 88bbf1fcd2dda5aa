import type { ChainableCommander, Redis } from 'ioredis';
import { RedisBus, closeRedis } from '../bus/redis-bus.js';
import { ClusterError } from '../errors.js';
import { createRedis, wrapRedisError } from '../redis-client.js';
import { PresenceService, type PresenceServiceOptions } from './presence-service.js';
import { PRESENCE_DEFAULTS, type Presence, type PresenceInfo } from './presence.js';
import { onKey, seenKey, watchersKey, type PresenceState } from './state.js';

/**
 * Presence state in Redis (layout in state.ts, every key under the cluster's key prefix, which
 * ioredis adds) and presence events over a RedisBus with purpose `presence` (channel
 * `<prefix>presence:node:<node>`). No Lua: nothing here needs atomicity across keys (it is soft
 * state), and the commands of one operation are sent together without waiting for each other, one
 * round-trip. A heartbeat (`setOnline` of an online user) is two SETs; a transition adds one
 * ZRANGEBYSCORE and one PUBLISH per watching node; typing is one ZRANGEBYSCORE plus the publishes.
 */
export class RedisPresenceState implements PresenceState {
  constructor(
    private readonly redis: Redis,
    private readonly lastSeenTtlMs: number = PRESENCE_DEFAULTS.lastSeenTtlMs,
  ) {}

  async setOnline(user: string, node: string, ttlMs: number, nowMs: number): Promise<boolean> {
    try {
      // SET ... GET returns the previous node, or null when the lease was absent or had expired.
      const [prev] = await Promise.all([
        this.redis.set(onKey(user), node, 'PX', ttlMs, 'GET'),
        this.redis.set(seenKey(user), String(nowMs), 'PX', this.lastSeenTtlMs),
      ]);
      return prev === null;
    } catch (err) {
      throw wrapRedisError(err);
    }
  }

  async setOffline(user: string, nowMs: number): Promise<void> {
    try {
      await Promise.all([
        this.redis.del(onKey(user)),
        this.redis.set(seenKey(user), String(nowMs), 'PX', this.lastSeenTtlMs),
      ]);
    } catch (err) {
      throw wrapRedisError(err);
    }
  }

  async get(users: readonly string[], _nowMs: number): Promise<PresenceInfo[]> {
    try {
      const [on, seen] = await Promise.all([
        this.redis.mget(users.map(onKey)),
        this.redis.mget(users.map(seenKey)),
      ]);
      return users.map((user, i) => ({ user, online: on[i] != null, lastSeenMs: parseMs(seen[i]) }));
    } catch (err) {
      throw wrapRedisError(err);
    }
  }

  async addWatchers(targets: readonly string[], node: string, ttlMs: number, nowMs: number): Promise<void> {
    const p = this.redis.pipeline();
    for (const target of targets) {
      const key = watchersKey(target);
      // Prune dead nodes here, on the renewal path, so the typing path stays read-only.
      p.zremrangebyscore(key, '-inf', nowMs);
      p.zadd(key, nowMs + ttlMs, node);
      p.pexpire(key, ttlMs);
    }
    await exec(p);
  }

  async removeWatchers(targets: readonly string[], node: string): Promise<void> {
    const p = this.redis.pipeline();
    for (const target of targets) p.zrem(watchersKey(target), node);
    await exec(p);
  }

  async watchers(target: string, nowMs: number): Promise<string[]> {
    try {
      return await this.redis.zrangebyscore(watchersKey(target), `(${nowMs}`, '+inf');
    } catch (err) {
      throw wrapRedisError(err);
    }
  }

  async close(): Promise<void> {
    await closeRedis(this.redis);
  }
}

export interface RedisPresenceOptions extends Omit<PresenceServiceOptions, 'state' | 'bus'> {
  url: string;
  /** The cluster's key prefix, e.g. `ticks:prod:`; also the prefix of the presence channels. */
  keyPrefix: string;
  lastSeenTtlMs?: number;
  /** Bound of the presence bus's pending publishes (bus.ts). */
  maxPendingPublishes?: number;
}

export function createRedisPresence(opts: RedisPresenceOptions): Presence {
  const { url, keyPrefix, lastSeenTtlMs, maxPendingPublishes, ...service } = opts;
  const redis = createRedis({ url, keyPrefix, name: 'presence' });
  return new PresenceService({
    ...service,
    state: new RedisPresenceState(redis, lastSeenTtlMs),
    bus: new RedisBus({
      url,
      keyPrefix,
      purpose: 'presence',
      ...(maxPendingPublishes === undefined ? {} : { maxPendingPublishes }),
    }),
  });
}

async function exec(p: ChainableCommander): Promise<void> {
  let replies: [Error | null, unknown][] | null;
  try {
    replies = await p.exec();
  } catch (err) {
    throw wrapRedisError(err);
  }
  if (replies === null) throw new ClusterError('cluster.internal', 'Redis pipeline was discarded');
  for (const [err] of replies) if (err) throw wrapRedisError(err);
}

function parseMs(v: string | null | undefined): number | null {
  if (v == null) return null;
  const n = Number(v);
  return Number.isSafeInteger(n) && n >= 0 ? n : null;
}
