/**
 * The cluster parts of one shard thread, picked from `cluster` config: with `cluster.redisUrl` the
 * Redis directory, bus and session registry (shared by every node of the cluster); without it the
 * memory ones (embedded mode, one node). The routing code on top is the same either way.
 *
 * Why per-thread memory parts are enough in embedded mode: within a node only a conversation's home
 * shard (hash placement) ever asks the directory about it, so a thread-local directory sees every
 * question about its addresses; the bus carries nothing (every endpoint is local and reached over
 * the ShardLink). Presence and the session registry must see every thread's sessions (who is
 * online, whether a user's last device left), so src/shard.ts passes node-wide ones kept by the
 * main thread (src/cluster/presence/port-presence.ts).
 */
import type { ClusterConfig } from '../config/schema.js';
import type { Bus } from './bus/bus.js';
import type { ChannelInterest } from './channels/interest.js';
import { MemoryChannelInterest } from './channels/memory-interest.js';
import { MemoryBus, MemoryBusHub } from './bus/memory-bus.js';
import type { Directory } from './directory/directory.js';
import { MemoryDirectory } from './directory/memory-directory.js';
import { createMemoryPresence, MemoryPresenceHub } from './presence/memory-presence.js';
import type { Presence } from './presence/presence.js';
import { MemorySessions } from './sessions/memory-sessions.js';
import type { SessionRegistry } from './sessions/sessions.js';

export interface ShardCluster {
  readonly impl: 'memory' | 'redis';
  directory: Directory;
  bus: Bus;
  sessions: SessionRegistry;
  presence: Presence;
  /** Which threads follow which broadcast channels (src/cluster/channel-delivery.ts). */
  channels: ChannelInterest;
  /** Closes the bus and the Redis connections. Idempotent. */
  close(): Promise<void>;
}

export interface ShardClusterOptions {
  /**
   * Embedded mode: the presence of the whole node (one state for every shard thread, kept by the
   * main thread; see src/shard.ts). Without it each thread gets its own memory presence, which
   * only sees that thread's sessions (fine for one shard and for tests).
   */
  embeddedPresence?: () => Presence;
  /** Embedded mode: the node-wide session registry (kept by the main thread, like presence). */
  embeddedSessions?: () => SessionRegistry;
}

export async function createShardCluster(cfg: ClusterConfig, opts: ShardClusterOptions = {}): Promise<ShardCluster> {
  if (cfg.redisUrl === undefined) {
    const bus = new MemoryBus(new MemoryBusHub());
    const presence = opts.embeddedPresence?.() ?? createMemoryPresence(new MemoryPresenceHub());
    return {
      impl: 'memory',
      directory: new MemoryDirectory({ leaseMs: cfg.leaseMs }),
      bus,
      sessions: opts.embeddedSessions?.() ?? new MemorySessions(),
      presence,
      // Unused by an embedded node (one node: every post goes to all its shards); tests share one.
      channels: new MemoryChannelInterest(),
      close: async () => {
        await presence.close();
        await bus.close();
      },
    };
  }
  // Loaded only in cluster mode: embedded nodes (and every restarted shard thread) skip ioredis.
  const [{ RedisBus, closeRedis }, { RedisDirectory }, { createRedis }, { createRedisPresence }, { RedisSessions }, { RedisChannelInterest }] = await Promise.all([
    import('./bus/redis-bus.js'),
    import('./directory/redis-directory.js'),
    import('./redis-client.js'),
    import('./presence/redis-presence.js'),
    import('./sessions/redis-sessions.js'),
    import('./channels/redis-interest.js'),
  ]);
  const url = cfg.redisUrl;
  const keyPrefix = cfg.keyPrefix;
  const dirRedis = createRedis({ url, keyPrefix, name: 'directory' });
  const sessRedis = createRedis({ url, keyPrefix, name: 'sessions' });
  const directory = new RedisDirectory({ redis: dirRedis, leaseMs: cfg.leaseMs });
  const sessions = new RedisSessions({ redis: sessRedis });
  // Channel interest shares the session registry's connection: both are small soft-state scripts.
  const channels = new RedisChannelInterest({ redis: sessRedis });
  const bus = new RedisBus({ url, keyPrefix });
  const presence = createRedisPresence({ url, keyPrefix });
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      await presence.close().catch(() => undefined);
      await bus.close().catch(() => undefined);
      await Promise.all([closeRedis(dirRedis), closeRedis(sessRedis)]);
    })());
  try {
    // Fail at start, naming Redis, rather than on the first message.
    await directory.loadScripts();
    await sessions.loadScripts();
    await channels.loadScripts();
  } catch (err) {
    await close();
    throw new Error(`cluster.redisUrl: cannot use Redis at ${redactUrl(url)}: ${(err as Error).message}`, { cause: err });
  }
  return { impl: 'redis', directory, bus, sessions, presence, channels, close };
}

function redactUrl(url: string): string {
  return url.replace(/\/\/[^@/]*@/, '//***@');
}
