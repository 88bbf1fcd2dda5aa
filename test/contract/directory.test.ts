/**
 * Directory contract suite: one suite, every implementation (memory; Redis on the real server of
 * the run, under a key prefix unique to this file). Addresses are unique per test.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { Redis } from 'ioredis';
import t, { type Test } from 'tap';
import type { Activation, Directory } from '../../src/cluster/directory/directory.js';
import { MemoryDirectory } from '../../src/cluster/directory/memory-directory.js';
import { RedisDirectory } from '../../src/cluster/directory/redis-directory.js';
import { ClusterError } from '../../src/cluster/errors.js';
import { createRedis } from '../../src/cluster/redis-client.js';
import { registry } from '../../src/metrics/registry.js';
import { rejectsWithCode, waitFor } from '../support/cluster-contract.js';
import { requireRedisUrl, uniqueRedisPrefix } from '../support/env.js';

const LONG_LEASE_MS = 30_000;
const SHORT_LEASE_MS = 300;

interface DirectoryFactory {
  name: 'memory' | 'redis';
  /** A client of the shared directory; for Redis each one has its own connection, like a node. */
  create(leaseMs: number): Directory;
  /** Redis only: a connection without the prefix, for SCRIPT FLUSH and key inspection. */
  admin?: Redis;
  prefix?: string;
  cleanup(): Promise<void>;
}

function memoryFactory(): DirectoryFactory {
  const byLease = new Map<number, MemoryDirectory>();
  return {
    name: 'memory',
    create(leaseMs) {
      let d = byLease.get(leaseMs);
      if (d === undefined) byLease.set(leaseMs, (d = new MemoryDirectory({ leaseMs })));
      return d;
    },
    cleanup: async () => {},
  };
}

function redisFactory(): DirectoryFactory {
  const url = requireRedisUrl();
  const prefix = uniqueRedisPrefix('directory');
  const conns: Redis[] = [];
  const admin = new Redis(url, { lazyConnect: false });
  return {
    name: 'redis',
    admin,
    prefix,
    create(leaseMs) {
      const redis = createRedis({ url, keyPrefix: prefix, name: 'directory' });
      conns.push(redis);
      return new RedisDirectory({ redis, leaseMs });
    },
    async cleanup() {
      const keys = await admin.keys(`${prefix}*`);
      if (keys.length > 0) await admin.del(...keys);
      await Promise.all([...conns, admin].map((c) => c.quit().catch(() => c.disconnect())));
    },
  };
}

let n = 0;
const addr = (tag: string) => `conv/${tag}-${++n}-${randomUUID().slice(0, 8)}`;
const act = (node: string): Activation => ({ node, activationId: randomUUID() });

