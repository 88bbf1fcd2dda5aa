/**
 * Channel-interest registry contract suite (src/cluster/channels/interest.ts): one suite, every
 * implementation (memory; Redis on the real server of the run, under a key prefix unique to this
 * file). Channels are unique per test.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import t from 'tap';
import { MemoryChannelInterest } from '../../src/cluster/channels/memory-interest.js';
import { RedisChannelInterest } from '../../src/cluster/channels/redis-interest.js';
import type { ChannelInterest } from '../../src/cluster/channels/interest.js';
import { createRedis } from '../../src/cluster/redis-client.js';
import { rejectsWithCode, waitFor } from '../support/cluster-contract.js';
import { requireRedisUrl, uniqueRedisPrefix } from '../support/env.js';

const TTL_MS = 30_000;
const SHORT_TTL_MS = 300;

interface Factory {
  name: 'memory' | 'redis';
  /** A client of the shared registry; for Redis each one has its own connection, like a node. */
  create(): ChannelInterest;
  /** Keys of the registry left in Redis (null for memory). */
  keys?: () => Promise<string[]>;
  cleanup(): Promise<void>;
}

function memoryFactory(): Factory {
  const shared = new MemoryChannelInterest();
  return { name: 'memory', create: () => shared, cleanup: async () => {} };
}

function redisFactory(): Factory {
  const url = requireRedisUrl();
  const prefix = uniqueRedisPrefix('channel-interest');
  const conns: Redis[] = [];
  const admin = new Redis(url);
  return {
    name: 'redis',
    create() {
      const redis = createRedis({ url, keyPrefix: prefix, name: 'channels' });
      conns.push(redis);
      return new RedisChannelInterest({ redis });
    },
    keys: () => admin.keys(`${prefix}*`),
    async cleanup() {
      const keys = await admin.keys(`${prefix}*`);
      if (keys.length > 0) await admin.del(...keys);
      await Promise.all([...conns, admin].map((c) => c.quit().catch(() => c.disconnect())));
    },
  };
}

let n = 0;
const channel = (tag: string) => `c:${tag}-${++n}-${randomUUID().slice(0, 8)}`;
const sorted = (xs: string[]) => [...xs].sort();

function contract(factory: Factory) {
  t.test(`channel interest contract: ${factory.name}`, async (t) => {
    t.teardown(() => factory.cleanup());
    const reg = factory.create();
    const other = factory.create();

    t.test('add then list returns every live endpoint once; add says whether the entry is new', async (t) => {
      const c = channel('list');
      t.equal(await reg.add(c, 'na.0', TTL_MS), true, 'first add is new');
      t.equal(await other.add(c, 'nb.1', TTL_MS), true, 'another endpoint is new too');
      t.equal(await reg.add(c, 'na.0', TTL_MS), false, 'add again extends, not new');
      t.same(sorted(await other.list(c)), ['na.0', 'nb.1']);
      t.same(await reg.list(channel('nobody')), [], 'a channel nobody follows lists nothing');
    });

    t.test('remove deletes one endpoint; a second remove is a no-op', async (t) => {
      const c = channel('remove');
      await reg.add(c, 'na.0', TTL_MS);
      await reg.add(c, 'nb.0', TTL_MS);
      t.equal(await other.remove(c, 'na.0'), true);
      t.equal(await other.remove(c, 'na.0'), false, 'second remove');
      t.equal(await other.remove(c, 'nc.0'), false, 'an endpoint never added');
      t.same(await reg.list(c), ['nb.0']);
      t.equal(await reg.remove(c, 'nb.0'), true);
      t.same(await reg.list(c), []);
      if (factory.keys) t.same((await factory.keys()).filter((k) => k.includes(c)), [], 'the emptied channel leaves no key');
    });

    t.test('entries expire per endpoint, and an expired entry counts as new again', async (t) => {
      const c = channel('expire');
      await reg.add(c, 'na.0', SHORT_TTL_MS);
      await reg.add(c, 'nb.0', TTL_MS);
      await waitFor('the short entry to expire', async () => (await other.list(c)).length === 1);
      t.same(await other.list(c), ['nb.0']);
      t.equal(await reg.add(c, 'na.0', TTL_MS), true, 're-adding an expired endpoint is new');
      t.same(sorted(await other.list(c)), ['na.0', 'nb.0']);
    });

    t.test('a channel whose every entry expired lists nothing and leaves no key', async (t) => {
      const c = channel('all-expire');
      await reg.add(c, 'na.0', SHORT_TTL_MS);
      await reg.add(c, 'na.1', SHORT_TTL_MS);
      await waitFor('every entry to expire', async () => (await other.list(c)).length === 0);
      if (factory.keys) await waitFor('the key to expire', async () => (await factory.keys!()).every((k) => !k.includes(c)));
      t.pass('expired');
    });

    t.test('refresh extends many channels of one endpoint at once and restores lost entries', async (t) => {
      const [c1, c2, c3] = [channel('refresh'), channel('refresh'), channel('refresh')];
      await reg.add(c1, 'na.0', SHORT_TTL_MS);
      await reg.add(c2, 'na.0', SHORT_TTL_MS);
      await reg.refresh([c1, c2, c3], 'na.0', TTL_MS);
      await new Promise((r) => setTimeout(r, SHORT_TTL_MS + 100));
      t.same(await other.list(c1), ['na.0'], 'c1 outlived its first ttl');
      t.same(await other.list(c2), ['na.0'], 'c2 outlived its first ttl');
      t.same(await other.list(c3), ['na.0'], 'c3 (never added, e.g. lost in a Redis restart) is back');
      await reg.refresh([], 'na.0', TTL_MS);
      t.pass('an empty refresh is fine');
    });

    t.test('bad arguments are cluster.invalid', async (t) => {
      await rejectsWithCode(t, reg.add('', 'na.0', TTL_MS), 'cluster.invalid', 'empty channel');
      await rejectsWithCode(t, reg.add('x'.repeat(257), 'na.0', TTL_MS), 'cluster.invalid', 'channel too long');
      await rejectsWithCode(t, reg.add(channel('bad'), 'bad endpoint', TTL_MS), 'cluster.invalid', 'endpoint with a space');
      await rejectsWithCode(t, reg.add(channel('bad'), 'na.0', 0), 'cluster.invalid', 'ttl 0');
      await rejectsWithCode(t, reg.add(channel('bad'), 'na.0', 1.5), 'cluster.invalid', 'fractional ttl');
      await rejectsWithCode(t, reg.refresh(['ok', ''], 'na.0', TTL_MS), 'cluster.invalid', 'refresh with an empty channel');
      await rejectsWithCode(t, reg.remove(channel('bad'), ''), 'cluster.invalid', 'remove with an empty endpoint');
      await rejectsWithCode(t, reg.list(''), 'cluster.invalid', 'list of an empty channel');
    });
  });
}

contract(memoryFactory());
contract(redisFactory());
