/**
 * Presence contract suite (src/cluster/presence/presence.ts): one suite, every implementation
 * (memory hub; Redis on a real server under a unique key prefix per file). Users, conversations
 * and nodes are unique per test, so the tests of one implementation share its store.
 *
 * Absence of an event is proven without sleeping: each listening node also watches a sentinel
 * user; `fence` publishes the sentinel's offline event from the same instance and waits for it.
 * Events from one instance to one node arrive in order, so anything sent before it is in by then.
 */
import { randomUUID } from 'node:crypto';
import { Redis } from 'ioredis';
import t, { type Test } from 'tap';
import { ClusterError } from '../../src/cluster/errors.js';
import { createMemoryPresence, MemoryPresenceHub } from '../../src/cluster/presence/memory-presence.js';
import type { Presence, PresenceEvent } from '../../src/cluster/presence/presence.js';
import { createRedisPresence } from '../../src/cluster/presence/redis-presence.js';
import { registry } from '../../src/metrics/registry.js';
import { requireRedisUrl, uniqueRedisPrefix } from '../support/env.js';

interface Tuning {
  watchTtlMs?: number;
  renewIntervalMs?: number;
}

interface PresenceFactory {
  name: 'memory' | 'redis';
  /** One node's presence; all instances of a factory share the stored state. */
  create(tuning?: Tuning): Presence;
  /** Every stored key of this factory (Redis: SCAN of the prefix), sorted. */
  keys(): Promise<string[]>;
  cleanup(): Promise<void>;
}

function memoryFactory(): PresenceFactory {
  const hub = new MemoryPresenceHub();
  return {
    name: 'memory',
    create: (tuning = {}) => createMemoryPresence(hub, tuning),
    keys: async () => hub.keys(),
    cleanup: async () => {},
  };
}

function redisFactory(): PresenceFactory {
  const url = requireRedisUrl();
  const keyPrefix = uniqueRedisPrefix('presence');
  const raw = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  const scan = async (): Promise<string[]> => {
    const out: string[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await raw.scan(cursor, 'MATCH', `${keyPrefix}*`, 'COUNT', 1000);
      out.push(...keys);
      cursor = next;
    } while (cursor !== '0');
    return out.sort();
  };
  return {
    name: 'redis',
    create: (tuning = {}) => createRedisPresence({ url, keyPrefix, ...tuning }),
    keys: scan,
    cleanup: async () => {
      const keys = await scan(); // only this file's prefix: never a flush of the shared server
      if (keys.length > 0) await raw.del(...keys);
      raw.disconnect();
    },
  };
}

let n = 0;
const id = (tag: string) => `${tag}-${++n}-${randomUUID().slice(0, 8)}`;

async function waitFor(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A listening node that records the events it is handed. */
class Node {
  readonly events: { event: PresenceEvent; connIds: string[] }[] = [];
  readonly sentinel = id('sentinel');
  private fences = 0;
  constructor(
    readonly presence: Presence,
    readonly node: string,
  ) {}

  static async start(presence: Presence, tag: string): Promise<Node> {
    const n = new Node(presence, id(tag));
    await presence.listen(n.node, (event, connIds) => {
      if (event.type === 'presence' && event.user === n.sentinel) n.fences++;
      else n.events.push({ event, connIds: [...connIds] });
    });
    const r = await presence.watch({ node: n.node, connId: 'sentinel-conn' }, [n.sentinel], 10);
    if (r.result !== 'ok') throw new Error('sentinel watch refused');
    return n;
  }

  /** Waits until everything `via` published to this node before now has arrived. */
  async fence(via: Presence): Promise<void> {
    const before = this.fences;
    await via.setOffline(this.sentinel);
    await waitFor(() => this.fences > before, `fence on ${this.node}`);
  }
}

async function rejectsWith(t: Test, p: Promise<unknown>, code: string, msg: string): Promise<void> {
  try {
    await p;
    t.fail(`${msg}: expected ${code}, resolved instead`);
  } catch (err) {
    t.ok(err instanceof ClusterError, `${msg}: is a ClusterError`);
    t.equal((err as ClusterError).code, code, msg);
  }
}

async function metricValue(name: string, labels: Record<string, string>): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const values = (metric?.values ?? []) as { labels: Record<string, string | number>; value: number }[];
  return values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val))?.value ?? 0;
}