function contract(factory: DirectoryFactory) {
  t.test(`directory contract: ${factory.name}`, async (t) => {
    t.teardown(() => factory.cleanup());
    const dir = factory.create(LONG_LEASE_MS);
    const other = factory.create(LONG_LEASE_MS);

    t.test('register returns the winner and does not overwrite another activation', async (t) => {
      const a = addr('win');
      const [n1, n2] = [act('n1'), act('n2')];
      const first = await dir.register(a, n1);
      t.equal(first.won, true);
      t.match(first.owner, { ...n1 });
      t.ok(first.owner.epoch > 0 && Number.isSafeInteger(first.owner.epoch), 'epoch is a positive safe integer');
      t.ok(first.owner.leaseExpiresAtMs > Date.now() + LONG_LEASE_MS / 2, 'lease runs out about leaseMs from now');
      const second = await other.register(a, n2);
      t.equal(second.won, false);
      t.same(
        { node: second.owner.node, activationId: second.owner.activationId, epoch: second.owner.epoch },
        { ...n1, epoch: first.owner.epoch },
        'the loser is told the existing owner',
      );
      const seen = await other.lookup(a);
      t.match(seen, { ...n1, epoch: first.owner.epoch }, 'lookup still shows the first activation');
      t.equal(await dir.lookup(addr('none')), null, 'lookup of an unregistered address is null');
    });

    t.test('register by the owning activation is idempotent: same epoch, lease extended', async (t) => {
      const a = addr('idem');
      const n1 = act('n1');
      const first = await dir.register(a, n1);
      const again = await other.register(a, { ...n1 });
      t.equal(again.won, true);
      t.equal(again.owner.epoch, first.owner.epoch);
      t.ok(again.owner.leaseExpiresAtMs >= first.owner.leaseExpiresAtMs);
      const sameNodeNewActivation = await dir.register(a, act('n1'));
      t.equal(sameNodeNewActivation.won, false, 'a new activation on the same node does not win');
    });

    t.test('epochs strictly increase across re-registrations', async (t) => {
      const a = addr('epochs');
      let last = 0;
      for (let i = 0; i < 5; i++) {
        const who = act(`n${i % 2}`);
        const r = await (i % 2 ? other : dir).register(a, who);
        t.equal(r.won, true);
        t.ok(r.owner.epoch > last, `registration ${i}: epoch ${r.owner.epoch} > ${last}`);
        last = r.owner.epoch;
        t.equal(await dir.unregister(a, who), true);
      }
    });

    t.test('unregister only removes its own activation', async (t) => {
      const a = addr('unreg');
      const n1 = act('n1');
      await dir.register(a, n1);
      t.equal(await other.unregister(a, act('n2')), false, 'another node cannot remove it');
      t.equal(await other.unregister(a, { node: 'n1', activationId: 'stale' }), false, 'nor an old activation');
      t.match(await dir.lookup(a), n1, 'entry is still there');
      t.equal(await other.unregister(a, n1), true, 'the owner removes it');
      t.equal(await dir.lookup(a), null);
      t.equal(await dir.unregister(a, n1), false, 'a second unregister is a no-op');
    });

    t.test('renewMany renews exactly the leases the caller owns', async (t) => {
      const [a, b, c] = [addr('rm'), addr('rm'), addr('rm')];
      const n1 = act('n1');
      await dir.register(a, n1);
      await dir.register(b, n1);
      await other.register(c, act('n2'));
      const res = await dir.renewMany([
        { address: a, activation: n1 },
        { address: b, activation: n1 },
        { address: c, activation: n1 },
        { address: addr('rm-none'), activation: n1 },
      ]);
      t.same(res, [true, true, false, false]);
      t.same(await dir.renewMany([]), []);
    });

    t.test('invalid addresses and activations are cluster.invalid', async (t) => {
      for (const bad of ['', 'conv', '/key', 'conv/', 'x/' + 'k'.repeat(600)]) {
        await rejectsWithCode(t, dir.register(bad, act('n1')), 'cluster.invalid', `address ${bad.slice(0, 12)}`);
      }
      await rejectsWithCode(t, dir.lookup('nope'), 'cluster.invalid', 'lookup');
      await rejectsWithCode(t, dir.register(addr('bad'), { node: '', activationId: 'x' }), 'cluster.invalid', 'node');
    });

    t.test('leases', async (t) => {
      const short = factory.create(SHORT_LEASE_MS);
      const shortOther = factory.create(SHORT_LEASE_MS);

      t.test('lease expiry lets another node take over, with a higher epoch; renew then fails', async (t) => {
        const a = addr('expire');
        const [n1, n2] = [act('n1'), act('n2')];
        const first = await short.register(a, n1);
        t.equal((await shortOther.register(a, n2)).won, false, 'taken while the lease is live');
        await waitFor('the lease to expire', async () => (await shortOther.lookup(a)) === null);
        const taken = await shortOther.register(a, n2);
        t.equal(taken.won, true, 'another node takes over');
        t.ok(taken.owner.epoch > first.owner.epoch, 'with a higher epoch');
        t.equal(await short.renew(a, n1), false, 'the old owner cannot renew');
        t.same(await short.renewMany([{ address: a, activation: n1 }]), [false]);
        t.equal(await short.unregister(a, n1), false, 'nor unregister the new owner');
        t.match(await short.lookup(a), n2);
      });

      t.test('renew keeps the lease alive past its length', async (t) => {
        // A longer lease than SHORT_LEASE_MS: between the last renew and the lookup the test process
        // may be descheduled for a few hundred ms on a loaded 2-core machine, which must not count
        // as a lost lease. The renews still span three lease lengths.
        const lease = 1000;
        const renewing = factory.create(lease);
        const other = factory.create(lease);
        const a = addr('renew');
        const n1 = act('n1');
        await renewing.register(a, n1);
        const until = Date.now() + lease * 3;
        while (Date.now() < until) {
          t.equal(await renewing.renew(a, n1), true);
          t.same(await renewing.renewMany([{ address: a, activation: n1 }]), [true]);
          await new Promise((r) => setTimeout(r, lease / 4));
        }
        t.match(await other.lookup(a), n1, 'still owned after three lease lengths');
        t.equal((await other.register(a, act('n2'))).won, false);
        t.equal(await other.renew(a, act('n2')), false, 'a non-owner cannot renew');
      });

      t.test('epochs increase after expiry (the counter outlives the entry)', async (t) => {
        const a = addr('epoch-expiry');
        let last = 0;
        for (let i = 0; i < 3; i++) {
          const r = await short.register(a, act(`n${i}`));
          t.equal(r.won, true);
          t.ok(r.owner.epoch > last, `epoch ${r.owner.epoch} > ${last}`);
          last = r.owner.epoch;
          await waitFor('expiry', async () => (await short.lookup(a)) === null);
        }
      });
    });

    t.test('concurrent registers from many clients: exactly one winner', async (t) => {
      const clients = Array.from({ length: 8 }, () => factory.create(LONG_LEASE_MS));
      for (let round = 0; round < 5; round++) {
        const a = addr('race');
        const acts = Array.from({ length: 40 }, (_, i) => act(`n${i % 8}`));
        const results = await Promise.all(acts.map((x, i) => clients[i % clients.length]!.register(a, x)));
        const winners = results.filter((r) => r.won);
        t.equal(winners.length, 1, `round ${round}: one winner`);
        const w = winners[0]!.owner;
        t.ok(
          results.every((r) => r.owner.activationId === w.activationId && r.owner.epoch === w.epoch),
          'every loser names the winner and its epoch',
        );
        t.match(await dir.lookup(a), { activationId: w.activationId, epoch: w.epoch });
      }
    });

    t.test('operations are timed in ticks_directory_op_duration_seconds', async (t) => {
      const text = await registry.metrics();
      t.match(text, new RegExp(`ticks_directory_op_duration_seconds_count\\{op="register",impl="${factory.name}",result="ok"\\}`));
      t.match(text, new RegExp(`ticks_directory_op_duration_seconds_count\\{op="register",impl="${factory.name}",result="cluster.invalid"\\}`));
    });

    if (factory.name === 'redis') redisOnly(t, factory);
  });
}

