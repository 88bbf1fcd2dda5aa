/**
 * Bus contract suite (src/cluster/bus/bus.ts): one suite, every implementation (memory hub, Redis
 * pub/sub on a real server with a unique channel prefix per file). Node ids are unique per test, so
 * tests share one transport per implementation.
 *
 * Absence of delivery is proven without sleeping: after the frame that must not arrive, a marker
 * frame is published to the same subscriber, and frames from one publisher arrive in publish order
 * while connected, so once the marker is in, anything earlier would have been too.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { createServer } from 'node:net';
import t, { type Test } from 'tap';
import type { Bus, BusSubscription } from '../../src/cluster/bus/bus.js';
import { MemoryBus, MemoryBusHub } from '../../src/cluster/bus/memory-bus.js';
import { RedisBus } from '../../src/cluster/bus/redis-bus.js';
import { ClusterError } from '../../src/cluster/errors.js';
import { registry } from '../../src/metrics/registry.js';
import { requireRedisUrl, uniqueRedisPrefix } from '../support/env.js';

interface BusOptions {
  onHandlerError?: (err: unknown) => void;
}

interface BusFactory {
  name: 'memory' | 'redis';
  /** A bus for one node; every bus of one factory shares the transport. */
  create(opts?: BusOptions): Bus;
  /** A bus whose transport cannot be reached. */
  unreachable(): Promise<Bus>;
  /**
   * A bus and a target where publishes pile up without settling, with the bounded queue set to
   * `limit`: memory fills the hub's undelivered-frame queue, Redis fills the pending publishes of a
   * bus whose server is unreachable.
   */
  bounded(limit: number): Promise<{ bus: Bus; target: string; cleanup(): Promise<void> }>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as { port: number };
      srv.close(() => resolve(port));
    });
  });
}

function memoryFactory(): BusFactory {
  const hub = new MemoryBusHub();
  return {
    name: 'memory',
    create: (opts = {}) => new MemoryBus(hub, opts),
    unreachable: async () => {
      const down = new MemoryBusHub();
      down.setReachable(false);
      return new MemoryBus(down);
    },
    bounded: async (limit) => {
      const small = new MemoryBusHub({ maxQueuedFrames: limit });
      const sub = new MemoryBus(small);
      const target = node('bounded');
      await sub.subscribe(target, () => {});
      const bus = new MemoryBus(small);
      return { bus, target, cleanup: async () => { await bus.close(); await sub.close(); } };
    },
  };
}

function redisFactory(): BusFactory {
  const url = requireRedisUrl();
  const keyPrefix = uniqueRedisPrefix('bus');
  return {
    name: 'redis',
    create: (opts = {}) => new RedisBus({ url, keyPrefix, ...opts }),
    unreachable: async () => new RedisBus({ url: `redis://127.0.0.1:${await freePort()}`, keyPrefix }),
    bounded: async (limit) => {
      const bus = new RedisBus({ url: `redis://127.0.0.1:${await freePort()}`, keyPrefix, maxPendingPublishes: limit });
      return { bus, target: node('bounded'), cleanup: () => bus.close() };
    },
  };
}

let n = 0;
const node = (tag: string) => `n-${tag}-${++n}-${randomUUID().slice(0, 8)}`;

async function waitFor(cond: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 2));
  }
}

const MARKER = new Uint8Array([0x4d, 0x4b]); // "MK"
const isMarker = (b: Uint8Array) => b.length === 2 && b[0] === 0x4d && b[1] === 0x4b;

/** A subscriber that records what it receives and can be fenced with a marker frame. */
class Recorder {
  readonly frames: Uint8Array[] = [];
  markers = 0;
  sub: BusSubscription | undefined;
  constructor(readonly node: string) {}
  readonly onFrame = (bytes: Uint8Array) => {
    if (isMarker(bytes)) this.markers++;
    else this.frames.push(bytes);
  };
  async attach(bus: Bus): Promise<this> {
    this.sub = await bus.subscribe(this.node, this.onFrame);
    return this;
  }
  /** Publishes a marker from `via` and waits for it: every frame `via` published before is in. */
  async fence(via: Bus): Promise<void> {
    const before = this.markers;
    const receivers = await via.publish(this.node, MARKER);
    if (receivers !== 1) throw new Error(`marker for ${this.node} had ${receivers} receivers`);
    await waitFor(() => this.markers > before, `marker on ${this.node}`);
  }
}

