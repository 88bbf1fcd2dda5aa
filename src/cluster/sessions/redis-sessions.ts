import type { Redis } from 'ioredis';
import type { SessionConn, SessionEntry, SessionRefresh, SessionRegistry } from './sessions.js';
import { ClusterError } from '../errors.js';
import { countRedisError, RedisScript, runScriptMany, wrapRedisError } from '../redis-client.js';
import { instrument, type SessionsOp } from './metrics.js';
import { checkConn, checkId, checkTtlMs } from './validate.js';

export interface RedisSessionsOptions {
  /** A connection from createRedis; its keyPrefix namespaces every key. Not closed by the registry. */
  redis: Redis;
}

const lua = (name: string) => new RedisScript(`sessions.${name}`, new URL(`./lua/${name}.lua`, import.meta.url));
const PUT = lua('put');
const REMOVE = lua('remove');
const REFRESH = lua('refresh');
const LIST = lua('list');

/**
 * The session registry on Redis. Two keys per user, under the connection's prefix:
 *
 *   sess:{<user>}:conn   hash  device -> JSON [node, connId]
 *   sess:{<user>}:exp    zset  device -> expiresAtMs (Redis server time)
 *
 * Why not one hash with per-field TTLs: HPEXPIRE needs Redis 7.4 and we run on 7.0. Why not one key
 * per device: `list` would need a SCAN or a separate index that can disagree with the device keys.
 * With a sorted set of expiries, every operation is one atomic script over one user's two keys
 * (same hash tag, so Redis Cluster-safe), `list` filters by score, writes prune expired devices,
 * and both keys PEXPIRE with the user's longest-lived entry so abandoned users disappear.
 * Connection values are built and parsed here only; Lua compares them as opaque strings.
 */
export class RedisSessions implements SessionRegistry {
  readonly impl = 'redis';
  private readonly redis: Redis;

  constructor(opts: RedisSessionsOptions) {
    this.redis = opts.redis;
  }

  /** Loads every script now (SCRIPT LOAD), so a node fails at start rather than on first use. */
  async loadScripts(): Promise<void> {
    await this.op('list', async () => {
      for (const s of [PUT, REMOVE, REFRESH, LIST]) await s.load(this.redis);
    });
  }

  put(user: string, device: string, conn: SessionConn, ttlMs: number): Promise<{ replaced: SessionConn | null }> {
    return this.op('put', async () => {
      checkId('user', user);
      checkId('device', device);
      checkConn(conn);
      checkTtlMs(ttlMs);
      const prev = await PUT.run(this.redis, keysOf(user), [device, encode(conn), ttlMs]);
      if (typeof prev !== 'string') throw unexpected('put', prev);
      return { replaced: prev === '' ? null : decode(prev) };
    });
  }

  remove(user: string, device: string, conn: SessionConn): Promise<boolean> {
    return this.op('remove', async () => {
      checkId('user', user);
      checkId('device', device);
      checkConn(conn);
      return (await REMOVE.run(this.redis, keysOf(user), [device, encode(conn)])) === 1;
    });
  }

  refresh(entries: readonly SessionRefresh[], ttlMs: number): Promise<boolean[]> {
    return this.op('refresh', async () => {
      for (const r of entries) {
        checkId('user', r.user);
        checkId('device', r.device);
        checkConn(r.conn);
      }
      checkTtlMs(ttlMs);
      if (entries.length === 0) return [];
      const calls = entries.map((r) => ({ keys: keysOf(r.user), args: [r.device, encode(r.conn), ttlMs] }));
      const replies = await runScriptMany(REFRESH, this.redis, calls);
      return replies.map((x) => x === 1);
    });
  }

  list(user: string): Promise<SessionEntry[]> {
    return this.op('list', async () => {
      checkId('user', user);
      return entriesOf(await LIST.run(this.redis, keysOf(user), []));
    });
  }

  /**
   * The LIST calls of a fan-out, issued together on a corked socket: one write, one round trip,
   * without the JavaScript cost of an ioredis Pipeline (which outweighs the syscalls it saves for a
   * handful of calls).
   */
  listMany(users: readonly string[]): Promise<SessionEntry[][]> {
    return this.op('list_many', async () => {
      for (const u of users) checkId('user', u);
      if (users.length === 0) return [];
      const stream = this.redis.status === 'ready' ? this.redis.stream : null;
      stream?.cork();
      let replies: Promise<unknown>[];
      try {
        replies = users.map((u) => LIST.run(this.redis, keysOf(u), []));
      } finally {
        stream?.uncork();
      }
      return (await Promise.all(replies)).map(entriesOf);
    });
  }

  private op<T>(op: SessionsOp, fn: () => Promise<T>): Promise<T> {
    return instrument('redis', op, wrap, fn);
  }
}

function wrap(err: unknown): ClusterError {
  const e = wrapRedisError(err);
  countRedisError('sessions', e);
  return e;
}

function entriesOf(reply: unknown): SessionEntry[] {
  if (!Array.isArray(reply) || reply.length % 3 !== 0) throw unexpected('list', reply);
  const out: SessionEntry[] = [];
  for (let i = 0; i < reply.length; i += 3) {
    const [device, value, expires] = [reply[i] as unknown, reply[i + 1] as unknown, reply[i + 2] as unknown];
    if (typeof device !== 'string' || typeof value !== 'string') throw unexpected('list', reply);
    out.push({ device, ...decode(value), expiresAtMs: Number(expires) });
  }
  return out;
}

function keysOf(user: string): string[] {
  return [`sess:{${user}}:conn`, `sess:{${user}}:exp`];
}

function encode(conn: SessionConn): string {
  return JSON.stringify([conn.node, conn.connId]);
}

function decode(value: string): SessionConn {
  let parsed: unknown;
  try {
    parsed = JSON.parse(value);
  } catch {
    parsed = undefined;
  }
  if (!Array.isArray(parsed) || typeof parsed[0] !== 'string' || typeof parsed[1] !== 'string') {
    throw unexpected('decode', value);
  }
  return { node: parsed[0], connId: parsed[1] };
}

function unexpected(what: string, reply: unknown): ClusterError {
  return new ClusterError('cluster.internal', `sessions ${what}: unexpected reply ${JSON.stringify(reply)}`);
}
