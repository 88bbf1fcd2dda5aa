/**
 * Session registry contract suite: one suite, every implementation (memory; Redis on the real
 * server of the run, under a key prefix unique to this file). Users are unique per test.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import t, { type Test } from 'tap';
import { createRedis } from '../../src/cluster/redis-client.js';
import { MemorySessions } from '../../src/cluster/sessions/memory-sessions.js';
import { RedisSessions } from '../../src/cluster/sessions/redis-sessions.js';
import type { SessionConn, SessionEntry, SessionRegistry } from '../../src/cluster/sessions/sessions.js';
import { rejectsWithCode, waitFor } from '../support/cluster-contract.js';
import { requireRedisUrl, uniqueRedisPrefix } from '../support/env.js';

const TTL_MS = 30_000;
const SHORT_TTL_MS = 300;

interface SessionsFactory {
  name: 'memory' | 'redis';
  /** A client of the shared registry; for Redis each one has its own connection, like a node. */
  create(): SessionRegistry;
  admin?: Redis;
  prefix?: string;
  cleanup(): Promise<void>;
}

function memoryFactory(): SessionsFactory {
  const shared = new MemorySessions();
  return { name: 'memory', create: () => shared, cleanup: async () => {} };
}

function redisFactory(): SessionsFactory {
  const url = requireRedisUrl();
  const prefix = uniqueRedisPrefix('sessions');
  const conns: Redis[] = [];
  const admin = new Redis(url);
  return {
    name: 'redis',
    admin,
    prefix,
    create() {
      const redis = createRedis({ url, keyPrefix: prefix, name: 'sessions' });
      conns.push(redis);
      return new RedisSessions({ redis });
    },
    async cleanup() {
      const keys = await admin.keys(`${prefix}*`);
      if (keys.length > 0) await admin.del(...keys);
      await Promise.all([...conns, admin].map((c) => c.quit().catch(() => c.disconnect())));
    },
  };
}

let n = 0;
const user = (tag: string) => `u-${tag}-${++n}-${randomUUID().slice(0, 8)}`;
const conn = (node: string): SessionConn => ({ node, connId: randomUUID() });
const byDevice = (list: SessionEntry[]) =>
  Object.fromEntries(list.map((e) => [e.device, { node: e.node, connId: e.connId }]));

function contract(factory: SessionsFactory) {
  t.test(`sessions contract: ${factory.name}`, async (t) => {
    t.teardown(() => factory.cleanup());
    const reg = factory.create();
    const other = factory.create();

    t.test('put then list returns every live device with its node', async (t) => {
      const u = user('list');
      const [phone, laptop] = [conn('n1'), conn('n2')];
      t.same(await reg.put(u, 'phone', phone, TTL_MS), { replaced: null });
      t.same(await other.put(u, 'laptop', laptop, TTL_MS), { replaced: null });
      const list = await reg.list(u);
      t.same(byDevice(list), { phone, laptop });
      t.ok(list.every((e) => e.expiresAtMs > Date.now() + TTL_MS / 2), 'each entry expires about ttl from now');
      t.same(await reg.list(user('nobody')), [], 'a user with no sessions lists nothing');
    });

    t.test('listMany answers like list for each user, in order', { skip: reg.listMany === undefined ? 'no listMany' : false }, async (t) => {
      const [u1, u2, none] = [user('many1'), user('many2'), user('many0')];
      const [c1, c2, c3] = [conn('n1'), conn('n2'), conn('n3')];
      await reg.put(u1, 'phone', c1, TTL_MS);
      await reg.put(u2, 'phone', c2, TTL_MS);
      await other.put(u2, 'laptop', c3, TTL_MS);
      const lists = await reg.listMany!([u2, none, u1]);
      t.equal(lists.length, 3, 'one answer per user');
      t.same(lists.map(byDevice), [{ phone: c2, laptop: c3 }, {}, { phone: c1 }], 'each user its own live devices');
      t.same(await reg.listMany!([]), [], 'no users, no answers');
      await rejectsWithCode(t, reg.listMany!([u1, 'x'.repeat(300)]), 'cluster.invalid', 'a bad user fails the call');
    });

    t.test('a newer connection replaces the device entry and reports the old one', async (t) => {
      const u = user('replace');
      const [old, newer] = [conn('n1'), conn('n2')];
      await reg.put(u, 'phone', old, TTL_MS);
      t.same(await other.put(u, 'phone', newer, TTL_MS), { replaced: old });
      t.same(await other.put(u, 'phone', newer, TTL_MS), { replaced: null }, 'put is idempotent');
      t.same(byDevice(await reg.list(u)), { phone: newer });
    });

    t.test('remove deletes only its own connection', async (t) => {
      const u = user('remove');
      const [old, newer] = [conn('n1'), conn('n2')];
      await reg.put(u, 'phone', old, TTL_MS);
      await reg.put(u, 'phone', newer, TTL_MS);
      t.equal(await reg.remove(u, 'phone', old), false, 'a late close of the old connection is a no-op');
      t.equal(await reg.remove(u, 'laptop', newer), false, 'another device is untouched');
      t.same(byDevice(await other.list(u)), { phone: newer });
      t.equal(await other.remove(u, 'phone', newer), true);
      t.same(await reg.list(u), []);
      t.equal(await other.remove(u, 'phone', newer), false, 'a second remove is a no-op');
    });

    t.test('entries expire per device', async (t) => {
      const u = user('expire');
      const [shortLived, longLived] = [conn('n1'), conn('n2')];
      await reg.put(u, 'phone', shortLived, SHORT_TTL_MS);
      await reg.put(u, 'laptop', longLived, TTL_MS);
      await waitFor('the phone entry to expire', async () => (await other.list(u)).length === 1);
      t.same(byDevice(await other.list(u)), { laptop: longLived });
      t.same(await reg.refresh([{ user: u, device: 'phone', conn: shortLived }], TTL_MS), [false], 'refresh cannot revive it');
      t.equal(await reg.remove(u, 'phone', shortLived), false, 'nor is there anything to remove');
      t.same(await reg.put(u, 'phone', conn('n3'), TTL_MS), { replaced: null }, 'an expired entry is not reported as replaced');
    });

    t.test('a user whose every entry expired lists nothing', async (t) => {
      const u = user('all-expire');
      await reg.put(u, 'phone', conn('n1'), SHORT_TTL_MS);
      await reg.put(u, 'watch', conn('n1'), SHORT_TTL_MS);
      await waitFor('every entry to expire', async () => (await other.list(u)).length === 0);
      t.pass('expired');
    });

    t.test('refresh extends live entries of the same connection, many at once', async (t) => {
      const [u1, u2] = [user('refresh'), user('refresh')];
      const [c1, c2, c3] = [conn('n1'), conn('n1'), conn('n1')];
      await reg.put(u1, 'phone', c1, SHORT_TTL_MS);
      await reg.put(u2, 'phone', c2, SHORT_TTL_MS);
      await reg.put(u2, 'laptop', c3, SHORT_TTL_MS);
      await other.put(u2, 'laptop', conn('n2'), TTL_MS);
      const beat = [
        { user: u1, device: 'phone', conn: c1 },
        { user: u2, device: 'phone', conn: c2 },
        { user: u2, device: 'laptop', conn: c3 },
        { user: user('none'), device: 'phone', conn: c1 },
      ];
      const until = Date.now() + SHORT_TTL_MS * 3;
      while (Date.now() < until) {
        t.same(await reg.refresh(beat, SHORT_TTL_MS), [true, true, false, false]);
        await new Promise((r) => setTimeout(r, SHORT_TTL_MS / 4));
      }
      t.same(Object.keys(byDevice(await other.list(u1))), ['phone'], 'still live after three ttls');
      t.same(byDevice(await other.list(u2)).phone, c2);
      t.same(await reg.refresh([], TTL_MS), []);
    });

    t.test('invalid arguments are cluster.invalid', async (t) => {
      await rejectsWithCode(t, reg.put('', 'phone', conn('n1'), TTL_MS), 'cluster.invalid', 'empty user');
      await rejectsWithCode(t, reg.put(user('bad'), '', conn('n1'), TTL_MS), 'cluster.invalid', 'empty device');
      await rejectsWithCode(t, reg.put(user('bad'), 'phone', conn('n1'), 0), 'cluster.invalid', 'zero ttl');
      await rejectsWithCode(t, reg.put(user('bad'), 'phone', { node: 'n1', connId: '' }, TTL_MS), 'cluster.invalid', 'no connId');
      await rejectsWithCode(t, reg.list('x'.repeat(300)), 'cluster.invalid', 'long user');
    });

    if (factory.name === 'redis') redisOnly(t, factory);
  });
}