function contract(factory: PresenceFactory) {
  t.test(`presence contract: ${factory.name}`, async (t) => {
    const instances: Presence[] = [];
    const make = (tuning?: Tuning) => {
      const p = factory.create(tuning);
      instances.push(p);
      return p;
    };
    t.teardown(async () => {
      await Promise.all(instances.map((p) => p.close()));
      await factory.cleanup();
    });
    const x = make(); // the instance that changes presence and types (another node)

    t.test('online, offline and last seen', async (t) => {
      const [u, never] = [id('u'), id('never')];
      t.same(await x.get([u]), [{ user: u, online: false, lastSeenMs: null }], 'unknown user is offline, never seen');
      const t0 = Date.now();
      await x.setOnline(u, 'node-1', 10_000);
      const t1 = Date.now();
      const [on] = await x.get([u]);
      t.equal(on!.online, true, 'online after setOnline');
      t.ok(on!.lastSeenMs! >= t0 && on!.lastSeenMs! <= t1, 'last seen is the server time of setOnline');
      await x.setOnline(u, 'node-1', 10_000); // heartbeat: idempotent
      const t2 = Date.now();
      await x.setOffline(u);
      const t3 = Date.now();
      const got = await x.get([never, u, never]);
      t.same(got.map((g) => [g.user, g.online]), [[never, false], [u, false], [never, false]], 'request order, offline');
      t.ok(got[1]!.lastSeenMs! >= t2 && got[1]!.lastSeenMs! <= t3, 'last seen is the server time of setOffline');
      t.same(await x.get([]), [], 'empty request');
    });

    t.test('an expired online lease makes the user offline and keeps last seen', async (t) => {
      const u = id('u');
      const t0 = Date.now();
      await x.setOnline(u, 'node-1', 150);
      t.equal((await x.get([u]))[0]!.online, true, 'online at first');
      await waitFor(async () => !(await x.get([u]))[0]!.online, 'the lease to expire');
      const [after] = await x.get([u]);
      t.ok(Date.now() - t0 >= 150, 'not before the TTL');
      t.ok(after!.lastSeenMs! >= t0, 'last seen survives the lease');
    });

    t.test('watch is capped per connection and never truncates', async (t) => {
      const a = await Node.start(make(), 'a');
      const w = { node: a.node, connId: 'c1' };
      const [u1, u2, u3, c1] = [id('u'), id('u'), id('u'), id('c')];
      const overBefore = await metricValue('ticks_presence_watch_total', { result: 'over_cap' });
      t.same(await a.presence.watch(w, [u1, u2, u3], 2), { result: 'over_cap', watching: 0, cap: 2 }, 'three over a cap of two');
      const ok = await a.presence.watch(w, [u1, u2, u1], 2);
      t.equal(ok.result, 'ok', 'two distinct users fit');
      t.equal(ok.watching, 2);
      t.same(ok.result === 'ok' ? ok.presence.map((p) => p.user) : [], [u1, u2, u1], 'snapshot of the requested users');
      t.equal((await a.presence.watch(w, [u2], 2)).watching, 2, 'watching again is idempotent');
      t.same(await a.presence.watch(w, [u3], 2), { result: 'over_cap', watching: 2, cap: 2 }, 'a third user is refused');
      t.same(await a.presence.watchConversations(w, [c1], 2), { result: 'over_cap', watching: 2, cap: 2 }, 'conversations share the cap');
      t.equal((await a.presence.watch({ node: a.node, connId: 'c2' }, [u3], 2)).result, 'ok', 'the cap is per connection');
      await a.presence.unwatch(w, [u1]);
      t.equal((await a.presence.watchConversations(w, [c1], 2)).result, 'ok', 'room again after unwatch');
      const overAfter = await metricValue('ticks_presence_watch_total', { result: 'over_cap' });
      t.equal(overAfter - overBefore, 3, 'refusals counted as over_cap');
      // The refused user was never stored: its change reaches nobody.
      await x.setOnline(u3, 'node-1', 10_000);
      await a.fence(x);
      t.same(a.events.map((e) => e.connIds), [['c2']], 'only the connection that could watch u3 heard it');
    });

    t.test('watching nodes get events for watched users only', async (t) => {
      const [a, b] = [await Node.start(make(), 'a'), await Node.start(make(), 'b')];
      const [u1, u2, u3] = [id('u'), id('u'), id('u')];
      await a.presence.watch({ node: a.node, connId: 'a1' }, [u1], 10);
      await a.presence.watch({ node: a.node, connId: 'a2' }, [u1, u3], 10);
      await a.presence.unwatch({ node: a.node, connId: 'a2' }, [u3]);
      await b.presence.watch({ node: b.node, connId: 'b1' }, [u2], 10);
      await x.setOnline(u1, 'node-9', 10_000);
      await waitFor(() => a.events.length === 1, 'u1 online on a');
      const [ev] = a.events;
      t.match(ev!.event, { type: 'presence', user: u1, online: true }, 'online event');
      t.same([...ev!.connIds].sort(), ['a1', 'a2'], 'one event per node, with every local watcher');
      await x.setOnline(u1, 'node-9', 10_000); // heartbeat: no event
      await x.setOnline(u3, 'node-9', 10_000); // unwatched
      await x.setOffline(u1);
      await a.fence(x);
      await b.fence(x);
      t.same(a.events.map((e) => [e.event.type, e.event.type === 'presence' && e.event.online]), [['presence', true], ['presence', false]], 'a: online then offline, no heartbeat or unwatched user');
      t.equal(b.events.length, 0, 'b heard nothing about users it does not watch');
      await x.setOnline(u2, 'node-9', 10_000);
      await waitFor(() => b.events.length === 1, 'u2 online on b');
      t.same(b.events[0]!.connIds, ['b1']);
      await b.presence.unwatchAll({ node: b.node, connId: 'b1' });
      await x.setOffline(u2);
      await b.fence(x);
      t.equal(b.events.length, 1, 'nothing after unwatchAll');
    });

    t.test('typing reaches the watchers of the conversation and writes no key', async (t) => {
      const [a, b] = [await Node.start(make(), 'a'), await Node.start(make(), 'b')];
      const [c1, c2, c3, u, d] = [id('c'), id('c'), id('c'), id('u'), id('d')];
      await a.presence.watchConversations({ node: a.node, connId: 'a1' }, [c1], 10);
      await b.presence.watchConversations({ node: b.node, connId: 'b1' }, [c2], 10);
      const before = await factory.keys();
      t.equal(await x.typing(c1, u, d, 'typing'), 1, 'one watching node');
      t.equal(await x.typing(c1, u, d, 'paused'), 1);
      t.equal(await x.typing(c3, u, d, 'typing'), 0, 'nobody watches c3');
      await waitFor(() => a.events.length === 2, 'two typing events on a');
      // Snapshot before any fence: a fence records the sentinel's last seen.
      const after = await factory.keys();
      t.same(after, before, 'no key was written by typing');
      t.notOk(after.some((k) => k.includes(u) || k.includes(c3)), 'no key names the typist or c3');
      t.same(a.events, [
        { event: { type: 'typing', conv: c1, user: u, device: d, state: 'typing' }, connIds: ['a1'] },
        { event: { type: 'typing', conv: c1, user: u, device: d, state: 'paused' }, connIds: ['a1'] },
      ]);
      await b.fence(x);
      t.equal(b.events.length, 0, 'b does not watch c1');
    });

    t.test('a node that stops renewing loses its watches, a renewing one keeps them', async (t) => {
      const [dead, live] = [
        await Node.start(make({ watchTtlMs: 300, renewIntervalMs: 0 }), 'dead'),
        await Node.start(make({ watchTtlMs: 300 }), 'live'),
      ];
      const [cd, cl] = [id('c'), id('c')];
      await dead.presence.watchConversations({ node: dead.node, connId: 'd1' }, [cd], 10);
      await live.presence.watchConversations({ node: live.node, connId: 'l1' }, [cl], 10);
      const t0 = Date.now();
      t.equal(await x.typing(cd, 'u', 'd', 'typing'), 1, 'dead node watches at first');
      await waitFor(async () => (await x.typing(cd, 'u', 'd', 'paused')) === 0, 'the unrenewed entry to expire');
      t.ok(Date.now() - t0 >= 250, 'not long before its TTL');
      t.equal(await x.typing(cl, 'u', 'd', 'typing'), 1, 'the renewed entry outlived its TTL');
    });

    t.test('close removes the instance watches at once', async (t) => {
      const c = await Node.start(factory.create(), 'closing');
      const conv = id('c');
      await c.presence.watchConversations({ node: c.node, connId: 'k1' }, [conv], 10);
      t.equal(await x.typing(conv, 'u', 'd', 'typing'), 1);
      await c.presence.close();
      t.equal(await x.typing(conv, 'u', 'd', 'typing'), 0, 'no watching node after close');
      await rejectsWith(t, c.presence.get(['u']), 'cluster.unavailable', 'use after close');
    });

    t.test('bad arguments reject with cluster.invalid', async (t) => {
      const a = await Node.start(make(), 'a');
      await rejectsWith(t, x.watch({ node: id('elsewhere'), connId: 'c' }, ['u'], 5), 'cluster.invalid', 'watch without a listener');
      await rejectsWith(t, a.presence.watch({ node: a.node, connId: 'c' }, ['u'], 0), 'cluster.invalid', 'cap 0');
      await rejectsWith(t, a.presence.watch({ node: a.node, connId: '' }, ['u'], 5), 'cluster.invalid', 'empty connection id');
      await rejectsWith(t, x.setOnline('', 'n', 1000), 'cluster.invalid', 'empty user');
      await rejectsWith(t, x.setOnline('u', 'n', 0), 'cluster.invalid', 'ttl 0');
      await rejectsWith(t, x.typing('c', 'u', 'd', 'shouting' as 'typing'), 'cluster.invalid', 'unknown typing state');
      await rejectsWith(t, a.presence.listen(a.node, () => {}), 'cluster.invalid', 'second listener for a node');
    });
  });
}

contract(memoryFactory());
contract(redisFactory());