function redisOnly(t: Test, factory: DirectoryFactory) {
  const admin = factory.admin!;
  const dir = factory.create(LONG_LEASE_MS);

  t.test('keys live under the prefix; the epoch counter never expires', async (t) => {
    const a = addr('keys');
    await dir.register(a, act('n1'));
    const ownerTtl = await admin.pttl(`${factory.prefix}dir:{${a}}:owner`);
    t.ok(ownerTtl > 0 && ownerTtl <= LONG_LEASE_MS, `owner key is a lease (pttl ${ownerTtl})`);
    t.equal(await admin.pttl(`${factory.prefix}dir:{${a}}:epoch`), -1, 'epoch key has no expiry');
  });

  t.test('epochs keep increasing after the counter is lost (Redis data loss)', async (t) => {
    const a = addr('dataloss');
    const first = await dir.register(a, act('n1'));
    await admin.del(`${factory.prefix}dir:{${a}}:owner`, `${factory.prefix}dir:{${a}}:epoch`);
    await new Promise((r) => setTimeout(r, 5));
    const second = await dir.register(a, act('n2'));
    t.equal(second.won, true);
    t.ok(second.owner.epoch > first.owner.epoch, `epoch ${second.owner.epoch} > ${first.owner.epoch}`);
  });

  t.test('scripts survive SCRIPT FLUSH (reloaded on NOSCRIPT)', async (t) => {
    const a = addr('flush');
    const n1 = act('n1');
    await (dir as RedisDirectory).loadScripts();
    const sha = createHash('sha1')
      .update(readFileSync(new URL('../../src/cluster/directory/lua/register.lua', import.meta.url)))
      .digest('hex');
    t.same(await admin.script('EXISTS', sha), [1], 'loadScripts loaded them by SHA');
    await admin.script('FLUSH');
    t.equal((await dir.register(a, n1)).won, true, 'register');
    await admin.script('FLUSH');
    t.equal(await dir.renew(a, n1), true, 'renew');
    await admin.script('FLUSH');
    t.same(await dir.renewMany([{ address: a, activation: n1 }, { address: addr('x'), activation: n1 }]), [true, false], 'renewMany');
    await admin.script('FLUSH');
    t.match(await dir.lookup(a), n1, 'lookup');
    await admin.script('FLUSH');
    t.equal(await dir.unregister(a, n1), true, 'unregister');
  });

  t.test('an unreachable Redis gives cluster.unavailable, quickly', async (t) => {
    const port = await closedPort();
    const redis = createRedis({ url: `redis://127.0.0.1:${port}`, keyPrefix: factory.prefix!, name: 'directory' });
    t.teardown(() => redis.disconnect());
    const down = new RedisDirectory({ redis, leaseMs: LONG_LEASE_MS });
    const started = Date.now();
    await rejectsWithCode(t, down.lookup(addr('down')), 'cluster.unavailable', 'lookup');
    await rejectsWithCode(t, down.register(addr('down'), act('n1')), 'cluster.unavailable', 'register');
    await rejectsWithCode(t, down.renewMany([{ address: addr('down'), activation: act('n1') }]), 'cluster.unavailable', 'renewMany');
    t.ok(Date.now() - started < 5_000, `failed within 5 s (${Date.now() - started} ms)`);
    t.ok(new ClusterError('cluster.unavailable', 'x').retryable, 'and it is retryable');
    t.match(await registry.metrics(), /ticks_cluster_redis_errors_total\{component="directory",code="cluster.unavailable"\} [1-9]/);
  });

  t.test('a Redis that accepts but never answers gives cluster.timeout', async (t) => {
    const server = createServer(() => {});
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    const redis = createRedis({ url: `redis://127.0.0.1:${port}`, keyPrefix: factory.prefix!, name: 'directory' });
    t.teardown(() => {
      redis.disconnect();
      server.close();
    });
    const stuck = new RedisDirectory({ redis, leaseMs: LONG_LEASE_MS });
    await rejectsWithCode(t, stuck.lookup(addr('stuck')), 'cluster.timeout', 'lookup');
  });
}

async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  await new Promise((r) => server.close(r));
  return port;
}

t.test('memory directory: an injected clock drives lease expiry without sleeping', async (t) => {
  let now = 1_000_000;
  const dir = new MemoryDirectory({ leaseMs: 1_000, now: () => now });
  const a = addr('clock');
  const first = await dir.register(a, act('n1'));
  t.equal(first.owner.leaseExpiresAtMs, now + 1_000);
  now += 999;
  t.equal((await dir.register(a, act('n2'))).won, false, 'live 1 ms before expiry');
  now += 1;
  t.equal(await dir.lookup(a), null, 'gone at expiry');
  const second = await dir.register(a, act('n2'));
  t.ok(second.won && second.owner.epoch > first.owner.epoch);
});

contract(memoryFactory());
contract(redisFactory());