function redisOnly(t: Test, factory: SessionsFactory) {
  const admin = factory.admin!;
  const reg = factory.create();

  t.test('a user key expires with its longest-lived entry', async (t) => {
    const u = user('keyttl');
    await reg.put(u, 'phone', conn('n1'), SHORT_TTL_MS);
    await reg.put(u, 'laptop', conn('n1'), TTL_MS);
    const ttl = await admin.pttl(`${factory.prefix}sess:{${u}}:conn`);
    t.ok(ttl > SHORT_TTL_MS && ttl <= TTL_MS, `conn hash pttl ${ttl}`);
    t.ok((await admin.pttl(`${factory.prefix}sess:{${u}}:exp`)) > SHORT_TTL_MS, 'expiry set pttl too');
  });

  t.test('scripts survive SCRIPT FLUSH (reloaded on NOSCRIPT)', async (t) => {
    const u = user('flush');
    const c = conn('n1');
    await admin.script('FLUSH');
    t.same(await reg.put(u, 'phone', c, TTL_MS), { replaced: null }, 'put');
    await admin.script('FLUSH');
    t.same(await reg.refresh([{ user: u, device: 'phone', conn: c }], TTL_MS), [true], 'refresh');
    await admin.script('FLUSH');
    t.equal((await reg.list(u)).length, 1, 'list');
    await admin.script('FLUSH');
    t.same((await reg.listMany!([u, u])).map((l) => l.length), [1, 1], 'listMany');
    await admin.script('FLUSH');
    t.equal(await reg.remove(u, 'phone', c), true, 'remove');
  });

  t.test('an unreachable Redis gives cluster.unavailable, quickly', async (t) => {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    await new Promise((r) => server.close(r));
    const redis = createRedis({ url: `redis://127.0.0.1:${port}`, keyPrefix: factory.prefix!, name: 'sessions' });
    t.teardown(() => redis.disconnect());
    const down = new RedisSessions({ redis });
    const started = Date.now();
    await rejectsWithCode(t, down.list(user('down')), 'cluster.unavailable', 'list');
    await rejectsWithCode(t, down.put(user('down'), 'phone', conn('n1'), TTL_MS), 'cluster.unavailable', 'put');
    await rejectsWithCode(t, down.refresh([{ user: user('down'), device: 'p', conn: conn('n1') }], TTL_MS), 'cluster.unavailable', 'refresh');
    t.ok(Date.now() - started < 5_000, `failed within 5 s (${Date.now() - started} ms)`);
  });
}

contract(memoryFactory());
contract(redisFactory());