async function rejectsWith(t: Test, p: Promise<unknown>, code: string, msg: string): Promise<ClusterError | undefined> {
  try {
    await p;
    t.fail(`${msg}: expected ${code}, resolved instead`);
  } catch (err) {
    t.ok(err instanceof ClusterError, `${msg}: is a ClusterError`);
    t.equal((err as ClusterError).code, code, msg);
    return err as ClusterError;
  }
  return undefined;
}

async function metricValue(name: string, labels: Record<string, string>): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const values = (metric?.values ?? []) as { labels: Record<string, string | number>; value: number }[];
  const hit = values.find((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val));
  return hit?.value ?? 0;
}

function contract(factory: BusFactory) {
  t.test(`bus contract: ${factory.name}`, async (t) => {
    const buses: Bus[] = [];
    const make = (opts?: BusOptions) => {
      const b = factory.create(opts);
      buses.push(b);
      return b;
    };
    t.teardown(async () => {
      await Promise.all(buses.map((b) => b.close()));
    });
    const publisher = make();

    t.test('publish delivers to the target node only', async (t) => {
      const [a, b, c] = [new Recorder(node('a')), new Recorder(node('b')), new Recorder(node('c'))];
      await a.attach(make());
      await b.attach(make());
      await c.attach(make());
      const frame = new Uint8Array([1, 2, 3]);
      t.equal(await publisher.publish(b.node, frame), 1, 'one receiver on b');
      await b.fence(publisher);
      t.same(b.frames.map((f) => [...f]), [[1, 2, 3]], 'b received the frame once');
      await a.fence(publisher);
      await c.fence(publisher);
      t.equal(a.frames.length + c.frames.length, 0, 'a and c received nothing');
    });

    t.test('publishMany sends one frame per distinct node', async (t) => {
      const [a, b] = [new Recorder(node('a')), new Recorder(node('b'))];
      await a.attach(make());
      await b.attach(make());
      const idle = node('idle');
      const result = await publisher.publishMany([a.node, b.node, a.node, idle, b.node, a.node], new Uint8Array([9]));
      t.same([...result.entries()], [[a.node, 1], [b.node, 1], [idle, 0]], 'receivers per distinct node, in order');
      await a.fence(publisher);
      await b.fence(publisher);
      t.equal(a.frames.length, 1, 'a counted exactly one frame');
      t.equal(b.frames.length, 1, 'b counted exactly one frame');
      t.same((await publisher.publishMany([], new Uint8Array([1]))).size, 0, 'no targets, nothing sent');
    });

    t.test('binary frames round-trip byte for byte', async (t) => {
      const r = await new Recorder(node('bin')).attach(make());
      const every = Uint8Array.from({ length: 256 }, (_, i) => i);
      const big = new Uint8Array(randomBytes(256 * 1024));
      const backing = new Uint8Array([7, 7, 0xc1, 0x00, 0xff, 0x0d, 0x0a, 7]);
      const view = backing.subarray(2, 7); // non-zero offset into a larger buffer
      const sent = [every, big, view, new Uint8Array(0)];
      for (const f of sent) await publisher.publish(r.node, f);
      await r.fence(publisher);
      t.equal(r.frames.length, sent.length, 'every frame arrived');
      for (let i = 0; i < sent.length; i++) {
        t.ok(Buffer.from(r.frames[i]!).equals(Buffer.from(sent[i]!)), `frame ${i} is identical (${sent[i]!.length} bytes)`);
      }
    });

    t.test('frames from one publisher arrive in publish order while connected', async (t) => {
      const r = await new Recorder(node('order')).attach(make());
      await Promise.all(Array.from({ length: 200 }, (_, i) => publisher.publish(r.node, new Uint8Array([i & 255, i >> 8]))));
      await r.fence(publisher);
      t.same(r.frames.map((f) => f[0]! + (f[1]! << 8)), Array.from({ length: 200 }, (_, i) => i), 'in order');
    });

    t.test('frames published over several event-loop turns (written together per turn) keep publish order', async (t) => {
      const r = await new Recorder(node('turns')).attach(make());
      const sent: Promise<number>[] = [];
      for (let turn = 0; turn < 10; turn++) {
        for (let j = 0; j < 1 + (turn % 4) * 10; j++) sent.push(publisher.publish(r.node, new Uint8Array([sent.length & 255, sent.length >> 8])));
        await new Promise((resolve) => setImmediate(resolve));
      }
      t.same(new Set(await Promise.all(sent)), new Set([1]), 'every publish reached the one subscriber');
      await r.fence(publisher);
      t.same(r.frames.map((f) => f[0]! + (f[1]! << 8)), Array.from({ length: sent.length }, (_, i) => i), `all ${sent.length} in order`);
    });

    t.test('a publish nobody listens to reports 0 receivers and does not throw', async (t) => {
      const before = await metricValue('ticks_bus_published_total', { bus: 'frames', result: 'no_receivers' });
      t.equal(await publisher.publish(node('nobody'), new Uint8Array([1])), 0);
      const after = await metricValue('ticks_bus_published_total', { bus: 'frames', result: 'no_receivers' });
      t.equal(after - before, 1, 'counted as no_receivers');
    });

    t.test('unsubscribe stops delivery', async (t) => {
      const bus = make();
      const r = await new Recorder(node('unsub')).attach(bus);
      await r.sub!.unsubscribe();
      await r.sub!.unsubscribe(); // idempotent
      t.equal(await publisher.publish(r.node, new Uint8Array([1])), 0, 'no receivers after unsubscribe');
      // Subscribing the node again on the same bus works and the old handler stays silent.
      const again = await new Recorder(r.node).attach(bus);
      await again.fence(publisher);
      t.equal(r.frames.length + r.markers, 0, 'old handler received nothing');
    });

    t.test('close stops delivery and later publishes reject with cluster.unavailable', async (t) => {
      const bus = factory.create();
      const r = await new Recorder(node('close')).attach(bus);
      await bus.close();
      await bus.close(); // idempotent
      t.equal(await publisher.publish(r.node, new Uint8Array([1])), 0, 'no receivers after close');
      const err = await rejectsWith(t, bus.publish(r.node, new Uint8Array([1])), 'cluster.unavailable', 'publish after close');
      t.equal(err?.retryable, true, 'retryable');
      t.equal(r.frames.length, 0, 'closed subscriber received nothing');
    });

    t.test('a throwing handler does not stop later frames', async (t) => {
      const errors: unknown[] = [];
      const bus = make({ onHandlerError: (e) => errors.push(e) });
      const got: number[] = [];
      const target = node('throw');
      await bus.subscribe(target, (b) => {
        got.push(b[0]!);
        if (b[0] === 1) throw new Error('handler bug');
      });
      await publisher.publish(target, new Uint8Array([1]));
      await publisher.publish(target, new Uint8Array([2]));
      await waitFor(() => got.length === 2, 'both frames');
      t.same(got, [1, 2]);
      t.equal(errors.length, 1, 'the throw was reported');
    });

    t.test('bad arguments reject with cluster.invalid', async (t) => {
      const bus = make();
      const target = node('dup');
      await bus.subscribe(target, () => {});
      await rejectsWith(t, bus.subscribe(target, () => {}), 'cluster.invalid', 'second handler for one node');
      await rejectsWith(t, publisher.publish('', new Uint8Array([1])), 'cluster.invalid', 'empty node id');
      await rejectsWith(t, publisher.publish('a b', new Uint8Array([1])), 'cluster.invalid', 'node id with a space');
    });

    t.test('publish to an unreachable transport rejects with cluster.unavailable, not a hang', async (t) => {
      const bus = await factory.unreachable();
      t.teardown(() => bus.close());
      const started = Date.now();
      const err = await rejectsWith(t, bus.publish(node('x'), new Uint8Array([1])), 'cluster.unavailable', 'publish');
      t.equal(err?.retryable, true, 'retryable');
      t.ok(Date.now() - started < 5_000, `rejected in ${Date.now() - started} ms`);
      await rejectsWith(t, bus.publishMany([node('x'), node('y')], new Uint8Array([1])), 'cluster.unavailable', 'publishMany');
    });

    t.test('a full outgoing queue rejects at once with cluster.unavailable', async (t) => {
      const { bus, target, cleanup } = await factory.bounded(3);
      t.teardown(cleanup);
      const first = Array.from({ length: 3 }, () => bus.publish(target, new Uint8Array([1])).catch((e: unknown) => e));
      const started = Date.now();
      const err = await rejectsWith(t, bus.publish(target, new Uint8Array([1])), 'cluster.unavailable', 'publish over the bound');
      t.equal(err?.retryable, true, 'retryable');
      t.ok(Date.now() - started < 500, 'refused without waiting');
      await Promise.all(first);
    });
  });
}

contract(memoryFactory());
contract(redisFactory());
